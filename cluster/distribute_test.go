package cluster_test

import (
	"context"
	"errors"
	"io"
	"net/http"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/airlock-project/airlock/catalog"
	"github.com/airlock-project/airlock/cluster"
	"github.com/airlock-project/airlock/cluster/clustertest"
	"github.com/airlock-project/airlock/fault"
	"github.com/airlock-project/airlock/node"
	"github.com/airlock-project/airlock/repo"
	"github.com/airlock-project/airlock/repo/repotest"
)

// counter opens the repository's blobs and counts what is read from them.
type counter struct {
	r     *repo.Repo
	mu    sync.Mutex
	read  map[catalog.Digest]int64
	opens map[catalog.Digest]int
}

func newCounter(r *repo.Repo) *counter {
	return &counter{r: r, read: map[catalog.Digest]int64{}, opens: map[catalog.Digest]int{}}
}

func (c *counter) open(d catalog.Digest) (io.ReadCloser, error) {
	f, err := c.r.OpenPackage(d)
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	c.opens[d]++
	c.mu.Unlock()
	return &countingFile{f: f, c: c, d: d}, nil
}

func (c *counter) total() int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	var n int64
	for _, v := range c.read {
		n += v
	}
	return n
}

type countingFile struct {
	f *os.File
	c *counter
	d catalog.Digest
}

func (f *countingFile) Read(p []byte) (int, error) {
	n, err := f.f.Read(p)
	f.c.mu.Lock()
	f.c.read[f.d] += int64(n)
	f.c.mu.Unlock()
	return n, err
}

func (f *countingFile) Seek(off int64, whence int) (int64, error) { return f.f.Seek(off, whence) }
func (f *countingFile) Close() error                              { return f.f.Close() }

// staged returns the digests the agent holds completely.
func staged(a *clustertest.Agent) map[catalog.Digest]bool {
	out := map[catalog.Digest]bool{}
	for _, sp := range a.Node().Status().Staged {
		if sp.Complete {
			out[sp.SHA256] = true
		}
	}
	return out
}

// failAfter makes the agent's uploads break after n bytes of each body.
func failAfter(n int64) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.Method == http.MethodPut && !strings.HasSuffix(r.URL.Path, "/entitlement") {
				r.Body = io.NopCloser(io.MultiReader(io.LimitReader(r.Body, n), errReader{}))
			}
			next.ServeHTTP(w, r)
		})
	}
}

type errReader struct{}

func (errReader) Read([]byte) (int, error) { return 0, errors.New("injected: connection broke") }

