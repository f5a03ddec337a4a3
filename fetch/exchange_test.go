package fetch

import (
	"bytes"
	"context"
	"encoding/json"
	"encoding/pem"
	"errors"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/airlock-project/airlock/fault"
	"github.com/airlock-project/airlock/keys"
)

func TestExchangeJSON(t *testing.T) {
	fx := newFixture(t, 1000, 2000)
	var out bytes.Buffer
	if err := RunExchange(context.Background(), ExchangeOptions{ServerOptions: fx.serverOptions(), JSON: true}, &out, io.Discard); err != nil {
		t.Fatalf("RunExchange: %v", err)
	}
	var r struct {
		Site      string            `json:"site"`
		KeyID     string            `json:"key_id"`
		Expires   string            `json:"expires"`
		Packages  []json.RawMessage `json:"packages"`
		Downloads []struct {
			SHA256, URL string
			Size        int64
		} `json:"downloads"`
	}
	if err := json.Unmarshal(out.Bytes(), &r); err != nil {
		t.Fatalf("%v\n%s", err, out.String())
	}
	if r.Site != fx.site || r.KeyID != string(fx.key.ID) || r.Expires == "" || len(r.Packages) != 2 || len(r.Downloads) != 2 {
		t.Errorf("exchange --json: %s", out.String())
	}
	for i, d := range r.Downloads {
		if d.SHA256 != fx.fv.pkgs[i].meta.SHA256.String() || !strings.HasPrefix(d.URL, fx.srv.URL+"/v1/downloads/") {
			t.Errorf("download %d: %+v", i, d)
		}
	}
	if fx.fv.served.Load() != 0 || fx.fv.ackCount() != 0 {
		t.Error("exchange downloaded or acknowledged something")
	}

	out.Reset()
	if err := RunExchange(context.Background(), ExchangeOptions{ServerOptions: fx.serverOptions()}, &out, io.Discard); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"plant-3", "base@3.4.0", "product@3.5.0", "2 packages"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("table lacks %q:\n%s", want, out.String())
		}
	}
}

func TestExchangeEmpty(t *testing.T) {
	fx := newFixture(t)
	var out bytes.Buffer
	if err := RunExchange(context.Background(), ExchangeOptions{ServerOptions: fx.serverOptions(), JSON: true}, &out, io.Discard); err != nil {
		t.Fatalf("RunExchange: %v", err)
	}
	var r map[string]json.RawMessage
	json.Unmarshal(out.Bytes(), &r)
	if string(r["packages"]) != "[]" || string(r["downloads"]) != "[]" {
		t.Errorf("empty entitlement: %s", out.String())
	}
}

func TestExchangeServerErrors(t *testing.T) {
	tests := []struct {
		status int
		body   string
		code   int
		want   string
	}{
		{422, `{"error":"the download key was issued in the future: check the clock of the restricted admin host and of this host","reason":"clock"}`, fault.ExitPolicy, "check the clock"},
		{403, `{"error":"site plant-3 is not registered","reason":"unknown-site"}`, fault.ExitVerification, "not registered"},
		{403, `{"error":"the site signature does not verify","reason":"bad-signature"}`, fault.ExitVerification, "does not verify"},
		{400, `{"error":"not an OpenPGP message","reason":"malformed"}`, fault.ExitVerification, "not an OpenPGP message"},
		{500, `{"error":"database unavailable","reason":"internal"}`, fault.ExitOperational, "database unavailable"},
		{502, "<html>bad gateway\x1b[31m</html>", fault.ExitOperational, "bad gateway?[31m"},
	}
	for _, tc := range tests {
		fx := newFixture(t, 10)
		fx.fv.exchange = func(w http.ResponseWriter, r *http.Request) bool {
			w.WriteHeader(tc.status)
			io.WriteString(w, tc.body)
			return true
		}
		err := RunExchange(context.Background(), ExchangeOptions{ServerOptions: fx.serverOptions()}, io.Discard, io.Discard)
		if fault.Code(err) != tc.code || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("status %d: %v (exit %d), want exit %d with %q", tc.status, err, fault.Code(err), tc.code, tc.want)
		}
		// The same answers stop bundle before anything is written.
		o := fx.bundleOptions("b.airlock")
		err = RunBundle(context.Background(), o, io.Discard, io.Discard)
		if fault.Code(err) != tc.code {
			t.Errorf("bundle, status %d: exit %d, want %d", tc.status, fault.Code(err), tc.code)
		}
		assertNoBundle(t, o.Out)
	}
}

