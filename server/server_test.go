package server

import (
	"bytes"
	"context"
	"errors"
	"net/http"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/airlock-project/airlock/catalog"
	"github.com/airlock-project/airlock/fault"
	"github.com/airlock-project/airlock/keys"
)

func TestExchangeContractScenario(t *testing.T) {
	f := newFixture(t, 4096)
	exp := time.Now().Add(72 * time.Hour).Truncate(time.Second)
	id, key := downloadKey(t, f.site, keySpec{expires: exp})
	r, er := f.exchange(t, key)
	if r.status != http.StatusOK {
		t.Fatalf("exchange: %d %s", r.status, r.body)
	}
	er1 := er
	if ct := r.header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("Content-Type %q", ct)
	}
	if cc := r.header.Get("Cache-Control"); cc != "no-store" {
		t.Errorf("Cache-Control %q", cc)
	}
	e := f.entitlement(t, er)
	var got []string
	for _, p := range e.Packages {
		got = append(got, p.ID())
	}
	want := []string{"base@3.4.0", "product@22.1.0", "product@23.1.0", "license@1.1.0"}
	if !slices.Equal(got, want) {
		t.Fatalf("entitled %v, want %v", got, want)
	}
	if e.KeyID != id || e.Site != "plant-3" {
		t.Errorf("entitlement for %s %s", e.Site, e.KeyID)
	}
	if len(er.Downloads) != len(e.Packages) {
		t.Fatalf("%d downloads for %d packages", len(er.Downloads), len(e.Packages))
	}
	for i, d := range er.Downloads {
		p := e.Packages[i]
		if d.SHA256 != p.SHA256 || d.Size != p.Size || d.URL != "/v1/downloads/"+string(id)+"/"+p.SHA256.String() {
			t.Errorf("download %d = %+v, want %s", i, d, p)
		}
	}
	// Entitlement expiry is the key's.
	if !e.Expires.Equal(exp) {
		t.Errorf("entitlement expires %s", e.Expires)
	}

	// The same key again: byte-identical.
	r2, er2 := f.exchange(t, key)
	if r2.status != http.StatusOK || er2.Entitlement != er.Entitlement || !slices.Equal(er2.Downloads, er.Downloads) {
		t.Fatalf("repeat exchange differs: %d %s", r2.status, r2.body)
	}

	// Download and acknowledge everything.
	for _, d := range er.Downloads {
		g := do(t, f.http.Client(), http.MethodGet, f.http.URL+d.URL, nil)
		if g.status != http.StatusOK || !bytes.Equal(g.body, f.files[d.SHA256.String()]) {
			t.Fatalf("GET %s: %d, %d bytes", d.URL, g.status, len(g.body))
		}
		if g.header.Get("ETag") != `"`+d.SHA256.String()+`"` || g.header.Get("Cache-Control") != "no-store" {
			t.Errorf("GET headers %v", g.header)
		}
		ar, a := f.ack(t, d.URL, d.SHA256.String())
		if ar.status != http.StatusOK || !a.Acknowledged || !a.First {
			t.Fatalf("ack %s: %d %s", d.URL, ar.status, ar.body)
		}
		ar, a = f.ack(t, d.URL, d.SHA256.String())
		if ar.status != http.StatusOK || !a.Acknowledged || a.First {
			t.Fatalf("repeated ack %s: %d %s", d.URL, ar.status, ar.body)
		}
		g = do(t, f.http.Client(), http.MethodGet, f.http.URL+d.URL, nil)
		if g.status != http.StatusGone || g.errorResponse(t).Reason != ReasonDelivered {
			t.Fatalf("GET after ack: %d %s", g.status, g.body)
		}
		if !strings.Contains(string(g.body), "reissue") {
			t.Errorf("delivered message does not say to reissue: %s", g.body)
		}
	}
	dels, err := f.srv.Deliveries(context.Background(), "plant-3")
	if err != nil || len(dels) != 4 {
		t.Fatalf("ledger: %v %v", dels, err)
	}

	// The repeat exchange still answers the same, never more.
	r3, er3 := f.exchange(t, key)
	if r3.status != http.StatusOK || er3.Entitlement != er.Entitlement {
		t.Fatalf("exchange after delivery: %d", r3.status)
	}
	// A new key gets nothing already delivered.
	_, key2 := downloadKey(t, f.site, keySpec{})
	r4, er4 := f.exchange(t, key2)
	if r4.status != http.StatusOK || len(er4.Downloads) != 0 || len(f.entitlement(t, er4).Packages) != 0 {
		t.Fatalf("new key after delivery: %d %s", r4.status, r4.body)
	}

	// A newer product is published: the next key gets exactly it.
	p24 := f.publish("product@24.0.0", catalog.KindProduct, 100, "product >= 23.1.0")
	_, key3 := downloadKey(t, f.site, keySpec{})
	_, er5 := f.exchange(t, key3)
	if len(er5.Downloads) != 1 || er5.Downloads[0].SHA256 != p24.SHA256 {
		t.Fatalf("after publishing 24.0.0: %+v", er5.Downloads)
	}
	// ... but the first key, exchanged again, still gets exactly its answer.
	if r, er := f.exchange(t, key); r.status != http.StatusOK || er.Entitlement != er1.Entitlement {
		t.Fatalf("repeat exchange after a publish changed: %d", r.status)
	}

	// Reissue makes a delivered package entitled again.
	if _, err := f.srv.Reissue(context.Background(), "plant-3", "product@22.1.0"); err != nil {
		t.Fatal(err)
	}
	_, key4 := downloadKey(t, f.site, keySpec{nodes: []catalog.NodeInventory{{Name: "n9", Installed: map[string]catalog.Version{
		"base": catalog.MustVersion("3.4.0"), "product": catalog.MustVersion("21.1.0")}}}})
	_, er6 := f.exchange(t, key4)
	var ids6 []string
	for _, p := range f.entitlement(t, er6).Packages {
		ids6 = append(ids6, p.ID())
	}
	if !slices.Equal(ids6, []string{"product@22.1.0", "product@24.0.0"}) {
		t.Fatalf("after reissue: %v", ids6)
	}
}

