package server

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"errors"
	"io"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/airlock-project/airlock/catalog"
	"github.com/airlock-project/airlock/fault"
)

// serving runs s.Serve in the background and returns its base URL and a
// function that stops it and returns Serve's error.
func serving(t *testing.T, s *Server, opts ServeOptions) (string, func() error) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	ready := make(chan string, 1)
	opts.Ready = func(base string) { ready <- base }
	if opts.Listen == "" {
		opts.Listen = "127.0.0.1:0"
	}
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx, opts) }()
	select {
	case base := <-ready:
		stopped := false
		stop := func() error {
			if stopped {
				return nil
			}
			stopped = true
			cancel()
			return <-done
		}
		t.Cleanup(func() { stop() })
		return base, stop
	case err := <-done:
		cancel()
		t.Fatalf("Serve: %v", err)
	case <-time.After(20 * time.Second):
		cancel()
		t.Fatal("Serve did not become ready")
	}
	return "", nil
}

// TestAdminWhileServing runs every admin command against a running
// server: through the admin socket, without a restart or a lock error, and
// with effect on the next exchange.
func TestAdminWhileServing(t *testing.T) {
	ctx := context.Background()
	dir := filepath.Join(t.TempDir(), "v")
	if _, err := Init(dir, "", time.Now().Add(-time.Hour)); err != nil {
		t.Fatal(err)
	}
	s, err := Open(Config{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	base, stop := serving(t, s, ServeOptions{})
	fi, err := os.Stat(filepath.Join(dir, AdminSocket))
	if err != nil || fi.Mode().Perm() != 0o600 || fi.Mode()&os.ModeSocket == 0 {
		t.Fatalf("admin socket: %v %v", fi, err)
	}
	if _, err := Open(Config{Dir: dir, LockTimeout: 50 * time.Millisecond}); !errors.Is(err, ErrInUse) {
		t.Errorf("direct open while serving: %v", err)
	}

	start := time.Now()
	a, err := Connect(ctx, Config{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	if _, remote := a.(*adminClient); !remote {
		t.Fatalf("Connect while serving returned %T, want the admin socket client", a)
	}
	if d := time.Since(start); d > 900*time.Millisecond {
		t.Errorf("Connect took %s: it waited for the lock", d)
	}

	site := newKey(t, "plant-3")
	if got, err := a.AddSite(ctx, "plant-3", site.Public().Armored()); err != nil || got.Fingerprint != site.Fingerprint() {
		t.Fatalf("site add: %+v %v", got, err)
	}
	// Publish from a relative path: the client makes it absolute.
	wd, _ := os.Getwd()
	rel, _ := filepath.Rel(wd, filepath.Join(t.TempDir(), "base.tar"))
	data := bytes.Repeat([]byte("base 3.4.0\n"), 1000)
	writeFile(t, rel, data)
	res, err := a.Publish(ctx, PublishRequest{Name: "base", Kind: catalog.KindBase, Version: catalog.MustVersion("3.4.0"), File: rel}, nil)
	if err != nil || !res.Added || res.Package.Size != int64(len(data)) {
		t.Fatalf("publish: %+v %v", res, err)
	}
	ps, err := a.Catalog(ctx)
	if err != nil || len(ps) != 1 || ps[0].SHA256 != res.Package.SHA256 {
		t.Fatalf("catalog: %v %v", ps, err)
	}

	// The running server uses the new site and package at once.
	c := manyConnClient()
	_, key := downloadKey(t, site, keySpec{nodes: []catalog.NodeInventory{{Name: "n1", Installed: map[string]catalog.Version{"base": catalog.MustVersion("3.3.2")}}}})
	_, downloads := exchangeAt(t, c, base, key)
	if len(downloads) != 1 || downloads[0].SHA256 != res.Package.SHA256 {
		t.Fatalf("exchange after publish: %+v", downloads)
	}
	if first, err := ackAt(c, base, downloads[0]); err != nil || !first {
		t.Fatal(first, err)
	}
	if d, err := a.Reissue(ctx, "plant-3", "base@3.4.0"); err != nil || d.SHA256 != res.Package.SHA256 {
		t.Fatalf("reissue: %+v %v", d, err)
	}

	// Errors keep their class across the socket.
	other := t.TempDir() + "/other"
	writeFile(t, other, []byte("other"))
	for _, tc := range []struct {
		name  string
		err   error
		class error
	}{
		{"conflicting publish", func() error {
			_, err := a.Publish(ctx, PublishRequest{Name: "base", Kind: catalog.KindBase, Version: catalog.MustVersion("3.4.0"), File: other}, nil)
			return err
		}(), fault.ErrPolicy},
		{"reissue to unknown site", func() error { _, err := a.Reissue(ctx, "nowhere", "base@3.4.0"); return err }(), fault.ErrUsage},
		{"bad site key", func() error { _, err := a.AddSite(ctx, "plant-4", []byte("junk")); return err }(), fault.ErrVerification},
		{"missing file", func() error {
			_, err := a.Publish(ctx, PublishRequest{Name: "x", Kind: catalog.KindBase, Version: catalog.MustVersion("1"), File: "/nonexistent"}, nil)
			return err
		}(), nil},
	} {
		if tc.err == nil {
			t.Errorf("%s: no error", tc.name)
			continue
		}
		if tc.class == nil && fault.Code(tc.err) != fault.ExitOperational || tc.class != nil && !errors.Is(tc.err, tc.class) {
			t.Errorf("%s: %v (exit %d), want class %v", tc.name, tc.err, fault.Code(tc.err), tc.class)
		}
	}

	// Graceful stop: Serve returns nil, the socket is gone, and once the
	// store is closed, Connect opens it directly.
	if err := stop(); err != nil {
		t.Errorf("Serve after cancel: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, AdminSocket)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("socket after stop: %v", err)
	}
	s.Close()
	a2, err := Connect(ctx, Config{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	defer a2.Close()
	if _, local := a2.(*Server); !local {
		t.Errorf("Connect without a server returned %T", a2)
	}
	if ps, _ := a2.Catalog(ctx); len(ps) != 1 {
		t.Errorf("catalog after stop: %v", ps)
	}
}

// TestStaleSocket: a socket file left by a killed server neither fools
// Connect nor stops the next serve.
func TestStaleSocket(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "v")
	if _, err := Init(dir, "", time.Time{}); err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("unix", filepath.Join(dir, AdminSocket))
	if err != nil {
		t.Fatal(err)
	}
	ln.(*net.UnixListener).SetUnlinkOnClose(false)
	ln.Close() // the file stays, nobody listens
	a, err := Connect(context.Background(), Config{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	s, ok := a.(*Server)
	if !ok {
		t.Fatalf("Connect returned %T", a)
	}
	_, stop := serving(t, s, ServeOptions{})
	if c := dialAdmin(context.Background(), dir); c == nil {
		t.Error("the new server does not answer on its socket")
	}
	if err := stop(); err != nil {
		t.Error(err)
	}
	s.Close()
}

func TestServeTLS(t *testing.T) {
	f := newFixture(t, 1000)
	certFile, keyFile, pool := selfSigned(t)
	base, stop := serving(t, f.srv, ServeOptions{TLSCert: certFile, TLSKey: keyFile})
	if !strings.HasPrefix(base, "https://127.0.0.1:") {
		t.Fatalf("base URL %s", base)
	}
	c := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	_, key := downloadKey(t, f.site, keySpec{})
	_, downloads := exchangeAt(t, c, base, key)
	if len(downloads) != 4 {
		t.Fatalf("%d downloads over TLS", len(downloads))
	}
	res, err := c.Get(base + downloads[0].URL)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if !bytes.Equal(body, f.files[downloads[0].SHA256.String()]) {
		t.Error("download over TLS differs")
	}
	// Plain HTTP to the TLS port is not answered with data.
	if res, err := http.Get("http://" + strings.TrimPrefix(base, "https://") + "/v1/exchange"); err == nil {
		res.Body.Close()
		if res.StatusCode == 200 {
			t.Error("plain HTTP answered on the TLS port")
		}
	}
	if err := stop(); err != nil {
		t.Error(err)
	}
	// Only one of the two files: a usage error before listening.
	if err := f.srv.Serve(context.Background(), ServeOptions{Listen: "127.0.0.1:0", TLSCert: certFile}); !errors.Is(err, fault.ErrUsage) {
		t.Errorf("cert without key: %v", err)
	}
}

func selfSigned(t *testing.T) (certFile, keyFile string, pool *x509.CertPool) {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "vendor.test"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		IPAddresses:  []net.IP{net.ParseIP("127.0.0.1")},
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &k.PublicKey, k)
	if err != nil {
		t.Fatal(err)
	}
	kb, err := x509.MarshalECPrivateKey(k)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	writeFile(t, certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}))
	writeFile(t, keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb}))
	cert, _ := x509.ParseCertificate(der)
	pool = x509.NewCertPool()
	pool.AddCert(cert)
	return certFile, keyFile, pool
}

// TestStalledDownload: a client that stops reading is cut off after
// Config.WriteTimeout without progress, however large the package.
func TestStalledDownload(t *testing.T) {
	f := newFixture(t, 10)
	big := f.publish("hotfix@9", catalog.KindHotfix, 32<<20)
	logs := &syncBuffer{}
	s := f.srv
	s.cfg.WriteTimeout = 300 * time.Millisecond
	s.log = slog.New(slog.NewJSONHandler(logs, nil))
	_, key := downloadKey(t, f.site, keySpec{nodes: []catalog.NodeInventory{{Name: "n1"}}})
	_, er := f.exchange(t, key)
	var url string
	for _, d := range er.Downloads {
		if d.SHA256 == big.SHA256 {
			url = d.URL
		}
	}
	if url == "" {
		t.Fatal("big package not entitled")
	}
	conn, err := net.Dial("tcp", strings.TrimPrefix(f.http.URL, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := conn.Write([]byte("GET " + url + " HTTP/1.1\r\nHost: x\r\n\r\n")); err != nil {
		t.Fatal(err)
	}
	// Read nothing; wait for the server to log the request as finished.
	deadline := time.Now().Add(20 * time.Second)
	for !strings.Contains(logs.String(), `"status":200`) {
		if time.Now().After(deadline) {
			t.Fatalf("the stalled download was not cut off; log:\n%s", logs.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	var line struct{ Bytes int64 }
	for _, l := range strings.Split(strings.TrimSpace(logs.String()), "\n") {
		if strings.Contains(l, `"status":200`) {
			json.Unmarshal([]byte(l), &line)
		}
	}
	if line.Bytes >= big.Size {
		t.Errorf("logged %d bytes sent of %d: the whole file went into buffers", line.Bytes, big.Size)
	}
}

// TestAccessLog: one structured line per request, download key ids never
// in full, never a key body.
func TestAccessLog(t *testing.T) {
	f := newFixture(t, 100)
	id, key := downloadKey(t, f.site, keySpec{})
	_, er := f.exchange(t, key)
	do(t, f.http.Client(), "GET", f.http.URL+er.Downloads[0].URL, nil)
	f.ack(t, er.Downloads[0].URL, er.Downloads[0].SHA256.String())
	do(t, f.http.Client(), "GET", f.http.URL+er.Downloads[0].URL, nil) // 410
	_, expired := downloadKey(t, f.site, keySpec{issued: time.Now().Add(-3 * time.Hour), expires: time.Now().Add(-time.Hour), signedAt: time.Now().Add(-2 * time.Hour)})
	f.exchange(t, expired) // 422, its message holds the full id
	do(t, f.http.Client(), "GET", f.http.URL+"/v1/downloads/"+string(id)+"/nothex", nil)

	logs := f.logs.String()
	if regexp.MustCompile(`[a-z2-7]{26}`).MatchString(logs) {
		t.Errorf("a full key id in the log:\n%s", logs)
	}
	if strings.Contains(logs, "PGP") || strings.Contains(logs, "-----") {
		t.Errorf("key material in the log:\n%s", logs)
	}
	var requests []map[string]any
	for _, l := range strings.Split(strings.TrimSpace(logs), "\n") {
		var m map[string]any
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			t.Fatalf("log line %q: %v", l, err)
		}
		if m["msg"] == "request" {
			requests = append(requests, m)
		}
	}
	want := []struct {
		method string
		status float64
		reason string
	}{{"POST", 200, ""}, {"GET", 200, ""}, {"POST", 200, ""}, {"GET", 410, ReasonDelivered}, {"POST", 422, ReasonClock}, {"GET", 400, ReasonMalformed}}
	if len(requests) != len(want) {
		t.Fatalf("%d request lines, want %d:\n%s", len(requests), len(want), logs)
	}
	for i, w := range want {
		r := requests[i]
		if r["method"] != w.method || r["status"] != w.status || (w.reason != "" && r["reason"] != w.reason) {
			t.Errorf("line %d = %v, want %+v", i, r, w)
		}
	}
	if k := requests[0]["key"]; k != string(id[:6])+"…" || requests[0]["site"] != "plant-3" {
		t.Errorf("exchange line names key %v site %v", k, requests[0]["site"])
	}
}

// TestSocketPathTooLong: a store whose admin socket path cannot be bound
// is refused with a message that says what to do.
func TestSocketPathTooLong(t *testing.T) {
	dir := filepath.Join(t.TempDir(), strings.Repeat("d", 100))
	if _, err := Init(dir, "", time.Time{}); err != nil {
		t.Fatal(err)
	}
	s, err := Open(Config{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	err = s.Serve(context.Background(), ServeOptions{Listen: "127.0.0.1:0"})
	if !errors.Is(err, fault.ErrUsage) || !strings.Contains(err.Error(), "use a shorter --dir") {
		t.Errorf("Serve: %v", err)
	}
}

// TestServeListenErrors: a --listen that cannot be used says why and what
// to do, with the class of its cause, and the store is left as it was.
func TestServeListenErrors(t *testing.T) {
	f := newFixture(t, 10)
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	for _, tc := range []struct {
		listen string
		code   int
		want   string
	}{
		{busy.Addr().String(), fault.ExitOperational, "listens there: stop it or choose another --listen"},
		{"nonsense", fault.ExitUsage, "give HOST:PORT"},
		{"127.0.0.1:99999", fault.ExitUsage, "give HOST:PORT"},
	} {
		err := f.srv.Serve(context.Background(), ServeOptions{Listen: tc.listen})
		if fault.Code(err) != tc.code || !strings.Contains(err.Error(), "--listen "+tc.listen) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("--listen %s: %v (exit %d), want exit %d saying %q", tc.listen, err, fault.Code(err), tc.code, tc.want)
		}
	}
	if _, err := os.Stat(filepath.Join(f.dir, AdminSocket)); err == nil {
		t.Error("a failed Serve left its admin socket")
	}
}

// TestServeLimits: oversized request headers are refused by the listener
// Serve sets up.
func TestServeLimits(t *testing.T) {
	f := newFixture(t, 10)
	base, stop := serving(t, f.srv, ServeOptions{})
	defer stop()
	req, _ := http.NewRequest(http.MethodGet, base+"/v1/exchange", nil)
	req.Header.Set("X-Junk", strings.Repeat("a", 64<<10))
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusRequestHeaderFieldsTooLarge {
		t.Errorf("64 KiB header: %s", res.Status)
	}
}
