package keys

import (
	"bytes"
	"crypto"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ProtonMail/go-crypto/openpgp/packet"
)

// revokedPublic revokes k's primary key (k itself can still sign: its
// public half was computed before) and returns the revoked public key.
func revokedPublic(t *testing.T, k *PrivateKey) *PublicKey {
	t.Helper()
	if err := k.entity.Revoke(packet.KeyCompromised, "laptop stolen", &packet.Config{Time: func() time.Time { return t0.Add(time.Hour) }}); err != nil {
		t.Fatal(err)
	}
	pub, err := ReadPublic(bytes.NewReader(publicArmor(t, k.entity)))
	if err != nil {
		t.Fatal(err)
	}
	if !pub.Revoked() {
		t.Fatal("revocation not read")
	}
	return pub
}

// sigPacket returns the one packet of an armored detached signature.
func sigPacket(t *testing.T, armored []byte) rawPacket {
	t.Helper()
	p, rest, err := nextPacket(unarmor(t, armored, blockSignature))
	if err != nil || len(rest) != 0 || p.tag != tagSignature {
		t.Fatalf("not one signature packet: %v", err)
	}
	return p
}

// patched re-armors the signature after f changed its packet body.
func patched(t *testing.T, armored []byte, f func(body []byte)) []byte {
	t.Helper()
	p := sigPacket(t, armored)
	p.body = append([]byte(nil), p.body...)
	f(p.body)
	return armorSig(t, p.frame())
}

