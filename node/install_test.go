package node

import (
	"archive/tar"
	"bytes"
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/airlock-project/airlock/catalog"
)

// release builds a tar.zst payload for name@version.
func release(t *testing.T, name, version string) []byte {
	t.Helper()
	return zstdBytes(t, tarBytes(t,
		member{name: "./", typ: tar.TypeDir},
		member{name: "./VERSION", body: name + " " + version + "\n"},
		member{name: "./bin/", typ: tar.TypeDir},
		member{name: "./bin/run", body: "#!/bin/sh\necho " + version + "\n", mode: 0o4755},
		member{name: "./lib/libx.so.1", body: "lib"},
		member{name: "./lib/libx.so", typ: tar.TypeSymlink, link: "libx.so.1"},
		member{name: "./bin/lib", typ: tar.TypeSymlink, link: "../lib"},
	))
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestInstallTarZst(t *testing.T) {
	n := newNode(t, Options{}, "base=3.3.2")
	var pkgs []catalog.Package
	for _, v := range []string{"3.4.0", "3.5.0", "3.6.0"} {
		data := release(t, "base", v)
		p := pkg(t, "base", v, data)
		n.stage(p, data)
		pkgs = append(pkgs, p)
	}
	for i, p := range pkgs {
		j := n.install(p.SHA256)
		if j.State != JobSucceeded || j.Error != "" || j.Started.IsZero() || j.Finished.Before(j.Started) {
			t.Fatalf("install %s: job %+v", p.ID(), j)
		}
		if j.Package.Name != "base" || j.Package.Version.String() != p.Version.String() || j.Package.SHA256 != p.SHA256 {
			t.Errorf("job package %+v", j.Package)
		}
		v := p.Version.String()
		if got := n.current("base"); got != v {
			t.Fatalf("current -> %q, want %q", got, v)
		}
		cur := filepath.Join(n.dir, "releases", "base", "current")
		if got := readFile(t, filepath.Join(cur, "VERSION")); got != "base "+v+"\n" {
			t.Errorf("current/VERSION = %q", got)
		}
		if got := readFile(t, filepath.Join(cur, "bin", "lib", "libx.so")); got != "lib" {
			t.Errorf("through the symlinks: %q", got)
		}
		fi, err := os.Stat(filepath.Join(cur, "bin", "run"))
		if err != nil || fi.Mode().Perm() != 0o755 || fi.Mode()&os.ModeSetuid != 0 {
			t.Errorf("bin/run mode %v (%v), want 0755 without setuid", fi.Mode(), err)
		}
		if got := installedOnDisk(t, n.dir, "base"); got != v {
			t.Errorf("state.json says base %s, want %s", got, v)
		}
		if got := n.status().Installed["base"].String(); got != v {
			t.Errorf("status says base %s, want %s", got, v)
		}
		// The installed package leaves the staging area.
		if _, err := n.agent.blobs.Stat(p.SHA256); err == nil {
			t.Errorf("%s still staged after install", p.ID())
		}
		// Releases kept: the new one and the previous one.
		want := []string{v, "current"}
		if i > 0 {
			want = append(want, pkgs[i-1].Version.String())
		}
		got := n.releases("base")
		slices.Sort(want)
		if !slices.Equal(got, want) {
			t.Errorf("after %s releases are %v, want %v", p.ID(), got, want)
		}
	}
	if len(n.status().Staged) != 0 {
		t.Errorf("staged after installing everything: %v", n.status().Staged)
	}
	// A retried install of an installed (and so unstaged) package is told so.
	resp, body := n.submit(pkgs[2].SHA256)
	if e := wantStatus(t, "install again", resp, body, http.StatusConflict, "already-installed"); !strings.Contains(e.Error, "base 3.6.0") {
		t.Errorf("error %q does not name the installed version", e.Error)
	}
	resp, body = n.do("GET", "/v1/jobs", nil)
	wantStatus(t, "jobs", resp, body, http.StatusOK, "")
	if js := decode[[]Job](t, body); len(js) != 3 || js[0].Package.Version.String() != "3.6.0" {
		t.Errorf("job history %+v, want 3 jobs newest first", js)
	}
}

func TestInstallPlainFileAndTar(t *testing.T) {
	n := newNode(t, Options{})
	lic := []byte("LICENSE-KEY: 1234\n")
	pl := pkg(t, "license", "1.1.0", lic)
	n.stage(pl, lic)
	if j := n.install(pl.SHA256); j.State != JobSucceeded {
		t.Fatalf("plain install: %+v", j)
	}
	if got := readFile(t, filepath.Join(n.dir, "releases", "license", "current", "license")); got != string(lic) {
		t.Errorf("plain file content %q", got)
	}
	// A zstd file that is not a tar is kept as is too.
	z := zstdBytes(t, []byte("not a tar at all"))
	pz := pkg(t, "license", "1.2.0", z)
	n.stage(pz, z)
	if j := n.install(pz.SHA256); j.State != JobSucceeded {
		t.Fatalf("zstd non-tar install: %+v", j)
	}
	if got := readFile(t, filepath.Join(n.dir, "releases", "license", "current", "license")); got != string(z) {
		t.Error("zstd non-tar payload was not kept as is")
	}
	// An uncompressed tar.
	tb := tarBytes(t, member{name: "a/b.txt", body: "b"})
	pt := pkg(t, "tool", "1.0", tb)
	n.stage(pt, tb)
	if j := n.install(pt.SHA256); j.State != JobSucceeded {
		t.Fatalf("tar install: %+v", j)
	}
	if got := readFile(t, filepath.Join(n.dir, "releases", "tool", "current", "a", "b.txt")); got != "b" {
		t.Errorf("tar content %q", got)
	}
}

func TestInstallQueueProjectsRequires(t *testing.T) {
	n := newNode(t, Options{}, "base=3.3.2", "product=21.1.0")
	db, dp := release(t, "base", "3.4.0"), release(t, "product", "22.1.0")
	pb := pkg(t, "base", "3.4.0", db, "base >= 3.3.2")
	pp := pkg(t, "product", "22.1.0", dp, "base >= 3.4.0", "product >= 21.1.0")
	n.stage(pb, db)
	n.stage(pp, dp)
	// Hold the worker with a slow pre-install hook so both are queued.
	writeHook(t, n.dir, HookPreInstall, "sleep 0.3\n")
	resp, body := n.submit(pb.SHA256)
	wantStatus(t, "base", resp, body, http.StatusAccepted, "")
	jb := decode[Job](t, body)
	resp, body = n.submit(pb.SHA256)
	wantStatus(t, "base again", resp, body, http.StatusAccepted, "")
	if again := decode[Job](t, body); again.ID != jb.ID {
		t.Errorf("resubmitting a queued package made job %s, want %s", again.ID, jb.ID)
	}
	resp, body = n.submit(pp.SHA256)
	wantStatus(t, "product after queued base", resp, body, http.StatusAccepted, "")
	jp := decode[Job](t, body)
	if s := n.status(); len(s.Jobs) != 2 {
		t.Errorf("status lists %d active jobs, want 2", len(s.Jobs))
	}
	if j := n.waitJob(jb.ID); j.State != JobSucceeded {
		t.Fatalf("base: %+v", j)
	}
	if j := n.waitJob(jp.ID); j.State != JobSucceeded {
		t.Fatalf("product: %+v", j)
	}
	if n.current("base") != "3.4.0" || n.current("product") != "22.1.0" {
		t.Errorf("current: base %s product %s", n.current("base"), n.current("product"))
	}
}

// writeHook installs an executable shell hook.
func writeHook(t *testing.T, dir, name, script string) {
	t.Helper()
	if err := os.WriteFile(filepath.Join(dir, "hooks", name), []byte("#!/bin/sh\n"+script), 0o755); err != nil {
		t.Fatal(err)
	}
}

// installed1 gives n a current release of base 1.0.0, so that a failing
// install has a previous release to keep.
func installed1(t *testing.T, n *testNode) {
	t.Helper()
	d := release(t, "base", "1.0.0")
	p := pkg(t, "base", "1.0.0", d)
	n.stage(p, d)
	if j := n.install(p.SHA256); j.State != JobSucceeded {
		t.Fatalf("install base 1.0.0: %+v", j)
	}
}

// assertPrevious checks that a failed install of base 2.0.0 left 1.0.0.
func assertPrevious(t *testing.T, n *testNode) {
	t.Helper()
	if got := n.current("base"); got != "1.0.0" {
		t.Errorf("current -> %q, want the previous release 1.0.0", got)
	}
	if got := installedOnDisk(t, n.dir, "base"); got != "1.0.0" {
		t.Errorf("state.json says base %s, want 1.0.0", got)
	}
	if got := n.status().Installed["base"].String(); got != "1.0.0" {
		t.Errorf("status says base %s", got)
	}
	if got := n.releases("base"); !slices.Equal(got, []string{"1.0.0", "current"}) {
		t.Errorf("releases %v: the failed release or temporary files remain", got)
	}
	if got := readFile(t, filepath.Join(n.dir, "releases", "base", "current", "VERSION")); got != "base 1.0.0\n" {
		t.Errorf("current/VERSION %q", got)
	}
}

func TestInstallHooks(t *testing.T) {
	n := newNode(t, Options{}, "base=0.9")
	log := filepath.Join(t.TempDir(), "hooks.log")
	for _, h := range []string{HookPreInstall, HookPostInstall} {
		writeHook(t, n.dir, h, `echo "$AIRLOCK_HOOK $1 $2 $AIRLOCK_PACKAGE $AIRLOCK_VERSION $AIRLOCK_PREVIOUS_VERSION $(basename "$3") $(readlink `+
			filepath.Join(n.dir, "releases", "base", "current")+`)" >>`+log+"\n")
	}
	installed1(t, n)
	want := "pre-install base 1.0.0 base 1.0.0 0.9 1.0.0 \n" +
		"post-install base 1.0.0 base 1.0.0 0.9 1.0.0 1.0.0\n"
	if got := readFile(t, log); got != want {
		t.Errorf("hooks ran as\n%s\nwant\n%s", got, want)
	}
}

func TestInstallHookFailures(t *testing.T) {
	for _, tc := range []struct {
		name, hook, script, says string
		timeout                  time.Duration
	}{
		{"pre-install fails", HookPreInstall, "echo refusing: disk too small >&2\nexit 3\n", "refusing: disk too small", 0},
		{"post-install fails", HookPostInstall, "echo service did not start\nexit 1\n", "service did not start", 0},
		{"pre-install times out", HookPreInstall, "sleep 30\n", "timed out", 300 * time.Millisecond},
		{"post-install not executable", HookPostInstall, "", "not an executable", 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			n := newNode(t, Options{HookTimeout: tc.timeout})
			installed1(t, n)
			writeHook(t, n.dir, tc.hook, tc.script)
			if tc.script == "" {
				os.Chmod(filepath.Join(n.dir, "hooks", tc.hook), 0o644)
			}
			d := release(t, "base", "2.0.0")
			p := pkg(t, "base", "2.0.0", d)
			n.stage(p, d)
			start := time.Now()
			j := n.install(p.SHA256)
			if j.State != JobFailed || j.Code != "hook-failed" || !strings.Contains(j.Error, tc.says) || !strings.Contains(j.Error, "base@2.0.0") {
				t.Fatalf("job %+v: want failed, hook-failed, naming the package and %q", j, tc.says)
			}
			if tc.timeout > 0 && time.Since(start) > 10*time.Second {
				t.Errorf("the hook timeout did not stop the hook")
			}
			assertPrevious(t, n)
			// Still staged: it may be installed once the hook is fixed.
			os.Remove(filepath.Join(n.dir, "hooks", tc.hook))
			if j := n.install(p.SHA256); j.State != JobSucceeded || n.current("base") != "2.0.0" {
				t.Fatalf("install after fixing the hook: %+v, current %s", j, n.current("base"))
			}
		})
	}
}

