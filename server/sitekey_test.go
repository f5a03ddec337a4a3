package server

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"testing"

	"github.com/airlock-project/airlock/keys"
	"github.com/airlock-project/airlock/keys/keytest"
)

// TestSiteKeyLifecycle: a site's registered key is updated by a new copy,
// revoked by its revoked copy (its download keys refused from then on),
// and replaced by a new key once dead, or at once with ReplaceSiteKey; the
// site keeps its name throughout.
func TestSiteKeyLifecycle(t *testing.T) {
	f := newFixture(t, 10)
	ctx := context.Background()
	accepts := func(k *keys.PrivateKey, want bool) {
		t.Helper()
		_, dk := downloadKey(t, k, keySpec{})
		r, _ := f.exchange(t, dk)
		if got := r.status == http.StatusOK; got != want {
			t.Errorf("download key signed by %s: status %d %s, want accepted=%v", k.Fingerprint(), r.status, r.body, want)
		}
	}
	change := func(site Site, err error, want string) {
		t.Helper()
		if err != nil || site.Change != want {
			t.Fatalf("got %+v, %v; want change %q", site, err, want)
		}
	}

	site, err := f.srv.AddSite(ctx, "plant-3", f.site.Public().Armored())
	change(site, err, "unchanged")

	renewed, err := keytest.RenewedPublic(f.site)
	if err != nil {
		t.Fatal(err)
	}
	site, err = f.srv.AddSite(ctx, "plant-3", renewed)
	change(site, err, "updated")
	accepts(f.site, true)

	revoked, err := keytest.RevokedPublic(f.site)
	if err != nil {
		t.Fatal(err)
	}
	site, err = f.srv.AddSite(ctx, "plant-3", revoked)
	change(site, err, "revoked")
	accepts(f.site, false)
	if _, err := f.srv.AddSite(ctx, "plant-3", f.site.Public().Armored()); !errors.Is(err, ErrSiteConflict) || !strings.Contains(err.Error(), "recorded as revoked") {
		t.Errorf("an unrevoked copy after the revocation: %v", err)
	}

	second := newKey(t, "plant-3 second")
	site, err = f.srv.AddSite(ctx, "plant-3", second.Public().Armored())
	change(site, err, "replaced")
	accepts(second, true)
	accepts(f.site, false)

	third := newKey(t, "plant-3 third")
	if _, err := f.srv.AddSite(ctx, "plant-3", third.Public().Armored()); !errors.Is(err, ErrSiteConflict) || !strings.Contains(err.Error(), "--replace") {
		t.Errorf("another key while the site's is valid: %v", err)
	}
	site, err = f.srv.ReplaceSiteKey(ctx, "plant-3", third.Public().Armored())
	change(site, err, "replaced")
	accepts(third, true)
	accepts(second, false)

	if _, err := f.srv.ReplaceSiteKey(ctx, "plant-9", newKey(t, "plant-9").Public().Armored()); !errors.Is(err, ErrUnknownSite) {
		t.Errorf("replace the key of an unknown site: %v", err)
	}
	sites, err := f.srv.Sites(ctx)
	if err != nil || len(sites) != 1 || sites[0].Fingerprint != third.Fingerprint() {
		t.Errorf("sites %+v, %v", sites, err)
	}
}
