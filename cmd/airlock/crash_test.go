package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"syscall"
	"testing"

	"github.com/airlock-project/airlock/keys"
	"github.com/airlock-project/airlock/repo"
	"github.com/airlock-project/airlock/repo/repotest"
)

// fixture is a repository trusting a world's vendor and courier, and
// bundles answering its outstanding download keys.
type fixture struct {
	dir     string
	bundles []string
}

// newFixture makes a repository and n bundles, each answering its own key,
// each with three packages; the first package of every bundle is the same.
func newFixture(t *testing.T, n int) *fixture {
	t.Helper()
	ctx := context.Background()
	w, err := repotest.NewWorld(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	f := &fixture{dir: filepath.Join(t.TempDir(), "repo")}
	if _, err := repo.Init(ctx, repo.Options{Dir: f.dir}, "plant-3"); err != nil {
		t.Fatal(err)
	}
	r, err := repo.Open(ctx, repo.Options{Dir: f.dir})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	for role, k := range map[keys.Role]*keys.PrivateKey{keys.RoleVendor: w.Vendor, keys.RoleCourier: w.Courier} {
		if _, _, err := r.TrustAdd(role, k.Public()); err != nil {
			t.Fatal(err)
		}
	}
	for i := range n {
		info, _, err := r.IssueKey(repo.KeyOptions{})
		if err != nil {
			t.Fatal(err)
		}
		path := filepath.Join(t.TempDir(), "b.airlock")
		spec := repotest.BundleSpec{Site: "plant-3", KeyID: info.ID, Packages: []repotest.Pkg{
			{Name: "base", Version: "3.4.0", Size: 200000},
			// Other components per bundle, so that no order of imports is a downgrade.
			{Name: fmt.Sprintf("app%d", i), Version: "22.1.0", Size: 150000},
			{Name: fmt.Sprintf("tool%d", i), Version: "1.1", Size: 1000},
		}}
		if _, err := w.WriteBundle(ctx, path, spec); err != nil {
			t.Fatal(err)
		}
		f.bundles = append(f.bundles, path)
	}
	return f
}

// result is what an airlock process did.
type result struct {
	stdout, stderr string
	code           int
	killed         bool
}

func (f *fixture) command(env []string, args ...string) *exec.Cmd {
	cmd := exec.Command("airlock", args...)
	cmd.Env = append(os.Environ(), append([]string{"AIRLOCK_REPO=" + f.dir}, env...)...)
	return cmd
}

func wait(t *testing.T, cmd *exec.Cmd, err error) result {
	t.Helper()
	var res result
	res.stdout = cmd.Stdout.(*bytes.Buffer).String()
	res.stderr = cmd.Stderr.(*bytes.Buffer).String()
	var ee *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &ee):
		res.code = ee.ExitCode()
		if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() && ws.Signal() == syscall.SIGKILL {
			res.killed = true
		}
	default:
		t.Fatalf("%v: %v", cmd.Args, err)
	}
	return res
}

// run runs airlock to completion.
func (f *fixture) run(t *testing.T, env []string, args ...string) result {
	t.Helper()
	cmd := f.command(env, args...)
	cmd.Stdout, cmd.Stderr = &bytes.Buffer{}, &bytes.Buffer{}
	return wait(t, cmd, cmd.Run())
}

func (f *fixture) mustRun(t *testing.T, args ...string) string {
	t.Helper()
	res := f.run(t, nil, args...)
	if res.code != 0 {
		t.Fatalf("airlock %s: exit %d: %s", strings.Join(args, " "), res.code, res.stderr)
	}
	return res.stdout
}