func TestExchangeEmptyAndUnreachable(t *testing.T) {
	f := newFixture(t, 10)
	// An empty inventory gets nothing.
	_, key := downloadKey(t, f.site, keySpec{nodes: []catalog.NodeInventory{}})
	r, er := f.exchange(t, key)
	if r.status != http.StatusOK || len(er.Downloads) != 0 {
		t.Fatalf("empty inventory: %d %s", r.status, r.body)
	}
	// A node whose product cannot be reached gets the reachable part, and
	// the server logs why.
	_, key = downloadKey(t, f.site, keySpec{nodes: []catalog.NodeInventory{{Name: "old", Installed: map[string]catalog.Version{
		"base": catalog.MustVersion("3.3.2"), "product": catalog.MustVersion("20.0")}}}})
	r, er = f.exchange(t, key)
	if r.status != http.StatusOK {
		t.Fatal(r.status)
	}
	var ids []string
	for _, p := range f.entitlement(t, er).Packages {
		ids = append(ids, p.ID())
	}
	if !slices.Equal(ids, []string{"base@3.4.0"}) {
		t.Errorf("entitled %v, want only base@3.4.0", ids)
	}
	if logs := f.logs.String(); !strings.Contains(logs, "product 22.1.0 needs product >= 21.1.0; no available package reaches 21.1.0 from 20.0") {
		t.Errorf("unreachable product not logged:\n%s", logs)
	}
}

