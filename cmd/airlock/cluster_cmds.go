package main

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/airlock-project/airlock/cluster"
	"github.com/airlock-project/airlock/cmd/internal/cliapp"
	"github.com/airlock-project/airlock/fault"
	"github.com/airlock-project/airlock/plan"
)

// clusterCommands are the commands on the cluster's nodes: node add, list
// and remove, status, plan, distribute, install.
func clusterCommands() []*cli.Command {
	return []*cli.Command{
		{
			Name:  "node",
			Usage: "register the cluster's node agents",
			Subcommands: []*cli.Command{
				{
					Name:      "add",
					Usage:     "register a node agent, pinning its certificate",
					ArgsUsage: "NAME",
					Description: "Connects to the agent at --url once, accepting only the certificate whose SHA-256\n" +
						"fingerprint is --fingerprint (as airlock-node init printed it), with the token in\n" +
						"--token-file, and checks that it calls itself NAME. Role and region default to what\n" +
						"the node reports. Adding a registered NAME again replaces its entry (a re-initialised\n" +
						"node). The token is kept in the repository.",
					Flags: flags(repoFlags(), []cli.Flag{
						&cli.StringFlag{Name: "url", Usage: "the agent's `URL`, https://HOST:PORT"},
						&cli.StringFlag{Name: "token-file", Usage: "`FILE` holding the agent's bearer token (DIR/token of airlock-node init)"},
						&cli.StringFlag{Name: "fingerprint", Usage: "SHA-256 fingerprint of the agent's certificate, `HEX` pairs (AB:CD:…)"},
						&cli.StringFlag{Name: "role", Usage: "`ROLE`: primary, backup, traffic or management (default: the node's)"},
						&cli.StringFlag{Name: "region", Usage: "`REGION` of the node (default: the node's)"},
						&cli.BoolFlag{Name: "offline", Usage: "add the node without connecting to it (needs --role)"},
						cliapp.JSONFlag,
					}),
					Action: func(c *cli.Context) error {
						args, err := cliapp.Args(c, 1, 1, "one node NAME")
						if err != nil {
							return err
						}
						if err := cliapp.Need(c, "url", "token-file", "fingerprint"); err != nil {
							return err
						}
						return cluster.RunNodeAdd(c.Context, cluster.NodeAddCmd{
							Options: repoOptions(c), Name: args[0], URL: c.String("url"), TokenFile: c.String("token-file"),
							Fingerprint: c.String("fingerprint"), Role: c.String("role"), Region: c.String("region"),
							Offline: c.Bool("offline"), JSON: c.Bool("json"),
						}, c.App.Writer, c.App.ErrWriter)
					},
				},
				{
					Name:      "list",
					Usage:     "list the registered nodes",
					ArgsUsage: " ",
					Flags:     flags(repoFlags(), []cli.Flag{cliapp.JSONFlag}),
					Action: func(c *cli.Context) error {
						if _, err := cliapp.Args(c, 0, 0, "no arguments"); err != nil {
							return err
						}
						return cluster.RunNodeList(c.Context, cluster.NodeListCmd{Options: repoOptions(c), JSON: c.Bool("json")},
							c.App.Writer, c.App.ErrWriter)
					},
				},
				{
					Name:      "remove",
					Usage:     "unregister a node",
					ArgsUsage: "NAME",
					Flags:     repoFlags(),
					Action: func(c *cli.Context) error {
						args, err := cliapp.Args(c, 1, 1, "one node NAME")
						if err != nil {
							return err
						}
						return cluster.RunNodeRemove(c.Context, cluster.NodeRemoveCmd{Options: repoOptions(c), Name: args[0]},
							c.App.Writer, c.App.ErrWriter)
					},
				},
			},
		},
		{
			Name:      "status",
			Usage:     "ask every node for its versions, staged packages and state",
			ArgsUsage: " ",
			Description: "Exits 1 when a node does not answer (3 when it presents another certificate than the\n" +
				"pinned one), after printing every node.",
			Flags: flags(repoFlags(), []cli.Flag{nodeFlag(), cliapp.JSONFlag}),
			Action: func(c *cli.Context) error {
				if _, err := cliapp.Args(c, 0, 0, "no arguments"); err != nil {
					return err
				}
				return cluster.RunStatus(c.Context, cluster.StatusCmd{Options: repoOptions(c), Nodes: c.StringSlice("node"), JSON: c.Bool("json")},
					c.App.Writer, c.App.ErrWriter)
			},
		},
		{
			Name:      "plan",
			Usage:     "show the install order for the cluster, changing nothing",
			ArgsUsage: " ",
			Flags: flags(repoFlags(), []cli.Flag{
				strategyFlag(), nodeFlag(), maxUnavailableFlag(),
				&cli.BoolFlag{Name: "skip-settle", Usage: "plan without the settle delays of packages"},
				cliapp.JSONFlag,
			}),
			Action: func(c *cli.Context) error {
				if _, err := cliapp.Args(c, 0, 0, "no arguments"); err != nil {
					return err
				}
				if err := positive(c, "max-unavailable"); err != nil {
					return err
				}
				return cluster.RunPlan(c.Context, cluster.PlanCmd{
					Options: repoOptions(c), Strategy: c.String("strategy"), Nodes: c.StringSlice("node"),
					MaxUnavailable: c.Int("max-unavailable"), SkipSettle: c.Bool("skip-settle"), JSON: c.Bool("json"),
				}, c.App.Writer, c.App.ErrWriter)
			},
		},
		{
			Name:      "distribute",
			Usage:     "stage the packages each node needs on it",
			ArgsUsage: " ",
			Description: "Each package is read once and sent to every node that needs it at the same time;\n" +
				"interrupted uploads resume where they stopped. A node that fails is reported and the\n" +
				"others complete; rerun to resume it.",
			Flags: flags(repoFlags(), []cli.Flag{
				nodeFlag(),
				&cli.IntFlag{Name: "parallel", Usage: "at most `N` nodes fed by one read of a package", Value: cluster.DefaultParallel},
				&cli.DurationFlag{Name: "stall-timeout", Usage: "drop a node that accepts no data for this long", Value: cluster.DefaultStallTimeout},
				cliapp.JSONFlag, cliapp.NoProgressFlag,
			}),
			Action: func(c *cli.Context) error {
				if _, err := cliapp.Args(c, 0, 0, "no arguments"); err != nil {
					return err
				}
				if err := positive(c, "parallel", "stall-timeout"); err != nil {
					return err
				}
				return cluster.RunDistribute(c.Context, cluster.DistributeCmd{
					Options: repoOptions(c),
					DistributeOptions: cluster.DistributeOptions{
						Nodes: c.StringSlice("node"), Parallel: c.Int("parallel"), StallTimeout: c.Duration("stall-timeout"),
						Progress: cliapp.Progress(c),
					},
					JSON: c.Bool("json"),
				}, c.App.Writer, c.App.ErrWriter)
			},
		},
		{
			Name:      "install",
			Usage:     "roll the packages out to the nodes, in plan order",
			ArgsUsage: " ",
			Description: "Plans the rollout (as airlock plan), asks for confirmation on a terminal unless --yes,\n" +
				"then executes it step by step, recording each step in the repository. An interrupted or\n" +
				"failed rollout resumes where it stopped when install is run again with the same options;\n" +
				"--abandon drops it and plans afresh. Each finished step prints one line; a step still\n" +
				"running prints a line every " + cluster.DefaultHeartbeat.String() + " saying what it waits for (client connections, the\n" +
				"install job, the settle delay).",
			Flags: flags(repoFlags(), []cli.Flag{
				strategyFlag(), nodeFlag(), maxUnavailableFlag(),
				&cli.BoolFlag{Name: "skip-settle", Usage: "do not wait for the settle delays of packages"},
				&cli.BoolFlag{Name: "yes", Usage: "do not ask for confirmation"},
				&cli.BoolFlag{Name: "dry-run", Usage: "print the steps and change nothing"},
				&cli.BoolFlag{Name: "abandon", Usage: "abandon the unfinished rollout and plan afresh"},
				&cli.DurationFlag{Name: "drain-timeout", Usage: "how long to wait for a drained node's connections to end (given when resuming, it replaces the saved one)", Value: plan.DefaultDrainTimeout},
				&cli.DurationFlag{Name: "job-timeout", Usage: "how long one install may take on a node", Value: cluster.DefaultJobTimeout},
				&cli.BoolFlag{Name: "json", Usage: "print one JSON event per line on stdout (start or resume, step, running, failed, finish); the step lines go to stderr"},
				cliapp.NoProgressFlag,
			}),
			Action: installAction,
		},
	}
}

