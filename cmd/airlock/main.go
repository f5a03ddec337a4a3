// Command airlock is the restricted-side manager: it makes download keys,
// verifies and imports bundles into a repository, plans the install order
// and drives the rollout to the node agents.
package main

import (
	"github.com/urfave/cli/v2"

	"github.com/airlock-project/airlock/cmd/internal/cliapp"
)

func main() { cliapp.Main(newApp()) }

// newApp builds the command line afresh (flags carry state between runs,
// so tests that run it twice get a new one each time). Each group of
// commands lives in its own file and returns its commands.
func newApp() *cli.App {
	var cmds []*cli.Command
	cmds = append(cmds, repoCommands()...)
	cmds = append(cmds, clusterCommands()...)
	return &cli.App{
		Name:     "airlock",
		Usage:    "verify, store and roll out vendor updates on the restricted side",
		Commands: cmds,
	}
}
