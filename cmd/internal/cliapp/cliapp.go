// Package cliapp holds what the four airlock programs share in their main:
// the signal-aware context, the version stamp, the single place where an
// error becomes an exit code, the shared flags (logging among them), and the
// hidden DocsCommand that prints manuals and shell completion scripts. Only
// cmd/ imports it.
package cliapp

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/urfave/cli/v2"
	"golang.org/x/term"

	"github.com/airlock-project/airlock/fault"
	"github.com/airlock-project/airlock/progress"
)

// Version and Commit are stamped by the Makefile with -ldflags -X.
var (
	Version = "dev"
	Commit  = "unknown"
)

// Main runs app with the process arguments and exits with the code of the
// error's class (see fault.Code). It never returns.
func Main(app *cli.App) { os.Exit(Exec(app)) }

// Exec runs app with the process arguments under a context cancelled by
// SIGINT or SIGTERM and returns the exit code. testscript scenarios call it
// as the program's entry point.
func Exec(app *cli.App) int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	return Run(ctx, app, os.Args, os.Stderr)
}

// Run runs app with args and returns the exit code, having printed any error
// to stderr as "NAME: message". Tests call it directly.
func Run(ctx context.Context, app *cli.App, args []string, stderr io.Writer) int {
	Prepare(app)
	usageFailed = false
	err := app.RunContext(ctx, args)
	if err == nil && usageFailed {
		return fault.ExitUsage
	}
	if err == nil {
		return fault.ExitOK
	}
	if errors.Is(err, context.Canceled) && ctx.Err() != nil {
		fmt.Fprintf(stderr, "%s: interrupted; rerun the same command to continue\n", app.Name)
		return fault.ExitOperational
	}
	fmt.Fprintf(stderr, "%s: %v\n", app.Name, err)
	return fault.Code(err)
}

// Prepare sets what every airlock program has in common: the version line,
// no os.Exit from inside urfave/cli, usage errors classed as such, shell
// completion, and the hidden DocsCommand. It may be called more than once
// on the same app.
func Prepare(app *cli.App) {
	app.Version = Version + " (" + Commit + ")"
	app.ExitErrHandler = func(*cli.Context, error) {}
	app.OnUsageError = func(_ *cli.Context, err error, _ bool) error {
		return fmt.Errorf("%w: %v (see --help)", fault.ErrUsage, err)
	}
	app.CommandNotFound = func(c *cli.Context, name string) {
		fmt.Fprintf(c.App.ErrWriter, "%s: no command %q (see --help)\n", c.App.Name, name)
		usageFailed = true
	}
	app.EnableBashCompletion = true
	app.Suggest = true
	if app.Command(DocsCommand) == nil {
		app.Commands = append(app.Commands, docsCommand())
	}
	for _, c := range app.Commands {
		prepareCommand(c)
	}
}

// usageFailed records a CommandNotFound, which urfave/cli reports only by
// callback. A program runs one app at a time, so a package variable is safe.
var usageFailed bool

func prepareCommand(c *cli.Command) {
	c.OnUsageError = func(ctx *cli.Context, err error, _ bool) error {
		path := CommandPath(ctx)
		if !strings.HasSuffix(path, " "+c.Name) {
			path += " " + c.Name
		}
		return fmt.Errorf("%w: %s: %v (see '%s --help')", fault.ErrUsage, path, err, path)
	}
	for _, s := range c.Subcommands {
		prepareCommand(s)
	}
}

// Need returns a usage error if any of the named flags was not given. It is
// used instead of urfave/cli's Required, whose error cannot be classed.
func Need(c *cli.Context, names ...string) error {
	var missing []string
	for _, n := range names {
		if !c.IsSet(n) {
			missing = append(missing, "--"+n)
		}
	}
	if len(missing) > 0 {
		name := CommandPath(c)
		return fmt.Errorf("%w: %s needs %s (see '%s --help')", fault.ErrUsage, name, strings.Join(missing, ", "), name)
	}
	return nil
}

