// Command airlock-fetch runs on the unrestricted side: it exchanges a
// download key at the vendor's update server and writes a signed bundle.
package main

import (
	"fmt"
	"net/http"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/airlock-project/airlock/bundle"
	"github.com/airlock-project/airlock/cmd/internal/cliapp"
	"github.com/airlock-project/airlock/fetch"
)

func main() { cliapp.Main(newApp()) }

func newApp() *cli.App {
	return &cli.App{
		Name:  "airlock-fetch",
		Usage: "exchange a download key and write a signed bundle to removable media",
		Description: "Exit codes: 0 success; 1 operational failure (network, a stalled server, I/O, a\n" +
			"missing file; rerun to resume); 2 usage error; 3 verification failed (a bad or\n" +
			"untrusted signature, such as on a download key the server did not accept; a\n" +
			"digest or size mismatch; a malformed key file; a hostile or broken server\n" +
			"answer; a damaged bundle); 4 refused by policy (a download key expired or from\n" +
			"the future; a package already delivered).",
		Commands: []*cli.Command{keygenCommand(), exchangeCommand(), bundleCommand(), inspectCommand()},
	}
}

func keygenCommand() *cli.Command {
	return &cli.Command{
		Name:      "keygen",
		Usage:     "make the courier key pair that signs bundles",
		UsageText: "airlock-fetch keygen --name 'Jane Courier' --out courier   # courier.key (0600), courier.pub.asc",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "name", Usage: "the key owner's `NAME` (user ID)"},
			&cli.StringFlag{Name: "email", Usage: "the key owner's `EMAIL` (user ID)"},
			&cli.StringFlag{Name: "out", Usage: "write `PREFIX`.key and PREFIX.pub.asc (never overwritten)"},
			&cli.StringFlag{Name: "passphrase-file", Usage: "encrypt the private key with the passphrase in `FILE`"},
			&cli.DurationFlag{Name: "expiry", Usage: "make the key expire after `DURATION` (default: never)"},
			cliapp.JSONFlag,
		},
		Action: func(c *cli.Context) error {
			if err := cliapp.Need(c, "name", "out"); err != nil {
				return err
			}
			if _, err := cliapp.Args(c, 0, 0, "no arguments"); err != nil {
				return err
			}
			return fetch.RunKeygen(c.Context, fetch.KeygenOptions{
				Name: c.String("name"), Email: c.String("email"), Out: c.String("out"),
				PassphraseFile: c.String("passphrase-file"), Expiry: c.Duration("expiry"), JSON: c.Bool("json"),
			}, c.App.Writer, c.App.ErrWriter)
		},
	}
}

// serverFlags are the flags of the commands that talk to the server.
func serverFlags() []cli.Flag {
	return []cli.Flag{
		&cli.StringFlag{Name: "server", Usage: "the vendor's update server `URL` (http or https)"},
		&cli.StringFlag{Name: "vendor-key", Usage: "the pinned vendor public key `FILE`"},
		&cli.StringFlag{Name: "key", Usage: "the download key `FILE` made by 'airlock key new'"},
		&cli.StringFlag{Name: "ca-file", Usage: "trust the certificate authorities in PEM `FILE` for https, besides the system's"},
		&cli.DurationFlag{Name: "idle-timeout", Value: fetch.DefaultIdleTimeout, Usage: "give up on a server that sends nothing for `DURATION`"},
	}
}

func serverOptions(c *cli.Context) fetch.ServerOptions {
	return fetch.ServerOptions{
		Server: c.String("server"), VendorKey: c.String("vendor-key"), DownloadKey: c.String("key"),
		Client: fetch.ClientOptions{CAFile: c.String("ca-file"), IdleTimeout: c.Duration("idle-timeout"), Proxy: http.ProxyFromEnvironment},
	}
}

func exchangeCommand() *cli.Command {
	return &cli.Command{
		Name:  "exchange",
		Usage: "show what the vendor grants for a download key, without downloading",
		UsageText: "airlock-fetch exchange --server URL --vendor-key vendor.pub.asc --key download.key [--json]\n\n" +
			"Prints the verified entitlement; --json prints {site, key_id, issued, expires, packages, downloads}.\n" +
			"Nothing is downloaded or acknowledged, so it is safe to repeat.",
		Flags: append(serverFlags(), cliapp.JSONFlag),
		Action: func(c *cli.Context) error {
			if err := cliapp.Need(c, "server", "vendor-key", "key"); err != nil {
				return err
			}
			if _, err := cliapp.Args(c, 0, 0, "no arguments"); err != nil {
				return err
			}
			return fetch.RunExchange(c.Context, fetch.ExchangeOptions{ServerOptions: serverOptions(c), JSON: c.Bool("json")}, c.App.Writer, c.App.ErrWriter)
		},
	}
}

