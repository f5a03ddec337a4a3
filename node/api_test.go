package node

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/airlock-project/airlock/catalog"
)

func TestAuthRequired(t *testing.T) {
	n := newNode(t, Options{})
	for _, tc := range []struct{ name, auth string }{
		{"missing", ""},
		{"wrong", "Bearer " + strings.Repeat("0", 64)},
		{"prefix of the token", "Bearer " + n.token[:32]},
		{"not bearer", "Basic " + n.token},
		{"token with extra", "Bearer " + n.token + "x"},
	} {
		for _, path := range []string{"/v1/status", "/v1/jobs", "/v1/nonexistent"} {
			resp, body := n.doAuth(tc.auth, "GET", path, nil)
			wantStatus(t, tc.name+" "+path, resp, body, http.StatusUnauthorized, "unauthorized")
			if !strings.HasPrefix(resp.Header.Get("WWW-Authenticate"), "Bearer") {
				t.Errorf("%s: WWW-Authenticate %q", tc.name, resp.Header.Get("WWW-Authenticate"))
			}
		}
	}
	// A refused drain changes nothing.
	resp, body := n.doAuth("Bearer nope", "POST", "/v1/drain", nil)
	wantStatus(t, "drain without token", resp, body, http.StatusUnauthorized, "unauthorized")
	if n.status().Drained {
		t.Error("an unauthorised drain drained the node")
	}
	if logs := n.logs.String(); strings.Contains(logs, n.token) || !strings.Contains(logs, "status=401") {
		t.Errorf("logs must record the 401s without the token:\n%s", logs)
	}
}

func TestStatus(t *testing.T) {
	n := newNode(t, Options{}, "base=3.3.2", "product=21.1.0")
	s := n.status()
	if s.Name != "n1" || s.Role != RolePrimary || s.Region != "eu" || s.Drained || s.Connections != 0 {
		t.Errorf("status %+v", s)
	}
	if s.Installed["base"].String() != "3.3.2" || s.Installed["product"].String() != "21.1.0" || len(s.Installed) != 2 {
		t.Errorf("installed %v", s.Installed)
	}
	if s.Time.IsZero() || s.Staged == nil || s.Jobs == nil {
		t.Errorf("time %v, staged %v, jobs %v: want a clock and empty lists", s.Time, s.Staged, s.Jobs)
	}
}

func TestDrainUndrainRole(t *testing.T) {
	n := newNode(t, Options{})
	resp, body := n.do("POST", "/v1/drain", nil)
	wantStatus(t, "drain", resp, body, http.StatusOK, "")
	if !decode[Status](t, body).Drained {
		t.Fatal("drain answered drained=false")
	}
	if st, _ := loadState(n.dir); !st.Drained {
		t.Fatal("drained flag not persisted")
	}
	resp, body = n.do("POST", "/v1/role", strings.NewReader(`{"role":"backup"}`))
	wantStatus(t, "role", resp, body, http.StatusOK, "")
	if st, _ := loadState(n.dir); st.Role != RoleBackup {
		t.Fatalf("role %q not persisted", st.Role)
	}
	for _, bad := range []string{`{"role":"king"}`, `{"role":"backup","x":1}`, `{}`, `not json`} {
		resp, body = n.do("POST", "/v1/role", strings.NewReader(bad))
		wantStatus(t, "role "+bad, resp, body, http.StatusBadRequest, "bad-request")
	}
	if n.status().Role != RoleBackup {
		t.Error("a refused role change changed the role")
	}
	resp, body = n.do("POST", "/v1/undrain", nil)
	wantStatus(t, "undrain", resp, body, http.StatusOK, "")
	if st, _ := loadState(n.dir); st.Drained {
		t.Fatal("undrain not persisted")
	}
}

// stagedNothing checks that nothing about package d is kept on the node.
func stagedNothing(t *testing.T, n *testNode, d catalog.Digest) {
	t.Helper()
	resp, body := n.do("HEAD", "/v1/staged/"+d.String(), nil)
	wantStatus(t, "head after refusal", resp, body, http.StatusNotFound, "")
	for _, sub := range []string{"entitlements", "staging"} {
		ents, err := os.ReadDir(filepath.Join(n.dir, sub))
		if err != nil {
			t.Fatal(err)
		}
		if len(ents) != 0 {
			t.Errorf("%s holds %d entries after a refusal", sub, len(ents))
		}
	}
	if len(n.status().Staged) != 0 {
		t.Error("status lists a staged package after a refusal")
	}
}

