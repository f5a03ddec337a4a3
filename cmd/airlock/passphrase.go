package main

import (
	"github.com/urfave/cli/v2"

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
// stdin and stderr are one (cliapp.AskPassphrase). Without either, repo
// refuses an encrypted site.key with a usage error.
func sitePassphrase(c *cli.Context) repo.SiteKeyPassphrase {
	p := repo.SiteKeyPassphrase{File: c.String("passphrase-file")}
	if cliapp.Interactive() {
		p.Prompt = func(path string) ([]byte, error) { return cliapp.AskPassphrase(c.Context, c.App.ErrWriter, path) }
	}
	return p
}
