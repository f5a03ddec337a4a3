package server

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/airlock-project/airlock/fault"
	"github.com/airlock-project/airlock/keys"
)

// TestSiteKeyDeadAtExchange: a download key signed by a registered site key
// that has since expired is refused with the vendor's remedy (the site key's
// registration), never with another program's (airlock trust).
func TestSiteKeyDeadAtExchange(t *testing.T) {
	f := newFixture(t, 100)
	now := time.Now()
	plant5, err := keys.Generate(keys.GenerateOptions{Name: "airlock site plant-5", Now: now.Add(-time.Hour), Expiry: 2 * time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.srv.AddSite(context.Background(), "plant-5", plant5.Public().Armored()); err != nil {
		t.Fatal(err)
	}
	_, dk := downloadKey(t, plant5, keySpec{site: "plant-5"})
	f.srv.now = func() time.Time { return now.Add(90 * time.Minute) }
	r := do(t, f.http.Client(), http.MethodPost, f.http.URL+"/v1/exchange", dk)
	e := r.errorResponse(t)
	if r.status != http.StatusForbidden || e.Reason != ReasonBadSignature {
		t.Errorf("got %d %q, want 403 %q", r.status, e.Reason, ReasonBadSignature)
	}
	want := fmt.Sprintf("download key refused: signed by %s (airlock site plant-5), whose key expired at %s; that is the site key registered at this vendor",
		plant5.Fingerprint(), plant5.Public().Expires().UTC().Format(time.RFC3339))
	if !strings.HasPrefix(e.Error, want) || strings.Contains(e.Error, "airlock trust") || strings.Contains(e.Error, "airlock key new") {
		t.Errorf("message %q, want it to start %q and give only the vendor's remedy", e.Error, want)
	}

	// AddSite states the fact in the vendor's words and keeps the keys error.
	_, err = f.srv.AddSite(context.Background(), "plant-6", plant5.Public().Armored())
	var ve *keys.VerifyError
	if !errors.As(err, &ve) || ve.Kind != keys.ErrKeyExpired || fault.Code(err) != fault.ExitVerification ||
		err.Error() != fmt.Sprintf("signing key expired: key %s expired at %s; ask the site for its current public key (REPO/site.pub.asc)", plant5.Fingerprint(), ve.Expired.UTC().Format(time.RFC3339)) {
		t.Errorf("AddSite of an expired key: %v", err)
	}
}

// TestVendorKeyDeadIsInternal: the vendor's own key failing to sign is the
// server's state, logged, not a refusal of the download key.
func TestVendorKeyDeadIsInternal(t *testing.T) {
	old, err := keys.Generate(keys.GenerateOptions{Name: "Old Vendor", Now: time.Now().Add(-3 * time.Hour), Expiry: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	var sig strings.Builder
	err = old.SignMessage(&sig, []byte("entitlement"))
	if !errors.Is(err, keys.ErrKeyExpired) {
		t.Fatalf("signing with an expired key: %v", err)
	}
	if a := exchangeError(fmt.Errorf("sign entitlement: %w", err), nil, time.Now()); a.status != http.StatusInternalServerError {
		t.Errorf("got %d %s: %s, want an internal error", a.status, a.reason, a.msg)
	}
}