func TestInstallHostileArchives(t *testing.T) {
	type tc struct {
		name    string
		payload []byte
		opts    Options
		says    string
	}
	z := func(ms ...member) []byte { return zstdBytes(t, tarBytes(t, ms...)) }
	ver := member{name: "VERSION", body: "base 2.0.0\n"}
	big := strings.Repeat("x", 2<<20)
	cases := []tc{
		{"traversal", z(ver, member{name: "../x", body: "evil"}), Options{}, `"../x" contains '..'`},
		{"inner traversal", z(ver, member{name: "a/../../x", body: "evil"}), Options{}, "contains '..'"},
		{"absolute", z(ver, member{name: "/etc/x", body: "evil"}), Options{}, "absolute name"},
		{"symlink escaping", z(ver, member{name: "l", typ: tar.TypeSymlink, link: "../../../x"}), Options{}, "points outside"},
		{"symlink absolute", z(ver, member{name: "l", typ: tar.TypeSymlink, link: "/etc"}), Options{}, "absolute path"},
		{"symlink chain escaping", z(ver, member{name: "p", typ: tar.TypeSymlink, link: "q/.."}, member{name: "q", typ: tar.TypeSymlink, link: "."}), Options{}, "points outside"},
		{"write through symlink", z(ver, member{name: "d", typ: tar.TypeSymlink, link: "sub"}, member{name: "d/x", body: "evil"}), Options{}, "below the symlink"},
		{"hardlink", z(ver, member{name: "h", typ: tar.TypeLink, link: "VERSION"}), Options{}, "hard link"},
		{"char device", z(ver, member{name: "null", typ: tar.TypeChar}), Options{}, "device"},
		{"block device", z(ver, member{name: "sda", typ: tar.TypeBlock}), Options{}, "device"},
		{"fifo", z(ver, member{name: "f", typ: tar.TypeFifo}), Options{}, "fifo"},
		{"duplicate", z(ver, member{name: "VERSION", body: "again"}), Options{}, "appears twice"},
		{"huge file", z(ver, member{name: "big", body: big}), Options{MaxUnpack: 1 << 20}, "past the limit"},
		{"huge declared size", z(ver, member{name: "big", size: 1 << 40}), Options{}, "past the limit"},
		{"too many members", z(ver, member{name: "a"}, member{name: "b"}, member{name: "c"}, member{name: "d"}, member{name: "e"},
			member{name: "f"}, member{name: "g"}, member{name: "h"}, member{name: "i"}, member{name: "j"}), Options{MaxEntries: 10}, "more than 10 members"},
		{"truncated tar", z(ver, member{name: "cut", body: "abc", size: 4096}), Options{}, "cut"},
		{"corrupt zstd", corruptZstd(t), Options{}, "member"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			n := newNode(t, c.opts)
			installed1(t, n)
			p := pkg(t, "base", "2.0.0", c.payload)
			n.stage(p, c.payload)
			j := n.install(p.SHA256)
			if j.State != JobFailed || j.Code != "unsafe-archive" || !strings.Contains(j.Error, "base@2.0.0") || !strings.Contains(j.Error, c.says) {
				t.Fatalf("job %+v: want failed, unsafe-archive, naming base@2.0.0 and %q", j, c.says)
			}
			t.Logf("refused: %s", j.Error)
			assertPrevious(t, n)
			for _, outside := range []string{filepath.Join(n.dir, "x"), filepath.Join(n.dir, "releases", "x"), filepath.Join(filepath.Dir(n.dir), "x")} {
				if _, err := os.Lstat(outside); err == nil {
					t.Errorf("%s was written", outside)
				}
			}
		})
	}
}

