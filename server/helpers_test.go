package server

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"io"
	"log/slog"
	"maps"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/airlock-project/airlock/catalog"
	"github.com/airlock-project/airlock/keys"
	"github.com/airlock-project/airlock/verify"
)

// fixture is a store with the catalog of shared/contract-test.sh, site
// plant-3 registered, and the handler behind an httptest server.
type fixture struct {
	t      testing.TB
	dir    string
	srv    *Server
	http   *httptest.Server
	site   *keys.PrivateKey // plant-3's key
	files  map[string][]byte
	pkgs   map[string]catalog.Package // by name@version
	vendor *keys.TrustStore           // trusts the vendor key, to verify entitlements
	logs   *syncBuffer
}

// syncBuffer is a bytes.Buffer safe for the logger's concurrent writes.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// contractPackages are the packages of the contract test: name@version,
// kind, requires.
var contractPackages = []struct {
	id       string
	kind     catalog.Kind
	requires []string
}{
	{"base@3.4.0", catalog.KindBase, []string{"base >= 3.3.2"}},
	{"product@22.1.0", catalog.KindProduct, []string{"base >= 3.4.0", "product >= 21.1.0"}},
	{"product@23.1.0", catalog.KindProduct, []string{"product >= 22.1.0"}},
	{"license@1.1.0", catalog.KindLicense, []string{"product >= 23.1.0"}},
}

// contractNodes is the inventory of the contract test's three nodes.
var contractNodes = []catalog.NodeInventory{
	{Name: "n1", Installed: map[string]catalog.Version{"base": catalog.MustVersion("3.3.2"), "product": catalog.MustVersion("21.1.0")}},
	{Name: "n2", Installed: map[string]catalog.Version{"base": catalog.MustVersion("3.3.2"), "product": catalog.MustVersion("21.1.0")}},
	{Name: "n3", Installed: map[string]catalog.Version{"base": catalog.MustVersion("3.3.2"), "product": catalog.MustVersion("21.1.0")}},
}

