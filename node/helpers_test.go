package node

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ProtonMail/go-crypto/openpgp/armor"
	"github.com/klauspost/compress/zstd"

	"github.com/airlock-project/airlock/catalog"
	"github.com/airlock-project/airlock/keys"
)

// vendor is a test vendor: a signing key and its public key file.
type vendor struct {
	key     *keys.PrivateKey
	pubFile string
}

func newVendor(t testing.TB, name string) *vendor {
	t.Helper()
	k, err := keys.Generate(keys.GenerateOptions{Name: name, Now: time.Now().Add(-30 * 24 * time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	pub := filepath.Join(t.TempDir(), "vendor.pub.asc")
	if err := keys.WritePublicFile(pub, k.Public()); err != nil {
		t.Fatal(err)
	}
	return &vendor{key: k, pubFile: pub}
}

// entitlement returns an armored entitlement listing pkgs, issued ten days
// ago and expired seven days ago: the node must not care.
func (v *vendor) entitlement(t testing.TB, pkgs ...catalog.Package) []byte {
	t.Helper()
	id, err := catalog.NewKeyID()
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	e := catalog.Entitlement{Format: catalog.EntitlementFormat, Site: "plant-3", KeyID: id,
		Issued: now.Add(-10 * 24 * time.Hour), Expires: now.Add(-7 * 24 * time.Hour), Packages: pkgs}
	b, err := e.Encode()
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	if err := v.key.SignMessage(&out, b); err != nil {
		t.Fatal(err)
	}
	return out.Bytes()
}

// tamper changes the signed payload of an armored message without breaking
// its framing, so that only the signature check can notice.
func tamper(t testing.TB, armored []byte) []byte {
	t.Helper()
	blk, err := armor.Decode(bytes.NewReader(armored))
	if err != nil {
		t.Fatal(err)
	}
	raw, err := io.ReadAll(blk.Body)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(raw, []byte("plant-3")) {
		t.Fatal("payload not found in the signed message")
	}
	raw = bytes.Replace(raw, []byte("plant-3"), []byte("plant-4"), 1)
	var out bytes.Buffer
	w, err := armor.Encode(&out, blk.Type, nil)
	if err != nil {
		t.Fatal(err)
	}
	w.Write(raw)
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return out.Bytes()
}

// pkg returns the metadata of data as package name@version.
func pkg(t testing.TB, name, version string, data []byte, requires ...string) catalog.Package {
	t.Helper()
	p := catalog.Package{Name: name, Kind: catalog.KindProduct, Version: catalog.MustVersion(version),
		SHA256: catalog.Digest(sha256.Sum256(data)), Size: int64(len(data))}
	if name == "base" {
		p.Kind = catalog.KindBase
	}
	for _, r := range requires {
		c, err := catalog.ParseConstraint(r)
		if err != nil {
			t.Fatal(err)
		}
		p.Requires = append(p.Requires, c)
	}
	return p
}

// member is one entry of a test archive.
type member struct {
	name string
	typ  byte
	body string
	link string
	size int64 // declared size if body is empty and size > 0
	mode int64
}

// tarBytes builds a tar archive. A member with size > len(body) declares
// more than it holds: the archive ends there, truncated.
func tarBytes(t testing.TB, ms ...member) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, m := range ms {
		typ := m.typ
		if typ == 0 {
			typ = tar.TypeReg
		}
		mode := m.mode
		if mode == 0 {
			mode = 0o644
		}
		h := &tar.Header{Name: m.name, Typeflag: typ, Linkname: m.link, Mode: mode, Format: tar.FormatPAX}
		if typ == tar.TypeXGlobalHeader {
			h = &tar.Header{Name: m.name, Typeflag: typ, PAXRecords: map[string]string{"comment": "global"}, Format: tar.FormatPAX}
		}
		if typ == tar.TypeReg {
			h.Size = int64(len(m.body))
			if m.size > h.Size {
				h.Size = m.size
			}
		}
		if typ == tar.TypeChar || typ == tar.TypeBlock {
			h.Devmajor, h.Devminor = 1, 3
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if m.body != "" {
			if _, err := tw.Write([]byte(m.body)); err != nil {
				t.Fatal(err)
			}
		}
		if m.size > int64(len(m.body)) {
			tw.Flush() // writes nothing more: the archive is cut here
			return buf.Bytes()
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func zstdBytes(t testing.TB, b []byte) []byte {
	t.Helper()
	enc, err := zstd.NewWriter(nil, zstd.WithEncoderConcurrency(1))
	if err != nil {
		t.Fatal(err)
	}
	defer enc.Close()
	return enc.EncodeAll(b, nil)
}

// testNode is an initialised, trusting, serving node.
type testNode struct {
	t      testing.TB
	dir    string
	agent  *Agent
	srv    *httptest.Server
	client *http.Client
	token  string
	vendor *vendor
	logs   *syncBuffer
}

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

// initNode creates a node directory trusting v, with the given installed
// versions ("name=version").
func initNode(t testing.TB, v *vendor, installed ...string) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "node")
	inst := map[string]catalog.Version{}
	for _, s := range installed {
		n, ver, err := ParseInstalled(s)
		if err != nil {
			t.Fatal(err)
		}
		inst[n] = ver
	}
	ctx := context.Background()
	if err := RunInit(ctx, InitOptions{Dir: dir, Name: "n1", Role: RolePrimary, Region: "eu", Installed: inst}, io.Discard, io.Discard); err != nil {
		t.Fatal(err)
	}
	if err := RunTrust(ctx, TrustOptions{Dir: dir, KeyFile: v.pubFile}, io.Discard, io.Discard); err != nil {
		t.Fatal(err)
	}
	return dir
}

// startNode opens dir and serves it over TLS with its own certificate,
// with the install worker running, until the test ends.
func startNode(t testing.TB, dir string, v *vendor, opts Options) *testNode {
	t.Helper()
	logs := &syncBuffer{}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	a, err := Open(dir, opts)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := tls.LoadX509KeyPair(certPath(dir), keyPath(dir))
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewUnstartedServer(a.Handler())
	srv.TLS = &tls.Config{MinVersion: tls.VersionTLS13, Certificates: []tls.Certificate{cert}}
	srv.StartTLS()
	leaf, err := x509.ParseCertificate(cert.Certificate[0])
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(leaf)
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS13}}}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { a.Run(ctx); close(done) }()
	tok, err := os.ReadFile(tokenPath(dir))
	if err != nil {
		t.Fatal(err)
	}
	n := &testNode{t: t, dir: dir, agent: a, srv: srv, client: client, token: strings.TrimSpace(string(tok)), vendor: v, logs: logs}
	t.Cleanup(func() {
		srv.Close()
		cancel()
		<-done
		a.Close()
	})
	return n
}

// newNode is initNode + startNode with a fresh vendor.
func newNode(t testing.TB, opts Options, installed ...string) *testNode {
	t.Helper()
	v := newVendor(t, "Acme Vendor")
	return startNode(t, initNode(t, v, installed...), v, opts)
}

// do sends a request with the node's token and returns the answer and body.
func (n *testNode) do(method, path string, body io.Reader, hdr ...string) (*http.Response, []byte) {
	n.t.Helper()
	return n.doAuth("Bearer "+n.token, method, path, body, hdr...)
}

func (n *testNode) doAuth(auth, method, path string, body io.Reader, hdr ...string) (*http.Response, []byte) {
	n.t.Helper()
	req, err := http.NewRequest(method, n.srv.URL+path, body)
	if err != nil {
		n.t.Fatal(err)
	}
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := n.client.Do(req)
	if err != nil {
		n.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		n.t.Fatal(err)
	}
	return resp, b
}

// wantStatus fails the test unless resp has status code (and, for errors,
// the API error code).
func wantStatus(t testing.TB, what string, resp *http.Response, body []byte, status int, code string) APIError {
	t.Helper()
	if resp.StatusCode != status {
		t.Fatalf("%s: status %d, want %d; body %s", what, resp.StatusCode, status, body)
	}
	var e APIError
	if code != "" {
		if err := json.Unmarshal(body, &e); err != nil {
			t.Fatalf("%s: error body %q: %v", what, body, err)
		}
		if e.Code != code {
			t.Fatalf("%s: code %q, want %q; error %q", what, e.Code, code, e.Error)
		}
		if e.Error == "" {
			t.Fatalf("%s: empty error message", what)
		}
	}
	return e
}

func decode[T any](t testing.TB, body []byte) T {
	t.Helper()
	var v T
	if err := json.Unmarshal(body, &v); err != nil {
		t.Fatalf("decode %s: %v", body, err)
	}
	return v
}

// putEntitlement uploads the entitlement for p.
func (n *testNode) putEntitlement(p catalog.Package, ent []byte) (*http.Response, []byte) {
	n.t.Helper()
	return n.do("PUT", "/v1/staged/"+p.SHA256.String()+"/entitlement", bytes.NewReader(ent))
}

// stage uploads p (with a fresh entitlement listing it) and its data, and
// checks that it is complete.
func (n *testNode) stage(p catalog.Package, data []byte) {
	n.t.Helper()
	resp, body := n.putEntitlement(p, n.vendor.entitlement(n.t, p))
	wantStatus(n.t, "put entitlement "+p.ID(), resp, body, http.StatusOK, "")
	resp, body = n.do("PUT", "/v1/staged/"+p.SHA256.String(), bytes.NewReader(data), HeaderOffset, "0")
	wantStatus(n.t, "put data "+p.ID(), resp, body, http.StatusOK, "")
	if sp := decode[StagedPackage](n.t, body); !sp.Complete || sp.Offset != p.Size {
		n.t.Fatalf("stage %s: %+v, want complete", p.ID(), sp)
	}
}

// submit posts an install of d and returns the answer.
func (n *testNode) submit(d catalog.Digest) (*http.Response, []byte) {
	n.t.Helper()
	return n.do("POST", "/v1/install", strings.NewReader(`{"sha256":"`+d.String()+`"}`))
}

// waitJob polls the job until it is final, with a deadline.
func (n *testNode) waitJob(id string) Job {
	n.t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		resp, body := n.do("GET", "/v1/jobs/"+id, nil)
		wantStatus(n.t, "get job", resp, body, http.StatusOK, "")
		j := decode[Job](n.t, body)
		if !j.active() {
			return j
		}
		if time.Now().After(deadline) {
			n.t.Fatalf("job %s still %s after 20s", id, j.State)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// install stages nothing: it submits d, waits, and returns the final job.
func (n *testNode) install(d catalog.Digest) Job {
	n.t.Helper()
	resp, body := n.submit(d)
	wantStatus(n.t, "install", resp, body, http.StatusAccepted, "")
	j := decode[Job](n.t, body)
	if resp.Header.Get("Location") != "/v1/jobs/"+j.ID {
		n.t.Errorf("Location %q, want /v1/jobs/%s", resp.Header.Get("Location"), j.ID)
	}
	return n.waitJob(j.ID)
}

func (n *testNode) status() Status {
	n.t.Helper()
	resp, body := n.do("GET", "/v1/status", nil)
	wantStatus(n.t, "status", resp, body, http.StatusOK, "")
	return decode[Status](n.t, body)
}

// current returns the target of releases/<name>/current, "" if none.
func (n *testNode) current(name string) string {
	n.t.Helper()
	t, err := readCurrent(filepath.Join(n.dir, "releases", name))
	if err != nil {
		n.t.Fatal(err)
	}
	return t
}

// releases lists releases/<name>/, temporary entries included.
func (n *testNode) releases(name string) []string {
	n.t.Helper()
	ents, err := os.ReadDir(filepath.Join(n.dir, "releases", name))
	if err != nil && !os.IsNotExist(err) {
		n.t.Fatal(err)
	}
	var out []string
	for _, e := range ents {
		out = append(out, e.Name())
	}
	return out
}

// installed returns the installed version of name in state.json on disk.
func installedOnDisk(t testing.TB, dir, name string) string {
	t.Helper()
	st, err := loadState(dir)
	if err != nil {
		t.Fatal(err)
	}
	v, ok := st.Installed[name]
	if !ok {
		return ""
	}
	return v.String()
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }

var _ = fmt.Sprintf
