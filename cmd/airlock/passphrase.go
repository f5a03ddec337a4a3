package main

import (
	"context"
	"fmt"
	"io"
	"os"

	"github.com/urfave/cli/v2"
	"golang.org/x/term"

	"github.com/airlock-project/airlock/cmd/internal/cliapp"
	"github.com/airlock-project/airlock/repo"
)

// envPassphraseFile sets --passphrase-file for every command that takes it.
const envPassphraseFile = "AIRLOCK_PASSPHRASE_FILE"

// passphraseFlag is the --passphrase-file flag of the commands that write
// or read site.key, new for each command.
func passphraseFlag(usage string) cli.Flag {
	return &cli.StringFlag{Name: "passphrase-file", Usage: usage, EnvVars: []string{envPassphraseFile}}
}

// sitePassphrase says where a command gets the passphrase of site.key:
// --passphrase-file (or its environment variable), else the terminal if
// stdin and stderr are one. Without either, repo refuses an encrypted
// site.key with a usage error.
func sitePassphrase(c *cli.Context) repo.SiteKeyPassphrase {
	p := repo.SiteKeyPassphrase{File: c.String("passphrase-file")}
	if cliapp.Interactive() {
		p.Prompt = func(path string) ([]byte, error) { return askPassphrase(c.Context, c.App.ErrWriter, path) }
	}
	return p
}

// askPassphrase reads a passphrase from the terminal on stdin without echo.
// It is kept this small because it cannot be tested without a pty: every
// decision about the passphrase is in repo.ReadSiteKey. SIGINT is caught
// by the command's context, not by the read, so the wait ends with ctx and
// the terminal's echo is restored; the blocked read dies with the process,
// which exits at once.
func askPassphrase(ctx context.Context, w io.Writer, path string) ([]byte, error) {
	fd := int(os.Stdin.Fd())
	state, err := term.GetState(fd)
	if err != nil {
		return nil, fmt.Errorf("read the passphrase of %s from the terminal: %w; pass --passphrase-file FILE instead", path, err)
	}
	fmt.Fprintf(w, "passphrase of %s: ", path)
	type answer struct {
		pass []byte
		err  error
	}
	got := make(chan answer, 1)
	go func() {
		p, err := term.ReadPassword(fd)
		got <- answer{p, err}
	}()
	select {
	case a := <-got:
		fmt.Fprintln(w)
		if a.err != nil {
			return nil, fmt.Errorf("read the passphrase of %s from the terminal: %w; pass --passphrase-file FILE instead", path, a.err)
		}
		return a.pass, nil
	case <-ctx.Done():
		term.Restore(fd, state)
		fmt.Fprintln(w)
		return nil, ctx.Err()
	}
}