func TestPublishRules(t *testing.T) {
	f := newFixture(t, 10)
	ctx := context.Background()
	base := f.pkgs["base@3.4.0"]
	path := t.TempDir() + "/base"
	writeFile(t, path, f.files[base.SHA256.String()])
	before := snapshot(t, f.srv)

	// The same file and metadata: idempotent.
	res, err := f.srv.Publish(ctx, PublishRequest{Name: "base", Kind: catalog.KindBase, Version: catalog.MustVersion("3.4.0"),
		Requires: base.Requires, File: path}, nil)
	if err != nil || res.Added || res.Package.SHA256 != base.SHA256 {
		t.Fatalf("republish: %+v %v", res, err)
	}
	for _, tc := range []struct {
		name string
		req  PublishRequest
		data []byte
		want error
	}{
		{"same version, other content", PublishRequest{Name: "base", Kind: catalog.KindBase, Version: catalog.MustVersion("3.4.0")}, []byte("other"), ErrConflict},
		{"same version in another spelling", PublishRequest{Name: "base", Kind: catalog.KindBase, Version: catalog.MustVersion("3.4")}, []byte("other"), ErrConflict},
		{"same file, other metadata", PublishRequest{Name: "base", Kind: catalog.KindBase, Version: catalog.MustVersion("3.4.0"), Reboot: true}, f.files[base.SHA256.String()], ErrConflict},
		{"same file, other version", PublishRequest{Name: "base", Kind: catalog.KindBase, Version: catalog.MustVersion("3.5.0")}, f.files[base.SHA256.String()], ErrConflict},
		{"bad name", PublishRequest{Name: "Base", Kind: catalog.KindBase, Version: catalog.MustVersion("1")}, []byte("x"), ErrBadRequest},
		{"bad kind", PublishRequest{Name: "base", Kind: "firmware", Version: catalog.MustVersion("1")}, []byte("x"), ErrBadRequest},
		{"no version", PublishRequest{Name: "base", Kind: catalog.KindBase}, []byte("x"), ErrBadRequest},
		{"negative settle", PublishRequest{Name: "base", Kind: catalog.KindBase, Version: catalog.MustVersion("9"), Settle: -1}, []byte("x"), ErrBadRequest},
	} {
		p := t.TempDir() + "/pkg"
		writeFile(t, p, tc.data)
		tc.req.File = p
		_, err := f.srv.Publish(ctx, tc.req, nil)
		if !errors.Is(err, tc.want) {
			t.Errorf("%s: err = %v, want %v", tc.name, err, tc.want)
		}
	}
	if _, err := f.srv.Publish(ctx, PublishRequest{Name: "base", Kind: catalog.KindBase, Version: catalog.MustVersion("9"), File: "/nonexistent/x"}, nil); err == nil || fault.Code(err) != fault.ExitOperational {
		t.Errorf("missing file: %v", err)
	}
	if !sameSnapshot(before, snapshot(t, f.srv)) {
		t.Error("refused publishes changed the database")
	}
	// No blob of the refused content was published.
	n := 0
	f.srv.blobs.Walk(func(d catalog.Digest, _ int64, stray string) error {
		if stray == "" {
			n++
		}
		return nil
	})
	if n != len(contractPackages) {
		t.Errorf("%d blobs in the store, want %d", n, len(contractPackages))
	}
}

