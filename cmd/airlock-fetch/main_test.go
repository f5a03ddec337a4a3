package main

import (
	"fmt"
	"os"
	"strconv"
	"testing"

	"github.com/rogpeppe/go-internal/testscript"

	"github.com/airlock-project/airlock/cmd/internal/cliapp"
)

func TestMain(m *testing.M) {
	testscript.Main(m, map[string]func(){
		"airlock-fetch": func() { os.Exit(cliapp.Exec(newApp())) },
		// exitcode N airlock-fetch ARGS... runs airlock-fetch and succeeds
		// only if it exits with N, so that scripts assert exact exit codes.
		"exitcode": func() {
			want, err := strconv.Atoi(os.Args[1])
			if err != nil || len(os.Args) < 3 {
				fmt.Fprintln(os.Stderr, "usage: exitcode N airlock-fetch ARGS...")
				os.Exit(100)
			}
			os.Args = os.Args[2:]
			if got := cliapp.Exec(newApp()); got != want {
				fmt.Fprintf(os.Stderr, "exit code %d, want %d\n", got, want)
				os.Exit(1)
			}
			os.Exit(0)
		},
	})
}

func TestScripts(t *testing.T) {
	testscript.Run(t, testscript.Params{
		Dir:                 "testdata",
		RequireExplicitExec: true,
		Cmds: map[string]func(ts *testscript.TestScript, neg bool, args []string){
			// vendor start|stop: an in-process vendor server (vendor_test.go).
			"vendor": cmdVendor,
			// downloadkey [flags] FILE: a download key (vendor_test.go).
			"downloadkey": cmdDownloadKey,
			// perm MODE FILE: the file's permission bits are MODE (octal).
			"perm": func(ts *testscript.TestScript, neg bool, args []string) {
				if len(args) != 2 {
					ts.Fatalf("usage: perm MODE FILE")
				}
				fi, err := os.Stat(ts.MkAbs(args[1]))
				ts.Check(err)
				got := fmt.Sprintf("%04o", fi.Mode().Perm())
				if (got == args[0]) == neg {
					ts.Fatalf("%s has mode %s, want %s%s", args[1], got, map[bool]string{true: "not ", false: ""}[neg], args[0])
				}
			},
		},
	})
}