// prestage uploads the first n bytes of package p to agent a.
func prestage(t *testing.T, r *repo.Repo, a *clustertest.Agent, p catalog.Package, n int64) {
	t.Helper()
	ctx := context.Background()
	c, err := cluster.NewClient(a.RepoNode(node.RoleBackup, "eu"), cluster.ClientOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_, ent, err := r.PackageEntitlement(p.SHA256)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.PutEntitlement(ctx, p.SHA256, ent); err != nil {
		t.Fatal(err)
	}
	f, err := r.OpenPackage(p.SHA256)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sp, err := c.Upload(ctx, p.SHA256, 0, n, io.LimitReader(f, n))
	if err != nil {
		t.Fatal(err)
	}
	if sp.Offset != n || sp.Complete {
		t.Fatalf("prestage: node holds %d bytes (complete %v), want %d", sp.Offset, sp.Complete, n)
	}
}

// TestDistribute sends four packages to three agents: each package is read
// from the repository once, the node that holds half of one package
// resumes it, the node whose uploads break is reported while the others
// complete, and a rerun resumes it.
func TestDistribute(t *testing.T) {
	const size = 1<<20 + 12345 // not a multiple of the chunk size
	rp := clustertest.NewRepo(t, clustertest.Standard(size)...)
	agents := clustertest.Cluster(t, rp, node.Options{})
	n1, n2, n3 := agents[0], agents[1], agents[2]
	r := rp.Open(t)
	defer r.Close()

	half := int64(size / 2)
	prestage(t, r, n2, rp.Packages[1], half)
	n3.Wrap(failAfter(300 << 10))

	cnt := newCounter(r)
	rep, err := cluster.Distribute(context.Background(), r, cluster.DistributeOptions{Open: cnt.open})
	var de *cluster.DistributeError
	if !errors.As(err, &de) || len(de.Failed) != 1 || de.Failed[0].Node != "n3" {
		t.Fatalf("Distribute error = %v, want a *DistributeError naming n3 only", err)
	}
	if fault.Code(err) != fault.ExitOperational {
		t.Errorf("exit code %d, want %d", fault.Code(err), fault.ExitOperational)
	}
	for _, want := range []string{"n3", "rerun airlock distribute", "injected"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not mention %q", err, want)
		}
	}
	// Every package was read once, whole, for all three nodes.
	var total int64
	for _, p := range rp.Packages {
		total += p.Size
		if cnt.opens[p.SHA256] != 1 || cnt.read[p.SHA256] != p.Size {
			t.Errorf("package %s: opened %d times, %d bytes read; want once, %d bytes", p.ID(), cnt.opens[p.SHA256], cnt.read[p.SHA256], p.Size)
		}
	}
	if rep.Read != total {
		t.Errorf("report says %d bytes read, want %d", rep.Read, total)
	}
	for _, a := range []*clustertest.Agent{n1, n2} {
		got := staged(a)
		for _, p := range rp.Packages {
			if !got[p.SHA256] {
				t.Errorf("node %s does not hold %s", a.Name, p.ID())
			}
		}
	}
	byNode := map[string]cluster.NodeResult{}
	for _, n := range rep.Nodes {
		byNode[n.Node] = n
	}
	if got, want := byNode["n1"].Bytes, total; got != want {
		t.Errorf("n1 was sent %d bytes, want %d", got, want)
	}
	if got, want := byNode["n2"].Bytes, total-half; got != want {
		t.Errorf("n2 was sent %d bytes, want %d (it held half of %s)", got, want, rp.Packages[1].ID())
	}
	if len(staged(n3)) != 0 {
		t.Errorf("n3 holds %d complete packages, want none", len(staged(n3)))
	}
	partial := n3.Node().Status().Staged
	if len(partial) != 1 || partial[0].Offset == 0 {
		t.Fatalf("n3 should keep the part it received of its first package: %+v", partial)
	}
	kept := partial[0].Offset

	// A rerun sends n3 only what it misses, and the others nothing.
	n3.Wrap(nil)
	cnt2 := newCounter(r)
	rep, err = cluster.Distribute(context.Background(), r, cluster.DistributeOptions{Open: cnt2.open})
	if err != nil {
		t.Fatalf("rerun: %v", err)
	}
	for _, n := range rep.Nodes {
		want := int64(0)
		if n.Node == "n3" {
			want = total - kept
		}
		if n.Bytes != want {
			t.Errorf("rerun sent %d bytes to %s, want %d", n.Bytes, n.Node, want)
		}
	}
	if cnt2.total() != total-kept {
		t.Errorf("rerun read %d bytes, want %d (from n3's offset on)", cnt2.total(), total-kept)
	}
	if got := staged(n3); len(got) != len(rp.Packages) {
		t.Errorf("after the rerun n3 holds %d packages, want %d", len(got), len(rp.Packages))
	}

	// A third run has nothing to do.
	rep, err = cluster.Distribute(context.Background(), r, cluster.DistributeOptions{})
	if err != nil || rep.Sent != 0 || rep.Read != 0 {
		t.Errorf("third run: sent %d, read %d, err %v; want nothing", rep.Sent, rep.Read, err)
	}
	log, err := r.AuditLog()
	if err != nil {
		t.Fatal(err)
	}
	runs := 0
	for _, e := range log {
		if e.Action == repo.ActionDistribute {
			runs++
		}
	}
	if runs != 3 {
		t.Errorf("%d distribute runs audited, want 3", runs)
	}
}