func installAction(c *cli.Context) error {
	if _, err := cliapp.Args(c, 0, 0, "no arguments"); err != nil {
		return err
	}
	var confirm func(string) error
	if !c.Bool("yes") && !c.Bool("dry-run") {
		if !cliapp.Interactive() {
			return fmt.Errorf("%w: install changes the nodes and must be confirmed, and there is no terminal to ask on: pass --yes (or --dry-run to see the steps)", fault.ErrUsage)
		}
		confirm = func(q string) error { return ask(os.Stdin, c.App.ErrWriter, q) }
	}
	hook, err := testHook()
	if err != nil {
		return err
	}
	if err := positive(c, "max-unavailable", "drain-timeout", "job-timeout"); err != nil {
		return err
	}
	stdout := c.App.Writer
	var events io.Writer
	if c.Bool("json") {
		events, stdout = c.App.Writer, c.App.ErrWriter
	}
	// Given, --drain-timeout also replaces the one saved in a resumed
	// rollout; left out, that one is kept (zero: a new plan's default).
	drainTimeout := c.Duration("drain-timeout")
	if !c.IsSet("drain-timeout") {
		drainTimeout = 0
	}
	return cluster.RunInstall(c.Context, cluster.InstallCmd{
		Options: repoOptions(c),
		InstallOptions: cluster.InstallOptions{
			Events:   events,
			Strategy: c.String("strategy"), Nodes: c.StringSlice("node"), MaxUnavailable: c.Int("max-unavailable"),
			SkipSettle: c.Bool("skip-settle"), DrainTimeout: drainTimeout, JobTimeout: c.Duration("job-timeout"),
			DryRun: c.Bool("dry-run"), Abandon: c.Bool("abandon"), Confirm: confirm, Hook: hook,
			Progress: cliapp.Progress(c),
		},
	}, stdout, c.App.ErrWriter)
}

