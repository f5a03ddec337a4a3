package main

import (
	"context"
	"fmt"
	"io"
	"os"

	"github.com/urfave/cli/v2"

	"github.com/airlock-project/airlock/cmd/internal/cliapp"
	"github.com/airlock-project/airlock/fault"
	"github.com/airlock-project/airlock/repo"
)

// repoCommands are the commands on the repository: init, trust, key,
// verify, import, list, bundles, audit, check.
func repoCommands() []*cli.Command {
	return []*cli.Command{
		{
			Name:      "init",
			Usage:     "create the repository and its site key",
			ArgsUsage: " ",
			Description: "Creates the repository (--repo, AIRLOCK_REPO, default ./airlock-repo): the database, the blob\n" +
				"store and a new site key. REPO/site.pub.asc is the public half to register at the vendor.\n" +
				"With --passphrase-file, REPO/site.key is encrypted with that passphrase; airlock key new\n" +
				"then needs it.",
			Flags: flags(repoFlags(), []cli.Flag{
				&cli.StringFlag{Name: "site", Usage: "the site `NAME` registered at the vendor (a-z, 0-9, '-', '_', '.')"},
				passphraseFlag("encrypt site.key with the passphrase in `FILE` (one line)"),
				cliapp.JSONFlag,
			}),
			Action: func(c *cli.Context) error {
				if _, err := cliapp.Args(c, 0, 0, "no arguments"); err != nil {
					return err
				}
				if err := cliapp.Need(c, "site"); err != nil {
					return err
				}
				return repo.RunInit(c.Context, repo.InitCmd{
					Options: repoOptions(c), Site: c.String("site"), PassphraseFile: c.String("passphrase-file"), JSON: c.Bool("json"),
				}, c.App.Writer, c.App.ErrWriter)
			},
		},
		{
			Name:  "trust",
			Usage: "manage the vendor and courier keys the repository trusts",
			Subcommands: []*cli.Command{
				{
					Name:      "add",
					Usage:     "trust a vendor or courier public key",
					ArgsUsage: "FILE",
					Flags: flags(repoFlags(), []cli.Flag{
						&cli.StringFlag{Name: "role", Usage: "`ROLE` of the key: vendor or courier"},
					}),
					Action: func(c *cli.Context) error {
						args, err := cliapp.Args(c, 1, 1, "one public key FILE")
						if err != nil {
							return err
						}
						if err := cliapp.Need(c, "role"); err != nil {
							return err
						}
						return repo.RunTrustAdd(c.Context, repo.TrustAddCmd{Options: repoOptions(c), Role: c.String("role"), File: args[0]},
							c.App.Writer, c.App.ErrWriter)
					},
				},
				{
					Name:      "list",
					Usage:     "list the trusted keys",
					ArgsUsage: " ",
					Flags:     flags(repoFlags(), []cli.Flag{cliapp.JSONFlag}),
					Action: func(c *cli.Context) error {
						if _, err := cliapp.Args(c, 0, 0, "no arguments"); err != nil {
							return err
						}
						return repo.RunTrustList(c.Context, repo.TrustListCmd{Options: repoOptions(c), JSON: c.Bool("json")},
							c.App.Writer, c.App.ErrWriter)
					},
				},
				{
					Name:      "remove",
					Usage:     "stop trusting a key",
					ArgsUsage: "FINGERPRINT",
					Flags:     repoFlags(),
					Action: func(c *cli.Context) error {
						args, err := cliapp.Args(c, 1, 1, "one key FINGERPRINT")
						if err != nil {
							return err
						}
						return repo.RunTrustRemove(c.Context, repo.TrustRemoveCmd{Options: repoOptions(c), Fingerprint: args[0]},
							c.App.Writer, c.App.ErrWriter)
					},
				},
			},
		},
		{
			Name:  "key",
			Usage: "make and manage download keys, and replace the site key",
			Subcommands: []*cli.Command{
				{
					Name:      "new",
					Usage:     "write a new site-signed download key",
					ArgsUsage: " ",
					Description: "Signs a download key with the site key. If REPO/site.key is passphrase-protected, the\n" +
						"passphrase is read from --passphrase-file (or AIRLOCK_PASSPHRASE_FILE), else asked on the\n" +
						"terminal; with neither, the command is refused and nothing changes.",
					Flags: flags(repoFlags(), []cli.Flag{
						&cli.StringFlag{Name: "out", Usage: "write the download key to `FILE` (must not exist)"},
						&cli.DurationFlag{Name: "expires", Usage: "how long the key stays valid", Value: repo.DefaultKeyExpiry},
						&cli.StringFlag{Name: "inventory", Usage: "cluster inventory `FILE`: {\"nodes\":[{\"name\":\"n1\",\"installed\":{\"base\":\"3.3.2\"}}]}"},
						passphraseFlag("the passphrase of a passphrase-protected site.key is in `FILE`"),
						cliapp.JSONFlag,
					}),
					Action: func(c *cli.Context) error {
						if _, err := cliapp.Args(c, 0, 0, "no arguments"); err != nil {
							return err
						}
						if err := cliapp.Need(c, "out"); err != nil {
							return err
						}
						return repo.RunKeyNew(c.Context, repo.KeyNewCmd{
							Options: repoOptions(c), Out: c.String("out"), Expires: c.Duration("expires"),
							Inventory: c.String("inventory"), Passphrase: sitePassphrase(c), JSON: c.Bool("json"),
						}, c.App.Writer, c.App.ErrWriter)
					},
				},
				{
					Name:      "list",
					Usage:     "list the download keys and their states",
					ArgsUsage: " ",
					Flags:     flags(repoFlags(), []cli.Flag{cliapp.JSONFlag}),
					Action: func(c *cli.Context) error {
						if _, err := cliapp.Args(c, 0, 0, "no arguments"); err != nil {
							return err
						}
						return repo.RunKeyList(c.Context, repo.KeyListCmd{Options: repoOptions(c), JSON: c.Bool("json")},
							c.App.Writer, c.App.ErrWriter)
					},
				},
				{
					Name:      "rotate",
					Usage:     "replace the site key, revoking every outstanding download key",
					ArgsUsage: " ",
					Description: "Makes a new site key in REPO/site.key and REPO/site.pub.asc, for a site key that is lost,\n" +
						"compromised or due for rotation; the old one is not read, nor its passphrase. The old public\n" +
						"key is kept in REPO/site-keys/FINGERPRINT.pub.asc, the old site.key is replaced. Every\n" +
						"outstanding download key is revoked: the old key signed them, and bundles answering them\n" +
						"are refused. With --passphrase-file the new site.key is encrypted; a passphrase-protected\n" +
						"site.key is not replaced by one in the clear. Asks for confirmation on a terminal unless\n" +
						"--yes. Then give REPO/site.pub.asc to the vendor, who runs 'airlock-server site add --name\n" +
						"SITE --key site.pub.asc --replace', and make a new download key with airlock key new.",
					Flags: flags(repoFlags(), []cli.Flag{
						passphraseFlag("encrypt the new site.key with the passphrase in `FILE` (one line)"),
						&cli.BoolFlag{Name: "yes", Usage: "do not ask for confirmation"},
						cliapp.JSONFlag,
					}),
					Action: keyRotateAction,
				},
				{
					Name:      "revoke",
					Usage:     "revoke an outstanding download key",
					ArgsUsage: "ID",
					Flags:     repoFlags(),
					Action: func(c *cli.Context) error {
						args, err := cliapp.Args(c, 1, 1, "one download key ID")
						if err != nil {
							return err
						}
						return repo.RunKeyRevoke(c.Context, repo.KeyRevokeCmd{Options: repoOptions(c), ID: args[0]},
							c.App.Writer, c.App.ErrWriter)
					},
				},
			},
		},
		{
			Name:      "verify",
			Usage:     "check a bundle as import would, changing nothing",
			ArgsUsage: "BUNDLE",
			Flags: flags(repoFlags(), []cli.Flag{
				&cli.BoolFlag{Name: "allow-downgrade", Usage: "accept packages older than a node of the download key runs"},
				cliapp.JSONFlag, cliapp.NoProgressFlag,
			}),
			Action: func(c *cli.Context) error { return bundleAction(c, repo.RunVerify) },
		},
		{
			Name:      "import",
			Usage:     "verify a bundle and store its packages",
			ArgsUsage: "BUNDLE",
			Description: "BUNDLE is the bundle file or its first volume NAME.001. The whole bundle is imported, or\n" +
				"nothing: a refused bundle leaves the repository unchanged.",
			Flags: flags(repoFlags(), []cli.Flag{
				&cli.BoolFlag{Name: "allow-downgrade", Usage: "accept packages older than a node of the download key runs"},
				cliapp.JSONFlag, cliapp.NoProgressFlag,
			}),
			Action: func(c *cli.Context) error { return bundleAction(c, repo.RunImport) },
		},
		{
			Name:      "list",
			Usage:     "list the stored packages",
			ArgsUsage: " ",
			Flags:     flags(repoFlags(), []cli.Flag{cliapp.JSONFlag}),
			Action:    func(c *cli.Context) error { return listAction(c, repo.RunList) },
		},
		{
			Name:      "bundles",
			Usage:     "list the imported bundles",
			ArgsUsage: " ",
			Flags:     flags(repoFlags(), []cli.Flag{cliapp.JSONFlag}),
			Action:    func(c *cli.Context) error { return listAction(c, repo.RunBundles) },
		},
		{
			Name:      "audit",
			Usage:     "show the audit log, or verify its hash chain",
			ArgsUsage: " ",
			Flags: flags(repoFlags(), []cli.Flag{
				&cli.BoolFlag{Name: "verify", Usage: "verify the hash chain instead of listing"},
				cliapp.JSONFlag,
			}),
			Action: func(c *cli.Context) error {
				if _, err := cliapp.Args(c, 0, 0, "no arguments"); err != nil {
					return err
				}
				return repo.RunAudit(c.Context, repo.AuditCmd{Options: repoOptions(c), Verify: c.Bool("verify"), JSON: c.Bool("json")},
					c.App.Writer, c.App.ErrWriter)
			},
		},
		{
			Name:        "check",
			Usage:       "verify every blob, the metadata and the audit chain",
			ArgsUsage:   " ",
			Description: "Exits 3 naming each problem found. --repair first removes what interrupted imports left behind.",
			Flags: flags(repoFlags(), []cli.Flag{
				&cli.BoolFlag{Name: "repair", Usage: "remove temporary files and unreferenced blobs first"},
				cliapp.JSONFlag, cliapp.NoProgressFlag,
			}),
			Action: func(c *cli.Context) error {
				if _, err := cliapp.Args(c, 0, 0, "no arguments"); err != nil {
					return err
				}
				return repo.RunCheck(c.Context, repo.CheckCmd{
					Options: repoOptions(c), CheckOptions: repo.CheckOptions{Progress: cliapp.Progress(c)},
					Repair: c.Bool("repair"), JSON: c.Bool("json"),
				}, c.App.Writer, c.App.ErrWriter)
			},
		},
	}
}

