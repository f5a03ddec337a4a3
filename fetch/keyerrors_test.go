package fetch

import (
	"context"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/airlock-project/airlock/bundle"
	"github.com/airlock-project/airlock/catalog"
	"github.com/airlock-project/airlock/fault"
	"github.com/airlock-project/airlock/keys"
)

// TestEntitlementSignerAdvice: keys states the fact about the entitlement's
// signer; airlock-fetch says what to do about the pinned --vendor-key, and
// never gives the restricted side's remedy (airlock trust).
func TestEntitlementSignerAdvice(t *testing.T) {
	fx := newFixture(t, 1000)
	now := time.Now()
	old, err := keys.Generate(keys.GenerateOptions{Name: "Acme Vendor", Now: now.Add(-3 * time.Hour), Expiry: 2 * time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	// Signed while the key was valid; the server answers the same
	// entitlement again later.
	fx.fv.ent = fx.signEntitlement(old.WithClock(func() time.Time { return now.Add(-150 * time.Minute) }), func(*catalog.Entitlement) {})
	so := fx.serverOptions()
	so.VendorKey = fx.write("old-vendor.pub.asc", old.Public().Armored())
	err = RunExchange(context.Background(), ExchangeOptions{ServerOptions: so}, io.Discard, io.Discard)
	if !errors.Is(err, keys.ErrKeyExpired) || fault.Code(err) != fault.ExitVerification {
		t.Fatalf("entitlement by an expired vendor key: %v (exit %d)", err, fault.Code(err))
	}
	want := fmt.Sprintf("the server's answer to download key %s: entitlement: signed by %s (Acme Vendor), whose key expired at %s; that is the pinned --vendor-key: get the vendor's key with its expiry extended, by a trusted channel, and give it as --vendor-key",
		fx.key.ID, old.Fingerprint(), old.Public().Expires().UTC().Format(time.RFC3339))
	if err.Error() != want {
		t.Errorf("message\n%q, want\n%q", err, want)
	}

	// Not the pinned key: the fields of keys' error survive the rewording.
	_, _, _, other := testKeys(t)
	fx.fv.ent = fx.signEntitlement(other, func(*catalog.Entitlement) {})
	err = RunExchange(context.Background(), ExchangeOptions{ServerOptions: fx.serverOptions()}, io.Discard, io.Discard)
	var ve *keys.VerifyError
	if !errors.As(err, &ve) || ve.Kind != keys.ErrUnknownSigner || ve.Signer != other.Fingerprint() || fault.Code(err) != fault.ExitVerification ||
		!strings.Contains(err.Error(), "not by the pinned --vendor-key") || strings.Contains(err.Error(), "airlock trust") {
		t.Errorf("entitlement by another key: %v", err)
	}
}

// TestInspectSignerAdvice: a refused signer of a bundle is told in terms of
// --vendor-key and --courier-key, chosen by the role the signature had to
// be made for, never by the text of the message.
func TestInspectSignerAdvice(t *testing.T) {
	_, _, courier, _ := testKeys(t)
	fp := courier.Fingerprint()
	o := InspectOptions{VendorKey: "v.pub.asc", CourierKey: "c.pub.asc"}
	refusal := func(member string, kind error, role keys.Role) error {
		return fmt.Errorf("member %s: %w", member, &keys.VerifyError{Kind: kind, Signer: fp, Role: role, TrustedAs: keys.RoleVendor})
	}
	for _, tc := range []struct {
		err  error
		want string // the whole message, or its end after "; "
	}{
		{refusal(bundle.SignatureName, keys.ErrUnknownSigner, keys.RoleCourier),
			"member manifest.json.asc: signer not trusted: the courier signature is by key " + fp.String() + ", not by --courier-key c.pub.asc; give the courier's public key that made this bundle, or treat the bundle as untrusted"},
		{refusal(bundle.EntitlementName, keys.ErrUnknownSigner, keys.RoleVendor),
			"member entitlement.asc: signer not trusted: the vendor signature is by key " + fp.String() + ", not by --vendor-key v.pub.asc; give the vendor's public key that made this bundle, or treat the bundle as untrusted"},
		{refusal(bundle.SignatureName, keys.ErrWrongRole, keys.RoleCourier),
			"member manifest.json.asc: signer trusted for another role: the courier signature is by key " + fp.String() + ", given as the other role's key; are --vendor-key and --courier-key swapped?"},
		{refusal(bundle.SignatureName, keys.ErrKeyExpired, keys.RoleCourier),
			"; that is --courier-key c.pub.asc: the restricted side will refuse the bundle too; extend the courier key's expiry or make a new key ('airlock-fetch keygen'), have the restricted side trust it, and make the bundle again"},
		{refusal(bundle.EntitlementName, keys.ErrKeyRevoked, keys.RoleVendor),
			"; that is --vendor-key v.pub.asc: the restricted side will refuse the bundle too; ask the vendor for its new key"},
	} {
		got := signerAdvice(tc.err, o)
		if got.Error() != tc.want && !(strings.HasPrefix(tc.want, "; ") && got.Error() == tc.err.Error()+tc.want) {
			t.Errorf("signerAdvice(%q) =\n%q, want\n%q", tc.err, got, tc.want)
		}
		var ve *keys.VerifyError
		if !errors.As(got, &ve) || fault.Code(got) != fault.ExitVerification {
			t.Errorf("signerAdvice(%q) lost the keys error: %v", tc.err, got)
		}
	}
}

// TestBundleDeadSignKey: a courier key that cannot sign now is refused
// before anything is downloaded, with the operator's remedy.
func TestBundleDeadSignKey(t *testing.T) {
	fx := newFixture(t, 1000)
	old, err := keys.Generate(keys.GenerateOptions{Name: "Jane Courier", Now: time.Now().Add(-3 * time.Hour), Expiry: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	o := fx.bundleOptions("b.airlock")
	o.SignKey = filepath.Join(fx.dir, "old-courier.key")
	if err := keys.WritePrivateFile(o.SignKey, old, nil); err != nil {
		t.Fatal(err)
	}
	err = RunBundle(context.Background(), o, io.Discard, io.Discard)
	if !errors.Is(err, keys.ErrKeyExpired) || fault.Code(err) != fault.ExitVerification {
		t.Fatalf("expired sign key: %v (exit %d)", err, fault.Code(err))
	}
	if !strings.HasPrefix(err.Error(), "--sign-key "+o.SignKey+": key "+old.Fingerprint().String()) ||
		!strings.HasSuffix(err.Error(), "make a new courier key ('airlock-fetch keygen --name NAME --out PREFIX'), and have the restricted side trust PREFIX.pub.asc ('airlock trust add --role courier')") {
		t.Errorf("message %q", err)
	}
	if fx.fv.served.Load() != 0 || fx.fv.ackCount() != 0 {
		t.Error("a bundle with a dead sign key downloaded or acknowledged something")
	}
}