func bundleCommand() *cli.Command {
	return &cli.Command{
		Name:  "bundle",
		Usage: "download the entitled packages and write a courier-signed bundle",
		UsageText: "airlock-fetch bundle --server URL --vendor-key vendor.pub.asc --key download.key\n" +
			"    --sign-key courier.key --out PATH [--split SIZE] [--cache DIR] [--parallel N]\n\n" +
			"Downloads resume: after an interruption, rerun the same command. The downloads are\n" +
			"acknowledged to the server only after the bundle was written and verified.",
		Flags: append(serverFlags(),
			&cli.StringFlag{Name: "sign-key", Usage: "the courier private key `FILE` (airlock-fetch keygen)"},
			&cli.StringFlag{Name: "passphrase-file", Usage: "the sign key's passphrase is in `FILE`"},
			&cli.StringFlag{Name: "out", Usage: "write the bundle to `PATH` (never overwritten)"},
			&cli.StringFlag{Name: "split", Usage: "cut the bundle into volumes PATH.001… of `SIZE` (e.g. 4GiB-1 for FAT32)"},
			&cli.StringFlag{Name: "cache", Usage: "download into `DIR` (default: PATH.cache); emptied after success"},
			&cli.IntFlag{Name: "parallel", Value: fetch.DefaultParallel, Usage: "download `N` packages at once"},
			&cli.IntFlag{Name: "retries", Value: 3, Usage: "resume a broken download up to `N` times before giving up"},
			&cli.IntFlag{Name: "level", Value: 3, Usage: "zstd compression `LEVEL` (1-22)"},
			cliapp.NoProgressFlag,
			cliapp.JSONFlag,
		),
		Action: func(c *cli.Context) error {
			if err := cliapp.Need(c, "server", "vendor-key", "key", "sign-key", "out"); err != nil {
				return err
			}
			if _, err := cliapp.Args(c, 0, 0, "no arguments"); err != nil {
				return err
			}
			var split int64
			if c.IsSet("split") {
				var err error
				if split, err = bundle.ParseSize(c.String("split")); err != nil {
					return fmt.Errorf("--split: %w", err)
				}
			}
			return fetch.RunBundle(c.Context, fetch.BundleOptions{
				ServerOptions:  serverOptions(c),
				SignKey:        c.String("sign-key"),
				PassphraseFile: c.String("passphrase-file"),
				Out:            c.String("out"),
				Split:          split,
				Cache:          c.String("cache"),
				Parallel:       c.Int("parallel"),
				Retries:        c.Int("retries"),
				RetryDelay:     2 * time.Second,
				Write:          bundle.WriteOptions{Level: c.Int("level")},
				Progress:       cliapp.Progress(c),
				JSON:           c.Bool("json"),
			}, c.App.Writer, c.App.ErrWriter)
		},
	}
}

func inspectCommand() *cli.Command {
	return &cli.Command{
		Name:  "inspect",
		Usage: "check a bundle completely and print its manifest",
		UsageText: "airlock-fetch inspect PATH [--json] [--vendor-key F --courier-key F]\n\n" +
			"PATH is the bundle file or its first volume NAME.001. Structure, sizes and digests are\n" +
			"always checked; the signatures only with both --vendor-key and --courier-key.",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "vendor-key", Usage: "check the entitlement's signature against the vendor public key `FILE`"},
			&cli.StringFlag{Name: "courier-key", Usage: "check the manifest's signature against the courier public key `FILE`"},
			cliapp.NoProgressFlag,
			cliapp.JSONFlag,
		},
		Action: func(c *cli.Context) error {
			args, err := cliapp.Args(c, 1, 1, "one bundle PATH")
			if err != nil {
				return err
			}
			return fetch.RunInspect(c.Context, fetch.InspectOptions{
				Path: args[0], VendorKey: c.String("vendor-key"), CourierKey: c.String("courier-key"),
				JSON: c.Bool("json"), Progress: cliapp.Progress(c),
			}, c.App.Writer, c.App.ErrWriter)
		},
	}
}
