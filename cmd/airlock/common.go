package main

import (
	"fmt"
	"log/slog"
	"os"
	"os/user"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/airlock-project/airlock/fault"
	"github.com/airlock-project/airlock/repo"
)

// repoFlags returns the flags that locate the repository, new for each
// command (urfave/cli flags keep the values they parsed).
func repoFlags() []cli.Flag {
	return []cli.Flag{
		&cli.StringFlag{
			Name:    "repo",
			Usage:   "repository directory",
			EnvVars: []string{"AIRLOCK_REPO"},
			Value:   "airlock-repo",
		},
		&cli.DurationFlag{
			Name:  "lock-timeout",
			Usage: "how long to wait for another airlock process using the repository",
			Value: repo.DefaultLockTimeout,
		},
	}
}

// flags joins flag lists.
func flags(lists ...[]cli.Flag) []cli.Flag {
	var out []cli.Flag
	for _, l := range lists {
		out = append(out, l...)
	}
	return out
}

// repoOptions builds the repository options of a command from its flags
// and the process's identity.
func repoOptions(c *cli.Context) repo.Options {
	return repo.Options{
		Dir:         c.String("repo"),
		LockTimeout: c.Duration("lock-timeout"),
		Actor:       actor(),
		Command:     commandLine(c),
		Logger:      slog.New(slog.NewTextHandler(c.App.ErrWriter, &slog.HandlerOptions{Level: slog.LevelInfo})),
	}
}

// actor names the operator in the audit log: user@host.
func actor() string {
	name := os.Getenv("USER")
	if u, err := user.Current(); err == nil && u.Username != "" {
		name = u.Username
	}
	if name == "" {
		name = fmt.Sprintf("uid-%d", os.Getuid())
	}
	host, err := os.Hostname()
	if err != nil || host == "" {
		host = "unknown-host"
	}
	return name + "@" + host
}

// commandLine describes the running command for airlock.lock.
func commandLine(c *cli.Context) string {
	s := strings.TrimSpace(c.App.Name + " " + commandPath(c) + " " + strings.Join(c.Args().Slice(), " "))
	if len(s) > 200 {
		s = s[:200] + "…"
	}
	return s
}

// positional returns the positional arguments of c, between min and max of
// them (max < 0: no limit), described by what for the usage error. Flags
// written after the arguments ("import B --json", as the documentation
// spells it) are parsed here, since urfave/cli stops at the first argument.
func positional(c *cli.Context, min, max int, what string) ([]string, error) {
	var args []string
	a := c.Args().Slice()
	for i := 0; i < len(a); i++ {
		s := a[i]
		if s == "--" {
			args = append(args, a[i+1:]...)
			break
		}
		if !strings.HasPrefix(s, "-") || s == "-" {
			args = append(args, s)
			continue
		}
		name, val, hasVal := strings.Cut(strings.TrimLeft(s, "-"), "=")
		f := lookupFlag(c.Command.Flags, name)
		if f == nil {
			return nil, fmt.Errorf("%w: %s: flag provided but not defined: %s (see 'airlock %s --help')", fault.ErrUsage, commandPath(c), s, commandPath(c))
		}
		if _, isBool := f.(*cli.BoolFlag); isBool && !hasVal {
			val = "true"
		} else if !hasVal {
			if i+1 >= len(a) {
				return nil, fmt.Errorf("%w: %s: flag needs an argument: %s (see 'airlock %s --help')", fault.ErrUsage, commandPath(c), s, commandPath(c))
			}
			i++
			val = a[i]
		}
		if err := c.Set(name, val); err != nil {
			return nil, fmt.Errorf("%w: %s: %s: %v (see 'airlock %s --help')", fault.ErrUsage, commandPath(c), s, err, commandPath(c))
		}
	}
	if len(args) < min || (max >= 0 && len(args) > max) {
		return nil, fmt.Errorf("%w: %s takes %s (see 'airlock %s --help')", fault.ErrUsage, commandPath(c), what, commandPath(c))
	}
	return args, nil
}

// commandPath names the running command with its parents, "trust add"
// (urfave/cli's FullName gives only the last word).
func commandPath(c *cli.Context) string {
	var names []string
	for _, x := range c.Lineage() {
		if x.Command != nil && x.Command.Name != "" && x.Command.Name != c.App.Name {
			names = append([]string{x.Command.Name}, names...)
		}
	}
	return strings.Join(names, " ")
}

// need returns a usage error naming the required flags that were not
// given (as cliapp.Need, with the full command name).
func need(c *cli.Context, names ...string) error {
	var missing []string
	for _, n := range names {
		if !c.IsSet(n) {
			missing = append(missing, "--"+n)
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("%w: %s needs %s (see 'airlock %s --help')", fault.ErrUsage, commandPath(c), strings.Join(missing, ", "), commandPath(c))
	}
	return nil
}

func lookupFlag(fs []cli.Flag, name string) cli.Flag {
	for _, f := range fs {
		for _, n := range f.Names() {
			if n == name {
				return f
			}
		}
	}
	return nil
}