// TestDistributeDeadNode: a node that does not answer is reported; the
// others complete.
func TestDistributeDeadNode(t *testing.T) {
	rp := clustertest.NewRepo(t, clustertest.Standard(64<<10)...)
	agents := clustertest.Cluster(t, rp, node.Options{})
	agents[2].Kill()
	r := rp.Open(t)
	defer r.Close()
	rep, err := cluster.Distribute(context.Background(), r, cluster.DistributeOptions{})
	if !errors.Is(err, cluster.ErrUnreachable) || !errors.Is(err, cluster.ErrDistribute) {
		t.Fatalf("error %v, want an unreachable node", err)
	}
	if !strings.Contains(err.Error(), "n3") || fault.Code(err) != fault.ExitOperational {
		t.Errorf("error %q (exit %d) should name n3 and exit 1", err, fault.Code(err))
	}
	for _, a := range agents[:2] {
		if got := staged(a); len(got) != len(rp.Packages) {
			t.Errorf("node %s holds %d packages, want %d", a.Name, len(got), len(rp.Packages))
		}
	}
	for _, n := range rep.Nodes {
		if (n.Node == "n3") != (n.Err != nil) {
			t.Errorf("node %s: err %v", n.Node, n.Err)
		}
	}
}

// TestDistributeDropsStalledNode: a node that stops reading is dropped
// from the fan-out after the stall timeout; the others complete.
func TestDistributeDropsStalledNode(t *testing.T) {
	rp := clustertest.NewRepo(t, repotest.Pkg{Name: "base", Version: "3.4.0", Size: 24 << 20, Requires: []string{"base >= 3.3.2"}})
	agents := clustertest.Cluster(t, rp, node.Options{})
	// The server notices the client is gone only when it reads: release
	// the stuck handler before the servers close (cleanups run last first).
	release := make(chan struct{})
	t.Cleanup(func() { close(release) })
	agents[1].Wrap(func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.Method == http.MethodPut && !strings.HasSuffix(r.URL.Path, "/entitlement") {
				select { // never reads the body
				case <-r.Context().Done():
				case <-release:
				}
				return
			}
			next.ServeHTTP(w, r)
		})
	})
	r := rp.Open(t)
	defer r.Close()
	start := time.Now()
	_, err := cluster.Distribute(context.Background(), r, cluster.DistributeOptions{StallTimeout: 300 * time.Millisecond})
	var de *cluster.DistributeError
	if !errors.As(err, &de) || len(de.Failed) != 1 || de.Failed[0].Node != "n2" || !strings.Contains(err.Error(), "accepted no data") {
		t.Fatalf("error %v, want n2 dropped as stalled", err)
	}
	for _, a := range []*clustertest.Agent{agents[0], agents[2]} {
		if len(staged(a)) != 1 {
			t.Errorf("node %s did not complete", a.Name)
		}
	}
	if el := time.Since(start); el > 30*time.Second {
		t.Errorf("took %s", el)
	}
}

// TestDistributeOnlySelected: --node restricts the run, an unknown node is
// a usage error.
func TestDistributeOnlySelected(t *testing.T) {
	rp := clustertest.NewRepo(t, clustertest.Standard(4096)...)
	agents := clustertest.Cluster(t, rp, node.Options{})
	r := rp.Open(t)
	defer r.Close()
	if _, err := cluster.Distribute(context.Background(), r, cluster.DistributeOptions{Nodes: []string{"n9"}}); fault.Code(err) != fault.ExitUsage || !strings.Contains(err.Error(), "n9") {
		t.Errorf("unknown node: %v (exit %d), want a usage error naming n9", err, fault.Code(err))
	}
	rep, err := cluster.Distribute(context.Background(), r, cluster.DistributeOptions{Nodes: []string{"n2"}})
	if err != nil || len(rep.Nodes) != 1 {
		t.Fatalf("%v, %+v", err, rep)
	}
	if len(staged(agents[0])) != 0 || len(staged(agents[1])) != len(rp.Packages) {
		t.Errorf("staged on n1 %d, on n2 %d", len(staged(agents[0])), len(staged(agents[1])))
	}
}
