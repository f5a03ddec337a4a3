package keys

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestVerifyErrorFacts: the refusals whose remedy depends on who verifies
// (untrusted signer, revoked or expired key) state the fact only, and carry
// what a caller needs to say what to do in its own terms.
func TestVerifyErrorFacts(t *testing.T) {
	courier := newKey(t, "Jane Courier", 0)
	vendor := newKey(t, "Acme Vendor", 0)
	mallory := newKey(t, "Mallory", 0)
	short := newKey(t, "Short Lived", time.Hour)
	revoked := newKey(t, "Revoked Courier", 0)
	ts := store(t, RoleCourier, courier.Public(), short.Public(), revokedPublic(t, revoked))
	if err := ts.Add(RoleVendor, vendor.Public()); err != nil {
		t.Fatal(err)
	}
	now := t0.Add(24 * time.Hour)
	const data = "manifest contents\n"
	expiry := t0.Add(time.Hour)

	for _, c := range []struct {
		name string
		sig  []byte
		p    Policy
		want VerifyError // Kind and the fields checked
		says string      // the whole message, after the signer
	}{
		{"unknown signer", detached(t, at(mallory, now), data), Policy{Now: now},
			VerifyError{Kind: ErrUnknownSigner, Signer: mallory.Fingerprint(), Role: RoleCourier},
			", which is not trusted"},
		{"wrong role", detached(t, at(vendor, now), data), Policy{Now: now},
			VerifyError{Kind: ErrWrongRole, Signer: vendor.Fingerprint(), UserID: vendor.UserID(), Role: RoleCourier, TrustedAs: RoleVendor},
			" (Acme Vendor <acme@airlock.example>), which is trusted as vendor, not courier: a key is trusted for one role only, and this document must be signed by a courier key"},
		{"expired", detached(t, at(short, t0.Add(10*time.Minute)), data), Policy{Now: t0.Add(2 * time.Hour)},
			VerifyError{Kind: ErrKeyExpired, Signer: short.Fingerprint(), UserID: short.UserID(), Role: RoleCourier, Expired: expiry},
			" (Short Lived <short@airlock.example>), whose key expired at 2026-03-01T13:00:00Z"},
		{"revoked", detached(t, at(revoked, now), data), Policy{Now: now},
			VerifyError{Kind: ErrKeyRevoked, Signer: revoked.Fingerprint(), UserID: revoked.UserID(), Role: RoleCourier, Revocation: "compromised: laptop stolen"},
			" (Revoked Courier <revoked@airlock.example>), whose key has been revoked (compromised: laptop stolen)"},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := ts.VerifyDetached(RoleCourier, strings.NewReader(data), bytes.NewReader(c.sig), c.p)
			wantErr(t, err, c.want.Kind)
			var ve *VerifyError
			if !errors.As(err, &ve) {
				t.Fatalf("%v is not a *VerifyError", err)
			}
			w := c.want
			if ve.Signer != w.Signer || ve.UserID != w.UserID || ve.Role != w.Role || ve.TrustedAs != w.TrustedAs ||
				!ve.Expired.Equal(w.Expired) || ve.Revocation != w.Revocation || ve.Created.IsZero() {
				t.Errorf("fields %+v, want %+v", *ve, w)
			}
			if want := "signed by " + w.Signer.String() + c.says; err.Error() != want {
				t.Errorf("message %q, want %q", err, want)
			}
		})
	}

	// Validate and signing state the same facts about the key itself.
	err := short.Public().Validate(t0.Add(2 * time.Hour))
	var ve *VerifyError
	if !errors.As(err, &ve) || ve.Kind != ErrKeyExpired || !ve.Expired.Equal(expiry) || ve.Signer != short.Fingerprint() || ve.Role != "" ||
		err.Error() != "key "+short.Fingerprint().String()+" (Short Lived <short@airlock.example>), whose key expired at 2026-03-01T13:00:00Z" {
		t.Errorf("Validate of an expired key: %v (%+v)", err, ve)
	}
	var buf bytes.Buffer
	err = at(short, t0.Add(2*time.Hour)).SignDetached(&buf, strings.NewReader(data))
	if !errors.As(err, &ve) || ve.Kind != ErrKeyExpired || !strings.HasPrefix(err.Error(), "cannot sign with "+short.Fingerprint().String()) ||
		!strings.HasSuffix(err.Error(), "whose key expired at 2026-03-01T13:00:00Z") {
		t.Errorf("signing with an expired key: %v", err)
	}
}

// TestWrongKindOfKey: a private key read as a public one, or the other way
// round, is ErrMalformed marked WrongKind; other malformed keys are not.
func TestWrongKindOfKey(t *testing.T) {
	k := newKey(t, "Jane Courier", 0)
	var priv bytes.Buffer
	if err := k.WriteArmored(&priv, nil); err != nil {
		t.Fatal(err)
	}
	wrongKind := func(err error) bool {
		var ve *VerifyError
		return errors.As(err, &ve) && ve.WrongKind
	}
	_, err := ReadPublic(bytes.NewReader(priv.Bytes()))
	wantErr(t, err, ErrMalformed, "this is a private key, not a public key")
	if !wrongKind(err) {
		t.Errorf("private key read as public: %v not marked WrongKind", err)
	}
	_, err = ReadPrivate(bytes.NewReader(k.Public().Armored()), nil)
	wantErr(t, err, ErrMalformed, "this is a public key, not a private key")
	if !wrongKind(err) {
		t.Errorf("public key read as private: %v not marked WrongKind", err)
	}
	_, err = ReadPublic(strings.NewReader("hello"))
	wantErr(t, err, ErrMalformed)
	if wrongKind(err) {
		t.Errorf("garbage marked WrongKind: %v", err)
	}
}

// TestKeyFileErrorsNameThePathOnce: every error of ReadPublicFile and
// ReadPrivateFile names the file exactly once, at the start, so that a
// caller adds only what the file is for.
func TestKeyFileErrorsNameThePathOnce(t *testing.T) {
	dir := t.TempDir()
	k := newKey(t, "Jane Courier", 0)
	write := func(name string, b []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, b, 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	var priv, enc bytes.Buffer
	if err := k.WriteArmored(&priv, nil); err != nil {
		t.Fatal(err)
	}
	if err := k.WriteArmored(&enc, []byte("pw")); err != nil {
		t.Fatal(err)
	}
	privPath := write("k.key", priv.Bytes())
	pubPath := write("k.pub.asc", k.Public().Armored())
	encPath := write("enc.key", enc.Bytes())
	junk := write("junk.asc", []byte("hello"))
	empty := write("empty.asc", nil)
	weak := write("dsa.asc", publicArmor(t, dsaEntity(t)))
	missing := filepath.Join(dir, "missing.asc")

	check := func(what, path string, err error) {
		t.Helper()
		if err == nil {
			t.Errorf("%s %s: no error", what, path)
			return
		}
		if !strings.HasPrefix(err.Error(), what+" "+path) || strings.Count(err.Error(), path) != 1 {
			t.Errorf("%s %s: error %q does not name the file once, first", what, path, err)
		}
	}
	for _, p := range []string{privPath, junk, empty, weak, missing, dir} {
		_, err := ReadPublicFile(p)
		check("public key", p, err)
	}
	for _, p := range []string{pubPath, encPath, junk, empty, missing, dir} {
		_, err := ReadPrivateFile(p, nil)
		check("private key", p, err)
	}
	_, err := ReadPrivateFile(encPath, []byte("wrong"))
	check("private key", encPath, err)
	if !errors.Is(err, ErrPassphrase) {
		t.Errorf("wrong passphrase: %v", err)
	}
}
