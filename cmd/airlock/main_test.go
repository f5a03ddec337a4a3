package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rogpeppe/go-internal/testscript"

	"github.com/airlock-project/airlock/catalog"
	"github.com/airlock-project/airlock/cluster/clustertest"
	"github.com/airlock-project/airlock/cmd/internal/cliapp"
	"github.com/airlock-project/airlock/cmd/internal/clitest"
	"github.com/airlock-project/airlock/keys"
	"github.com/airlock-project/airlock/repo"
	"github.com/airlock-project/airlock/repo/repotest"
)

func TestMain(m *testing.M) {
	testscript.Main(m, map[string]func(){
		"airlock": func() { os.Exit(cliapp.Exec(newApp())) },
	})
}

// TestScripts runs the CLI scenarios in testdata/*.txtar. Each runs with
// AIRLOCK_REPO=$WORK/repo and a vendor and courier in $WORK/world (see
// the custom commands below). exit0.txtar … exit4.txtar index the exit
// codes of airlock, one file per code, with their typical causes.
func TestScripts(t *testing.T) {
	testscript.Run(t, testscript.Params{
		Dir:                 "testdata",
		RequireExplicitExec: true,
		Setup: func(env *testscript.Env) error {
			env.Setenv("AIRLOCK_REPO", filepath.Join(env.WorkDir, "repo"))
			// The script's own *testing.T, for the agents it starts.
			env.Values[scriptT{}] = env.T()
			env.Values[agentsKey{}] = map[string]*clustertest.Agent{}
			world := filepath.Join(env.WorkDir, "world")
			if err := os.Mkdir(world, 0o755); err != nil {
				return err
			}
			_, err := repotest.NewWorld(world)
			return err
		},
		Cmds: map[string]func(ts *testscript.TestScript, neg bool, args []string){
			"mkbundle":    cmdMkbundle,
			"snapshot":    cmdSnapshot,
			"flipbyte":    cmdFlipbyte,
			"truncate":    cmdTruncate,
			"holdlock":    cmdHoldlock,
			"keyid":       cmdKeyid,
			"tamper":      cmdTamper,
			"want-exit":   cmdWantExit,
			"fingerprint": cmdFingerprint,
			"encrypted":   clitest.Encrypted,
			"agent":       cmdAgent,
		},
	})
}

// scriptT is the key of the script's testing.TB in the Env values;
// agentsKey that of the agents it started, by name.
type (
	scriptT   struct{}
	agentsKey struct{}
)

// mkbundle [-site S] [-signer vendor|courier|mallory] [-entsigner ...]
// [-id ID] [-split BYTES] [-valid DUR] [-ago DUR] [-req 'PKG=CONSTRAINT']...
// KEYFILE|random OUT PKG...
//
// writes a bundle answering the download key in KEYFILE (verified with
// $AIRLOCK_REPO/site.pub.asc), made by the world's vendor and courier
// unless told otherwise. PKG is name@version[:size]; -req adds a
// requirement to one of them ('product@23.1.0=product >= 22.2.0').
func cmdMkbundle(ts *testscript.TestScript, neg bool, args []string) {
	if neg {
		ts.Fatalf("unsupported: ! mkbundle")
	}
	fs := flag.NewFlagSet("mkbundle", flag.ContinueOnError)
	site := fs.String("site", "", "")
	signer := fs.String("signer", "courier", "")
	entSigner := fs.String("entsigner", "vendor", "")
	id := fs.String("id", "", "")
	split := fs.Int64("split", 0, "")
	valid := fs.Duration("valid", 0, "")
	ago := fs.Duration("ago", 0, "")
	reqs := map[string][]string{}
	fs.Func("req", "", func(v string) error {
		id, c, ok := strings.Cut(v, "=")
		if !ok {
			return fmt.Errorf("-req %q: want PKG=CONSTRAINT", v)
		}
		reqs[id] = append(reqs[id], c)
		return nil
	})
	ts.Check(fs.Parse(args))
	if fs.NArg() < 2 {
		ts.Fatalf("usage: mkbundle [flags] KEYFILE OUT PKG...")
	}
	w, err := repotest.LoadWorld(ts.MkAbs("world"))
	ts.Check(err)
	pick := func(name string) *keys.PrivateKey {
		switch name {
		case "vendor":
			return w.Vendor
		case "courier":
			return w.Courier
		case "mallory":
			k, err := keys.Generate(keys.GenerateOptions{Name: "Mallory", Now: time.Now().Add(-time.Hour)})
			ts.Check(err)
			return k
		}
		ts.Fatalf("unknown signer %q", name)
		return nil
	}
	spec := repotest.BundleSpec{ID: *id, Split: *split, Valid: *valid,
		ManifestSigner: pick(*signer), EntitlementSigner: pick(*entSigner)}
	if *ago != 0 {
		spec.Now = time.Now().Add(-*ago)
	}
	if fs.Arg(0) == "random" {
		spec.KeyID, err = catalog.NewKeyID()
		ts.Check(err)
		spec.Site = "plant-3"
	} else {
		dk, err := repotest.ReadDownloadKey(ts.MkAbs(fs.Arg(0)), filepath.Join(ts.Getenv("AIRLOCK_REPO"), repo.SitePublicKey))
		ts.Check(err)
		spec.KeyID, spec.Site = dk.ID, dk.Site
	}
	if *site != "" {
		spec.Site = *site
	}
	for _, s := range fs.Args()[2:] {
		p, err := repotest.ParsePkg(s)
		ts.Check(err)
		p.Requires = reqs[p.Name+"@"+p.Version]
		spec.Packages = append(spec.Packages, p)
	}
	m, err := w.WriteBundle(context.Background(), ts.MkAbs(fs.Arg(1)), spec)
	ts.Check(err)
	fmt.Fprintln(ts.Stdout(), m.ID)
}