// positive returns a usage error naming the first of the named int or
// duration flags whose value is not positive (urfave/cli takes 0 as given).
func positive(c *cli.Context, names ...string) error {
	for _, n := range names {
		var got, want string
		switch flagOf(c, n).(type) {
		case *cli.IntFlag:
			if c.Int(n) < 1 {
				got, want = fmt.Sprint(c.Int(n)), "1 or more"
			}
		case *cli.DurationFlag:
			if c.Duration(n) <= 0 {
				got, want = c.Duration(n).String(), "a positive duration"
			}
		}
		if want != "" {
			return fmt.Errorf("%w: %s: --%s %s: want %s (see '%s --help')", fault.ErrUsage, cliapp.CommandPath(c), n, got, want, cliapp.CommandPath(c))
		}
	}
	return nil
}

// flagOf returns the command's flag called name, or nil.
func flagOf(c *cli.Context, name string) cli.Flag {
	for _, f := range c.Command.Flags {
		for _, n := range f.Names() {
			if n == name {
				return f
			}
		}
	}
	return nil
}

// ask asks a yes/no question on the terminal; anything but yes declines.
func ask(in io.Reader, out io.Writer, question string) error {
	fmt.Fprintf(out, "%s [y/N] ", question)
	line, err := bufio.NewReader(io.LimitReader(in, 1024)).ReadString('\n')
	if err != nil && line == "" {
		return fmt.Errorf("%w: no answer; nothing was changed", cluster.ErrDeclined)
	}
	switch strings.ToLower(strings.TrimSpace(line)) {
	case "y", "yes":
		return nil
	}
	return fmt.Errorf("%w: nothing was changed", cluster.ErrDeclined)
}

func nodeFlag() cli.Flag {
	return &cli.StringSliceFlag{Name: "node", Usage: "only node `NAME` (repeat for several)"}
}

func strategyFlag() cli.Flag {
	return &cli.StringFlag{Name: "strategy", Usage: "`STRATEGY`: single, rolling, failover-sync, failover-async or atlas (default: rolling, or single for one node)"}
}

func maxUnavailableFlag() cli.Flag {
	return &cli.IntFlag{Name: "max-unavailable", Usage: "at most `N` nodes out of service at a time (rolling)", Value: 1}
}
