package fetch

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"encoding/json"
	"fmt"
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
	"github.com/airlock-project/airlock/keys"
	"github.com/airlock-project/airlock/progress"
)

// fakePkg is a package the fake vendor serves.
type fakePkg struct {
	meta catalog.Package
	data []byte
}

// fakeVendor implements the vendor protocol (DESIGN.md, the exchange,
// download and ack endpoints) over a fixed entitlement, with knobs for
// hostile behaviour. It counts what it serves and what it is told.
type fakeVendor struct {
	t        testing.TB
	keyBytes []byte // the download key it accepts
	ent      []byte // the armored entitlement it answers with
	pkgs     []fakePkg
	keyID    catalog.KeyID

	// Hooks, set before the first request.
	// exchange, if set, answers the exchange instead.
	exchange func(w http.ResponseWriter, r *http.Request) bool
	// download, if set, may answer a GET instead (returns true if it did);
	// attempt counts the GETs of that package, from 1.
	download func(w http.ResponseWriter, r *http.Request, p fakePkg, attempt int) bool
	// onAck runs for every ack before it is recorded.
	onAck func(d catalog.Digest)
	// downloads, if set, replaces the download list of the exchange answer.
	downloads func([]download) []download

	served   atomic.Int64 // body bytes written for downloads
	active   atomic.Int32 // downloads in progress
	peak     atomic.Int32 // most downloads at once
	mu       sync.Mutex
	attempts map[catalog.Digest]int
	acks     []catalog.Digest
}

func (f *fakeVendor) ackCount() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.acks)
}

func (f *fakeVendor) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Cache-Control", "no-store")
	switch {
	case r.URL.Path == "/v1/exchange" && r.Method == http.MethodPost:
		f.serveExchange(w, r)
	case strings.HasPrefix(r.URL.Path, "/v1/downloads/"):
		rest := strings.TrimPrefix(r.URL.Path, "/v1/downloads/"+string(f.keyID)+"/")
		hexd, ack := strings.CutSuffix(rest, "/ack")
		var p *fakePkg
		for i := range f.pkgs {
			if f.pkgs[i].meta.SHA256.String() == hexd {
				p = &f.pkgs[i]
			}
		}
		if p == nil {
			protoError(w, http.StatusNotFound, "not-entitled", "no such package for this key")
			return
		}
		if ack && r.Method == http.MethodPost {
			f.serveAck(w, r, *p)
			return
		}
		if !ack && (r.Method == http.MethodGet || r.Method == http.MethodHead) {
			f.serveDownload(w, r, *p)
			return
		}
		protoError(w, http.StatusMethodNotAllowed, "malformed", "method not allowed")
	default:
		protoError(w, http.StatusNotFound, "malformed", "no such endpoint")
	}
}

func protoError(w http.ResponseWriter, status int, reason, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(map[string]string{"error": msg, "reason": reason})
}

func (f *fakeVendor) serveExchange(w http.ResponseWriter, r *http.Request) {
	if f.exchange != nil && f.exchange(w, r) {
		return
	}
	body, _ := io.ReadAll(io.LimitReader(r.Body, 256<<10))
	if !bytes.Equal(body, f.keyBytes) {
		protoError(w, http.StatusForbidden, "bad-signature", "the download key's signature does not verify")
		return
	}
	var ds []download
	for _, p := range f.pkgs {
		ds = append(ds, download{SHA256: p.meta.SHA256, Size: p.meta.Size, URL: "/v1/downloads/" + string(f.keyID) + "/" + p.meta.SHA256.String()})
	}
	if ds == nil {
		ds = []download{}
	}
	if f.downloads != nil {
		ds = f.downloads(ds)
	}
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(map[string]any{"entitlement": string(f.ent), "downloads": ds})
}

