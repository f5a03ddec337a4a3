// Command airlock-node is the node agent: the manual install endpoint of an
// appliance, which verifies staged packages again and installs them in order.
package main

import (
	"github.com/urfave/cli/v2"

	"github.com/airlock-project/airlock/cmd/internal/cliapp"
)

func main() { cliapp.Main(newApp()) }

func newApp() *cli.App {
	return &cli.App{
		Name:  "airlock-node",
		Usage: "the node agent and manual install endpoint",
	}
}