// state reads what the repository holds, through the CLI.
func (f *fixture) state(t *testing.T) (packages, bundles int, keyStates []string) {
	t.Helper()
	var pkgs, bs []json.RawMessage
	var ks []struct{ State string }
	if err := json.Unmarshal([]byte(f.mustRun(t, "list", "--json")), &pkgs); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal([]byte(f.mustRun(t, "bundles", "--json")), &bs); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal([]byte(f.mustRun(t, "key", "list", "--json")), &ks); err != nil {
		t.Fatal(err)
	}
	for _, k := range ks {
		keyStates = append(keyStates, k.State)
	}
	sort.Strings(keyStates)
	return len(pkgs), len(bs), keyStates
}

var problemKind = regexp.MustCompile(`(?m)^  ([a-z-]+): `)

// TestImportCrash kills a real airlock import with SIGKILL at each injected
// point and checks that the repository reopens, holds the whole bundle or
// none of it, is cleaned up by a read-write open (check --repair), and
// accepts the bundle again if it was not imported.
func TestImportCrash(t *testing.T) {
	for _, tc := range []struct {
		point     string
		imported  bool
		leftovers string // the problem check reports before the cleanup
	}{
		{"ingested:1", false, "temp-file"},
		{"ingested:3", false, "temp-file"},
		{"verified", false, "temp-file"},
		{"published", false, "orphan-blob"},
		{"commit", false, "orphan-blob"},
		{"committed", true, ""},
	} {
		t.Run(tc.point, func(t *testing.T) {
			f := newFixture(t, 1)
			res := f.run(t, []string{envCrash + "=" + tc.point}, "import", "--no-progress", f.bundles[0])
			if !res.killed {
				t.Fatalf("import was not killed at %s: exit %d\n%s%s", tc.point, res.code, res.stdout, res.stderr)
			}

			// The repository opens read-only and holds all or nothing.
			pkgs, bundles, states := f.state(t)
			wantPkgs, wantBundles, wantState := 0, 0, "outstanding"
			if tc.imported {
				wantPkgs, wantBundles, wantState = 3, 1, "fulfilled"
			}
			if pkgs != wantPkgs || bundles != wantBundles || len(states) != 1 || states[0] != wantState {
				t.Fatalf("after a crash at %s: %d packages, %d bundles, keys %v; want %d, %d, [%s]",
					tc.point, pkgs, bundles, states, wantPkgs, wantBundles, wantState)
			}
			f.mustRun(t, "audit", "--verify")

			// check (read-only) reports the leftovers, and only them.
			res = f.run(t, nil, "check")
			if tc.leftovers == "" {
				if res.code != 0 {
					t.Fatalf("check: exit %d: %s", res.code, res.stderr)
				}
			} else {
				if res.code != 3 {
					t.Fatalf("check: exit %d, want 3 reporting %s: %s", res.code, tc.leftovers, res.stderr)
				}
				for _, m := range problemKind.FindAllStringSubmatch(res.stderr, -1) {
					if m[1] != tc.leftovers {
						t.Errorf("check reports %s after a crash at %s:\n%s", m[1], tc.point, res.stderr)
					}
				}
				if !strings.Contains(res.stderr, tc.leftovers) {
					t.Errorf("check does not report %s:\n%s", tc.leftovers, res.stderr)
				}
			}
			out := f.mustRun(t, "check", "--repair")
			if tc.leftovers != "" && !strings.Contains(out, "removed blobs/") {
				t.Errorf("check --repair removed nothing:\n%s", out)
			}
			f.mustRun(t, "check")

			// The bundle imports again exactly when it was not imported.
			res = f.run(t, nil, "import", "--no-progress", f.bundles[0])
			if tc.imported {
				if res.code != 4 {
					t.Errorf("re-import after a committed import: exit %d, want 4: %s", res.code, res.stderr)
				}
			} else if res.code != 0 {
				t.Fatalf("re-import: exit %d: %s", res.code, res.stderr)
			}
			if pkgs, bundles, states := f.state(t); pkgs != 3 || bundles != 1 || states[0] != "fulfilled" {
				t.Errorf("finally %d packages, %d bundles, keys %v", pkgs, bundles, states)
			}
			f.mustRun(t, "check")
		})
	}
}