func (f *fakeVendor) serveDownload(w http.ResponseWriter, r *http.Request, p fakePkg) {
	n := f.active.Add(1)
	defer f.active.Add(-1)
	for {
		peak := f.peak.Load()
		if n <= peak || f.peak.CompareAndSwap(peak, n) {
			break
		}
	}
	f.mu.Lock()
	if f.attempts == nil {
		f.attempts = map[catalog.Digest]int{}
	}
	f.attempts[p.meta.SHA256]++
	attempt := f.attempts[p.meta.SHA256]
	f.mu.Unlock()
	cw := &countingWriter{ResponseWriter: w, n: &f.served}
	if f.download != nil && f.download(cw, r, p, attempt) {
		return
	}
	cw.Header().Set("ETag", `"`+p.meta.SHA256.String()+`"`)
	http.ServeContent(cw, r, "", time.Time{}, bytes.NewReader(p.data))
}

func (f *fakeVendor) serveAck(w http.ResponseWriter, r *http.Request, p fakePkg) {
	var body struct {
		SHA256 string `json:"sha256"`
	}
	if err := json.NewDecoder(io.LimitReader(r.Body, 4096)).Decode(&body); err != nil || body.SHA256 != p.meta.SHA256.String() {
		protoError(w, http.StatusBadRequest, "malformed", "ack body must name the package's sha256")
		return
	}
	if f.onAck != nil {
		f.onAck(p.meta.SHA256)
	}
	f.mu.Lock()
	first := true
	for _, d := range f.acks {
		if d == p.meta.SHA256 {
			first = false
		}
	}
	if first {
		f.acks = append(f.acks, p.meta.SHA256)
	}
	f.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(map[string]bool{"acknowledged": true, "first": first})
}

// countingWriter counts body bytes and keeps http.ResponseController
// working.
type countingWriter struct {
	http.ResponseWriter
	n *atomic.Int64
}

func (c *countingWriter) Write(p []byte) (int, error) {
	n, err := c.ResponseWriter.Write(p)
	c.n.Add(int64(n))
	return n, err
}

func (c *countingWriter) Unwrap() http.ResponseWriter { return c.ResponseWriter }

// fixture is a vendor, a site, a courier, a download key and a fake server,
// all in a temporary directory.
type fixture struct {
	t       testing.TB
	dir     string
	vendor  *keys.PrivateKey
	site    string
	key     catalog.DownloadKey
	fv      *fakeVendor
	srv     *httptest.Server
	paths   struct{ vendorPub, courierKey, courierPub, downloadKey string }
	courier *keys.PrivateKey
}

var (
	keyOnce  sync.Once
	keyCache struct{ vendor, site, courier, other *keys.PrivateKey }
)

// testKeys returns keys made once per test binary (generation is cheap,
// but there is no reason to repeat it).
func testKeys(t testing.TB) (vendor, site, courier, other *keys.PrivateKey) {
	keyOnce.Do(func() {
		gen := func(name string) *keys.PrivateKey {
			k, err := keys.Generate(keys.GenerateOptions{Name: name, Now: time.Now().Add(-time.Hour)})
			if err != nil {
				t.Fatal(err)
			}
			return k
		}
		keyCache.vendor, keyCache.site, keyCache.courier, keyCache.other = gen("Acme Vendor"), gen("plant-3 site"), gen("Jane Courier"), gen("Mallory")
	})
	return keyCache.vendor, keyCache.site, keyCache.courier, keyCache.other
}

