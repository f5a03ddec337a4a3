package cliapp

import (
	"context"
	"fmt"
	"io"
	"os"

	"golang.org/x/term"
)

// AskPassphrase reads the passphrase of the key file at path from the
// terminal on stdin without echo, having written a prompt naming path to w.
// Call it only when Interactive. It is kept this small because it cannot be
// tested without a pty: every decision about the passphrase is in the
// feature package that reads the key (repo.ReadSiteKey, the server's
// vendor key). SIGINT is caught by the command's context, not by the read,
// so the wait ends with ctx and the terminal's echo is restored; the blocked
// read dies with the process, which exits at once.
func AskPassphrase(ctx context.Context, w io.Writer, path string) ([]byte, error) {
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
