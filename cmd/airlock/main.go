// Command airlock is the restricted-side manager: it makes download keys,
// verifies and imports bundles into a repository, plans the install order
// and drives the rollout to the node agents.
package main

import (
	"github.com/urfave/cli/v2"

	"github.com/airlock-project/airlock/cmd/internal/cliapp"
)

func main() { cliapp.Main(newApp()) }

func newApp() *cli.App {
	return &cli.App{
		Name:  "airlock",
		Usage: "verify, store and roll out vendor updates on the restricted side",
	}
}
