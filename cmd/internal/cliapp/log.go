package cliapp

import (
	"fmt"
	"log/slog"
	"os"

	"github.com/urfave/cli/v2"

	"github.com/airlock-project/airlock/fault"
)

// LogFormatFlag is the --log-format flag of every long-running command:
// "text" (logfmt-style key=value lines) or "json" (one object per line).
var LogFormatFlag = &cli.StringFlag{Name: "log-format", Value: "text", Usage: "log line format: text or json"}

// LogLevelFlag is the --log-level flag of every long-running command.
var LogLevelFlag = &cli.StringFlag{Name: "log-level", Value: "info", Usage: "least severe level logged: debug, info, warn or error"}

var logLevels = map[string]slog.Level{
	"debug": slog.LevelDebug,
	"info":  slog.LevelInfo,
	"warn":  slog.LevelWarn,
	"error": slog.LevelError,
}

// Logger returns the logger that the command of c injects into its feature
// package, built from LogFormatFlag and LogLevelFlag (which the command
// must declare) and writing to the app's ErrWriter, or os.Stderr if it has
// none. An unknown format or level is a usage error.
func Logger(c *cli.Context) (*slog.Logger, error) {
	level, ok := logLevels[c.String(LogLevelFlag.Name)]
	if !ok {
		return nil, fmt.Errorf("%w: %s: --log-level %q: want debug, info, warn or error", fault.ErrUsage, CommandPath(c), c.String(LogLevelFlag.Name))
	}
	w := c.App.ErrWriter
	if w == nil {
		w = os.Stderr
	}
	opts := &slog.HandlerOptions{Level: level}
	switch f := c.String(LogFormatFlag.Name); f {
	case "text":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	default:
		return nil, fmt.Errorf("%w: %s: --log-format %q: want text or json", fault.ErrUsage, CommandPath(c), f)
	}
}