func TestSitesAndReissueRules(t *testing.T) {
	f := newFixture(t, 10)
	ctx := context.Background()
	// Same site, same key: no-op.
	if _, err := f.srv.AddSite(ctx, "plant-3", f.site.Public().Armored()); err != nil {
		t.Fatal(err)
	}
	other := newKey(t, "other")
	if _, err := f.srv.AddSite(ctx, "plant-3", other.Public().Armored()); !errors.Is(err, ErrSiteConflict) {
		t.Errorf("site with another key: %v", err)
	}
	if _, err := f.srv.AddSite(ctx, "plant-4", f.site.Public().Armored()); !errors.Is(err, ErrSiteConflict) {
		t.Errorf("key of another site: %v", err)
	}
	if _, err := f.srv.AddSite(ctx, "Plant 4", other.Public().Armored()); !errors.Is(err, fault.ErrUsage) {
		t.Errorf("bad name: %v", err)
	}
	if _, err := f.srv.AddSite(ctx, "plant-4", []byte("not a key")); !errors.Is(err, fault.ErrVerification) {
		t.Errorf("not a key: %v", err)
	}
	expired, err := newExpiredKey(t)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.srv.AddSite(ctx, "plant-5", expired.Public().Armored()); !errors.Is(err, fault.ErrVerification) {
		t.Errorf("expired key: %v", err)
	}
	sites, _ := f.srv.Sites(ctx)
	if len(sites) != 1 || sites[0].Name != "plant-3" || sites[0].Fingerprint != f.site.Fingerprint() {
		t.Errorf("sites %+v", sites)
	}

	base := f.pkgs["base@3.4.0"]
	for _, tc := range []struct {
		site, ref string
		want      error
	}{
		{"plant-9", "base@3.4.0", ErrUnknownSite},
		{"plant-3", "base@9.9", ErrUnknownPackage},
		{"plant-3", strings.Repeat("ab", 32), ErrUnknownPackage},
		{"plant-3", "base", ErrBadRequest},
		{"plant-3", "base@3.4.0", ErrNotDelivered},
		{"plant-3", base.SHA256.String(), ErrNotDelivered},
	} {
		if _, err := f.srv.Reissue(ctx, tc.site, tc.ref); !errors.Is(err, tc.want) {
			t.Errorf("reissue %s %s: %v, want %v", tc.site, tc.ref, err, tc.want)
		}
	}
	id, key := downloadKey(t, f.site, keySpec{})
	f.exchange(t, key)
	if _, err := f.srv.Ack(ctx, id, base.SHA256); err != nil {
		t.Fatal(err)
	}
	d, err := f.srv.Reissue(ctx, "plant-3", base.SHA256.String())
	if err != nil || d.Package != "base@3.4.0" || d.KeyID != id {
		t.Fatalf("reissue: %+v %v", d, err)
	}
	if dels, _ := f.srv.Deliveries(ctx, "plant-3"); len(dels) != 0 {
		t.Errorf("ledger after reissue: %+v", dels)
	}
	// The old key may download and acknowledge it again.
	url := downloadURL(id, base.SHA256)
	if g := do(t, f.http.Client(), http.MethodGet, f.http.URL+url, nil); g.status != http.StatusOK {
		t.Errorf("download after reissue: %d", g.status)
	}
	if _, a := f.ack(t, url, base.SHA256.String()); !a.First {
		t.Error("ack after reissue was not first")
	}
	if n := len(snapshot(t, f.srv)["reissues"]); n != 1 {
		t.Errorf("%d reissue records", n)
	}
}

func TestOpenRefusals(t *testing.T) {
	dir := t.TempDir()
	if _, err := Open(Config{Dir: dir}); !errors.Is(err, ErrNotInitialized) || fault.Code(err) != fault.ExitUsage {
		t.Errorf("open of an empty dir: %v", err)
	}
	v := dir + "/v"
	if _, err := Init(v, "", time.Time{}); err != nil {
		t.Fatal(err)
	}
	if _, err := Init(v, "", time.Time{}); !errors.Is(err, ErrDirNotEmpty) {
		t.Errorf("re-init: %v", err)
	}
	s, err := Open(Config{Dir: v})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	start := time.Now()
	if _, err := Open(Config{Dir: v, LockTimeout: 100 * time.Millisecond}); !errors.Is(err, ErrInUse) || fault.Code(err) != fault.ExitPolicy {
		t.Errorf("second open: %v", err)
	}
	if time.Since(start) > 5*time.Second {
		t.Error("second open did not time out promptly")
	}
}

func writeFile(t testing.TB, path string, data []byte) {
	t.Helper()
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
}

// newExpiredKey makes a key that expired a day ago.
func newExpiredKey(t testing.TB) (*keys.PrivateKey, error) {
	return keys.Generate(keys.GenerateOptions{Name: "expired", Now: time.Now().Add(-72 * time.Hour), Expiry: time.Hour})
}
