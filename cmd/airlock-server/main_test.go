package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"testing"
	"time"

	"github.com/rogpeppe/go-internal/testscript"

	"github.com/airlock-project/airlock/catalog"
	"github.com/airlock-project/airlock/cmd/internal/cliapp"
	"github.com/airlock-project/airlock/cmd/internal/clitest"
	"github.com/airlock-project/airlock/keys"
	"github.com/airlock-project/airlock/server"
)

func TestMain(m *testing.M) {
	os.Exit(testscript.RunMain(m, map[string]func() int{
		"airlock-server": func() int { return cliapp.Exec(newApp()) },
	}))
}

func TestScripts(t *testing.T) {
	testscript.Run(t, testscript.Params{
		Dir: "testdata",
		Cmds: map[string]func(ts *testscript.TestScript, neg bool, args []string){
			"sitekey":   cmdSiteKey,
			"deliver":   cmdDeliver,
			"perm":      cmdPerm,
			"waitfile":  cmdWaitFile,
			"code":      cmdCode,
			"encrypted": clitest.Encrypted,
		},
	})
}

// sitekey [-expired] NAME PREFIX: make a site key, PREFIX.key and
// PREFIX.pub.asc; with -expired, one that expired a day ago.
func cmdSiteKey(ts *testscript.TestScript, neg bool, args []string) {
	opts := keys.GenerateOptions{Now: time.Now().Add(-time.Hour)}
	if len(args) > 0 && args[0] == "-expired" {
		opts = keys.GenerateOptions{Now: time.Now().Add(-48 * time.Hour), Expiry: 24 * time.Hour}
		args = args[1:]
	}
	if neg || len(args) != 2 {
		ts.Fatalf("usage: sitekey [-expired] NAME PREFIX")
	}
	opts.Name = args[0]
	k, err := keys.Generate(opts)
	ts.Check(err)
	ts.Check(keys.WritePrivateFile(ts.MkAbs(args[1]+".key"), k, nil))
	ts.Check(keys.WritePublicFile(ts.MkAbs(args[1]+".pub.asc"), k.Public()))
}

// deliver DIR SITE KEYFILE: exchange a download key of SITE (one node with
// nothing installed) at the store in DIR, and acknowledge every package
// it is entitled to, as a fetch would.
func cmdDeliver(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 3 {
		ts.Fatalf("usage: deliver DIR SITE KEYFILE")
	}
	ctx := context.Background()
	s, err := server.Open(server.Config{Dir: ts.MkAbs(args[0])})
	ts.Check(err)
	defer s.Close()
	k, err := keys.ReadPrivateFile(ts.MkAbs(args[2]), nil)
	ts.Check(err)
	id, err := catalog.NewKeyID()
	ts.Check(err)
	payload, err := catalog.DownloadKey{Format: catalog.DownloadKeyFormat, Site: args[1], ID: id,
		Issued: time.Now().Add(-time.Minute), Expires: time.Now().Add(time.Hour),
		Nodes: []catalog.NodeInventory{{Name: "n1"}}}.Encode()
	ts.Check(err)
	var msg bytes.Buffer
	ts.Check(k.SignMessage(&msg, payload))
	res, err := s.Exchange(ctx, msg.Bytes())
	ts.Check(err)
	for _, d := range res.Downloads {
		r, err := s.Ack(ctx, id, d.SHA256)
		ts.Check(err)
		fmt.Fprintf(ts.Stdout(), "delivered %s first=%v\n", r.Delivery.Package, r.First)
	}
}

// perm FILE MODE: the file's permission bits are MODE (octal).
func cmdPerm(ts *testscript.TestScript, neg bool, args []string) {
	if len(args) != 2 {
		ts.Fatalf("usage: perm FILE MODE")
	}
	fi, err := os.Stat(ts.MkAbs(args[0]))
	ts.Check(err)
	want, err := strconv.ParseUint(args[1], 8, 32)
	ts.Check(err)
	if got := uint64(fi.Mode().Perm()); (got == want) == neg {
		ts.Fatalf("%s has mode %o, want %s%o", args[0], got, map[bool]string{true: "not ", false: ""}[neg], want)
	}
}

// code N PROG ARGS...: run PROG like exec and require exit status N; its
// output is kept for stdout and stderr checks.
func cmdCode(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) < 2 {
		ts.Fatalf("usage: code N PROG [ARGS...]")
	}
	want, err := strconv.Atoi(args[0])
	ts.Check(err)
	got := 0
	if err := ts.Exec(args[1], args[2:]...); err != nil {
		var ee *exec.ExitError
		if !errors.As(err, &ee) {
			ts.Fatalf("%s: %v", args[1], err)
		}
		got = ee.ExitCode()
	}
	if got != want {
		ts.Fatalf("%s exited with %d, want %d\nstderr: %s", args[1], got, want, ts.ReadFile("stderr"))
	}
}

// waitfile FILE: wait up to 30s for FILE to exist.
func cmdWaitFile(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 1 {
		ts.Fatalf("usage: waitfile FILE")
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		if _, err := os.Stat(ts.MkAbs(args[0])); err == nil {
			return
		}
		if time.Now().After(deadline) {
			ts.Fatalf("%s did not appear within 30s", args[0])
		}
		time.Sleep(20 * time.Millisecond)
	}
}
