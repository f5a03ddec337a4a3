package fetch

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/airlock-project/airlock/catalog"
	"github.com/airlock-project/airlock/fault"
	"github.com/airlock-project/airlock/keys"
	"github.com/airlock-project/airlock/progress"
	"github.com/airlock-project/airlock/server"
)

// writeDownloadKey signs a download key for site with signer and writes it
// to dir/name.
func writeDownloadKey(t *testing.T, dir, name string, signer *keys.PrivateKey, site string, issued time.Time, installed map[string]catalog.Version) (string, catalog.KeyID) {
	t.Helper()
	id, err := catalog.NewKeyID()
	if err != nil {
		t.Fatal(err)
	}
	k := catalog.DownloadKey{Format: catalog.DownloadKeyFormat, Site: site, ID: id, Issued: issued, Expires: issued.Add(72 * time.Hour),
		Nodes: []catalog.NodeInventory{{Name: "node-a", Installed: installed}}}
	payload, err := k.Encode()
	if err != nil {
		t.Fatal(err)
	}
	var msg bytes.Buffer
	if err := signer.SignMessage(&msg, payload); err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, msg.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	return p, id
}

// TestAgainstRealServer runs exchange and bundle against the real vendor
// server's handler (server.Server.Handler), not the fake.
func TestAgainstRealServer(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	store := filepath.Join(dir, "vendor")
	if _, err := server.Init(store, "Acme Vendor", time.Now()); err != nil {
		t.Fatalf("server.Init: %v", err)
	}
	s, err := server.Open(server.Config{Dir: store})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	_, site, courier, other := testKeys(t)
	if _, err := s.AddSite(ctx, "plant-3", site.Public().Armored()); err != nil {
		t.Fatalf("AddSite: %v", err)
	}
	publish := func(name string, kind catalog.Kind, version string, size int, requires ...string) {
		f := filepath.Join(dir, name+"-"+version)
		os.WriteFile(f, bytes.Repeat([]byte(name+version), size/len(name+version)), 0o644)
		var cs []catalog.Constraint
		for _, r := range requires {
			c, err := catalog.ParseConstraint(r)
			if err != nil {
				t.Fatal(err)
			}
			cs = append(cs, c)
		}
		_, err := s.Publish(ctx, server.PublishRequest{Name: name, Kind: kind, Version: mustVersion(t, version), Requires: cs, File: f}, progress.Discard)
		if err != nil {
			t.Fatalf("Publish %s %s: %v", name, version, err)
		}
	}
	publish("base", catalog.KindBase, "3.4.0", 300<<10, "base >= 3.3.2")
	publish("product", catalog.KindProduct, "22.1.0", 500<<10, "base >= 3.4.0", "product >= 21.1.0")
	cut := &cutter{h: s.Handler(), seen: map[string]bool{}}
	ts := httptest.NewServer(cut)
	defer ts.Close()

	vendorPub := filepath.Join(dir, "vendor.pub.asc")
	os.WriteFile(vendorPub, s.VendorKey().Armored(), 0o644)
	courierKey := filepath.Join(dir, "courier.key")
	if err := keys.WritePrivateFile(courierKey, courier, nil); err != nil {
		t.Fatal(err)
	}
	inventory := map[string]catalog.Version{"base": mustVersion(t, "3.3.2"), "product": mustVersion(t, "21.1.0")}
	now := time.Now().UTC().Truncate(time.Second)
	key1, _ := writeDownloadKey(t, dir, "download.key", site, "plant-3", now.Add(-time.Minute), inventory)
	so := ServerOptions{Server: ts.URL, VendorKey: vendorPub, DownloadKey: key1, Client: ClientOptions{IdleTimeout: 10 * time.Second}}

	exchange := func(so ServerOptions) (ExchangeReport, error) {
		var out bytes.Buffer
		err := RunExchange(ctx, ExchangeOptions{ServerOptions: so, JSON: true}, &out, io.Discard)
		var r ExchangeReport
		if err == nil {
			if err := json.Unmarshal(out.Bytes(), &r); err != nil {
				t.Fatal(err)
			}
		}
		return r, err
	}
	r, err := exchange(so)
	if err != nil {
		t.Fatalf("exchange: %v", err)
	}
	if len(r.Packages) != 2 || r.Packages[0].ID() != "base@3.4.0" || r.Packages[1].ID() != "product@22.1.0" {
		t.Fatalf("entitled %v, want base@3.4.0 and product@22.1.0", r.Packages)
	}

	out := filepath.Join(dir, "media", "b.airlock")
	os.MkdirAll(filepath.Dir(out), 0o755)
	o := BundleOptions{ServerOptions: so, SignKey: courierKey, Out: out, Split: 256 << 10, Progress: progress.Discard}
	// The first GET of each package breaks half way: the first run fails
	// with nothing acknowledged, the rerun resumes with Range.
	cut.on.Store(true)
	if err := RunBundle(ctx, o, io.Discard, io.Discard); fault.Code(err) != fault.ExitOperational {
		t.Fatalf("bundle over broken connections: %v, want exit 1", err)
	}
	if ds, _ := s.Deliveries(ctx, "plant-3"); len(ds) != 0 {
		t.Fatalf("deliveries after a failed run: %v", ds)
	}
	if err := RunBundle(ctx, o, io.Discard, io.Discard); err != nil {
		t.Fatalf("bundle rerun: %v", err)
	}
	var total int64
	for _, p := range r.Packages {
		total += p.Size
	}
	if got := cut.served.Load(); got >= total*11/10 {
		t.Errorf("served %d bytes for %d: the rerun did not resume", got, total)
	}
	ds, err := s.Deliveries(ctx, "plant-3")
	if err != nil || len(ds) != 2 {
		t.Fatalf("deliveries %v, %v: want both packages acknowledged", ds, err)
	}
	if err := RunInspect(ctx, InspectOptions{Path: out + ".001", VendorKey: vendorPub, CourierKey: filepath.Join(dir, "courier.pub.asc")}, io.Discard, io.Discard); err == nil || !strings.Contains(err.Error(), "courier.pub.asc") {
		t.Errorf("inspect with a missing courier key file: %v", err)
	}

	// A new key gets nothing already delivered.
	so.DownloadKey, _ = writeDownloadKey(t, dir, "download2.key", site, "plant-3", now.Add(-time.Minute), inventory)
	if r, err := exchange(so); err != nil || len(r.Packages) != 0 {
		t.Errorf("second key: %v packages, %v; want none", r.Packages, err)
	}

	// A key signed by an unregistered key is an untrusted signature (exit
	// 3); a key refused for its time is policy (exit 4), with the server's
	// message.
	so.DownloadKey, _ = writeDownloadKey(t, dir, "mallory.key", other, "plant-3", now.Add(-time.Minute), inventory)
	if _, err := exchange(so); fault.Code(err) != fault.ExitVerification || !strings.Contains(err.Error(), "mallory.key") {
		t.Errorf("key signed by an unregistered key: %v (exit %d), want exit 3 naming the key file", err, fault.Code(err))
	}
	so.DownloadKey, _ = writeDownloadKey(t, dir, "future.key", site, "plant-3", now.Add(2*time.Hour), inventory)
	if _, err := exchange(so); fault.Code(err) != fault.ExitPolicy || !strings.Contains(err.Error(), "clock") {
		t.Errorf("key from the future: %v (exit %d), want exit 4 about the clock", err, fault.Code(err))
	}
}

