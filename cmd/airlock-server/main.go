// Command airlock-server is the vendor's update server: it holds the signed
// package catalog and the registered sites, exchanges download keys for
// signed entitlements and serves each entitled package once.
package main

import (
	"github.com/urfave/cli/v2"

	"github.com/airlock-project/airlock/cmd/internal/cliapp"
)

func main() { cliapp.Main(newApp()) }

func newApp() *cli.App {
	return &cli.App{
		Name:  "airlock-server",
		Usage: "the vendor's update server",
	}
}
