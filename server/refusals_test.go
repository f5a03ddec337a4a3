package server

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ProtonMail/go-crypto/openpgp/armor"

	"github.com/airlock-project/airlock/catalog"
	"github.com/airlock-project/airlock/keys"
)

// alterPayload replaces old with new in the literal data of an armored signed
// message and re-armors it, so that the armor is intact and only the
// signature fails.
func alterPayload(t testing.TB, msg []byte, old, new string) []byte {
	t.Helper()
	blk, err := armor.Decode(bytes.NewReader(msg))
	if err != nil {
		t.Fatal(err)
	}
	raw, err := io.ReadAll(blk.Body)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(raw, []byte(old)) || len(old) != len(new) {
		t.Fatalf("payload has no %q", old)
	}
	raw = bytes.Replace(raw, []byte(old), []byte(new), 1)
	var out bytes.Buffer
	w, err := armor.Encode(&out, blk.Type, nil)
	if err != nil {
		t.Fatal(err)
	}
	w.Write(raw)
	w.Close()
	return out.Bytes()
}

// signed signs an arbitrary payload as a message.
func signed(t testing.TB, k *keys.PrivateKey, payload string) []byte {
	t.Helper()
	var buf bytes.Buffer
	if err := k.SignMessage(&buf, []byte(payload)); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// unknownLength hides the length of a body, so that it is sent chunked.
type unknownLength struct{ io.Reader }

func TestExchangeRefusals(t *testing.T) {
	f := newFixture(t, 100)
	ctx := context.Background()
	plant4 := newKey(t, "plant-4")
	if _, err := f.srv.AddSite(ctx, "plant-4", plant4.Public().Armored()); err != nil {
		t.Fatal(err)
	}
	stranger := newKey(t, "plant-9")
	now := time.Now()
	_, good := downloadKey(t, f.site, keySpec{})
	_, strangerKey := downloadKey(t, stranger, keySpec{site: "plant-9"})
	_, vendorKey := downloadKey(t, f.srv.vendor, keySpec{})
	_, mismatched := downloadKey(t, f.site, keySpec{site: "plant-4"})
	_, expired := downloadKey(t, f.site, keySpec{issued: now.Add(-3 * time.Hour), expires: now.Add(-time.Hour), signedAt: now.Add(-2 * time.Hour)})
	_, futureSig := downloadKey(t, f.site, keySpec{issued: now.Add(time.Hour), expires: now.Add(72 * time.Hour), signedAt: now.Add(time.Hour)})
	_, futureIssue := downloadKey(t, f.site, keySpec{issued: now.Add(time.Hour), expires: now.Add(72 * time.Hour)})
	// A site key that signs a document of another format.
	entLike := signed(t, f.site, `{"format":"airlock-entitlement/v1","site":"plant-3"}`)
	tampered := []byte(strings.Replace(string(good), "\n\n", "\n\nA", 1))
	tooBig := append(bytes.Repeat([]byte("A"), MaxExchangeBody), good...)

	for _, tc := range []struct {
		name    string
		body    []byte
		chunked bool
		method  string
		status  int
		reason  string
		mention string // the message must contain it
	}{
		{name: "unregistered site", body: strangerKey, status: 403, reason: ReasonUnknownSite, mention: "site add"},
		{name: "wrong role key (vendor)", body: vendorKey, status: 403, reason: ReasonUnknownSite, mention: "not registered for any site"},
		{name: "key of another site", body: mismatched, status: 403, reason: ReasonBadSignature, mention: `names site "plant-4"`},
		{name: "bad signature", body: alterPayload(t, good, `"site":"plant-3"`, `"site":"plant-4"`), status: 403, reason: ReasonBadSignature},
		{name: "expired", body: expired, status: 422, reason: ReasonClock, mention: "ask the restricted-side admin for a new download key ('airlock key new')"},
		{name: "signed in the future", body: futureSig, status: 422, reason: ReasonClock, mention: "check the clock of the restricted admin host"},
		{name: "issued in the future", body: futureIssue, status: 422, reason: ReasonClock, mention: "check the clock of the restricted admin host"},
		{name: "not armored", body: []byte("hello"), status: 400, reason: ReasonMalformed},
		{name: "empty", body: []byte{}, status: 400, reason: ReasonMalformed, mention: "airlock key new"},
		{name: "binary junk", body: []byte{0x99, 0x01, 0xff, 0x00, 0x13}, status: 400, reason: ReasonMalformed},
		{name: "signed non-key JSON", body: entLike, status: 400, reason: ReasonMalformed},
		{name: "signed non-JSON", body: signed(t, f.site, "not json"), status: 400, reason: ReasonMalformed},
		{name: "public key instead of a message", body: f.site.Public().Armored(), status: 400, reason: ReasonMalformed},
		{name: "oversize", body: tooBig, status: 413, reason: ReasonTooLarge},
		{name: "oversize, chunked", body: tooBig, chunked: true, status: 413, reason: ReasonTooLarge},
		{name: "GET", body: nil, method: http.MethodGet, status: 405, reason: ReasonMethodNotAllowed},
		{name: "tampered armor", body: tampered, status: -1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := snapshot(t, f.srv)
			method := cmpOr(tc.method, http.MethodPost)
			var body io.Reader = bytes.NewReader(tc.body)
			if tc.chunked {
				body = unknownLength{bytes.NewReader(tc.body)}
			}
			req, _ := http.NewRequest(method, f.http.URL+"/v1/exchange", body)
			if tc.body == nil {
				req.Body = nil
			}
			res, err := f.http.Client().Do(req)
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(res.Body)
			res.Body.Close()
			r := response{status: res.StatusCode, header: res.Header, body: b}
			e := r.errorResponse(t)
			t.Logf("%d %s: %s", r.status, e.Reason, e.Error)
			if tc.status == -1 {
				if r.status != 400 && r.status != 403 {
					t.Errorf("status %d %s, want 400 or 403", r.status, b)
				}
			} else if r.status != tc.status || e.Reason != tc.reason {
				t.Errorf("got %d %q (%s), want %d %q", r.status, e.Reason, e.Error, tc.status, tc.reason)
			}
			if !strings.Contains(e.Error, tc.mention) {
				t.Errorf("message %q does not mention %q", e.Error, tc.mention)
			}
			if r.header.Get("Cache-Control") != "no-store" || r.header.Get("Content-Type") != "application/json" {
				t.Errorf("headers %v", r.header)
			}
			if !sameSnapshot(before, snapshot(t, f.srv)) {
				t.Error("the refusal changed the database")
			}
		})
	}
	// The good key still works after all that.
	if r, _ := f.exchange(t, good); r.status != 200 {
		t.Fatalf("good key: %d %s", r.status, r.body)
	}
}

func TestDownloadRefusals(t *testing.T) {
	f := newFixture(t, 100)
	id, key := downloadKey(t, f.site, keySpec{})
	if r, _ := f.exchange(t, key); r.status != 200 {
		t.Fatal(r.status)
	}
	base := f.pkgs["base@3.4.0"].SHA256.String()
	product := f.pkgs["product@22.1.0"].SHA256.String()
	outside := f.publish("hotfix@1", catalog.KindHotfix, 10, "base >= 99").SHA256.String()
	other, _ := catalog.NewKeyID()
	noRedirect := *f.http.Client()
	noRedirect.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }

	type step struct {
		name, method, path string
		body               []byte
		status             int
		reason             string
	}
	steps := []step{
		{"key never exchanged", "GET", "/v1/downloads/" + string(other) + "/" + base, nil, 404, ReasonNotEntitled},
		{"package not entitled", "GET", "/v1/downloads/" + string(id) + "/" + outside, nil, 404, ReasonNotEntitled},
		{"HEAD not entitled", "HEAD", "/v1/downloads/" + string(id) + "/" + outside, nil, 404, ""},
		{"malformed key id", "GET", "/v1/downloads/NOTAKEY/" + base, nil, 400, ReasonMalformed},
		{"malformed digest", "GET", "/v1/downloads/" + string(id) + "/" + strings.ToUpper(base), nil, 400, ReasonMalformed},
		{"ack with wrong digest", "POST", "/v1/downloads/" + string(id) + "/" + base + "/ack", ackBody(product), 400, ReasonMalformed},
		{"ack not JSON", "POST", "/v1/downloads/" + string(id) + "/" + base + "/ack", []byte("yes"), 400, ReasonMalformed},
		{"ack with extra field", "POST", "/v1/downloads/" + string(id) + "/" + base + "/ack", []byte(`{"sha256":"` + base + `","first":true}`), 400, ReasonMalformed},
		{"ack empty", "POST", "/v1/downloads/" + string(id) + "/" + base + "/ack", nil, 400, ReasonMalformed},
		{"ack too large", "POST", "/v1/downloads/" + string(id) + "/" + base + "/ack", bytes.Repeat([]byte(" "), 5000), 413, ReasonTooLarge},
		{"ack not entitled", "POST", "/v1/downloads/" + string(id) + "/" + outside + "/ack", ackBody(outside), 404, ReasonNotEntitled},
		{"ack by a key never exchanged", "POST", "/v1/downloads/" + string(other) + "/" + base + "/ack", ackBody(base), 404, ReasonNotEntitled},
		{"GET on ack", "GET", "/v1/downloads/" + string(id) + "/" + base + "/ack", nil, 405, ReasonMethodNotAllowed},
		{"POST on download", "POST", "/v1/downloads/" + string(id) + "/" + base, nil, 405, ReasonMethodNotAllowed},
		{"unknown path", "GET", "/v1/other", nil, 404, ReasonNotFound},
		{"root", "GET", "/", nil, 404, ReasonNotFound},
		{"unclean path (no redirect)", "GET", "/v1/downloads/" + string(id) + "/../" + string(id) + "/" + base, nil, 404, ReasonNotFound},
		{"double slash (no redirect)", "POST", "/v1//exchange", key, 404, ReasonNotFound},
		{"escaped path", "GET", "/v1/downloads/" + string(id) + "%2F" + base, nil, 404, ReasonNotFound},
	}
	run := func(t *testing.T, s step) {
		before := snapshot(t, f.srv)
		r := do(t, &noRedirect, s.method, f.http.URL+s.path, s.body)
		if r.status != s.status {
			t.Fatalf("status %d (%s), want %d", r.status, r.body, s.status)
		}
		if s.method != "HEAD" {
			e := r.errorResponse(t)
			t.Logf("%d %s: %s", r.status, e.Reason, e.Error)
			if e.Reason != s.reason {
				t.Errorf("reason %q (%s), want %q", e.Reason, e.Error, s.reason)
			}
		}
		if r.header.Get("Location") != "" || r.header.Get("Cache-Control") != "no-store" {
			t.Errorf("headers %v", r.header)
		}
		if !sameSnapshot(before, snapshot(t, f.srv)) {
			t.Error("the refusal changed the database")
		}
	}
	for _, s := range steps {
		t.Run(s.name, func(t *testing.T) { run(t, s) })
	}

	// After delivery: downloads are gone, by this key and by another key
	// of the same site that was entitled before the delivery.
	id2, key2 := downloadKey(t, f.site, keySpec{})
	if r, _ := f.exchange(t, key2); r.status != 200 {
		t.Fatal(r.status)
	}
	if r, a := f.ack(t, downloadURL(id, f.pkgs["base@3.4.0"].SHA256), base); r.status != 200 || !a.First {
		t.Fatalf("ack: %d %s", r.status, r.body)
	}
	for _, s := range []step{
		{"download after delivered", "GET", "/v1/downloads/" + string(id) + "/" + base, nil, 410, ReasonDelivered},
		{"download after delivered, other key", "GET", "/v1/downloads/" + string(id2) + "/" + base, nil, 410, ReasonDelivered},
	} {
		t.Run(s.name, func(t *testing.T) { run(t, s) })
	}
	// A late ack by the other key records nothing new.
	before := snapshot(t, f.srv)
	if r, a := f.ack(t, downloadURL(id2, f.pkgs["base@3.4.0"].SHA256), base); r.status != 200 || a.First {
		t.Fatalf("second key's ack: %d %s", r.status, r.body)
	}
	if !sameSnapshot(before, snapshot(t, f.srv)) {
		t.Error("a repeated ack changed the database")
	}
}

func TestRangeResume(t *testing.T) {
	f := newFixture(t, 1<<20+17)
	_, key := downloadKey(t, f.site, keySpec{})
	_, er := f.exchange(t, key)
	d := er.Downloads[1]
	data := f.files[d.SHA256.String()]
	etag := `"` + d.SHA256.String() + `"`

	for _, tc := range []struct {
		rng        string
		ifRange    string
		status     int
		start, end int // expected body data[start:end]
	}{
		{"bytes=1000-", "", 206, 1000, len(data)},
		{"bytes=0-0", "", 206, 0, 1},
		{"bytes=500000-600000", "", 206, 500000, 600001},
		{"bytes=-17", "", 206, len(data) - 17, len(data)},
		{"bytes=1000-", etag, 206, 1000, len(data)},
		{"bytes=1000-", `"other"`, 200, 0, len(data)}, // changed validator: whole file
	} {
		h := []string{"Range", tc.rng}
		if tc.ifRange != "" {
			h = append(h, "If-Range", tc.ifRange)
		}
		r := do(t, f.http.Client(), http.MethodGet, f.http.URL+d.URL, nil, h...)
		if r.status != tc.status || !bytes.Equal(r.body, data[tc.start:tc.end]) {
			t.Errorf("Range %s If-Range %s: %d, %d bytes; want %d, %d bytes", tc.rng, tc.ifRange, r.status, len(r.body), tc.status, tc.end-tc.start)
		}
		if r.header.Get("Content-Length") == "" || r.header.Get("ETag") != etag {
			t.Errorf("Range %s: headers %v", tc.rng, r.header)
		}
		if tc.status == 206 {
			want := "bytes " + itoa(tc.start) + "-" + itoa(tc.end-1) + "/" + itoa(len(data))
			if cr := r.header.Get("Content-Range"); cr != want {
				t.Errorf("Content-Range %q, want %q", cr, want)
			}
		}
	}
	if r := do(t, f.http.Client(), http.MethodGet, f.http.URL+d.URL, nil, "Range", "bytes=99999999-"); r.status != http.StatusRequestedRangeNotSatisfiable {
		t.Errorf("range past the end: %d", r.status)
	}
	h := do(t, f.http.Client(), http.MethodHead, f.http.URL+d.URL, nil)
	if h.status != 200 || h.header.Get("Content-Length") != itoa(len(data)) || len(h.body) != 0 {
		t.Errorf("HEAD: %d %v", h.status, h.header)
	}
	// A broken transfer (a range, a HEAD) never burns the download.
	if dels, _ := f.srv.Deliveries(context.Background(), ""); len(dels) != 0 {
		t.Errorf("downloads without ack recorded deliveries: %v", dels)
	}
}

func itoa(n int) string { return strconv.Itoa(n) }

func cmpOr(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

// TestKeyIDReusedByAnotherSite: a key id already answered for one site is
// not answered for another, even with a valid signature.
func TestKeyIDReusedByAnotherSite(t *testing.T) {
	f := newFixture(t, 10)
	plant4 := newKey(t, "plant-4")
	if _, err := f.srv.AddSite(context.Background(), "plant-4", plant4.Public().Armored()); err != nil {
		t.Fatal(err)
	}
	id, key := downloadKey(t, f.site, keySpec{})
	if r, _ := f.exchange(t, key); r.status != 200 {
		t.Fatal(r.status)
	}
	before := snapshot(t, f.srv)
	_, copycat := downloadKey(t, plant4, keySpec{site: "plant-4", id: id})
	r, _ := f.exchange(t, copycat)
	// The answer does not tell plant-4 which site used the id.
	if e := r.errorResponse(t); r.status != 403 || e.Reason != ReasonBadSignature || !strings.Contains(e.Error, "already used by another download key") || strings.Contains(e.Error, "plant-3") {
		t.Errorf("reused id: %d %s", r.status, r.body)
	}
	if !sameSnapshot(before, snapshot(t, f.srv)) {
		t.Error("the refusal changed the database")
	}
}

// TestInternalError: a package file missing from the store is a 500 with
// reason internal, a message that reveals nothing, and an error in the log.
func TestInternalError(t *testing.T) {
	f := newFixture(t, 10)
	_, key := downloadKey(t, f.site, keySpec{})
	_, er := f.exchange(t, key)
	d := er.Downloads[0]
	if err := os.Remove(f.srv.blobs.Path(d.SHA256)); err != nil {
		t.Fatal(err)
	}
	r := do(t, f.http.Client(), http.MethodGet, f.http.URL+d.URL, nil)
	e := r.errorResponse(t)
	if r.status != 500 || e.Reason != ReasonInternal || strings.Contains(e.Error, f.dir) {
		t.Errorf("missing file: %d %s", r.status, r.body)
	}
	if logs := f.logs.String(); !strings.Contains(logs, `"level":"ERROR"`) || !strings.Contains(logs, "package file "+d.SHA256.String()+" missing") {
		t.Errorf("internal error not logged:\n%s", logs)
	}
}

func TestScrubKeepsDigestsWhole(t *testing.T) {
	id := "kzm7zlabcdefghijklmnopqrst"
	// A digest with a 26-character run of base32-looking letters inside it.
	d := "cf19bb4d1012f62c4a3d4bcfc443cc655323fa6c54233c145f67604789cc2c41"
	got := scrub("/v1/downloads/" + id + "/" + d)
	if want := "/v1/downloads/kzm7zl…/" + d; got != want {
		t.Fatalf("scrub = %q, want %q", got, want)
	}
}