// TestImportCrashLeavesNoVisiblePackage: a read-write open after a crash
// (here: the next import of another bundle) removes the leftovers itself.
func TestImportCrashRecoveredByNextImport(t *testing.T) {
	f := newFixture(t, 2)
	res := f.run(t, []string{envCrash + "=published"}, "import", f.bundles[0])
	if !res.killed {
		t.Fatalf("not killed: exit %d %s", res.code, res.stderr)
	}
	f.mustRun(t, "import", f.bundles[1])
	f.mustRun(t, "check")
	f.mustRun(t, "import", f.bundles[0])
	if pkgs, bundles, _ := f.state(t); pkgs != 5 || bundles != 2 {
		t.Errorf("%d packages, %d bundles; want 5 (one shared) and 2", pkgs, bundles)
	}
	f.mustRun(t, "check")
}

// TestConcurrentImports starts two imports at once. Of the same bundle,
// exactly one succeeds and the other is refused with exit 4 (the
// repository in use, or the bundle already imported); of two bundles,
// both succeed one after the other. The repository is sound either way.
func TestConcurrentImports(t *testing.T) {
	for _, timeout := range []string{"1ms", "10s"} {
		t.Run("same bundle, lock timeout "+timeout, func(t *testing.T) {
			f := newFixture(t, 1)
			codes, outs := f.parallel(t, [][]string{
				{"import", "--lock-timeout", timeout, f.bundles[0]},
				{"import", "--lock-timeout", timeout, f.bundles[0]},
			})
			if codes[0]+codes[1] != 4 || codes[0]*codes[1] != 0 {
				t.Fatalf("exit codes %v, want one 0 and one 4\n%s", codes, strings.Join(outs, "\n"))
			}
			loser := outs[0]
			if codes[1] == 4 {
				loser = outs[1]
			}
			if !strings.Contains(loser, "in use by") && !strings.Contains(loser, "already fulfilled") {
				t.Errorf("the refused import says: %s", loser)
			}
			if pkgs, bundles, _ := f.state(t); pkgs != 3 || bundles != 1 {
				t.Errorf("%d packages, %d bundles", pkgs, bundles)
			}
			f.mustRun(t, "check")
			f.mustRun(t, "audit", "--verify")
		})
	}
	t.Run("two bundles", func(t *testing.T) {
		f := newFixture(t, 2)
		codes, outs := f.parallel(t, [][]string{
			{"import", "--lock-timeout", "30s", f.bundles[0]},
			{"import", "--lock-timeout", "30s", f.bundles[1]},
		})
		if codes[0] != 0 || codes[1] != 0 {
			t.Fatalf("exit codes %v:\n%s", codes, strings.Join(outs, "\n"))
		}
		if pkgs, bundles, _ := f.state(t); pkgs != 5 || bundles != 2 {
			t.Errorf("%d packages, %d bundles; want 5 and 2", pkgs, bundles)
		}
		f.mustRun(t, "check")
		f.mustRun(t, "audit", "--verify")
	})
}

// parallel starts every command before waiting for any.
func (f *fixture) parallel(t *testing.T, argss [][]string) ([]int, []string) {
	t.Helper()
	cmds := make([]*exec.Cmd, len(argss))
	for i, args := range argss {
		cmds[i] = f.command(nil, append(args[:1:1], append([]string{"--no-progress"}, args[1:]...)...)...)
		cmds[i].Stdout, cmds[i].Stderr = &bytes.Buffer{}, &bytes.Buffer{}
		if err := cmds[i].Start(); err != nil {
			t.Fatal(err)
		}
	}
	codes := make([]int, len(cmds))
	outs := make([]string, len(cmds))
	for i, cmd := range cmds {
		res := wait(t, cmd, cmd.Wait())
		codes[i], outs[i] = res.code, res.stdout+res.stderr
	}
	return codes, outs
}