// snapshot DIR prints a line per file and directory under DIR with the
// sha256 of each file, except *.lock files (see repotest.Snapshot).
func cmdSnapshot(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 1 {
		ts.Fatalf("usage: snapshot DIR")
	}
	s, err := repotest.Snapshot(ts.MkAbs(args[0]))
	ts.Check(err)
	fmt.Fprint(ts.Stdout(), s)
}

// flipbyte FILE mid|OFFSET inverts one byte (negative OFFSET: from the end).
func cmdFlipbyte(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 2 {
		ts.Fatalf("usage: flipbyte FILE mid|OFFSET")
	}
	path := ts.MkAbs(args[0])
	var off int64
	if args[1] == "mid" {
		fi, err := os.Stat(path)
		ts.Check(err)
		off = fi.Size() / 2
	} else {
		var err error
		off, err = strconv.ParseInt(args[1], 10, 64)
		ts.Check(err)
	}
	ts.Check(repotest.FlipByte(path, off))
}

// truncate FILE PERCENT% cuts FILE to that share of its size.
func cmdTruncate(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 2 || !strings.HasSuffix(args[1], "%") {
		ts.Fatalf("usage: truncate FILE PERCENT%%")
	}
	pct, err := strconv.Atoi(strings.TrimSuffix(args[1], "%"))
	ts.Check(err)
	path := ts.MkAbs(args[0])
	fi, err := os.Stat(path)
	ts.Check(err)
	ts.Check(os.Truncate(path, fi.Size()*int64(pct)/100))
}

// holdlock open|close keeps the repository open read-write in the test
// process, as another airlock command would.
func cmdHoldlock(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 1 {
		ts.Fatalf("usage: holdlock open|close")
	}
	held.Lock()
	defer held.Unlock()
	switch args[0] {
	case "open":
		r, err := repo.Open(context.Background(), repo.Options{Dir: ts.Getenv("AIRLOCK_REPO"), Command: "airlock import held.airlock"})
		ts.Check(err)
		held.m[ts] = r
		ts.Defer(func() {
			held.Lock()
			defer held.Unlock()
			if r := held.m[ts]; r != nil {
				r.Close()
				delete(held.m, ts)
			}
		})
	case "close":
		if r := held.m[ts]; r != nil {
			ts.Check(r.Close())
			delete(held.m, ts)
		}
	default:
		ts.Fatalf("usage: holdlock open|close")
	}
}

var held = struct {
	sync.Mutex
	m map[*testscript.TestScript]*repo.Repo
}{m: map[*testscript.TestScript]*repo.Repo{}}

// keyid KEYFILE VAR sets VAR to the id of the download key in KEYFILE.
func cmdKeyid(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 2 {
		ts.Fatalf("usage: keyid KEYFILE VAR")
	}
	dk, err := repotest.ReadDownloadKey(ts.MkAbs(args[0]), filepath.Join(ts.Getenv("AIRLOCK_REPO"), repo.SitePublicKey))
	ts.Check(err)
	ts.Setenv(args[1], string(dk.ID))
}

