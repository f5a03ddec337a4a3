// Command airlock-fetch runs on the unrestricted side: it exchanges a
// download key at the vendor's update server and writes a signed bundle.
package main

import (
	"github.com/urfave/cli/v2"

	"github.com/airlock-project/airlock/cmd/internal/cliapp"
)

func main() { cliapp.Main(newApp()) }

func newApp() *cli.App {
	return &cli.App{
		Name:  "airlock-fetch",
		Usage: "exchange a download key and write a signed bundle to removable media",
	}
}
