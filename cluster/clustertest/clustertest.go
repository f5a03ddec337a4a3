// Package clustertest runs real node agents in the test process, on
// loopback HTTPS servers with their own certificates, and makes
// repositories holding imported packages, for the tests of the cluster
// operations and the airlock commands. It is for tests only.
package clustertest

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/airlock-project/airlock/catalog"
	"github.com/airlock-project/airlock/keys"
	"github.com/airlock-project/airlock/node"
	"github.com/airlock-project/airlock/repo"
	"github.com/airlock-project/airlock/repo/repotest"
)

// Site is the site of the repositories NewRepo makes.
const Site = "plant-3"

// Repo is a repository trusting a world's vendor and courier, with one
// bundle of packages imported.
type Repo struct {
	Dir   string
	World *repotest.World
	// Packages are the imported packages, in bundle order.
	Packages []catalog.Package
}

// Standard is the contract's package set: base 3.4.0, product 22.1.0 and
// 23.1.0 (24h settle), license 1.1.0, each of size bytes, for nodes at
// base 3.3.2 and product 21.1.0.
func Standard(size int64) []repotest.Pkg {
	return []repotest.Pkg{
		{Name: "base", Version: "3.4.0", Size: size, Requires: []string{"base >= 3.3.2"}, Reboot: true},
		{Name: "product", Version: "22.1.0", Size: size, Requires: []string{"base >= 3.4.0", "product >= 21.1.0"}, Settle: 24 * time.Hour},
		{Name: "product", Version: "23.1.0", Size: size, Requires: []string{"product >= 22.1.0"}, Settle: 24 * time.Hour},
		{Name: "license", Version: "1.1.0", Size: size, Requires: []string{"product >= 23.1.0"}},
	}
}

// Installed is what the nodes of Standard run before the rollout.
var Installed = map[string]string{"base": "3.3.2", "product": "21.1.0"}

