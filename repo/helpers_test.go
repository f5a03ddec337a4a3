package repo

import (
	"context"
	"errors"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/airlock-project/airlock/catalog"
	"github.com/airlock-project/airlock/fault"
	"github.com/airlock-project/airlock/keys"
	"github.com/airlock-project/airlock/repo/repotest"
)

const testSite = "plant-3"

// env is a repository for site plant-3 trusting a vendor and a courier,
// with a clock the test can move.
type env struct {
	t     testing.TB
	dir   string
	world *repotest.World
	mu    sync.Mutex
	now   time.Time
}

func newEnv(t testing.TB) *env {
	t.Helper()
	w, err := repotest.NewWorld(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	e := &env{t: t, dir: filepath.Join(t.TempDir(), "repo"), world: w, now: time.Now().UTC().Truncate(time.Second)}
	if _, err := Init(context.Background(), e.opts(), testSite); err != nil {
		t.Fatal(err)
	}
	r := e.open()
	defer r.Close()
	for role, k := range map[keys.Role]*keys.PrivateKey{keys.RoleVendor: w.Vendor, keys.RoleCourier: w.Courier} {
		if _, _, err := r.TrustAdd(role, k.Public()); err != nil {
			t.Fatal(err)
		}
	}
	return e
}

func (e *env) clock() time.Time {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.now
}

// advance moves the repository's clock.
func (e *env) advance(d time.Duration) {
	e.mu.Lock()
	e.now = e.now.Add(d)
	e.mu.Unlock()
}

func (e *env) opts() Options {
	return Options{Dir: e.dir, Actor: "tester@host", Command: "go test", Now: e.clock, LockTimeout: 200 * time.Millisecond}
}

// open opens the repository read-write; the caller closes it.
func (e *env) open() *Repo {
	e.t.Helper()
	r, err := Open(context.Background(), e.opts())
	if err != nil {
		e.t.Fatal(err)
	}
	return r
}

func (e *env) openRO() *Repo {
	e.t.Helper()
	o := e.opts()
	o.ReadOnly = true
	r, err := Open(context.Background(), o)
	if err != nil {
		e.t.Fatal(err)
	}
	return r
}

// issue makes an outstanding download key.
func (e *env) issue(nodes ...catalog.NodeInventory) catalog.KeyID {
	e.t.Helper()
	r := e.open()
	defer r.Close()
	info, _, err := r.IssueKey(KeyOptions{Nodes: nodes})
	if err != nil {
		e.t.Fatal(err)
	}
	return info.ID
}

// bundle writes a bundle answering key with pkgs ("name@version[:size]")
// and returns its path.
func (e *env) bundle(key catalog.KeyID, pkgs ...string) string {
	e.t.Helper()
	return e.bundleSpec(repotest.BundleSpec{KeyID: key}, pkgs...)
}

func (e *env) bundleSpec(spec repotest.BundleSpec, pkgs ...string) string {
	e.t.Helper()
	if spec.Site == "" {
		spec.Site = testSite
	}
	if spec.Now.IsZero() {
		spec.Now = e.clock()
	}
	for _, s := range pkgs {
		p, err := repotest.ParsePkg(s)
		if err != nil {
			e.t.Fatal(err)
		}
		spec.Packages = append(spec.Packages, p)
	}
	path := filepath.Join(e.t.TempDir(), "b.airlock")
	if _, err := e.world.WriteBundle(context.Background(), path, spec); err != nil {
		e.t.Fatal(err)
	}
	return path
}

// importBundle imports path and fails the test on error.
func (e *env) importBundle(path string, opts ImportOptions) *ImportResult {
	e.t.Helper()
	r := e.open()
	defer r.Close()
	res, err := r.Import(context.Background(), path, opts)
	if err != nil {
		e.t.Fatalf("import: %v", err)
	}
	return res
}

func (e *env) snapshot() string {
	e.t.Helper()
	s, err := repotest.Snapshot(e.dir)
	if err != nil {
		e.t.Fatal(err)
	}
	return s
}

// mustCheck runs Check and fails the test on any problem.
func (e *env) mustCheck() *CheckReport {
	e.t.Helper()
	r := e.openRO()
	defer r.Close()
	rep, err := r.Check(context.Background(), CheckOptions{})
	if err != nil {
		e.t.Fatalf("check: %v", err)
	}
	return rep
}

// wantClass fails unless err is of the class that gives exit code code,
// and matches every error in is.
func wantClass(t testing.TB, err error, code int, is ...error) {
	t.Helper()
	if err == nil {
		t.Fatalf("got no error, want exit %d", code)
	}
	if got := fault.Code(err); got != code {
		t.Fatalf("error %q gives exit %d, want %d", err, got, code)
	}
	for _, target := range is {
		if !errors.Is(err, target) {
			t.Fatalf("error %q does not match %q", err, target)
		}
	}
}

func inventory(node string, installed ...string) catalog.NodeInventory {
	n := catalog.NodeInventory{Name: node, Installed: map[string]catalog.Version{}}
	for i := 0; i+1 < len(installed); i += 2 {
		n.Installed[installed[i]] = catalog.MustVersion(installed[i+1])
	}
	return n
}
