// Command airlock-server is the vendor's update server: it holds the signed
// package catalog and the registered sites, exchanges download keys for
// signed entitlements and serves each entitled package once.
package main

import (
	"github.com/urfave/cli/v2"

	"github.com/airlock-project/airlock/cmd/internal/cliapp"
	"github.com/airlock-project/airlock/server"
)

func main() { cliapp.Main(newApp()) }

var dirFlag = &cli.StringFlag{Name: "dir", Usage: "the vendor store directory (made by init)"}

func config(c *cli.Context) server.Config { return server.Config{Dir: c.String("dir")} }

// passphraseFlag is the --passphrase-file flag of init and serve, the
// commands that write or sign with vendor.key, new for each command.
func passphraseFlag(usage string) cli.Flag {
	return &cli.StringFlag{Name: "passphrase-file", Usage: usage, EnvVars: []string{server.EnvPassphraseFile}}
}

// vendorPassphrase says where serve gets the passphrase of vendor.key:
// --passphrase-file (or its environment variable), else the terminal if
// stdin and stderr are one. Without either, server refuses a protected
// vendor.key with a usage error.
func vendorPassphrase(c *cli.Context) server.VendorPassphrase {
	p := server.VendorPassphrase{File: c.String("passphrase-file")}
	if cliapp.Interactive() {
		p.Prompt = func(path string) ([]byte, error) { return cliapp.AskPassphrase(c.Context, c.App.ErrWriter, path) }
	}
	return p
}

