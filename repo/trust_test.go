package repo

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/airlock-project/airlock/fault"
	"github.com/airlock-project/airlock/keys"
	"github.com/airlock-project/airlock/repo/repotest"
)

func TestTrust(t *testing.T) {
	e := newEnv(t)
	r := e.open()
	defer r.Close()
	list, err := r.TrustList()
	if err != nil || len(list) != 2 || list[0].Role != keys.RoleCourier || list[1].Role != keys.RoleVendor {
		t.Fatalf("TrustList = %+v, %v", list, err)
	}
	if list[0].Fingerprint != e.world.Courier.Fingerprint() || !strings.Contains(list[0].UserID, "Test Courier") {
		t.Errorf("courier entry %+v", list[0])
	}
	entries := func() int { log, _ := r.AuditLog(); return len(log) }
	n := entries()

	// The same key again: nothing changes, nothing is audited.
	if _, changed, err := r.TrustAdd(keys.RoleCourier, e.world.Courier.Public()); err != nil || changed {
		t.Errorf("re-adding: changed %v, %v", changed, err)
	}
	// One role per key.
	_, _, err = r.TrustAdd(keys.RoleVendor, e.world.Courier.Public())
	wantClass(t, err, fault.ExitUsage, ErrRoleConflict)
	if !strings.Contains(err.Error(), "trust remove") {
		t.Errorf("message does not say what to do: %v", err)
	}
	// The site role is the repository's own key.
	other, _ := keys.Generate(keys.GenerateOptions{Name: "Other"})
	_, _, err = r.TrustAdd(keys.RoleSite, other.Public())
	wantClass(t, err, fault.ExitUsage, ErrRole)
	site, err := keys.ReadPublicFile(e.dir + "/" + SitePublicKey)
	must(t, err)
	_, _, err = r.TrustAdd(keys.RoleCourier, site)
	wantClass(t, err, fault.ExitUsage, ErrRoleConflict)
	// An expired key is refused.
	old, _ := keys.Generate(keys.GenerateOptions{Name: "Old", Now: time.Now().Add(-48 * time.Hour), Expiry: time.Hour})
	_, _, err = r.TrustAdd(keys.RoleCourier, old.Public())
	wantClass(t, err, fault.ExitVerification, keys.ErrKeyExpired)
	if entries() != n {
		t.Errorf("refused trust changes were audited: %d entries, want %d", entries(), n)
	}

	// A second courier, then removal.
	info, changed, err := r.TrustAdd(keys.RoleCourier, other.Public())
	if err != nil || !changed || info.Role != keys.RoleCourier {
		t.Fatalf("add second courier: %+v %v %v", info, changed, err)
	}
	if _, err := r.TrustRemove(other.Fingerprint()); err != nil {
		t.Fatal(err)
	}
	_, err = r.TrustRemove(other.Fingerprint())
	wantClass(t, err, fault.ExitUsage, ErrNotFound)
	if entries() != n+2 {
		t.Errorf("%d audit entries, want %d", entries(), n+2)
	}
	log, _ := r.AuditLog()
	if log[len(log)-1].Action != ActionTrustRemove || !strings.Contains(string(log[len(log)-1].Details), other.Fingerprint().String()) {
		t.Errorf("last entry %+v", log[len(log)-1])
	}
	ts, err := r.TrustStore()
	must(t, err)
	if len(ts.List()) != 2 {
		t.Errorf("trust store has %d keys", len(ts.List()))
	}
}

// TestTrustAdvice: keys states only the fact about a signer that is not
// trusted, or a key revoked or expired; airlock adds what to do in its own
// trust store, after the whole message.
func TestTrustAdvice(t *testing.T) {
	k, err := keys.Generate(keys.GenerateOptions{Name: "Some Key"})
	must(t, err)
	fp := k.Fingerprint()
	wrapped := func(kind error) error {
		return fmt.Errorf("bundle b.airlock: member manifest.json.asc: %w", &keys.VerifyError{Kind: kind, Signer: fp, Role: keys.RoleCourier})
	}
	for _, tc := range []struct {
		err  error
		want string
	}{
		{wrapped(keys.ErrUnknownSigner), ": if that key is the courier's, add it with 'airlock trust add --role courier FILE'"},
		{wrapped(keys.ErrKeyRevoked), ": remove it from the trust store ('airlock trust remove " + fp.String() + "') and trust its owner's new key"},
		{wrapped(keys.ErrKeyExpired), ": ask its owner to extend the expiry (or for a new key) and trust the updated key"},
		{wrapped(keys.ErrWrongRole), ""},
		{wrapped(keys.ErrBadSignature), ""},
		{ErrReplay, ""},
	} {
		got := trustAdvice(tc.err)
		if got.Error() != tc.err.Error()+tc.want {
			t.Errorf("trustAdvice(%q) = %q, want the message followed by %q", tc.err, got, tc.want)
		}
		if fault.Code(got) != fault.Code(tc.err) || !errors.Is(got, errors.Unwrap(tc.err)) && tc.err != ErrReplay {
			t.Errorf("trustAdvice(%q) changed the error's kind or class: %v", tc.err, got)
		}
	}

	// Through Import and TrustAdd.
	e := newEnv(t)
	key := e.issue()
	mallory, err := keys.Generate(keys.GenerateOptions{Name: "Mallory"})
	must(t, err)
	short, err := keys.Generate(keys.GenerateOptions{Name: "Short Courier", Now: time.Now().Add(-time.Hour), Expiry: 2 * time.Hour})
	must(t, err)
	r := e.open()
	_, _, err = r.TrustAdd(keys.RoleCourier, short.Public())
	r.Close()
	must(t, err)
	untrusted := e.bundleSpec(repotest.BundleSpec{KeyID: key, ManifestSigner: mallory}, "base@3.4.0")
	expiring := e.bundleSpec(repotest.BundleSpec{KeyID: key, ManifestSigner: short}, "base@3.4.0")
	e.advance(2 * time.Hour)
	r = e.open()
	defer r.Close()
	_, err = r.Import(t.Context(), untrusted, ImportOptions{})
	wantClass(t, err, fault.ExitVerification, keys.ErrUnknownSigner)
	if want := "bundle " + untrusted + ": member manifest.json.asc: signed by " + mallory.Fingerprint().String() +
		", which is not trusted: if that key is the courier's, add it with 'airlock trust add --role courier FILE'"; err.Error() != want {
		t.Errorf("untrusted courier: %q, want %q", err, want)
	}
	_, err = r.Import(t.Context(), expiring, ImportOptions{})
	wantClass(t, err, fault.ExitVerification, keys.ErrKeyExpired)
	if !strings.HasSuffix(err.Error(), "whose key expired at "+short.Public().Expires().UTC().Format(time.RFC3339)+": ask its owner to extend the expiry (or for a new key) and trust the updated key") {
		t.Errorf("expired courier: %v", err)
	}
	_, _, err = r.TrustAdd(keys.RoleCourier, short.Public())
	wantClass(t, err, fault.ExitVerification, keys.ErrKeyExpired)
	if want := "trust add courier key " + short.Fingerprint().String() + ": key " + short.Fingerprint().String() + " (Short Courier), whose key expired at " +
		short.Public().Expires().UTC().Format(time.RFC3339) + ": ask its owner to extend the expiry (or for a new key) and trust the updated key"; err.Error() != want {
		t.Errorf("trust add of an expired key: %q, want %q", err, want)
	}
}