// keyRotateAction runs key rotate. Rotation is disruptive (every
// outstanding download key is revoked, and nothing can be fetched until
// the vendor registers the new key), so it is confirmed on a terminal, or
// by --yes.
func keyRotateAction(c *cli.Context) error {
	if _, err := cliapp.Args(c, 0, 0, "no arguments"); err != nil {
		return err
	}
	var confirm func(string) error
	if !c.Bool("yes") {
		if !cliapp.Interactive() {
			return fmt.Errorf("%w: key rotate replaces the site key and revokes every outstanding download key, and must be confirmed; there is no terminal to ask on: pass --yes", fault.ErrUsage)
		}
		confirm = func(q string) error { return ask(os.Stdin, c.App.ErrWriter, q) }
	}
	hook, err := testHook()
	if err != nil {
		return err
	}
	return repo.RunKeyRotate(c.Context, repo.KeyRotateCmd{
		Options: repoOptions(c), PassphraseFile: c.String("passphrase-file"),
		Confirm: confirm, Hook: hook, JSON: c.Bool("json"),
	}, c.App.Writer, c.App.ErrWriter)
}

// bundleAction runs verify or import.
func bundleAction(c *cli.Context, run func(ctx context.Context, cmd repo.ImportCmd, stdout, stderr io.Writer) error) error {
	args, err := cliapp.Args(c, 1, 1, "one BUNDLE (a bundle file or its first volume NAME.001)")
	if err != nil {
		return err
	}
	hook, err := testHook()
	if err != nil {
		return err
	}
	return run(c.Context, repo.ImportCmd{
		Options: repoOptions(c),
		ImportOptions: repo.ImportOptions{
			AllowDowngrade: c.Bool("allow-downgrade"),
			Progress:       cliapp.Progress(c),
			Hook:           hook,
		},
		Bundle: args[0],
		JSON:   c.Bool("json"),
	}, c.App.Writer, c.App.ErrWriter)
}

// listAction runs list or bundles.
func listAction(c *cli.Context, run func(ctx context.Context, cmd repo.ListCmd, stdout, stderr io.Writer) error) error {
	if _, err := cliapp.Args(c, 0, 0, "no arguments"); err != nil {
		return err
	}
	return run(c.Context, repo.ListCmd{Options: repoOptions(c), JSON: c.Bool("json")}, c.App.Writer, c.App.ErrWriter)
}