func TestVerifyDetachedPolicy(t *testing.T) {
	courier := newKey(t, "Jane Courier", 0)
	vendor := newKey(t, "Acme Vendor", 0)
	mallory := newKey(t, "Mallory", 0)
	short := newKey(t, "Short Lived", time.Hour)
	revoked := newKey(t, "Revoked Courier", 0)
	revokedPub := revokedPublic(t, revoked)
	rsa1k := rsaEntity(t, 1024)
	dsaKey := dsaEntity(t)

	ts := store(t, RoleCourier, courier.Public(), short.Public(), revokedPub, uncheckedPublic(t, rsa1k))
	if err := ts.Add(RoleVendor, vendor.Public()); err != nil {
		t.Fatal(err)
	}
	now := t0.Add(24 * time.Hour)
	const data = "manifest contents\n"
	good := detached(t, at(courier, now), data)
	withOpts := func(k *PrivateKey, when time.Time, o signOptions) []byte {
		var b bytes.Buffer
		if err := at(k, when).signDetached(&b, strings.NewReader(data), o); err != nil {
			t.Fatal(err)
		}
		return b.Bytes()
	}
	sigBody := sigPacket(t, good).frame()
	big := rawPacket{tag: tagSignature, body: make([]byte, MaxSignaturePacket+1)}
	big.body[0] = 4
	cfp := courier.Fingerprint().String()

	cases := []struct {
		name    string
		role    Role
		data    string
		sig     []byte
		p       Policy
		want    error
		mention []string
	}{
		{"valid", RoleCourier, data, good, Policy{Now: now}, nil, nil},
		{"valid vendor", RoleVendor, data, detached(t, at(vendor, now), data), Policy{Now: now}, nil, nil},
		{"SHA-512 accepted", RoleCourier, data, withOpts(courier, now, signOptions{hash: crypto.SHA512}), Policy{Now: now}, nil, nil},
		{"text signature accepted over CRLF data", RoleCourier, "a\r\nb\r\n", withOptsData(t, courier, now, signOptions{hash: crypto.SHA256, sigType: packet.SigTypeText}, "a\nb\n"), Policy{Now: now}, nil, nil},

		{"unknown signer", RoleCourier, data, detached(t, at(mallory, now), data), Policy{Now: now}, ErrUnknownSigner,
			[]string{mallory.Fingerprint().String(), "not trusted"}},
		{"wrong role", RoleCourier, data, detached(t, at(vendor, now), data), Policy{Now: now}, ErrWrongRole,
			[]string{vendor.Fingerprint().String(), "Acme Vendor", "trusted as vendor, not courier"}},
		{"wrong role, other way", RoleVendor, data, good, Policy{Now: now}, ErrWrongRole, []string{cfp, "trusted as courier"}},

		{"key expired", RoleCourier, data, detached(t, at(short, t0.Add(10*time.Minute)), data), Policy{Now: t0.Add(2 * time.Hour)}, ErrKeyExpired,
			[]string{short.Fingerprint().String(), "Short Lived", "expired at 2026-03-01T13:00:00Z"}},
		{"key expires exactly now", RoleCourier, data, detached(t, at(short, t0.Add(10*time.Minute)), data), Policy{Now: t0.Add(time.Hour)}, ErrKeyExpired, nil},
		{"key valid a second before expiry", RoleCourier, data, detached(t, at(short, t0.Add(10*time.Minute)), data), Policy{Now: t0.Add(time.Hour - time.Second)}, nil, nil},
		{"key revoked", RoleCourier, data, detached(t, at(revoked, now), data), Policy{Now: now}, ErrKeyRevoked,
			[]string{revoked.Fingerprint().String(), "revoked", "compromised: laptop stolen"}},

		{"future signature", RoleCourier, data, detached(t, at(courier, now.Add(time.Hour)), data), Policy{Now: now}, ErrFutureSignature,
			[]string{cfp, "1h0m0s ahead", "check the clocks"}},
		{"within default skew", RoleCourier, data, detached(t, at(courier, now.Add(4*time.Minute)), data), Policy{Now: now}, nil, nil},
		{"beyond a custom skew", RoleCourier, data, detached(t, at(courier, now.Add(4*time.Minute)), data), Policy{Now: now, Skew: time.Minute}, ErrFutureSignature, nil},
		{"negative skew allows none", RoleCourier, data, detached(t, at(courier, now.Add(time.Second)), data), Policy{Now: now, Skew: -1}, ErrFutureSignature, nil},
		{"signature expired", RoleCourier, data, withOpts(courier, now, signOptions{hash: crypto.SHA256, lifetime: 60}), Policy{Now: now.Add(2 * time.Minute)}, ErrSignatureExpired,
			[]string{cfp, "expired at"}},
		{"signature not yet expired", RoleCourier, data, withOpts(courier, now, signOptions{hash: crypto.SHA256, lifetime: 3600}), Policy{Now: now.Add(2 * time.Minute)}, nil, nil},
		{"signature before key creation", RoleCourier, data, detached(t, at(courier, t0.Add(-time.Hour)), data), Policy{Now: now}, ErrBadSignature, []string{"before its key was created"}},

		{"SHA-1", RoleCourier, data, withOpts(courier, now, signOptions{hash: crypto.SHA1, noSalt: true}), Policy{Now: now}, ErrWeakHash, []string{"SHA-1"}},
		{"SHA-1, patched", RoleCourier, data, patched(t, good, func(b []byte) { b[3] = 2 }), Policy{Now: now}, ErrWeakHash, []string{"SHA-1"}},
		{"MD5", RoleCourier, data, patched(t, good, func(b []byte) { b[3] = 1 }), Policy{Now: now}, ErrWeakHash, []string{"MD5"}},
		{"RIPEMD-160", RoleCourier, data, patched(t, good, func(b []byte) { b[3] = 3 }), Policy{Now: now}, ErrWeakHash, []string{"RIPEMD-160"}},
		{"DSA", RoleCourier, data, rawDetached(t, dsaKey.PrivateKey, now, defaultSignOptions, data), Policy{Now: now}, ErrWeakAlgorithm, []string{"DSA"}},
		{"ElGamal", RoleCourier, data, patched(t, good, func(b []byte) { b[2] = 16 }), Policy{Now: now}, ErrWeakAlgorithm, []string{"ElGamal"}},
		{"RSA-1024 signer", RoleCourier, data, rawDetached(t, rsa1k.PrivateKey, now, defaultSignOptions, data), Policy{Now: now}, ErrWeakRSA, []string{"1024 bits"}},

		{"oversize signature packet", RoleCourier, data, armorSig(t, big.frame()), Policy{Now: now}, ErrSignatureTooLarge, []string{"65537 bytes"}},
		{"oversize armor", RoleCourier, data, good, Policy{Now: now, MaxArmored: 100}, ErrArmorTooLarge, []string{"100 bytes"}},
		{"oversize armor, default limit", RoleCourier, data, append(bytes.Repeat([]byte(" "), DefaultMaxArmored), good...), Policy{Now: now}, ErrArmorTooLarge, nil},

		{"data changed", RoleCourier, data + "x", good, Policy{Now: now}, ErrBadSignature, []string{cfp, "Jane Courier", "does not match the data"}},
		{"data truncated", RoleCourier, data[:5], good, Policy{Now: now}, ErrBadSignature, nil},
		{"signature bit flipped", RoleCourier, data, patched(t, good, func(b []byte) { b[len(b)-3] ^= 0x10 }), Policy{Now: now}, ErrBadSignature, nil},
		{"algorithm does not match key", RoleCourier, data, patched(t, good, func(b []byte) { b[2] = byte(packet.PubKeyAlgoECDSA) }), Policy{Now: now}, ErrBadSignature, []string{"another public-key algorithm"}},

		{"empty", RoleCourier, data, nil, Policy{Now: now}, ErrMalformed, []string{"empty"}},
		{"garbage", RoleCourier, data, []byte("hello, world\n"), Policy{Now: now}, ErrMalformed, nil},
		{"binary, not armored", RoleCourier, data, sigBody, Policy{Now: now}, ErrMalformed, nil},
		{"signed message instead", RoleCourier, data, message(t, at(courier, now), data), Policy{Now: now}, ErrMalformed, []string{"PGP MESSAGE"}},
		{"public key instead", RoleCourier, data, courier.Public().Armored(), Policy{Now: now}, ErrMalformed, nil},
		{"two signatures", RoleCourier, data, armorSig(t, append(append([]byte(nil), sigBody...), sigBody...)), Policy{Now: now}, ErrMalformed, []string{"more than one signature"}},
		{"two armor blocks", RoleCourier, data, append(append([]byte(nil), good...), good...), Policy{Now: now}, ErrMalformed, nil},
		{"trailing data after packet", RoleCourier, data, armorSig(t, append(append([]byte(nil), sigBody...), 0xcb, 0x01, 0x00)), Policy{Now: now}, ErrMalformed, []string{"unexpected data"}},
		{"text after armor", RoleCourier, data, append(append([]byte(nil), good...), "extra\n"...), Policy{Now: now}, ErrMalformed, nil},
		{"truncated packet", RoleCourier, data, armorSig(t, sigBody[:len(sigBody)-5]), Policy{Now: now}, ErrMalformed, nil},
		{"bad base64", RoleCourier, data, []byte(strings.Replace(string(good), "\n\n", "\n\n!!!!", 1)), Policy{Now: now}, ErrMalformed, nil},
		{"version 3", RoleCourier, data, patched(t, good, func(b []byte) { b[0] = 3 }), Policy{Now: now}, ErrMalformed, []string{"v4 signatures only"}},
		{"not a document signature", RoleCourier, data, patched(t, good, func(b []byte) { b[1] = byte(packet.SigTypePositiveCert) }), Policy{Now: now}, ErrMalformed, []string{"type 0x13"}},
		{"not a signature packet", RoleCourier, data, armorSig(t, rawPacket{tag: tagLiteral, body: []byte("b\x00\x00\x00\x00\x00x")}.frame()), Policy{Now: now}, ErrMalformed, nil},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			s, err := ts.VerifyDetached(c.role, strings.NewReader(c.data), bytes.NewReader(c.sig), c.p)
			wantErr(t, err, c.want, c.mention...)
			if c.want == nil && (s.Role != c.role || s.Signer.IsZero() || s.Created.IsZero()) {
				t.Errorf("incomplete signature %+v", s)
			}
			if c.want != nil && s != (Signature{}) {
				t.Errorf("refused verification returned a signature: %+v", s)
			}
		})
	}
}

