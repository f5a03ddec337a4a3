// Command airlock-node is the node agent: the manual install endpoint of an
// appliance, which verifies staged packages again and installs them in order.
package main

import (
	"fmt"
	"os"

	"github.com/urfave/cli/v2"

	"github.com/airlock-project/airlock/catalog"
	"github.com/airlock-project/airlock/cmd/internal/cliapp"
	"github.com/airlock-project/airlock/fault"
	"github.com/airlock-project/airlock/node"
)

func main() { cliapp.Main(newApp()) }

// crashEnv names a node.Crash* point at which serve kills itself with
// SIGKILL, for crash tests. It is read here only, never in package node.
const crashEnv = "AIRLOCK_NODE_CRASH_AT"

var dirFlag = &cli.StringFlag{Name: "dir", Usage: "the node directory `D`"}

func newApp() *cli.App {
	return &cli.App{
		Name:  "airlock-node",
		Usage: "the node agent and manual install endpoint",
		Commands: []*cli.Command{
			{
				Name:      "init",
				Usage:     "create the node's directory: certificate, bearer token, installed versions",
				ArgsUsage: " ",
				Flags: []cli.Flag{
					dirFlag,
					&cli.StringFlag{Name: "name", Usage: "the node's `NAME`"},
					&cli.StringFlag{Name: "role", Value: node.RoleTraffic, Usage: "primary, backup, traffic or management"},
					&cli.StringFlag{Name: "region", Usage: "the node's `REGION` (optional)"},
					&cli.StringSliceFlag{Name: "installed", Usage: "a version the node runs today, `NAME=VERSION` (repeat)"},
					cliapp.JSONFlag,
				},
				Action: func(c *cli.Context) error {
					if err := cliapp.Need(c, "dir", "name"); err != nil {
						return err
					}
					if _, err := cliapp.Args(c, 0, 0, "no arguments"); err != nil {
						return err
					}
					inst := map[string]catalog.Version{}
					for _, s := range c.StringSlice("installed") {
						n, v, err := node.ParseInstalled(s)
						if err != nil {
							return err
						}
						if _, dup := inst[n]; dup {
							return fmt.Errorf("%w: --installed names %s twice", fault.ErrUsage, n)
						}
						inst[n] = v
					}
					return node.RunInit(c.Context, node.InitOptions{
						Dir: c.String("dir"), Name: c.String("name"), Role: c.String("role"),
						Region: c.String("region"), Installed: inst, JSON: c.Bool("json"),
					}, c.App.Writer, c.App.ErrWriter)
				},
			},
			{
				Name:      "trust",
				Usage:     "pin the vendor's public key",
				ArgsUsage: "vendor.pub.asc",
				Flags:     []cli.Flag{dirFlag},
				Action: func(c *cli.Context) error {
					if err := cliapp.Need(c, "dir"); err != nil {
						return err
					}
					args, err := cliapp.Args(c, 1, 1, "one vendor public key file")
					if err != nil {
						return err
					}
					return node.RunTrust(c.Context, node.TrustOptions{Dir: c.String("dir"), KeyFile: args[0]}, c.App.Writer, c.App.ErrWriter)
				},
			},
			{
				Name:      "serve",
				Usage:     "serve the node API over HTTPS until interrupted",
				ArgsUsage: " ",
				Flags: []cli.Flag{
					dirFlag,
					&cli.StringFlag{Name: "listen", Usage: "`ADDR:PORT` to listen on, e.g. 127.0.0.1:9443"},
					&cli.StringFlag{Name: "service-listen", Usage: "run the reference client service (a TCP echo service that drain refuses) on `ADDR:PORT`"},
					&cli.IntFlag{Name: "max-connections", Value: node.DefaultMaxConnections, Usage: "client connections the reference service keeps open at a time"},
					&cli.DurationFlag{Name: "hook-timeout", Value: node.DefaultHookTimeout, Usage: "time limit of each install hook"},
					&cli.DurationFlag{Name: "control-hook-timeout", Value: node.DefaultControlHookTimeout, Usage: "time limit of each drain, undrain, connections, promote and demote hook"},
					&cli.IntFlag{Name: "max-uploads", Value: node.DefaultMaxUploads, Usage: "uploads received at a time"},
					&cli.Int64Flag{Name: "max-unpack", Usage: "bytes one package may unpack to (0: 4 × its size + 1 GiB)"},
					&cli.IntFlag{Name: "max-entries", Value: node.DefaultMaxEntries, Usage: "members one package archive may hold"},
					cliapp.LogFormatFlag, cliapp.LogLevelFlag,
				},
				Action: func(c *cli.Context) error {
					if err := cliapp.Need(c, "dir", "listen"); err != nil {
						return err
					}
					if _, err := cliapp.Args(c, 0, 0, "no arguments"); err != nil {
						return err
					}
					logger, err := cliapp.Logger(c)
					if err != nil {
						return err
					}
					if err := checkLimits(c); err != nil {
						return err
					}
					opts := node.Options{
						Logger:             logger,
						HookTimeout:        c.Duration("hook-timeout"),
						ControlHookTimeout: c.Duration("control-hook-timeout"),
						ServiceListen:      c.String("service-listen"),
						MaxConnections:     c.Int("max-connections"),
						MaxUploads:         c.Int("max-uploads"),
						MaxUnpack:          c.Int64("max-unpack"),
						MaxEntries:         c.Int("max-entries"),
						CrashPoint:         crashPoint(os.Getenv(crashEnv)),
					}
					return node.RunServe(c.Context, node.ServeOptions{Dir: c.String("dir"), Listen: c.String("listen"), Agent: opts}, c.App.Writer, c.App.ErrWriter)
				},
			},
			{
				Name:      "status",
				Usage:     "show the node's identity, fingerprint and installed versions from its directory",
				ArgsUsage: " ",
				Flags:     []cli.Flag{dirFlag, cliapp.JSONFlag},
				Action: func(c *cli.Context) error {
					if err := cliapp.Need(c, "dir"); err != nil {
						return err
					}
					if _, err := cliapp.Args(c, 0, 0, "no arguments"); err != nil {
						return err
					}
					return node.RunStatus(c.Context, node.StatusOptions{Dir: c.String("dir"), JSON: c.Bool("json")}, c.App.Writer, c.App.ErrWriter)
				},
			},
		},
	}
}

// checkLimits refuses a serve limit out of range, naming the flag.
func checkLimits(c *cli.Context) error {
	if n := c.Int64("max-unpack"); n < 0 {
		return fmt.Errorf("%w: --max-unpack %d: want 0 (4 × the package size + 1 GiB) or a number of bytes", fault.ErrUsage, n)
	}
	for _, f := range []string{"max-uploads", "max-entries", "max-connections"} {
		if n := c.Int(f); n < 1 {
			return fmt.Errorf("%w: --%s %d: want 1 or more", fault.ErrUsage, f, n)
		}
	}
	for _, f := range []string{"hook-timeout", "control-hook-timeout"} {
		if d := c.Duration(f); d <= 0 {
			return fmt.Errorf("%w: --%s %s: want a positive duration, e.g. 5m", fault.ErrUsage, f, d)
		}
	}
	return nil
}

// crashPoint returns the node.Options.CrashPoint that kills this process
// with SIGKILL when the install reaches point want; nil if want is empty.
func crashPoint(want string) func(string) {
	if want == "" {
		return nil
	}
	return func(point string) {
		if point == want {
			if p, err := os.FindProcess(os.Getpid()); err == nil {
				p.Kill() // SIGKILL on Unix: no deferred function runs
			}
			select {} // the signal is on its way
		}
	}
}
