package main

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/rogpeppe/go-internal/testscript"

	"github.com/airlock-project/airlock/cmd/internal/cliapp"
	"github.com/airlock-project/airlock/keys"
)

func TestMain(m *testing.M) {
	testscript.Main(m, map[string]func(){
		"airlock-node": func() { os.Exit(cliapp.Exec(newApp())) },
	})
}

// TestScripts runs the CLI scenarios in testdata/*.txtar. Every scenario
// gets $WORK/vendor.pub.asc and $WORK/vendor.key, a fresh vendor key pair.
func TestScripts(t *testing.T) {
	testscript.Run(t, testscript.Params{
		Dir: "testdata",
		Setup: func(env *testscript.Env) error {
			k, err := keys.Generate(keys.GenerateOptions{Name: "Acme Vendor", Now: time.Now().Add(-time.Hour)})
			if err != nil {
				return err
			}
			if err := keys.WritePublicFile(filepath.Join(env.WorkDir, "vendor.pub.asc"), k.Public()); err != nil {
				return err
			}
			return keys.WritePrivateFile(filepath.Join(env.WorkDir, "vendor.key"), k, nil)
		},
		Cmds: map[string]func(ts *testscript.TestScript, neg bool, args []string){
			"exitcode": cmdExitcode,
			"mode":     cmdMode,
		},
	})
}

// cmdExitcode runs "exitcode N PROGRAM ARGS..." and checks that the program
// exits with code N; its output is kept for stdout/stderr checks.
func cmdExitcode(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) < 2 {
		ts.Fatalf("usage: exitcode N PROGRAM [ARGS...]")
	}
	want, err := strconv.Atoi(args[0])
	if err != nil {
		ts.Fatalf("exitcode: %v", err)
	}
	got := 0
	if err := ts.Exec(args[1], args[2:]...); err != nil {
		var ee *exec.ExitError
		if !errors.As(err, &ee) {
			ts.Fatalf("exitcode: %v", err)
		}
		got = ee.ExitCode()
	}
	if got != want {
		ts.Fatalf("%s exited with %d, want %d", args[1], got, want)
	}
}

// cmdMode checks "mode 0600 FILE": the file's permission bits.
func cmdMode(ts *testscript.TestScript, neg bool, args []string) {
	if len(args) != 2 {
		ts.Fatalf("usage: mode PERM FILE")
	}
	want, err := strconv.ParseUint(args[0], 8, 32)
	if err != nil {
		ts.Fatalf("mode: %v", err)
	}
	fi, err := os.Stat(ts.MkAbs(args[1]))
	if err != nil {
		ts.Fatalf("mode: %v", err)
	}
	if got := uint64(fi.Mode().Perm()); (got == want) == neg {
		ts.Fatalf("%s has mode %04o, want %s%04o", args[1], got, map[bool]string{true: "not ", false: ""}[neg], want)
	}
}