func TestExchangeAnswerTooLarge(t *testing.T) {
	fx := newFixture(t, 10)
	big := bytes.Repeat([]byte("A"), maxExchangeAnswer)
	fx.fv.exchange = func(w http.ResponseWriter, r *http.Request) bool {
		io.WriteString(w, `{"entitlement":"`)
		http.NewResponseController(w).Flush()
		w.Write(big)
		io.WriteString(w, `","downloads":[]}`)
		return true
	}
	err := RunExchange(context.Background(), ExchangeOptions{ServerOptions: fx.serverOptions()}, io.Discard, io.Discard)
	if !errors.Is(err, ErrOversize) || fault.Code(err) != fault.ExitVerification {
		t.Errorf("9 MiB answer: %v, want ErrOversize (exit 3)", err)
	}
}

func TestExchangeRedirect(t *testing.T) {
	fx := newFixture(t, 10)
	fx.fv.exchange = func(w http.ResponseWriter, r *http.Request) bool {
		http.Redirect(w, r, "http://phish.invalid/v1/exchange", http.StatusTemporaryRedirect)
		return true
	}
	err := RunExchange(context.Background(), ExchangeOptions{ServerOptions: fx.serverOptions()}, io.Discard, io.Discard)
	if !errors.Is(err, ErrRedirect) || fault.Code(err) != fault.ExitVerification || !strings.Contains(err.Error(), "phish.invalid") {
		t.Errorf("redirect: %v, want ErrRedirect (exit 3) naming the target", err)
	}
}

func TestExchangeHTTPS(t *testing.T) {
	fx := newFixture(t, 10)
	ts := httptest.NewUnstartedServer(fx.fv)
	ts.Config.ErrorLog = log.New(io.Discard, "", 0) // the refused handshake is expected
	ts.StartTLS()
	defer ts.Close()
	ca := filepath.Join(fx.dir, "ca.pem")
	os.WriteFile(ca, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: ts.Certificate().Raw}), 0o644)

	so := fx.serverOptions()
	so.Server = ts.URL
	err := RunExchange(context.Background(), ExchangeOptions{ServerOptions: so}, io.Discard, io.Discard)
	if err == nil || fault.Code(err) != fault.ExitOperational {
		t.Errorf("https without the CA: %v, want an operational error", err)
	}
	so.Client.CAFile = ca
	if err := RunExchange(context.Background(), ExchangeOptions{ServerOptions: so}, io.Discard, io.Discard); err != nil {
		t.Errorf("https with --ca-file: %v", err)
	}
	so.Client.CAFile = fx.paths.vendorPub // not PEM certificates
	if err := RunExchange(context.Background(), ExchangeOptions{ServerOptions: so}, io.Discard, io.Discard); fault.Code(err) != fault.ExitUsage {
		t.Errorf("--ca-file without certificates: %v, want exit 2", err)
	}
}

func TestExchangeOptions(t *testing.T) {
	fx := newFixture(t, 10)
	for _, tc := range []struct {
		name string
		edit func(*ServerOptions)
		code int
	}{
		{"ftp server", func(o *ServerOptions) { o.Server = "ftp://x" }, fault.ExitUsage},
		{"no server", func(o *ServerOptions) { o.Server = "" }, fault.ExitUsage},
		{"missing key file", func(o *ServerOptions) { o.DownloadKey = filepath.Join(fx.dir, "nope") }, fault.ExitOperational},
		{"key file not OpenPGP", func(o *ServerOptions) { o.DownloadKey = fx.paths.vendorPub }, fault.ExitVerification},
	} {
		o := fx.serverOptions()
		tc.edit(&o)
		err := RunExchange(context.Background(), ExchangeOptions{ServerOptions: o}, io.Discard, io.Discard)
		if fault.Code(err) != tc.code {
			t.Errorf("%s: %v (exit %d), want exit %d", tc.name, err, fault.Code(err), tc.code)
		}
	}
}