// tamper blob NAME@VERSION|orphan damages the repository's blob store:
// flips a byte of a stored package's blob, or adds an orphan blob.
func cmdTamper(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 2 || args[0] != "blob" {
		ts.Fatalf("usage: tamper blob NAME@VERSION|orphan")
	}
	r, err := repo.Open(context.Background(), repo.Options{Dir: ts.Getenv("AIRLOCK_REPO"), ReadOnly: true})
	ts.Check(err)
	defer r.Close()
	if args[1] == "orphan" {
		_, _, err := r.Blobs().Put(context.Background(), strings.NewReader("an orphan"), catalog.Digest{}, -1)
		ts.Check(err)
		return
	}
	pkgs, err := r.Packages()
	ts.Check(err)
	for _, p := range pkgs {
		if p.ID() == args[1] {
			path := r.Blobs().Path(p.SHA256)
			ts.Check(os.Chmod(path, 0o644))
			ts.Check(repotest.FlipByte(path, 0))
			return
		}
	}
	ts.Fatalf("no package %s", args[1])
}

// want-exit CODE PROGRAM ARGS... runs PROGRAM (airlock, from $PATH) and
// fails unless it exits with CODE; its output is the command's output.
// It passes the script's AIRLOCK_* variables on.
func cmdWantExit(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) < 2 {
		ts.Fatalf("usage: want-exit CODE PROGRAM ARGS...")
	}
	want, err := strconv.Atoi(args[0])
	ts.Check(err)
	cmd := exec.Command(args[1], args[2:]...)
	cmd.Dir = ts.MkAbs(".")
	cmd.Env = os.Environ()
	for _, v := range []string{"AIRLOCK_REPO", envPassphraseFile, envCrash, envFail, "HOME", "TMPDIR"} {
		cmd.Env = append(cmd.Env, v+"="+ts.Getenv(v))
	}
	cmd.Stdout, cmd.Stderr = ts.Stdout(), ts.Stderr()
	err = cmd.Run()
	got := 0
	if ee, ok := err.(*exec.ExitError); ok {
		got = ee.ExitCode()
	} else if err != nil {
		ts.Fatalf("%s: %v", args[1], err)
	}
	if got != want {
		ts.Fatalf("%s exited %d, want %d", args[1], got, want)
	}
}

// fingerprint FILE VAR sets VAR to the fingerprint of the public key FILE.
func cmdFingerprint(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 2 {
		ts.Fatalf("usage: fingerprint FILE VAR")
	}
	k, err := keys.ReadPublicFile(ts.MkAbs(args[0]))
	ts.Check(err)
	ts.Setenv(args[1], k.Fingerprint().String())
}

// agent [-role R] [-region R] NAME starts a node agent called NAME in the
// test process (see clustertest.StartAgent), trusting the world's vendor,
// running base 3.3.2 and product 21.1.0, and sets $NAME_URL, $NAME_TOKEN
// (its token file) and $NAME_FP (its certificate fingerprint). It serves
// until the script ends. "agent -stop NAME" closes it: the node no longer
// answers.
func cmdAgent(ts *testscript.TestScript, neg bool, args []string) {
	if neg {
		ts.Fatalf("unsupported: ! agent")
	}
	fs := flag.NewFlagSet("agent", flag.ContinueOnError)
	role := fs.String("role", "traffic", "")
	region := fs.String("region", "", "")
	stop := fs.Bool("stop", false, "")
	ts.Check(fs.Parse(args))
	if fs.NArg() != 1 {
		ts.Fatalf("usage: agent [-role R] [-region R] NAME | agent -stop NAME")
	}
	name := fs.Arg(0)
	agents := ts.Value(agentsKey{}).(map[string]*clustertest.Agent)
	if *stop {
		a := agents[name]
		if a == nil {
			ts.Fatalf("no agent %s", name)
		}
		a.Kill()
		return
	}
	w, err := repotest.LoadWorld(ts.MkAbs("world"))
	ts.Check(err)
	t := ts.Value(scriptT{}).(testing.TB)
	a := clustertest.StartAgent(t, w, clustertest.AgentOptions{Name: name, Role: *role, Region: *region, Installed: clustertest.Installed})
	ts.Defer(a.Kill)
	agents[name] = a
	ts.Setenv(name+"_URL", a.URL)
	ts.Setenv(name+"_TOKEN", a.TokenFile)
	ts.Setenv(name+"_FP", a.Fingerprint.String())
}
