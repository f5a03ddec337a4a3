package server

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/airlock-project/airlock/atomicfile"
	"github.com/airlock-project/airlock/catalog"
	"github.com/airlock-project/airlock/fault"
	"github.com/airlock-project/airlock/keys"
	"github.com/airlock-project/airlock/verify"
)

// passFile writes a passphrase file (with a line end, which is not part of
// the passphrase) and returns its path.
func passFile(t *testing.T, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "pass.txt")
	writeFile(t, p, []byte(content))
	return p
}

// protectedStore makes a store whose vendor.key is encrypted under
// "correct horse", created an hour ago.
func protectedStore(t *testing.T) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "v")
	var out bytes.Buffer
	err := RunInit(context.Background(), InitOptions{Dir: dir, Name: "Acme", Now: time.Now().Add(-time.Hour), PassphraseFile: passFile(t, "correct horse\n")}, &out, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "vendor.key is passphrase-protected: serve reads the passphrase from --passphrase-file or AIRLOCK_SERVER_PASSPHRASE_FILE") {
		t.Errorf("init output does not say vendor.key is protected:\n%s", out.String())
	}
	return dir
}

// dirState lists every file of dir with its content, to show that a refusal
// changed nothing.
func dirState(t *testing.T, dir string) map[string]string {
	t.Helper()
	m := map[string]string{}
	err := filepath.WalkDir(dir, func(p string, e os.DirEntry, err error) error {
		if err != nil || e.IsDir() {
			return err
		}
		b, err := os.ReadFile(p)
		m[p] = string(b)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func TestInitWithPassphrase(t *testing.T) {
	dir := protectedStore(t)
	path := filepath.Join(dir, VendorKeyFile)
	if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("vendor.key: %v, %v", fi, err)
	}
	if _, err := keys.ReadPrivateFile(path, nil); !errors.Is(err, keys.ErrPassphrase) {
		t.Fatalf("vendor.key opens without a passphrase: %v", err)
	}
	k, err := keys.ReadPrivateFile(path, []byte("correct horse"))
	if err != nil {
		t.Fatal(err)
	}
	pub, err := keys.ReadPublicFile(filepath.Join(dir, VendorPubFile))
	if err != nil || pub.Fingerprint() != k.Fingerprint() {
		t.Fatalf("vendor.pub.asc is not vendor.key's public half: %v", err)
	}

	// An unusable passphrase file is refused before anything is made.
	for name, file := range map[string]string{
		"empty":   passFile(t, "\r\n"),
		"missing": filepath.Join(t.TempDir(), "nothere"),
		"dir":     t.TempDir(),
	} {
		d := filepath.Join(t.TempDir(), "w")
		err := RunInit(context.Background(), InitOptions{Dir: d, PassphraseFile: file}, &bytes.Buffer{}, nil)
		if !errors.Is(err, ErrPassphraseFile) || fault.Code(err) != fault.ExitUsage || !strings.Contains(err.Error(), "--passphrase-file "+file) {
			t.Errorf("%s passphrase file: %v", name, err)
		}
		if _, err := os.Stat(d); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s passphrase file: init made %s", name, d)
		}
	}

	// Without a passphrase vendor.key stays in the clear, as before.
	d := filepath.Join(t.TempDir(), "plain")
	var out bytes.Buffer
	if err := RunInit(context.Background(), InitOptions{Dir: d}, &out, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := keys.ReadPrivateFile(filepath.Join(d, VendorKeyFile), nil); err != nil {
		t.Errorf("plain vendor.key: %v", err)
	}
	if strings.Contains(out.String(), "passphrase") {
		t.Errorf("init without a passphrase mentions one:\n%s", out.String())
	}
}

// TestOpenLockedAdmin: the admin commands open a store with a protected
// vendor.key directly, without its passphrase; they work, but the store
// cannot sign.
func TestOpenLockedAdmin(t *testing.T) {
	ctx := context.Background()
	dir := protectedStore(t)
	a, err := Connect(ctx, Config{Dir: dir})
	if err != nil {
		t.Fatalf("admin open without passphrase: %v", err)
	}
	s := a.(*Server)
	if !s.Locked() {
		t.Fatal("store opened without Unlock is not locked")
	}
	pkg := filepath.Join(t.TempDir(), "base.tar")
	writeFile(t, pkg, []byte("base"))
	if _, err := s.Publish(ctx, PublishRequest{Name: "base", Kind: catalog.KindBase, Version: catalog.MustVersion("3.4.0"), File: pkg}, nil); err != nil {
		t.Fatalf("publish: %v", err)
	}
	site := newKey(t, "plant-3")
	if _, err := s.AddSite(ctx, "plant-3", site.Public().Armored()); err != nil {
		t.Fatalf("site add: %v", err)
	}
	if ps, err := s.Catalog(ctx); err != nil || len(ps) != 1 {
		t.Fatalf("catalog: %v %v", ps, err)
	}
	if ss, err := s.Sites(ctx); err != nil || len(ss) != 1 {
		t.Fatalf("sites: %v %v", ss, err)
	}
	// Signing is refused: Serve before it listens, an exchange as the
	// server's own fault.
	if err := s.Serve(ctx, ServeOptions{Listen: "127.0.0.1:0"}); !errors.Is(err, ErrLocked) {
		t.Errorf("Serve of a locked store: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, AdminSocket)); err == nil {
		t.Error("Serve of a locked store made the admin socket")
	}
	_, key := downloadKey(t, site, keySpec{})
	if _, err := s.Exchange(ctx, key); !errors.Is(err, ErrLocked) || exchangeError(err, key, time.Now()).status != http.StatusInternalServerError {
		t.Errorf("exchange with a locked store: %v", err)
	}
	s.Close()

	// A protected vendor.key whose public half is gone: say what to restore.
	os.Rename(filepath.Join(dir, VendorPubFile), filepath.Join(dir, "saved.asc"))
	if _, err := Open(Config{Dir: dir}); err == nil || !strings.Contains(err.Error(), "restore vendor.pub.asc") {
		t.Errorf("open without vendor.pub.asc: %v", err)
	}
	os.Rename(filepath.Join(dir, "saved.asc"), filepath.Join(dir, VendorPubFile))
}

// TestOpenUnlock: Open with Unlock needs the right passphrase, by file or
// by prompt; every refusal is a usage error naming vendor.key and how to
// give the passphrase, and changes nothing.
func TestOpenUnlock(t *testing.T) {
	dir := protectedStore(t)
	// A temporary file of an interrupted publish: Open would remove it.
	leftover := filepath.Join(dir, PackagesDir, "sha256", atomicfile.TempPrefix+"x")
	writeFile(t, leftover, []byte("partial"))
	before := dirState(t, dir)
	prompt := func(answer string) func(string) ([]byte, error) {
		return func(path string) ([]byte, error) {
			if path != filepath.Join(dir, VendorKeyFile) {
				t.Errorf("prompt for %s", path)
			}
			return []byte(answer), nil
		}
	}
	noPrompt := func(string) ([]byte, error) {
		t.Error("prompted although --passphrase-file was given")
		return nil, errors.New("no")
	}
	for _, tc := range []struct {
		name string
		p    VendorPassphrase
		is   error
		want string
	}{
		{"none", VendorPassphrase{}, keys.ErrPassphrase,
			"vendor.key: private key [0-9A-F]{40} is protected by a passphrase.*; there is no terminal to ask for it on: pass --passphrase-file FILE or set AIRLOCK_SERVER_PASSPHRASE_FILE$"},
		{"wrong file", VendorPassphrase{File: passFile(t, "wrong\n"), Prompt: noPrompt}, keys.ErrPassphrase,
			"vendor.key: .*the passphrase does not decrypt it.*; check --passphrase-file .*pass.txt$"},
		{"empty file", VendorPassphrase{File: passFile(t, "\n"), Prompt: noPrompt}, ErrPassphraseFile,
			"--passphrase-file .*pass.txt is empty; put the passphrase on its first line$"},
		{"missing file", VendorPassphrase{File: filepath.Join(dir, "nothere"), Prompt: noPrompt}, ErrPassphraseFile,
			"--passphrase-file .*nothere does not exist; give the file that holds the passphrase$"},
		{"wrong typed", VendorPassphrase{Prompt: prompt("wrong")}, keys.ErrPassphrase,
			"the passphrase does not decrypt it.*; run the command again and type the passphrase of vendor.key$"},
		{"nothing typed", VendorPassphrase{Prompt: prompt("")}, keys.ErrPassphrase,
			"no passphrase typed for .*vendor.key; run the command again and type it, or pass --passphrase-file FILE$"},
	} {
		_, err := Open(Config{Dir: dir, Unlock: true, Passphrase: tc.p})
		if !errors.Is(err, tc.is) || fault.Code(err) != fault.ExitUsage {
			t.Errorf("%s: got %v, want %v (usage)", tc.name, err, tc.is)
			continue
		}
		if !regexp.MustCompile(tc.want).MatchString(err.Error()) {
			t.Errorf("%s: message %q does not match %q", tc.name, err, tc.want)
		}
	}
	if after := dirState(t, dir); !equalMaps(before, after) {
		t.Error("a refused unlock changed the store")
	}

	for name, p := range map[string]VendorPassphrase{
		"file":   {File: passFile(t, "correct horse\r\n"), Prompt: noPrompt},
		"prompt": {Prompt: prompt("correct horse")},
	} {
		s, err := Open(Config{Dir: dir, Unlock: true, Passphrase: p})
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if s.Locked() {
			t.Errorf("%s: still locked", name)
		}
		s.Close()
	}
	if _, err := os.Stat(leftover); !errors.Is(err, os.ErrNotExist) {
		t.Error("a successful open did not clean the leftover")
	}
}

// TestUnprotectedIgnoresPassphrase: with an unprotected vendor.key a
// passphrase file is read, as airlock and airlock-fetch do, and ignored.
func TestUnprotectedIgnoresPassphrase(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "v")
	if _, err := Init(dir, "", time.Now().Add(-time.Hour)); err != nil {
		t.Fatal(err)
	}
	s, err := Open(Config{Dir: dir, Unlock: true, Passphrase: VendorPassphrase{File: passFile(t, "anything\n")}})
	if err != nil {
		t.Fatal(err)
	}
	if s.Locked() {
		t.Error("unprotected vendor.key is locked")
	}
	s.Close()
	if _, err := Open(Config{Dir: dir, Unlock: true, Passphrase: VendorPassphrase{File: passFile(t, "")}}); !errors.Is(err, ErrPassphraseFile) {
		t.Errorf("empty passphrase file: %v", err)
	}
	if s, err := Open(Config{Dir: dir}); err != nil || s.Locked() {
		t.Errorf("plain open: %v", err)
	} else {
		s.Close()
	}
}

// TestRunServeProtected: serve refuses a protected vendor.key without its
// passphrase before it listens; with it, it signs entitlements, and the
// admin commands reach it over the socket without the passphrase.
func TestRunServeProtected(t *testing.T) {
	ctx := context.Background()
	dir := protectedStore(t)
	site := newKey(t, "plant-3")
	a, err := Connect(ctx, Config{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := a.AddSite(ctx, "plant-3", site.Public().Armored()); err != nil {
		t.Fatal(err)
	}
	a.Close()
	before := dirState(t, dir)

	for name, p := range map[string]VendorPassphrase{
		"none":  {},
		"wrong": {File: passFile(t, "wrong")},
	} {
		ready := false
		err := RunServe(ctx, ServeCommandOptions{Config: Config{Dir: dir, Passphrase: p},
			ServeOptions: ServeOptions{Listen: "127.0.0.1:0", Ready: func(string) { ready = true }}}, &bytes.Buffer{}, &bytes.Buffer{})
		if !errors.Is(err, keys.ErrPassphrase) || fault.Code(err) != fault.ExitUsage || !strings.Contains(err.Error(), "vendor.key") {
			t.Errorf("serve, %s passphrase: %v", name, err)
		}
		if ready {
			t.Errorf("serve, %s passphrase: listened", name)
		}
	}
	if !equalMaps(before, dirState(t, dir)) {
		t.Error("a refused serve changed the store")
	}

	sctx, cancel := context.WithCancel(ctx)
	readyc := make(chan string, 1)
	done := make(chan error, 1)
	go func() {
		done <- RunServe(sctx, ServeCommandOptions{Config: Config{Dir: dir, Passphrase: VendorPassphrase{File: passFile(t, "correct horse\n")}},
			ServeOptions: ServeOptions{Listen: "127.0.0.1:0", Ready: func(b string) { readyc <- b }}}, &bytes.Buffer{}, &bytes.Buffer{})
	}()
	var base string
	select {
	case base = <-readyc:
	case err := <-done:
		t.Fatalf("serve: %v", err)
	case <-time.After(20 * time.Second):
		t.Fatal("serve did not become ready")
	}
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("serve: %v", err)
		}
	}()

	// Admin commands: through the socket, no passphrase.
	a, err = Connect(ctx, Config{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	if _, ok := a.(*adminClient); !ok {
		t.Fatalf("Connect while serving returned %T, not the socket client", a)
	}
	pkg := filepath.Join(t.TempDir(), "base.tar")
	writeFile(t, pkg, []byte("base"))
	if _, err := a.Publish(ctx, PublishRequest{Name: "base", Kind: catalog.KindBase, Version: catalog.MustVersion("3.4.0"), File: pkg}, nil); err != nil {
		t.Fatalf("publish over the socket: %v", err)
	}
	if ps, err := a.Catalog(ctx); err != nil || len(ps) != 1 {
		t.Fatalf("catalog over the socket: %v %v", ps, err)
	}

	// The exchange is signed by the vendor key.
	_, key := downloadKey(t, site, keySpec{nodes: []catalog.NodeInventory{{Name: "n1"}}})
	r := do(t, http.DefaultClient, http.MethodPost, base+"/v1/exchange", key, "Content-Type", "application/pgp-signature")
	if r.status != http.StatusOK {
		t.Fatalf("exchange: %d %s", r.status, r.body)
	}
	var er ExchangeResponse
	if err := json.Unmarshal(r.body, &er); err != nil {
		t.Fatal(err)
	}
	pub, err := keys.ReadPublicFile(filepath.Join(dir, VendorPubFile))
	if err != nil {
		t.Fatal(err)
	}
	trust := keys.NewTrustStore()
	if err := trust.Add(keys.RoleVendor, pub); err != nil {
		t.Fatal(err)
	}
	e, err := verify.VerifyEntitlement([]byte(er.Entitlement), trust, verify.Policy{Site: "plant-3"})
	if err != nil {
		t.Fatalf("entitlement: %v", err)
	}
	if len(e.Packages) != 1 || e.Packages[0].Name != "base" {
		t.Errorf("entitled to %v, want base", e.Packages)
	}
}

// equalMaps is maps.Equal for the dirState maps.
func equalMaps(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}