func TestKeygen(t *testing.T) {
	dir := t.TempDir()
	out := filepath.Join(dir, "courier")
	var stdout bytes.Buffer
	if err := RunKeygen(context.Background(), KeygenOptions{Name: "Jane Courier", Out: out, JSON: true}, &stdout, io.Discard); err != nil {
		t.Fatal(err)
	}
	var r KeygenReport
	if err := json.Unmarshal(stdout.Bytes(), &r); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(out + ".key")
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("private key: %v, mode %v, want 0600", err, fi.Mode())
	}
	pub, err := keys.ReadPublicFile(out + ".pub.asc")
	if err != nil || pub.Fingerprint().String() != r.Fingerprint {
		t.Errorf("public key: %v, fingerprint %s vs %s", err, pub.Fingerprint(), r.Fingerprint)
	}
	priv, err := keys.ReadPrivateFile(out+".key", nil)
	if err != nil || priv.Fingerprint() != pub.Fingerprint() {
		t.Errorf("private key does not read back: %v", err)
	}
	before, _ := os.ReadFile(out + ".key")
	err = RunKeygen(context.Background(), KeygenOptions{Name: "Other", Out: out}, io.Discard, io.Discard)
	if !errors.Is(err, ErrExists) || fault.Code(err) != fault.ExitUsage {
		t.Errorf("overwrite: %v, want ErrExists (exit 2)", err)
	}
	if after, _ := os.ReadFile(out + ".key"); !bytes.Equal(before, after) {
		t.Error("the private key changed")
	}
	// Only the public half there: still refused, nothing written.
	out2 := filepath.Join(dir, "c2")
	os.WriteFile(out2+".pub.asc", []byte("x"), 0o644)
	if err := RunKeygen(context.Background(), KeygenOptions{Name: "C2", Out: out2}, io.Discard, io.Discard); !errors.Is(err, ErrExists) {
		t.Errorf("existing public key: %v, want ErrExists", err)
	}
	if _, err := os.Stat(out2 + ".key"); err == nil {
		t.Error("private key written although the public key file existed")
	}

	// With a passphrase, the key does not open without it.
	pf := filepath.Join(dir, "pass")
	os.WriteFile(pf, []byte("correct horse\n"), 0o600)
	out3 := filepath.Join(dir, "c3")
	if err := RunKeygen(context.Background(), KeygenOptions{Name: "C3", Out: out3, PassphraseFile: pf}, io.Discard, io.Discard); err != nil {
		t.Fatal(err)
	}
	if _, err := keys.ReadPrivateFile(out3+".key", nil); !errors.Is(err, keys.ErrPassphrase) {
		t.Errorf("encrypted key opened without a passphrase: %v", err)
	}
	if _, err := keys.ReadPrivateFile(out3+".key", []byte("correct horse")); err != nil {
		t.Errorf("encrypted key with its passphrase: %v", err)
	}
}

func TestResolve(t *testing.T) {
	c, err := newClient("https://updates.example/vendor/", ClientOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ ref, want string }{
		{"/v1/downloads/k/d", "https://updates.example/vendor/v1/downloads/k/d"},
		{"https://updates.example/v1/downloads/k/d", "https://updates.example/v1/downloads/k/d"},
		{"http://updates.example/v1/downloads/k/d", ""},       // another scheme
		{"https://mirror.example/v1/downloads/k/d", ""},       // another host
		{"/v1/downloads/../../etc/passwd", ""},                // not clean
		{"v1/downloads/k/d", ""},                              // relative
		{"/v1/downloads/k/d?x=1", ""},                         // query
		{"//mirror.example/v1/downloads/k/d", ""},             // scheme-relative, other host
		{"https://user@updates.example/v1/downloads/k/d", ""}, // credentials
	} {
		got, err := c.resolve(tc.ref)
		if tc.want == "" {
			if err == nil || !errors.Is(err, ErrProtocol) {
				t.Errorf("resolve(%q) = %q, %v; want ErrProtocol", tc.ref, got, err)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("resolve(%q) = %q, %v; want %q", tc.ref, got, err, tc.want)
		}
	}
}

func TestCheckContentRange(t *testing.T) {
	for _, tc := range []struct {
		v  string
		ok bool
	}{
		{"bytes 100-999/1000", true},
		{"bytes 0-999/1000", false},
		{"bytes 100-998/1000", false},
		{"bytes 100-999/1001", false},
		{"bytes 100-999/*", false},
		{"items 100-999/1000", false},
		{"", false},
		{"bytes 100-999", false},
	} {
		if err := checkContentRange(tc.v, 100, 1000); (err == nil) != tc.ok {
			t.Errorf("checkContentRange(%q) = %v, want ok=%v", tc.v, err, tc.ok)
		}
	}
}