// NewRepo makes a repository in a temporary directory and imports one
// bundle holding pkgs.
func NewRepo(t testing.TB, pkgs ...repotest.Pkg) *Repo {
	t.Helper()
	ctx := context.Background()
	w, err := repotest.NewWorld(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	rp := &Repo{Dir: filepath.Join(t.TempDir(), "repo"), World: w}
	if _, err := repo.Init(ctx, rp.Options(), Site); err != nil {
		t.Fatal(err)
	}
	r, err := repo.Open(ctx, rp.Options())
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	for role, k := range map[keys.Role]*keys.PrivateKey{keys.RoleVendor: w.Vendor, keys.RoleCourier: w.Courier} {
		if _, _, err := r.TrustAdd(role, k.Public()); err != nil {
			t.Fatal(err)
		}
	}
	info, _, err := r.IssueKey(repo.KeyOptions{})
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "b.airlock")
	if _, err := w.WriteBundle(ctx, path, repotest.BundleSpec{Site: Site, KeyID: info.ID, Packages: pkgs}); err != nil {
		t.Fatal(err)
	}
	res, err := r.Import(ctx, path, repo.ImportOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range res.Packages {
		rp.Packages = append(rp.Packages, p.Package)
	}
	return rp
}

// Options are repository options for rp.
func (rp *Repo) Options() repo.Options {
	return repo.Options{Dir: rp.Dir, Actor: "tester@host", Command: "go test"}
}

// Open opens rp read-write; the test closes it.
func (rp *Repo) Open(t testing.TB) *repo.Repo {
	t.Helper()
	r, err := repo.Open(context.Background(), rp.Options())
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// AgentOptions describe a node agent to start.
type AgentOptions struct {
	Name, Role, Region string
	// Installed maps components to versions ("base": "3.3.2").
	Installed map[string]string
	// Node configures the agent.
	Node node.Options
}

// Agent is a node agent served over HTTPS on loopback.
type Agent struct {
	Name      string
	Dir       string
	URL       string
	TokenFile string
	Token     string
	// Fingerprint pins the agent's certificate.
	Fingerprint repo.CertFingerprint

	t    testing.TB
	opts node.Options
	srv  *httptest.Server

	mu     sync.Mutex
	agent  *node.Agent
	cancel context.CancelFunc
	done   chan struct{}
	wrap   func(http.Handler) http.Handler
}

// StartAgent initialises a node directory trusting w's vendor key and
// serves its agent until the test ends.
func StartAgent(t testing.TB, w *repotest.World, o AgentOptions) *Agent {
	t.Helper()
	ctx := context.Background()
	inst := map[string]catalog.Version{}
	for k, v := range o.Installed {
		inst[k] = catalog.MustVersion(v)
	}
	dir := filepath.Join(t.TempDir(), o.Name)
	var out bytes.Buffer
	if err := node.RunInit(ctx, node.InitOptions{Dir: dir, Name: o.Name, Role: o.Role, Region: o.Region, Installed: inst, JSON: true}, &out, io.Discard); err != nil {
		t.Fatal(err)
	}
	var res node.InitResult
	if err := json.Unmarshal(out.Bytes(), &res); err != nil {
		t.Fatal(err)
	}
	if err := node.RunTrust(ctx, node.TrustOptions{Dir: dir, KeyFile: filepath.Join(w.Dir, repotest.VendorPublic)}, io.Discard, io.Discard); err != nil {
		t.Fatal(err)
	}
	fp, err := repo.ParseCertFingerprint(res.Fingerprint)
	if err != nil {
		t.Fatal(err)
	}
	tok, err := os.ReadFile(res.TokenFile)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := tls.LoadX509KeyPair(filepath.Join(dir, "tls", "cert.pem"), filepath.Join(dir, "tls", "key.pem"))
	if err != nil {
		t.Fatal(err)
	}
	a := &Agent{Name: o.Name, Dir: dir, TokenFile: res.TokenFile, Token: string(bytes.TrimSpace(tok)), Fingerprint: fp, t: t, opts: o.Node}
	a.open()
	a.srv = httptest.NewUnstartedServer(http.HandlerFunc(a.serve))
	a.srv.TLS = &tls.Config{MinVersion: tls.VersionTLS13, Certificates: []tls.Certificate{cert}}
	a.srv.StartTLS()
	a.URL = a.srv.URL
	t.Cleanup(func() {
		a.srv.Close()
		a.stop()
	})
	return a
}

// open opens the agent directory and starts its install worker.
func (a *Agent) open() {
	a.t.Helper()
	ag, err := node.Open(a.Dir, a.opts)
	if err != nil {
		a.t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		ag.Run(ctx)
	}()
	a.mu.Lock()
	a.agent, a.cancel, a.done = ag, cancel, done
	a.mu.Unlock()
}

// stop stops the worker and closes the agent.
func (a *Agent) stop() {
	a.mu.Lock()
	ag, cancel, done := a.agent, a.cancel, a.done
	a.agent = nil
	a.mu.Unlock()
	if ag == nil {
		return
	}
	cancel()
	<-done
	ag.Close()
}

func (a *Agent) serve(w http.ResponseWriter, r *http.Request) {
	a.mu.Lock()
	ag, wrap := a.agent, a.wrap
	a.mu.Unlock()
	if ag == nil {
		http.Error(w, `{"error":"agent restarting","code":"busy"}`, http.StatusServiceUnavailable)
		return
	}
	h := ag.Handler()
	if wrap != nil {
		h = wrap(h)
	}
	h.ServeHTTP(w, r)
}

// Node returns the running agent.
func (a *Agent) Node() *node.Agent {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.agent
}

// Wrap puts middleware in front of the agent's handler (nil removes it),
// to inject faults. It replaces the middleware of earlier calls of Wrap
// and Use.
func (a *Agent) Wrap(mw func(http.Handler) http.Handler) {
	a.mu.Lock()
	a.wrap = mw
	a.mu.Unlock()
}

// Use puts middleware in front of the agent's handler and of the
// middleware already there (Wrap, Use): the last one added sees a request
// first.
func (a *Agent) Use(mw func(http.Handler) http.Handler) {
	a.mu.Lock()
	defer a.mu.Unlock()
	inner := a.wrap
	if inner == nil {
		a.wrap = mw
		return
	}
	a.wrap = func(h http.Handler) http.Handler { return mw(inner(h)) }
}

// Kill closes the server: the node no longer answers at its address.
func (a *Agent) Kill() { a.srv.Close() }

// Restart stops the agent, lets edit change its state.json (decoded as a
// generic JSON object), and opens it again: a node changed behind the
// cluster's back.
func (a *Agent) Restart(edit func(state map[string]any)) {
	a.t.Helper()
	a.stop()
	path := filepath.Join(a.Dir, "state.json")
	b, err := os.ReadFile(path)
	if err != nil {
		a.t.Fatal(err)
	}
	var st map[string]any
	if err := json.Unmarshal(b, &st); err != nil {
		a.t.Fatal(err)
	}
	if edit != nil {
		edit(st)
	}
	if b, err = json.Marshal(st); err != nil {
		a.t.Fatal(err)
	}
	if err := os.WriteFile(path, b, 0o644); err != nil {
		a.t.Fatal(err)
	}
	a.open()
}

// RepoNode is the registration of the agent.
func (a *Agent) RepoNode(role, region string) repo.Node {
	return repo.Node{Name: a.Name, URL: a.URL, Token: a.Token, Fingerprint: a.Fingerprint, Role: role, Region: region}
}

// Register adds the agents to the repository rp with the roles they were
// started with, as airlock node add does.
func Register(t testing.TB, rp *Repo, agents ...*Agent) {
	t.Helper()
	r := rp.Open(t)
	defer r.Close()
	for _, a := range agents {
		st := a.Node().Status()
		n := a.RepoNode(st.Role, st.Region)
		if _, err := r.AddNode(n); err != nil {
			t.Fatal(err)
		}
	}
}

// Cluster starts the contract's three nodes, n1 primary, n2 backup, n3
// traffic, all in region eu at Installed, and registers them in rp.
func Cluster(t testing.TB, rp *Repo, o node.Options) []*Agent {
	t.Helper()
	var out []*Agent
	for _, n := range []struct{ name, role string }{{"n1", node.RolePrimary}, {"n2", node.RoleBackup}, {"n3", node.RoleTraffic}} {
		out = append(out, StartAgent(t, rp.World, AgentOptions{Name: n.name, Role: n.role, Region: "eu", Installed: Installed, Node: o}))
	}
	Register(t, rp, out...)
	return out
}