func TestEntitlementRefused(t *testing.T) {
	n := newNode(t, Options{})
	data := []byte("payload")
	p := pkg(t, "base", "3.4.0", data)
	good := n.vendor.entitlement(t, p)
	other := pkg(t, "base", "3.5.0", []byte("other"))
	mallory := newVendor(t, "Mallory")

	for _, tc := range []struct {
		name   string
		ent    []byte
		status int
		code   string
		says   string
	}{
		{"bad signature", tamper(t, good), http.StatusUnprocessableEntity, "verification-failed", "does not match"},
		{"untrusted key", mallory.entitlement(t, p), http.StatusForbidden, "untrusted-signer", "not trusted"},
		{"not listed", n.vendor.entitlement(t, other), http.StatusUnprocessableEntity, "not-entitled", p.SHA256.String()},
		{"garbage", []byte("hello"), http.StatusUnprocessableEntity, "verification-failed", ""},
		{"too large", bytes.Repeat([]byte("a"), catalog.MaxDocumentSize+1), http.StatusRequestEntityTooLarge, "too-large", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp, body := n.putEntitlement(p, tc.ent)
			e := wantStatus(t, tc.name, resp, body, tc.status, tc.code)
			if !strings.Contains(e.Error, tc.says) {
				t.Errorf("error %q does not say %q", e.Error, tc.says)
			}
			stagedNothing(t, n, p.SHA256)
			// Data without an accepted entitlement is refused too.
			resp, body = n.do("PUT", "/v1/staged/"+p.SHA256.String(), bytes.NewReader(data))
			wantStatus(t, "data without entitlement", resp, body, http.StatusConflict, "no-entitlement")
			stagedNothing(t, n, p.SHA256)
		})
	}

	// The good one, although expired a week ago, is accepted.
	resp, body := n.putEntitlement(p, good)
	wantStatus(t, "expired but genuine entitlement", resp, body, http.StatusOK, "")
	sp := decode[StagedPackage](t, body)
	if sp.Name != "base" || sp.Version.String() != "3.4.0" || sp.Size != p.Size || sp.Offset != 0 || sp.Complete {
		t.Errorf("staged %+v", sp)
	}
}

func TestBadDigestPath(t *testing.T) {
	n := newNode(t, Options{})
	for _, d := range []string{"abc", strings.Repeat("A", 64), strings.Repeat("0", 64)} {
		resp, body := n.do("HEAD", "/v1/staged/"+d, nil)
		wantStatus(t, "head "+d, resp, body, http.StatusBadRequest, "")
		resp, body = n.do("PUT", "/v1/staged/"+d, strings.NewReader("x"))
		wantStatus(t, "put "+d, resp, body, http.StatusBadRequest, "bad-request")
	}
}

func TestUploadDigestMismatch(t *testing.T) {
	n := newNode(t, Options{})
	data := []byte("the genuine package bytes")
	evil := []byte("the tampered package byte")
	p := pkg(t, "base", "3.4.0", data)
	resp, body := n.putEntitlement(p, n.vendor.entitlement(t, p))
	wantStatus(t, "entitlement", resp, body, http.StatusOK, "")

	resp, body = n.do("PUT", "/v1/staged/"+p.SHA256.String(), bytes.NewReader(evil), HeaderOffset, "0")
	e := wantStatus(t, "tampered data", resp, body, http.StatusUnprocessableEntity, "digest-mismatch")
	if !strings.Contains(e.Error, "base@3.4.0") || !strings.Contains(e.Error, "offset 0") {
		t.Errorf("error %q should name the package and say to restart at 0", e.Error)
	}
	resp, _ = n.do("HEAD", "/v1/staged/"+p.SHA256.String(), nil)
	if resp.StatusCode != http.StatusOK || resp.Header.Get(HeaderOffset) != "0" || resp.Header.Get(HeaderComplete) != "false" {
		t.Fatalf("after a mismatch: HEAD %d offset %q complete %q", resp.StatusCode, resp.Header.Get(HeaderOffset), resp.Header.Get(HeaderComplete))
	}
	if _, err := n.agent.blobs.Stat(p.SHA256); err == nil {
		t.Fatal("tampered data reached the staged store")
	}
	resp, body = n.submit(p.SHA256)
	wantStatus(t, "install after mismatch", resp, body, http.StatusConflict, "not-staged")

	// The genuine bytes then go through.
	resp, body = n.do("PUT", "/v1/staged/"+p.SHA256.String(), bytes.NewReader(data), HeaderOffset, "0")
	wantStatus(t, "genuine data", resp, body, http.StatusOK, "")
	if !decode[StagedPackage](t, body).Complete {
		t.Fatal("genuine data not complete")
	}
}

func TestResumableUpload(t *testing.T) {
	n := newNode(t, Options{})
	data := make([]byte, 1<<20+123)
	rand.Read(data)
	p := pkg(t, "base", "3.4.0", data)
	url := "/v1/staged/" + p.SHA256.String()
	resp, body := n.putEntitlement(p, n.vendor.entitlement(t, p))
	wantStatus(t, "entitlement", resp, body, http.StatusOK, "")

	half := int64(len(data) / 2)
	resp, body = n.do("PUT", url, bytes.NewReader(data[:half]), HeaderOffset, "0")
	wantStatus(t, "first half", resp, body, http.StatusOK, "")
	if sp := decode[StagedPackage](t, body); sp.Offset != half || sp.Complete {
		t.Fatalf("after the first half: %+v", sp)
	}
	resp, _ = n.do("HEAD", url, nil)
	if resp.StatusCode != http.StatusOK || resp.Header.Get(HeaderOffset) != itoa(half) ||
		resp.Header.Get(HeaderSize) != itoa(p.Size) || resp.Header.Get(HeaderComplete) != "false" {
		t.Fatalf("HEAD: %d offset %q size %q complete %q", resp.StatusCode, resp.Header.Get(HeaderOffset), resp.Header.Get(HeaderSize), resp.Header.Get(HeaderComplete))
	}

	// Wrong offsets are refused with the right one, and change nothing.
	for _, off := range []string{"0", itoa(half - 1), itoa(half + 1)} {
		resp, body = n.do("PUT", url, bytes.NewReader(data[half:]), HeaderOffset, off)
		wantStatus(t, "offset "+off, resp, body, http.StatusConflict, "offset-mismatch")
		if resp.Header.Get(HeaderOffset) != itoa(half) {
			t.Errorf("offset %s: 409 says offset %q, want %d", off, resp.Header.Get(HeaderOffset), half)
		}
	}
	resp, body = n.do("PUT", url, strings.NewReader("x"), HeaderOffset, "-1")
	wantStatus(t, "negative offset", resp, body, http.StatusBadRequest, "bad-request")
	// A chunk running past the signed size is dropped whole.
	resp, body = n.do("PUT", url, bytes.NewReader(append(append([]byte{}, data[half:]...), 'x')), HeaderOffset, itoa(half))
	wantStatus(t, "too long", resp, body, http.StatusRequestEntityTooLarge, "too-large")
	if got := n.agent.partialSize(p.SHA256); got != half {
		t.Fatalf("after refused chunks the node holds %d bytes, want %d", got, half)
	}

	// The rest, by Content-Range this time.
	cr := "bytes " + itoa(half) + "-" + itoa(p.Size-1) + "/" + itoa(p.Size)
	resp, body = n.do("PUT", url, bytes.NewReader(data[half:]), "Content-Range", cr)
	wantStatus(t, "second half", resp, body, http.StatusOK, "")
	if sp := decode[StagedPackage](t, body); !sp.Complete || sp.Offset != p.Size {
		t.Fatalf("after the second half: %+v", sp)
	}
	got, err := os.ReadFile(n.agent.blobs.Path(p.SHA256))
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("staged file differs from the package (%v)", err)
	}
	if _, err := os.Stat(n.agent.partPath(p.SHA256)); !os.IsNotExist(err) {
		t.Errorf("partial file still there: %v", err)
	}
	s := n.status()
	if len(s.Staged) != 1 || !s.Staged[0].Complete || s.Staged[0].SHA256 != p.SHA256 || s.Staged[0].Name != "base" {
		t.Errorf("status staged %+v", s.Staged)
	}
	// Putting it again is answered at once.
	resp, body = n.do("PUT", url, bytes.NewReader(data), HeaderOffset, "0")
	wantStatus(t, "again", resp, body, http.StatusOK, "")
	if !decode[StagedPackage](t, body).Complete {
		t.Error("re-put of a complete package not complete")
	}
}

// breakingReader returns n bytes, then an error, like a cut connection.
type breakingReader struct {
	data []byte
	n    int
}

func (b *breakingReader) Read(p []byte) (int, error) {
	if b.n == 0 {
		return 0, errors.New("connection reset")
	}
	m := copy(p, b.data[:min(len(b.data), b.n, len(p))])
	b.data, b.n = b.data[m:], b.n-m
	return m, nil
}

func TestUploadBrokenConnectionKeepsData(t *testing.T) {
	n := newNode(t, Options{})
	data := bytes.Repeat([]byte("0123456789"), 10000)
	p := pkg(t, "base", "3.4.0", data)
	if _, err := n.agent.PutEntitlement(p.SHA256, n.vendor.entitlement(t, p)); err != nil {
		t.Fatal(err)
	}
	_, err := n.agent.PutData(context.Background(), p.SHA256, Chunk{Length: -1, Total: -1}, &breakingReader{data: data, n: 4321})
	if err == nil || !strings.Contains(err.Error(), "resume there") {
		t.Fatalf("broken upload: err %v", err)
	}
	sp, err := n.agent.StagedInfo(p.SHA256)
	if err != nil || sp.Offset != 4321 || sp.Complete {
		t.Fatalf("after the break: %+v, %v; want offset 4321", sp, err)
	}
	sp, err = n.agent.PutData(context.Background(), p.SHA256, Chunk{Offset: 4321, Length: -1, Total: -1}, bytes.NewReader(data[4321:]))
	if err != nil || !sp.Complete {
		t.Fatalf("resume: %+v, %v", sp, err)
	}
}

func TestUploadConcurrencyBounds(t *testing.T) {
	n := newNode(t, Options{MaxUploads: 1})
	a, b := []byte("package a data"), []byte("package b data")
	pa, pb := pkg(t, "base", "3.4.0", a), pkg(t, "product", "22.1.0", b)
	for _, p := range []catalog.Package{pa, pb} {
		if _, err := n.agent.PutEntitlement(p.SHA256, n.vendor.entitlement(t, p)); err != nil {
			t.Fatal(err)
		}
	}
	pr, pw := io.Pipe()
	done := make(chan error, 1)
	go func() {
		_, err := n.agent.PutData(context.Background(), pa.SHA256, Chunk{Length: -1, Total: -1}, pr)
		done <- err
	}()
	pw.Write(a[:3]) // returns once the upload is reading: it holds its slot
	if _, err := n.agent.PutData(context.Background(), pa.SHA256, Chunk{Length: -1, Total: -1}, bytes.NewReader(a)); !errors.Is(err, ErrUploadBusy) {
		t.Errorf("second upload of the same package: %v, want ErrUploadBusy", err)
	}
	if _, err := n.agent.PutData(context.Background(), pb.SHA256, Chunk{Length: -1, Total: -1}, bytes.NewReader(b)); !errors.Is(err, ErrBusy) {
		t.Errorf("upload beyond MaxUploads: %v, want ErrBusy", err)
	}
	pw.Write(a[3:])
	pw.Close()
	if err := <-done; err != nil {
		t.Fatalf("first upload: %v", err)
	}
	if _, err := n.agent.PutData(context.Background(), pb.SHA256, Chunk{Length: -1, Total: -1}, bytes.NewReader(b)); err != nil {
		t.Errorf("upload after the slot freed: %v", err)
	}
}