func newFixture(t testing.TB, size int) *fixture {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "v")
	if _, err := Init(dir, "Test Vendor", time.Now().Add(-24*time.Hour)); err != nil {
		t.Fatal(err)
	}
	logs := &syncBuffer{}
	srv, err := Open(Config{Dir: dir, Logger: slog.New(slog.NewJSONHandler(logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	f := &fixture{t: t, dir: dir, srv: srv, files: map[string][]byte{}, pkgs: map[string]catalog.Package{}, logs: logs}
	t.Cleanup(func() { srv.Close() })
	for _, p := range contractPackages {
		f.publish(p.id, p.kind, size, p.requires...)
	}
	f.site = newKey(t, "plant-3")
	if _, err := srv.AddSite(context.Background(), "plant-3", f.site.Public().Armored()); err != nil {
		t.Fatal(err)
	}
	f.vendor = keys.NewTrustStore()
	if err := f.vendor.Add(keys.RoleVendor, srv.VendorKey()); err != nil {
		t.Fatal(err)
	}
	f.http = httptest.NewServer(srv.Handler())
	t.Cleanup(f.http.Close)
	return f
}

// publish adds a package of random content.
func (f *fixture) publish(id string, kind catalog.Kind, size int, requires ...string) catalog.Package {
	f.t.Helper()
	name, ver, _ := strings.Cut(id, "@")
	data := make([]byte, size)
	rand.Read(data)
	path := filepath.Join(f.t.TempDir(), id)
	if err := os.WriteFile(path, data, 0o644); err != nil {
		f.t.Fatal(err)
	}
	req := PublishRequest{Name: name, Kind: kind, Version: catalog.MustVersion(ver), File: path}
	for _, r := range requires {
		c, err := catalog.ParseConstraint(r)
		if err != nil {
			f.t.Fatal(err)
		}
		req.Requires = append(req.Requires, c)
	}
	res, err := f.srv.Publish(context.Background(), req, nil)
	if err != nil {
		f.t.Fatal(err)
	}
	f.files[res.Package.SHA256.String()] = data
	f.pkgs[id] = res.Package
	return res.Package
}

// newKey makes an Ed25519 key created a day ago.
func newKey(t testing.TB, name string) *keys.PrivateKey {
	t.Helper()
	k, err := keys.Generate(keys.GenerateOptions{Name: name, Now: time.Now().Add(-24 * time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// keySpec describes a download key to make.
type keySpec struct {
	site            string
	nodes           []catalog.NodeInventory
	issued, expires time.Time
	signedAt        time.Time // zero: now
	id              catalog.KeyID
}

// downloadKey signs a download key with k.
func downloadKey(t testing.TB, k *keys.PrivateKey, s keySpec) (catalog.KeyID, []byte) {
	t.Helper()
	now := time.Now()
	if s.site == "" {
		s.site = "plant-3"
	}
	if s.nodes == nil {
		s.nodes = contractNodes
	}
	if s.issued.IsZero() {
		s.issued = now.Add(-time.Minute)
	}
	if s.expires.IsZero() {
		s.expires = now.Add(72 * time.Hour)
	}
	if s.id == "" {
		id, err := catalog.NewKeyID()
		if err != nil {
			t.Fatal(err)
		}
		s.id = id
	}
	payload, err := catalog.DownloadKey{Format: catalog.DownloadKeyFormat, Site: s.site, ID: s.id, Issued: s.issued, Expires: s.expires, Nodes: s.nodes}.Encode()
	if err != nil {
		t.Fatal(err)
	}
	if !s.signedAt.IsZero() {
		at := s.signedAt
		k = k.WithClock(func() time.Time { return at })
	}
	var buf bytes.Buffer
	if err := k.SignMessage(&buf, payload); err != nil {
		t.Fatal(err)
	}
	return s.id, buf.Bytes()
}

// response is a decoded HTTP response.
type response struct {
	status int
	header http.Header
	body   []byte
}

func (r response) errorResponse(t testing.TB) ErrorResponse {
	t.Helper()
	var e ErrorResponse
	if err := json.Unmarshal(r.body, &e); err != nil {
		t.Fatalf("status %d, body %q is not an error response: %v", r.status, r.body, err)
	}
	if e.Error == "" || e.Reason == "" {
		t.Fatalf("status %d: incomplete error response %s", r.status, r.body)
	}
	return e
}

func do(t testing.TB, c *http.Client, method, url string, body []byte, header ...string) response {
	t.Helper()
	req, err := http.NewRequest(method, url, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if body == nil {
		req.Body = nil
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	res, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatal(err)
	}
	return response{status: res.StatusCode, header: res.Header, body: b}
}

func (f *fixture) exchange(t testing.TB, key []byte) (response, ExchangeResponse) {
	t.Helper()
	r := do(t, f.http.Client(), http.MethodPost, f.http.URL+"/v1/exchange", key, "Content-Type", "application/pgp-signature")
	var er ExchangeResponse
	if r.status == http.StatusOK {
		if err := json.Unmarshal(r.body, &er); err != nil {
			t.Fatalf("exchange response %s: %v", r.body, err)
		}
	}
	return r, er
}

// entitlement verifies an exchange response's entitlement as a fetch
// client would.
func (f *fixture) entitlement(t testing.TB, er ExchangeResponse) *verify.Entitlement {
	t.Helper()
	e, err := verify.VerifyEntitlement([]byte(er.Entitlement), f.vendor, verify.Policy{Site: "plant-3"})
	if err != nil {
		t.Fatalf("entitlement does not verify: %v", err)
	}
	return e
}

func ackBody(d string) []byte { return []byte(`{"sha256":"` + d + `"}`) }

func (f *fixture) ack(t testing.TB, url, digest string) (response, AckResponse) {
	t.Helper()
	r := do(t, f.http.Client(), http.MethodPost, f.http.URL+url+"/ack", ackBody(digest))
	var ar AckResponse
	if r.status == http.StatusOK {
		if err := json.Unmarshal(r.body, &ar); err != nil {
			t.Fatal(err)
		}
	}
	return r, ar
}

// snapshot returns every key and value of the database, by bucket.
func snapshot(t testing.TB, s *Server) map[string]map[string]string {
	t.Helper()
	out := map[string]map[string]string{}
	err := s.db.View(func(tx *bolt.Tx) error {
		return tx.ForEach(func(name []byte, b *bolt.Bucket) error {
			m := map[string]string{}
			out[string(name)] = m
			return b.ForEach(func(k, v []byte) error {
				m[string(k)] = string(v)
				return nil
			})
		})
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func sameSnapshot(a, b map[string]map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, m := range a {
		if !maps.Equal(m, b[k]) {
			return false
		}
	}
	return true
}