// Args returns the positional arguments, or a usage error if their number
// is outside [min, max] (max < 0: no upper bound). Flags that follow a
// positional argument ("verify BUNDLE --json") are applied, which urfave/cli
// v2 alone does not do.
func Args(c *cli.Context, min, max int, what string) ([]string, error) {
	a, err := flagsAfterArgs(c)
	if err != nil {
		return nil, err
	}
	if len(a) < min || (max >= 0 && len(a) > max) {
		name := CommandPath(c)
		return nil, fmt.Errorf("%w: %s takes %s (see '%s --help')", fault.ErrUsage, name, what, name)
	}
	return a, nil
}

// NoProgressFlag is the --no-progress flag of every command that does long work.
var NoProgressFlag = &cli.BoolFlag{Name: "no-progress", Usage: "print plain progress lines instead of bars"}

// JSONFlag is the --json flag of every data-producing command.
var JSONFlag = &cli.BoolFlag{Name: "json", Usage: "print machine-readable JSON on stdout"}

// Progress returns the reporter for a command: bars on stderr when it is a
// terminal and --no-progress is not set, plain lines every few seconds
// otherwise.
func Progress(c *cli.Context) progress.Reporter {
	w := c.App.ErrWriter
	if w == nil {
		w = os.Stderr
	}
	if f, ok := w.(*os.File); ok && term.IsTerminal(int(f.Fd())) && !c.Bool("no-progress") {
		return progress.Bars(w)
	}
	return progress.Lines(w, 5*time.Second)
}

// Interactive reports whether stdin and stderr are terminals, so that a
// command may ask for confirmation.
func Interactive() bool {
	return term.IsTerminal(int(os.Stdin.Fd())) && term.IsTerminal(int(os.Stderr.Fd()))
}

// CommandPath returns the program and command names of c, such as
// "airlock-server site add", for messages.
func CommandPath(c *cli.Context) string {
	var names []string
	for _, l := range c.Lineage() {
		if l.Command != nil && l.Command.Name != "" {
			names = append([]string{l.Command.Name}, names...)
		}
	}
	// The root context's Command is the app's own; avoid doubling it.
	if len(names) == 0 || names[0] != c.App.Name {
		names = append([]string{c.App.Name}, names...)
	}
	return strings.Join(names, " ")
}

// flagsAfterArgs applies the flags that follow a positional argument
// ("inspect PATH --json"), which urfave/cli v2 leaves among the arguments,
// and returns the positional arguments. "--" ends the flags.
func flagsAfterArgs(c *cli.Context) ([]string, error) {
	args := c.Args().Slice()
	known := map[string]bool{} // name -> takes a value
	for _, f := range c.Command.Flags {
		_, isBool := f.(*cli.BoolFlag)
		for _, n := range f.Names() {
			known[n] = !isBool
		}
	}
	var pos []string
	for i := 0; i < len(args); i++ {
		a := args[i]
		if a == "--" {
			pos = append(pos, args[i+1:]...)
			break
		}
		if !strings.HasPrefix(a, "-") || a == "-" {
			pos = append(pos, a)
			continue
		}
		name, val, hasVal := strings.Cut(strings.TrimLeft(a, "-"), "=")
		takesValue, ok := known[name]
		switch {
		case !ok:
			return nil, fmt.Errorf("%w: %s: flag provided but not defined: %s (see '%s --help')", fault.ErrUsage, CommandPath(c), a, CommandPath(c))
		case !takesValue && !hasVal:
			val = "true"
		case takesValue && !hasVal:
			if i+1 == len(args) {
				return nil, fmt.Errorf("%w: %s: flag needs an argument: %s (see '%s --help')", fault.ErrUsage, CommandPath(c), a, CommandPath(c))
			}
			i++
			val = args[i]
		}
		if err := c.Set(name, val); err != nil {
			return nil, fmt.Errorf("%w: %s: %s: %v", fault.ErrUsage, CommandPath(c), a, err)
		}
	}
	return pos, nil
}