// newFixture serves packages of the given sizes (random data).
func newFixture(t testing.TB, sizes ...int) *fixture {
	t.Helper()
	vendor, site, courier, _ := testKeys(t)
	fx := &fixture{t: t, dir: t.TempDir(), vendor: vendor, site: "plant-3", courier: courier}
	id, err := catalog.NewKeyID()
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now().UTC().Truncate(time.Second)
	fx.key = catalog.DownloadKey{Format: catalog.DownloadKeyFormat, Site: fx.site, ID: id, Issued: now.Add(-time.Minute), Expires: now.Add(72 * time.Hour),
		Nodes: []catalog.NodeInventory{{Name: "node-a", Installed: map[string]catalog.Version{"base": mustVersion(t, "3.3.2")}}}}
	payload, err := fx.key.Encode()
	if err != nil {
		t.Fatal(err)
	}
	var keyMsg bytes.Buffer
	if err := site.SignMessage(&keyMsg, payload); err != nil {
		t.Fatal(err)
	}
	var pkgs []fakePkg
	for i, size := range sizes {
		data := make([]byte, size)
		rand.Read(data)
		kind, name := catalog.KindBase, "base"
		if i > 0 {
			kind, name = catalog.KindProduct, "product"
		}
		pkgs = append(pkgs, fakePkg{data: data, meta: catalog.Package{
			Name: name, Kind: kind, Version: mustVersion(t, fmt.Sprintf("3.%d.0", 4+i)),
			SHA256: catalog.Digest(sha256.Sum256(data)), Size: int64(size), Requires: []catalog.Constraint{},
		}})
	}
	fx.fv = &fakeVendor{t: t, keyBytes: keyMsg.Bytes(), pkgs: pkgs, keyID: id}
	fx.fv.ent = fx.signEntitlement(vendor, func(*catalog.Entitlement) {})
	fx.srv = httptest.NewServer(fx.fv)
	t.Cleanup(fx.srv.Close)

	fx.paths.vendorPub = fx.write("vendor.pub.asc", vendor.Public().Armored())
	fx.paths.courierPub = fx.write("courier.pub.asc", courier.Public().Armored())
	fx.paths.downloadKey = fx.write("download.key", keyMsg.Bytes())
	fx.paths.courierKey = filepath.Join(fx.dir, "courier.key")
	if err := keys.WritePrivateFile(fx.paths.courierKey, courier, nil); err != nil {
		t.Fatal(err)
	}
	return fx
}

// signEntitlement returns the armored entitlement for the fixture's key and
// packages, changed by edit, signed by signer.
func (fx *fixture) signEntitlement(signer *keys.PrivateKey, edit func(*catalog.Entitlement)) []byte {
	fx.t.Helper()
	e := catalog.Entitlement{Format: catalog.EntitlementFormat, Site: fx.key.Site, KeyID: fx.key.ID, Issued: fx.key.Issued, Expires: fx.key.Expires, Packages: []catalog.Package{}}
	for _, p := range fx.fv.pkgs {
		e.Packages = append(e.Packages, p.meta)
	}
	edit(&e)
	b, err := e.Encode()
	if err != nil {
		fx.t.Fatal(err)
	}
	var msg bytes.Buffer
	if err := signer.SignMessage(&msg, b); err != nil {
		fx.t.Fatal(err)
	}
	return msg.Bytes()
}

func (fx *fixture) write(name string, b []byte) string {
	p := filepath.Join(fx.dir, name)
	if err := os.WriteFile(p, b, 0o644); err != nil {
		fx.t.Fatal(err)
	}
	return p
}

func (fx *fixture) serverOptions() ServerOptions {
	return ServerOptions{Server: fx.srv.URL, VendorKey: fx.paths.vendorPub, DownloadKey: fx.paths.downloadKey,
		Client: ClientOptions{IdleTimeout: 10 * time.Second}}
}

// bundleOptions writes to DIR/media/NAME.
func (fx *fixture) bundleOptions(name string) BundleOptions {
	media := filepath.Join(fx.dir, "media")
	os.MkdirAll(media, 0o755)
	return BundleOptions{ServerOptions: fx.serverOptions(), SignKey: fx.paths.courierKey, Out: filepath.Join(media, name),
		RetryDelay: time.Millisecond, Progress: progress.Discard}
}

func (fx *fixture) totalSize() int64 {
	var n int64
	for _, p := range fx.fv.pkgs {
		n += p.meta.Size
	}
	return n
}

func mustVersion(t testing.TB, s string) catalog.Version {
	v, err := catalog.ParseVersion(s)
	if err != nil {
		t.Fatal(err)
	}
	return v
}