func TestInstallDamagedStagedFile(t *testing.T) {
	n := newNode(t, Options{})
	installed1(t, n)
	d := release(t, "base", "2.0.0")
	p := pkg(t, "base", "2.0.0", d)
	n.stage(p, d)
	// The disk rots after staging: the install notices.
	path := n.agent.blobs.Path(p.SHA256)
	os.Chmod(path, 0o644)
	b, _ := os.ReadFile(path)
	b[len(b)/2] ^= 0xff
	if err := os.WriteFile(path, b, 0o444); err != nil {
		t.Fatal(err)
	}
	j := n.install(p.SHA256)
	if j.State != JobFailed || j.Code != "digest-mismatch" || !strings.Contains(j.Error, "damaged") {
		t.Fatalf("job %+v: want digest-mismatch", j)
	}
	assertPrevious(t, n)
	// The damaged file is dropped, so the package can be uploaded again.
	resp, _ := n.do("HEAD", "/v1/staged/"+p.SHA256.String(), nil)
	if resp.StatusCode != http.StatusOK || resp.Header.Get(HeaderOffset) != "0" {
		t.Fatalf("HEAD after the damage: %d, offset %q", resp.StatusCode, resp.Header.Get(HeaderOffset))
	}
	n.stage(p, d)
	if j := n.install(p.SHA256); j.State != JobSucceeded {
		t.Fatalf("install after re-upload: %+v", j)
	}
}

// corruptZstd returns a tar.zst whose first blocks decode (so it is seen as
// a tar.zst) and whose later data does not.
func corruptZstd(t *testing.T) []byte {
	var sb strings.Builder
	for i := 0; sb.Len() < 1<<20; i++ {
		fmt.Fprintf(&sb, "line %d of a log that compresses well but not trivially %x\n", i, i*i*7919)
	}
	b := zstdBytes(t, tarBytes(t, member{name: "VERSION", body: "base 2.0.0\n"}, member{name: "log", body: sb.String()}))
	b[len(b)*3/4] ^= 0x55
	b[len(b)*3/4+1] ^= 0xaa
	return b
}

func TestInstallCancelledByShutdown(t *testing.T) {
	v := newVendor(t, "Acme Vendor")
	dir := initNode(t, v, "base=0.9")
	a, err := Open(dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { a.Run(ctx); close(done) }()

	stage := func(version string) catalog.Package {
		d := release(t, "base", version)
		p := pkg(t, "base", version, d)
		if _, err := a.PutEntitlement(p.SHA256, v.entitlement(t, p)); err != nil {
			t.Fatal(err)
		}
		if _, err := a.PutData(ctx, p.SHA256, Chunk{Length: -1, Total: -1}, bytes.NewReader(d)); err != nil {
			t.Fatal(err)
		}
		return p
	}
	p1, p2, p3 := stage("1.0.0"), stage("2.0.0"), stage("3.0.0")
	j1, err := a.Submit(p1.SHA256)
	if err != nil {
		t.Fatal(err)
	}
	waitFinal := func(id string) Job {
		deadline := time.Now().Add(20 * time.Second)
		for {
			j, err := a.Job(id)
			if err != nil {
				t.Fatal(err)
			}
			if !j.active() || time.Now().After(deadline) {
				return j
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	if j := waitFinal(j1.ID); j.State != JobSucceeded {
		t.Fatalf("install 1.0.0: %+v", j)
	}
	writeHook(t, dir, HookPostInstall, "sleep 60\n")
	j2, err := a.Submit(p2.SHA256)
	if err != nil {
		t.Fatal(err)
	}
	j3, err := a.Submit(p3.SHA256)
	if err != nil {
		t.Fatal(err)
	}
	// Wait until 2.0.0 is current (its post-install hook is running), then stop.
	deadline := time.Now().Add(20 * time.Second)
	for {
		cur, _ := readCurrent(filepath.Join(dir, "releases", "base"))
		if cur == "2.0.0" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the install did not reach its post-install hook")
		}
		time.Sleep(5 * time.Millisecond)
	}
	start := time.Now()
	cancel()
	<-done
	if time.Since(start) > 15*time.Second {
		t.Errorf("shutdown waited %v for the hook", time.Since(start))
	}
	for _, id := range []string{j2.ID, j3.ID} {
		if j, _ := a.Job(id); j.State != JobFailed || j.Code != "interrupted" {
			t.Errorf("job %s after shutdown: %+v", id, j)
		}
	}
	cur, _ := readCurrent(filepath.Join(dir, "releases", "base"))
	if cur != "1.0.0" || installedOnDisk(t, dir, "base") != "1.0.0" {
		t.Errorf("after shutdown current %q, installed %q; want 1.0.0", cur, installedOnDisk(t, dir, "base"))
	}
	if got := entries(t, filepath.Join(dir, "releases", "base")); !slices.Equal(got, []string{"1.0.0", "current"}) {
		t.Errorf("releases after shutdown: %v", got)
	}
}

func TestInstallUnstagesOlderPackages(t *testing.T) {
	n := newNode(t, Options{})
	var ps []catalog.Package
	for _, v := range []string{"3.4.0", "3.5.0", "3.6.0"} {
		d := release(t, "base", v)
		p := pkg(t, "base", v, d)
		n.stage(p, d)
		ps = append(ps, p)
	}
	lic := []byte("license")
	pl := pkg(t, "license", "1.0", lic)
	n.stage(pl, lic)
	if j := n.install(ps[1].SHA256); j.State != JobSucceeded {
		t.Fatalf("install 3.5.0: %+v", j)
	}
	var left []string
	for _, s := range n.status().Staged {
		left = append(left, s.Name+"@"+s.Version.String())
	}
	if !slices.Equal(left, []string{"base@3.6.0", "license@1.0"}) {
		t.Errorf("staged after installing base 3.5.0: %v, want base@3.6.0 and license@1.0", left)
	}
	for _, p := range ps[:2] {
		if _, err := os.Stat(n.agent.entitlementPath(p.SHA256)); !os.IsNotExist(err) {
			t.Errorf("entitlement of %s kept", p.ID())
		}
	}
}
