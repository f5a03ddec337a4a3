package server

import (
	"bytes"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"
)

// FuzzExchange feeds arbitrary bodies to POST /v1/exchange: the handler
// never panics, never answers 5xx, and records nothing unless the body is
// a download key validly signed by the registered site.
func FuzzExchange(f *testing.F) {
	fx := newFixture(f, 10)
	_, good := downloadKey(f, fx.site, keySpec{})
	_, stranger := downloadKey(f, newKey(f, "plant-9"), keySpec{site: "plant-9"})
	_, expired := downloadKey(f, fx.site, keySpec{issued: time.Now().Add(-3 * time.Hour), expires: time.Now().Add(-time.Hour), signedAt: time.Now().Add(-2 * time.Hour)})
	f.Add(good)
	f.Add(stranger)
	f.Add(expired)
	f.Add(bytes.Replace(good, []byte("\n\n"), []byte("\n\nA"), 1))
	f.Add(good[:len(good)/2])
	f.Add(signed(f, fx.site, `{"format":"airlock-download-key/v1","site":"plant-3","id":"aaaaaaaaaaaaaaaaaaaaaaaaaa","issued":"2026-01-01T00:00:00Z","expires":"2099-01-01T00:00:00Z","nodes":[{"name":"n","installed":{"base":null}}]}`))
	f.Add(fx.site.Public().Armored())
	f.Add([]byte("-----BEGIN PGP MESSAGE-----\n\n-----END PGP MESSAGE-----\n"))
	f.Add([]byte{})
	f.Add([]byte{0xa3, 0x01, 0x78, 0x9c})
	h := fx.srv.Handler()
	f.Fuzz(func(t *testing.T, body []byte) {
		before := snapshot(t, fx.srv)
		req := httptest.NewRequest(http.MethodPost, "/v1/exchange", bytes.NewReader(body))
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code >= 500 {
			t.Fatalf("status %d for %q: %s", rec.Code, body, rec.Body)
		}
		if rec.Header().Get("Cache-Control") != "no-store" {
			t.Fatal("no Cache-Control")
		}
		if rec.Code == http.StatusOK {
			return // a valid key: it may be recorded
		}
		if !sameSnapshot(before, snapshot(t, fx.srv)) {
			t.Fatalf("refused body %q changed the database", body)
		}
	})
}