func TestInstallRefusedByPolicy(t *testing.T) {
	n := newNode(t, Options{}, "base=3.4.0", "product=21.1.0")
	older := []byte("base 3.3.2")
	same := []byte("base 3.4.0 again")
	needs := []byte("product 23.1.0")
	pOlder := pkg(t, "base", "3.3.2", older)
	pSame := pkg(t, "base", "3.4.0", same)
	pNeeds := pkg(t, "product", "23.1.0", needs, "product >= 22.1.0", "base >= 3.4.0")
	for _, s := range []struct {
		p    catalog.Package
		data []byte
	}{{pOlder, older}, {pSame, same}, {pNeeds, needs}} {
		n.stage(s.p, s.data)
	}
	for _, tc := range []struct {
		p    catalog.Package
		code string
		says []string
	}{
		{pOlder, "downgrade", []string{"base 3.4.0", "base@3.3.2", "n1"}},
		{pSame, "already-installed", []string{"base 3.4.0", "n1"}},
		{pNeeds, "requires-unmet", []string{"product >= 22.1.0", "has 21.1.0", "product@23.1.0"}},
	} {
		resp, body := n.submit(tc.p.SHA256)
		e := wantStatus(t, "install "+tc.p.ID(), resp, body, http.StatusConflict, tc.code)
		for _, s := range tc.says {
			if !strings.Contains(e.Error, s) {
				t.Errorf("%s: error %q does not name %q", tc.p.ID(), e.Error, s)
			}
		}
		if strings.Contains(e.Error, "base >= 3.4.0") {
			t.Errorf("%s: error %q lists a requirement that holds", tc.p.ID(), e.Error)
		}
	}
	missing := pkg(t, "base", "9.0.0", []byte("never staged"))
	resp, body := n.submit(missing.SHA256)
	wantStatus(t, "install of an unknown package", resp, body, http.StatusConflict, "not-staged")
	resp, body = n.do("POST", "/v1/install", strings.NewReader(`{"sha256":"nope"}`))
	wantStatus(t, "install of a bad digest", resp, body, http.StatusBadRequest, "bad-request")

	s := n.status()
	if len(s.Jobs) != 0 || s.Installed["base"].String() != "3.4.0" || s.Installed["product"].String() != "21.1.0" {
		t.Errorf("after refusals: jobs %v, installed %v", s.Jobs, s.Installed)
	}
	if len(n.releases("base")) != 0 || len(n.releases("product")) != 0 {
		t.Errorf("refusals left releases: %v %v", n.releases("base"), n.releases("product"))
	}
	resp, body = n.do("GET", "/v1/jobs/nope", nil)
	wantStatus(t, "unknown job", resp, body, http.StatusNotFound, "not-found")
}

func TestParseChunk(t *testing.T) {
	for _, tc := range []struct {
		offset, crange string
		cl             int64
		want           Chunk
		ok             bool
	}{
		{"", "", -1, Chunk{0, -1, -1}, true},
		{"10", "", 5, Chunk{10, 5, -1}, true},
		{"", "bytes 10-19/100", 10, Chunk{10, 10, 100}, true},
		{"", "bytes 10-19/*", -1, Chunk{10, 10, -1}, true},
		{"", "bytes 10-19/100", 11, Chunk{}, false},
		{"", "bytes 19-10/100", -1, Chunk{}, false},
		{"", "bytes 10-19/19", -1, Chunk{}, false},
		{"", "items 1-2/3", -1, Chunk{}, false},
		{"1", "bytes 1-2/3", -1, Chunk{}, false},
		{"x", "", -1, Chunk{}, false},
		{"", "bytes 0-9223372036854775807/*", -1, Chunk{}, false},
		{"-5", "", -1, Chunk{}, false},
	} {
		r, _ := http.NewRequest("PUT", "/", nil)
		r.ContentLength = tc.cl
		if tc.offset != "" {
			r.Header.Set(HeaderOffset, tc.offset)
		}
		if tc.crange != "" {
			r.Header.Set("Content-Range", tc.crange)
		}
		got, err := parseChunk(r)
		if (err == nil) != tc.ok || (tc.ok && got != tc.want) {
			t.Errorf("offset %q range %q length %d: %+v, %v; want %+v ok=%v", tc.offset, tc.crange, tc.cl, got, err, tc.want, tc.ok)
		}
		if err != nil && !errors.Is(err, ErrBadRequest) {
			t.Errorf("error %v is not ErrBadRequest", err)
		}
	}
}

func FuzzParseChunk(f *testing.F) {
	f.Add("", "bytes 0-9/10", int64(10))
	f.Add("12", "", int64(-1))
	f.Add("", "bytes 9223372036854775806-9223372036854775807/*", int64(-1))
	f.Fuzz(func(t *testing.T, offset, crange string, cl int64) {
		r, _ := http.NewRequest("PUT", "/", nil)
		r.ContentLength = cl
		r.Header[HeaderOffset] = []string{offset}
		r.Header["Content-Range"] = []string{crange}
		c, err := parseChunk(r)
		if err != nil {
			return
		}
		if c.Offset < 0 || c.Length < -1 || (c.Total >= 0 && c.Length >= 0 && c.Offset+c.Length > c.Total) {
			t.Fatalf("parseChunk(%q, %q, %d) = %+v", offset, crange, cl, c)
		}
	})
}