func withOptsData(t *testing.T, k *PrivateKey, when time.Time, o signOptions, data string) []byte {
	var b bytes.Buffer
	if err := at(k, when).signDetached(&b, strings.NewReader(data), o); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

func TestVerifyDetachedResult(t *testing.T) {
	k := newKey(t, "Jane Courier", 0)
	ts := store(t, RoleCourier, k.Public())
	when := t0.Add(90 * time.Minute)
	sig := detached(t, at(k, when.Add(300*time.Millisecond)), "data")
	s, err := ts.VerifyDetached(RoleCourier, strings.NewReader("data"), bytes.NewReader(sig), Policy{Now: when.Add(time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	want := Signature{Signer: k.Fingerprint(), Role: RoleCourier, Created: when, UserID: "Jane Courier <jane@airlock.example>", SigningKey: k.Fingerprint()}
	if !s.Created.Equal(want.Created) {
		t.Errorf("created %v, want %v", s.Created, want.Created)
	}
	s.Created = want.Created
	if s != want {
		t.Errorf("got %+v\nwant %+v", s, want)
	}
}

// A refused signature must not consume the data: the checks that need no
// data come first.
func TestVerifyDetachedReadsDataOnlyWhenNeeded(t *testing.T) {
	k := newKey(t, "Jane Courier", 0)
	other := newKey(t, "Other", 0)
	ts := store(t, RoleCourier, k.Public())
	r := &countingReader{r: strings.NewReader("data")}
	_, err := ts.VerifyDetached(RoleCourier, r, bytes.NewReader(detached(t, other, "data")), Policy{})
	wantErr(t, err, ErrUnknownSigner)
	if r.n != 0 {
		t.Errorf("read %d bytes of data for a signature from an unknown signer", r.n)
	}
	r = &countingReader{r: strings.NewReader("data")}
	if _, err := ts.VerifyDetached(RoleCourier, r, bytes.NewReader(detached(t, k, "data")), Policy{}); err != nil {
		t.Fatal(err)
	}
	if r.n != 4 {
		t.Errorf("read %d bytes, want 4", r.n)
	}
}

type countingReader struct {
	r interface{ Read([]byte) (int, error) }
	n int
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += n
	return n, err
}

func TestVerifyInvalidRole(t *testing.T) {
	k := newKey(t, "Jane Courier", 0)
	ts := store(t, RoleCourier, k.Public())
	_, err := ts.VerifyDetached("admin", strings.NewReader("d"), bytes.NewReader(detached(t, k, "d")), Policy{})
	if !errorsIs(err, ErrRole) {
		t.Fatalf("got %v, want ErrRole", err)
	}
	_, _, err = ts.VerifyMessage("", bytes.NewReader(message(t, k, "d")), Policy{})
	if !errorsIs(err, ErrRole) {
		t.Fatalf("got %v, want ErrRole", err)
	}
}

func TestSigningSubkey(t *testing.T) {
	k := newKey(t, "Sub Keyed", 0)
	cfg := &packet.Config{Algorithm: packet.PubKeyAlgoEdDSA, Curve: packet.Curve25519, Time: func() time.Time { return t0.Add(time.Minute) }}
	if err := k.entity.AddSigningSubkey(cfg); err != nil {
		t.Fatal(err)
	}
	k, err := newPrivateKey(k.entity)
	if err != nil {
		t.Fatal(err)
	}
	pub := k.Public()
	subFP, _ := fingerprintOf(k.entity.Subkeys[0].PublicKey.Fingerprint)
	now := t0.Add(time.Hour)
	ts := store(t, RoleVendor, pub)
	sig := detached(t, at(k, now), "catalog")
	s, err := ts.VerifyDetached(RoleVendor, strings.NewReader("catalog"), bytes.NewReader(sig), Policy{Now: now})
	if err != nil {
		t.Fatal(err)
	}
	if s.Signer != k.Fingerprint() || s.SigningKey != subFP {
		t.Errorf("signer %s key %s, want %s key %s", s.Signer, s.SigningKey, k.Fingerprint(), subFP)
	}
	// Revoking the subkey revokes what it signed.
	if err := k.entity.Subkeys[0].Revoke(packet.KeyRetired, "rotated", cfg); err != nil {
		t.Fatal(err)
	}
	revokedPub, err := ReadPublic(bytes.NewReader(publicArmor(t, k.entity)))
	if err != nil {
		t.Fatal(err)
	}
	ts = store(t, RoleVendor, revokedPub)
	_, err = ts.VerifyDetached(RoleVendor, strings.NewReader("catalog"), bytes.NewReader(sig), Policy{Now: now})
	wantErr(t, err, ErrKeyRevoked)
}

func TestVerifyMessage(t *testing.T) {
	courier := newKey(t, "Site Plant", 0)
	vendor := newKey(t, "Acme Vendor", 0)
	mallory := newKey(t, "Mallory", 0)
	short := newKey(t, "Short Lived", time.Hour)
	ts := store(t, RoleSite, courier.Public(), short.Public())
	if err := ts.Add(RoleVendor, vendor.Public()); err != nil {
		t.Fatal(err)
	}
	now := t0.Add(time.Hour)
	const data = `{"format":"airlock-download-key/v1","site":"plant-3"}`
	good := message(t, at(courier, now), data)
	body := unarmor(t, good, blockMessage)
	ops, rest, _ := nextPacket(body)
	lit, rest, _ := nextPacket(rest)
	sig, _, _ := nextPacket(rest)
	msg := func(ps ...rawPacket) []byte {
		var raw []byte
		for _, p := range ps {
			raw = append(raw, p.frame()...)
		}
		var b bytes.Buffer
		if err := armorBytes(&b, blockMessage, raw); err != nil {
			t.Fatal(err)
		}
		return b.Bytes()
	}
	changedLit := lit
	changedLit.body = bytes.Replace(lit.body, []byte("plant-3"), []byte("plant-4"), 1)
	big := rawPacket{tag: tagSignature, body: make([]byte, MaxSignaturePacket+1)}
	big.body[0] = 4
	sha1Msg := func() []byte {
		var b bytes.Buffer
		if err := at(courier, now).signMessage(&b, []byte(data), signOptions{hash: crypto.SHA1, sigType: packet.SigTypeBinary, noSalt: true}); err != nil {
			t.Fatal(err)
		}
		return b.Bytes()
	}()

	cases := []struct {
		name    string
		role    Role
		msg     []byte
		p       Policy
		want    error
		mention []string
	}{
		{"valid", RoleSite, good, Policy{Now: now}, nil, nil},
		{"valid, compressed", RoleSite, compressed(t, body, packet.CompressionZLIB), Policy{Now: now}, nil, nil},
		{"valid, new-format definite lengths", RoleSite, msg(ops, lit, sig), Policy{Now: now}, nil, nil},
		{"valid, old-format headers", RoleSite, armorMsg(t, append(append(oldFrame(ops), oldFrame(lit)...), oldFrame(sig)...)), Policy{Now: now}, nil, nil},
		{"unknown signer", RoleSite, message(t, at(mallory, now), data), Policy{Now: now}, ErrUnknownSigner, []string{mallory.Fingerprint().String(), "not trusted"}},
		{"wrong role", RoleSite, message(t, at(vendor, now), data), Policy{Now: now}, ErrWrongRole, []string{"trusted as vendor, not site"}},
		{"key expired", RoleSite, message(t, at(short, t0), data), Policy{Now: t0.Add(2 * time.Hour)}, ErrKeyExpired, nil},
		{"future", RoleSite, message(t, at(courier, now.Add(time.Hour)), data), Policy{Now: now}, ErrFutureSignature, nil},
		{"SHA-1", RoleSite, sha1Msg, Policy{Now: now}, ErrWeakHash, nil},
		{"data changed", RoleSite, msg(ops, changedLit, sig), Policy{Now: now}, ErrBadSignature, nil},
		{"oversize signature", RoleSite, msg(ops, lit, big), Policy{Now: now}, ErrSignatureTooLarge, nil},
		{"oversize armor", RoleSite, good, Policy{Now: now, MaxArmored: 200}, ErrArmorTooLarge, nil},
		{"compression bomb", RoleSite, compressed(t, append(append(ops.frame(), rawPacket{tag: tagLiteral, body: append([]byte("b\x00\x00\x00\x00\x00"), make([]byte, 1<<20)...)}.frame()...), sig.frame()...), packet.CompressionZLIB), Policy{Now: now, MaxArmored: 64 << 10}, ErrArmorTooLarge, []string{"decompresses"}},
		{"nested compression", RoleSite, compressed(t, unarmor(t, compressed(t, body, packet.CompressionZIP), blockMessage), packet.CompressionZIP), Policy{Now: now}, ErrMalformed, []string{"nested"}},
		{"not signed", RoleSite, msg(lit), Policy{Now: now}, ErrMalformed, []string{"not signed"}},
		{"old style", RoleSite, msg(sig, lit), Policy{Now: now}, ErrMalformed, []string{"old style"}},
		{"encrypted", RoleSite, msg(rawPacket{tag: 3, body: []byte{4, 9, 3, 8}}, lit), Policy{Now: now}, ErrMalformed, []string{"encrypted"}},
		{"two one-pass headers", RoleSite, msg(ops, ops, lit, sig, sig), Policy{Now: now}, ErrMalformed, []string{"more than one signature"}},
		{"two signatures", RoleSite, msg(ops, lit, sig, sig), Policy{Now: now}, ErrMalformed, []string{"more than one signature"}},
		{"no signature", RoleSite, msg(ops, lit), Policy{Now: now}, ErrMalformed, nil},
		{"header mismatch", RoleSite, msg(rawPacket{tag: tagOnePassSig, body: append([]byte{3, 0, 10}, ops.body[3:]...)}, lit, sig), Policy{Now: now}, ErrMalformed, []string{"does not match"}},
		{"detached signature instead", RoleSite, detached(t, at(courier, now), data), Policy{Now: now}, ErrMalformed, nil},
		{"empty", RoleSite, nil, Policy{Now: now}, ErrMalformed, nil},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, s, err := ts.VerifyMessage(c.role, bytes.NewReader(c.msg), c.p)
			wantErr(t, err, c.want, c.mention...)
			if c.want != nil {
				if got != nil || s != (Signature{}) {
					t.Errorf("refused message returned data %q, signature %+v", got, s)
				}
				return
			}
			if string(got) != data {
				t.Errorf("data %q, want %q", got, data)
			}
			if s.Signer != courier.Fingerprint() || s.Role != RoleSite {
				t.Errorf("signature %+v", s)
			}
		})
	}
}

// oldFrame gives p an old-format header with a four-octet length.
func oldFrame(p rawPacket) []byte {
	n := len(p.body)
	return append([]byte{0x80 | p.tag<<2 | 2, byte(n >> 24), byte(n >> 16), byte(n >> 8), byte(n)}, p.body...)
}

func armorMsg(t *testing.T, raw []byte) []byte {
	t.Helper()
	var b bytes.Buffer
	if err := armorBytes(&b, blockMessage, raw); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// compressed wraps a message body in one compressed packet and armors it.
func compressed(t testing.TB, body []byte, algo packet.CompressionAlgo) []byte {
	t.Helper()
	var b bytes.Buffer
	if err := armorBytes(&b, blockMessage, compressedAs(t, body, algo)); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

func compressedBody(t testing.TB, body []byte) []byte {
	return compressedAs(t, body, packet.CompressionZLIB)
}

func compressedAs(t testing.TB, body []byte, algo packet.CompressionAlgo) []byte {
	t.Helper()
	var raw bytes.Buffer
	w, err := packet.SerializeCompressed(nopCloser{&raw}, algo, nil)
	if err != nil {
		t.Fatal(err)
	}
	w.Write(body)
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return raw.Bytes()
}

// Signing and verifying from many goroutines shares keys and a store; run
// with -race.
func TestConcurrentSignVerify(t *testing.T) {
	// A key read back from its encoding: go-crypto caches encodings of
	// parsed packets in place, which must not happen after construction.
	var enc bytes.Buffer
	if err := newKey(t, "Jane Courier", 0).WriteArmored(&enc, nil); err != nil {
		t.Fatal(err)
	}
	k, err := ReadPrivate(&enc, nil)
	if err != nil {
		t.Fatal(err)
	}
	pub, err := ReadPublic(bytes.NewReader(k.Public().Armored()))
	if err != nil {
		t.Fatal(err)
	}
	ts := store(t, RoleCourier, pub)
	var wg sync.WaitGroup
	errs := make(chan error, 32)
	for i := 0; i < 16; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			data := strings.Repeat("x", i)
			var sig, msg bytes.Buffer
			if err := k.SignDetached(&sig, strings.NewReader(data)); err != nil {
				errs <- err
				return
			}
			if err := k.SignMessage(&msg, []byte(data)); err != nil {
				errs <- err
				return
			}
			if _, err := ts.VerifyDetached(RoleCourier, strings.NewReader(data), &sig, Policy{}); err != nil {
				errs <- err
			}
			if got, _, err := ts.VerifyMessage(RoleCourier, &msg, Policy{}); err != nil || string(got) != data {
				errs <- err
			}
			ts.List()
			var out bytes.Buffer
			if err := k.WriteArmored(&out, nil); err != nil {
				errs <- err
			}
			pub.Armored()
		}(i)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

func TestUnverifiedPayload(t *testing.T) {
	k, err := Generate(GenerateOptions{Name: "plant-3"})
	if err != nil {
		t.Fatal(err)
	}
	var msg bytes.Buffer
	if err := k.SignMessage(&msg, []byte(`{"site":"plant-3"}`)); err != nil {
		t.Fatal(err)
	}
	got, err := UnverifiedPayload(bytes.NewReader(msg.Bytes()))
	if err != nil || string(got) != `{"site":"plant-3"}` {
		t.Fatalf("UnverifiedPayload = %q, %v", got, err)
	}
	if _, err := UnverifiedPayload(strings.NewReader("not armored")); !errors.Is(err, ErrMalformed) {
		t.Fatalf("garbage: %v, want ErrMalformed", err)
	}
	var sig bytes.Buffer
	k.SignDetached(&sig, strings.NewReader("x"))
	if _, err := UnverifiedPayload(bytes.NewReader(sig.Bytes())); !errors.Is(err, ErrMalformed) {
		t.Fatalf("detached signature taken as a message: %v", err)
	}
}