// TestRotateCrash kills a real airlock key rotate with SIGKILL at each of
// its hook points and checks that the repository reopens with the old key
// (killed before the commit) or the new one (after), that check reports
// only the interrupted rotation with its repair, that the repair (check
// --repair, or the read-write open of key new) finishes or undoes it, and
// that the download key is outstanding or revoked accordingly.
func TestRotateCrash(t *testing.T) {
	for _, tc := range []struct {
		point     string
		committed bool
		repairBy  string // "check" (check --repair) or "key new"
	}{
		{repo.HookRotateStaged, false, "check"},
		{repo.HookRotateCommitted, true, "check"},
		{repo.HookRotatePublished, true, "check"},
		{repo.HookRotateCommitted, true, "key new"},
	} {
		t.Run(tc.point+" repaired by "+tc.repairBy, func(t *testing.T) {
			f := newFixture(t, 1)
			oldKey := siteKeyOf(t, f)
			res := f.run(t, []string{envCrash + "=" + tc.point}, "key", "rotate", "--yes")
			if !res.killed {
				t.Fatalf("key rotate was not killed at %s: exit %d\n%s%s", tc.point, res.code, res.stdout, res.stderr)
			}
			_, _, states := f.state(t)
			wantState, wantKey := "outstanding", oldKey
			if tc.committed {
				wantState, wantKey = "revoked", ""
			}
			if len(states) != 1 || states[0] != wantState {
				t.Fatalf("after a crash at %s: keys %v, want [%s]", tc.point, states, wantState)
			}
			if got := siteKeyOf(t, f); tc.committed == (got == oldKey) {
				t.Fatalf("after a crash at %s the database names site key %s (old %s)", tc.point, got, oldKey)
			}
			f.mustRun(t, "audit", "--verify")

			res = f.run(t, nil, "check")
			if res.code != 3 {
				t.Fatalf("check: exit %d, want 3: %s", res.code, res.stderr)
			}
			for _, m := range problemKind.FindAllStringSubmatch(res.stderr, -1) {
				if m[1] != "rotation" {
					t.Errorf("check reports %s after a crash at %s:\n%s", m[1], tc.point, res.stderr)
				}
			}
			repair, did := "removes it", "removed site-keys/rotating-"
			if tc.committed {
				repair, did = "finishes it", "finished the interrupted rotation to site key "+siteKeyOf(t, f)
			}
			if !strings.Contains(res.stderr, "'airlock check --repair' "+repair) {
				t.Errorf("check does not say that check --repair %s:\n%s", repair, res.stderr)
			}
			if tc.repairBy == "check" {
				if out := f.mustRun(t, "check", "--repair"); !strings.Contains(out, did) {
					t.Errorf("check --repair does not say %q:\n%s", did, out)
				}
			} else {
				f.mustRun(t, "key", "new", "--out", filepath.Join(t.TempDir(), "dk.key"))
			}
			f.mustRun(t, "check")
			if wantKey != "" && siteKeyOf(t, f) != wantKey {
				t.Errorf("the site key changed after an uncommitted rotation")
			}

			// The bundle answering the old key imports exactly when the
			// rotation did not happen.
			res = f.run(t, nil, "import", "--no-progress", f.bundles[0])
			if want := map[bool]int{false: 0, true: 4}[tc.committed]; res.code != want {
				t.Errorf("import: exit %d, want %d: %s", res.code, want, res.stderr)
			}
			// And rotating again works.
			f.mustRun(t, "key", "rotate", "--yes")
			f.mustRun(t, "check")
			f.mustRun(t, "audit", "--verify")
		})
	}
}

// siteKeyOf returns the site key fingerprint the repository's database
// names.
func siteKeyOf(t *testing.T, f *fixture) string {
	t.Helper()
	r, err := repo.Open(context.Background(), repo.Options{Dir: f.dir, ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	return r.SiteKey().String()
}