// cutter wraps a handler: while on, the first GET of each download URL
// sends half its body and drops the connection. It counts download bytes.
type cutter struct {
	h      http.Handler
	on     atomic.Bool
	served atomic.Int64
	mu     sync.Mutex
	seen   map[string]bool
}

func (c *cutter) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet || !strings.HasPrefix(r.URL.Path, "/v1/downloads/") {
		c.h.ServeHTTP(w, r)
		return
	}
	c.mu.Lock()
	first := c.on.Load() && !c.seen[r.URL.Path]
	c.seen[r.URL.Path] = true
	c.mu.Unlock()
	cw := &cutWriter{ResponseWriter: w, served: &c.served, left: -1}
	if first {
		cw.left = 100 << 10
	}
	c.h.ServeHTTP(cw, r)
}

type cutWriter struct {
	http.ResponseWriter
	served *atomic.Int64
	left   int64 // bytes to send before the cut; -1: no cut
}

func (w *cutWriter) Write(p []byte) (int, error) {
	if w.left >= 0 && int64(len(p)) >= w.left {
		n, _ := w.ResponseWriter.Write(p[:w.left])
		w.served.Add(int64(n))
		http.NewResponseController(w.ResponseWriter).Flush()
		panic(http.ErrAbortHandler)
	}
	if w.left >= 0 {
		w.left -= int64(len(p))
	}
	n, err := w.ResponseWriter.Write(p)
	w.served.Add(int64(n))
	return n, err
}

func (w *cutWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }
