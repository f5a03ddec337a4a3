package main

import (
	"fmt"
	"log/slog"
	"os"
	"os/user"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/airlock-project/airlock/cmd/internal/cliapp"
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
	s := strings.TrimSpace(cliapp.CommandPath(c) + " " + strings.Join(c.Args().Slice(), " "))
	if len(s) > 200 {
		s = s[:200] + "…"
	}
	return s
}