func newApp() *cli.App {
	return &cli.App{
		Name:  "airlock-server",
		Usage: "the vendor's update server",
		Commands: []*cli.Command{
			{
				Name:  "init",
				Usage: "make a vendor store: vendor key (DIR/vendor.key, DIR/vendor.pub.asc), catalog, ledger",
				Description: "With --passphrase-file, DIR/vendor.key is encrypted with that passphrase: serve, which\n" +
					"signs entitlements with it, then needs the passphrase; the other commands never do.",
				Flags: []cli.Flag{
					dirFlag, &cli.StringFlag{Name: "name", Usage: "the vendor key's user ID", Value: "airlock vendor"},
					passphraseFlag("encrypt vendor.key with the passphrase in `FILE` (one line)"),
				},
				Action: func(c *cli.Context) error {
					if err := cliapp.Need(c, "dir"); err != nil {
						return err
					}
					if _, err := cliapp.Args(c, 0, 0, "no arguments"); err != nil {
						return err
					}
					return server.RunInit(c.Context, server.InitOptions{Dir: c.String("dir"), Name: c.String("name"), PassphraseFile: c.String("passphrase-file")}, c.App.Writer, c.App.ErrWriter)
				},
			},
			{
				Name:      "publish",
				Usage:     "add a package file to the catalog",
				ArgsUsage: "FILE",
				Flags: []cli.Flag{
					dirFlag,
					&cli.StringFlag{Name: "name", Usage: "the component the package updates, e.g. base"},
					&cli.StringFlag{Name: "kind", Usage: "base, product, license or hotfix"},
					&cli.StringFlag{Name: "version", Usage: "the version it installs, e.g. 3.4.0"},
					&cli.StringSliceFlag{Name: "requires", Usage: "a constraint that must hold before install, e.g. 'base >= 3.3.2' (repeatable)"},
					&cli.DurationFlag{Name: "settle", Usage: "wait this long after installing it before the next package of its kind, e.g. 24h"},
					&cli.BoolFlag{Name: "reboot", Usage: "the node restarts during install"},
					cliapp.JSONFlag, cliapp.NoProgressFlag,
				},
				Action: func(c *cli.Context) error {
					if err := cliapp.Need(c, "dir", "name", "kind", "version"); err != nil {
						return err
					}
					args, err := cliapp.Args(c, 1, 1, "one package FILE")
					if err != nil {
						return err
					}
					return server.RunPublish(c.Context, server.PublishOptions{
						Config: config(c), Name: c.String("name"), Kind: c.String("kind"), Version: c.String("version"),
						Requires: c.StringSlice("requires"), Settle: c.Duration("settle"), Reboot: c.Bool("reboot"),
						File: args[0], JSON: c.Bool("json"), Progress: cliapp.Progress(c),
					}, c.App.Writer, c.App.ErrWriter)
				},
			},
			{
				Name:  "site",
				Usage: "manage registered sites",
				Subcommands: []*cli.Command{{
					Name:  "add",
					Usage: "register a site's public key (the repository's site.pub.asc)",
					Flags: []cli.Flag{
						dirFlag,
						&cli.StringFlag{Name: "name", Usage: "the site name, as in its download keys"},
						&cli.StringFlag{Name: "key", Usage: "the site's armored public key file"},
						&cli.BoolFlag{Name: "replace", Usage: "replace the site's registered key, still valid, because the site reported it lost or compromised (by a trusted channel); its ledger is kept"},
						cliapp.JSONFlag,
					},
					Action: func(c *cli.Context) error {
						if err := cliapp.Need(c, "dir", "name", "key"); err != nil {
							return err
						}
						if _, err := cliapp.Args(c, 0, 0, "no arguments"); err != nil {
							return err
						}
						return server.RunSiteAdd(c.Context, server.SiteAddOptions{
							Config: config(c), Name: c.String("name"), KeyFile: c.String("key"), JSON: c.Bool("json"), Replace: c.Bool("replace"),
						}, c.App.Writer, c.App.ErrWriter)
					},
				}, {
					Name:  "list",
					Usage: "list the registered sites and how many packages each has received",
					Flags: []cli.Flag{dirFlag, cliapp.JSONFlag},
					Action: func(c *cli.Context) error {
						if err := cliapp.Need(c, "dir"); err != nil {
							return err
						}
						if _, err := cliapp.Args(c, 0, 0, "no arguments"); err != nil {
							return err
						}
						return server.RunSiteList(c.Context, server.SiteListOptions{Config: config(c), JSON: c.Bool("json")}, c.App.Writer, c.App.ErrWriter)
					},
				}},
			},
			{
				Name:  "reissue",
				Usage: "make a package a site has downloaded downloadable again for it",
				Flags: []cli.Flag{
					dirFlag,
					&cli.StringFlag{Name: "site", Usage: "the site name"},
					&cli.StringFlag{Name: "package", Usage: "NAME@VERSION or the package's sha256"},
				},
				Action: func(c *cli.Context) error {
					if err := cliapp.Need(c, "dir", "site", "package"); err != nil {
						return err
					}
					if _, err := cliapp.Args(c, 0, 0, "no arguments"); err != nil {
						return err
					}
					return server.RunReissue(c.Context, server.ReissueOptions{
						Config: config(c), Site: c.String("site"), Package: c.String("package"),
					}, c.App.Writer, c.App.ErrWriter)
				},
			},
			{
				Name:  "catalog",
				Usage: "list the published packages",
				Flags: []cli.Flag{dirFlag, cliapp.JSONFlag},
				Action: func(c *cli.Context) error {
					if err := cliapp.Need(c, "dir"); err != nil {
						return err
					}
					if _, err := cliapp.Args(c, 0, 0, "no arguments"); err != nil {
						return err
					}
					return server.RunCatalog(c.Context, server.CatalogOptions{Config: config(c), JSON: c.Bool("json")}, c.App.Writer, c.App.ErrWriter)
				},
			},
			{
				Name:  "serve",
				Usage: "answer download keys and serve packages until SIGTERM; admin commands keep working meanwhile",
				Description: "Signs every entitlement with the vendor key. If DIR/vendor.key is passphrase-protected, the\n" +
					"passphrase is read from --passphrase-file (or AIRLOCK_SERVER_PASSPHRASE_FILE), else asked on the\n" +
					"terminal, before the store is opened; without it, or with a wrong one, serve exits with 2\n" +
					"and listens nowhere. It is the only command that needs the passphrase: publish, site,\n" +
					"reissue and catalog do not sign, whether they reach the running server or open the store.",
				Flags: []cli.Flag{
					dirFlag,
					&cli.StringFlag{Name: "listen", Usage: "TCP address to listen on", Value: "127.0.0.1:8080"},
					&cli.StringFlag{Name: "tls-cert", Usage: "PEM certificate file: serve HTTPS"},
					&cli.StringFlag{Name: "tls-key", Usage: "PEM private key file of --tls-cert"},
					passphraseFlag("the passphrase of a passphrase-protected vendor.key is in `FILE`"),
					cliapp.LogFormatFlag, cliapp.LogLevelFlag,
				},
				Action: func(c *cli.Context) error {
					if err := cliapp.Need(c, "dir"); err != nil {
						return err
					}
					if _, err := cliapp.Args(c, 0, 0, "no arguments"); err != nil {
						return err
					}
					logger, err := cliapp.Logger(c)
					if err != nil {
						return err
					}
					cfg := config(c)
					cfg.Logger = logger
					cfg.Passphrase = vendorPassphrase(c)
					return server.RunServe(c.Context, server.ServeCommandOptions{
						Config: cfg,
						ServeOptions: server.ServeOptions{
							Listen: c.String("listen"), TLSCert: c.String("tls-cert"), TLSKey: c.String("tls-key"),
						},
					}, c.App.Writer, c.App.ErrWriter)
				},
			},
		},
	}
}
