package keys

import (
	"bytes"
	"crypto"
	"crypto/dsa"
	"crypto/rand"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/ProtonMail/go-crypto/openpgp/packet"
	openpgp "github.com/ProtonMail/go-crypto/openpgp/v2"
	"github.com/airlock-project/airlock/fault"
)

// t0 is when the test keys are made; everything else is relative to it.
var t0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

// allSentinels lists every verification sentinel, to check that an error
// matches the one expected and no other.
var allSentinels = map[string]error{
	"ErrUnknownSigner":     ErrUnknownSigner,
	"ErrWrongRole":         ErrWrongRole,
	"ErrKeyExpired":        ErrKeyExpired,
	"ErrKeyRevoked":        ErrKeyRevoked,
	"ErrFutureSignature":   ErrFutureSignature,
	"ErrSignatureExpired":  ErrSignatureExpired,
	"ErrWeakHash":          ErrWeakHash,
	"ErrWeakAlgorithm":     ErrWeakAlgorithm,
	"ErrWeakRSA":           ErrWeakRSA,
	"ErrSignatureTooLarge": ErrSignatureTooLarge,
	"ErrArmorTooLarge":     ErrArmorTooLarge,
	"ErrMalformed":         ErrMalformed,
	"ErrBadSignature":      ErrBadSignature,
}

// wantErr fails unless err matches want (nil: no error) and no other
// sentinel, is of the verification class, and mentions every string of
// mention.
var wantErrHook = func(error) {}

func wantErr(t *testing.T, err, want error, mention ...string) {
	t.Helper()
	wantErrHook(err)
	if want == nil {
		if err != nil {
			t.Fatalf("unexpected error: %v", err)
		}
		return
	}
	if err == nil {
		t.Fatalf("no error, want %v", want)
	}
	if !errors.Is(err, want) {
		t.Fatalf("error %q does not match %v", err, want)
	}
	for name, s := range allSentinels {
		if s != want && errors.Is(err, s) {
			t.Errorf("error %q also matches %s", err, name)
		}
	}
	if !errors.Is(err, fault.ErrVerification) || fault.Code(err) != fault.ExitVerification {
		t.Errorf("error %q is not of the verification class (exit %d)", err, fault.Code(err))
	}
	for _, m := range mention {
		if !strings.Contains(err.Error(), m) {
			t.Errorf("error %q does not mention %q", err, m)
		}
	}
}

// newKey makes an Ed25519 key created at t0.
func newKey(t testing.TB, name string, expiry time.Duration) *PrivateKey {
	t.Helper()
	k, err := Generate(GenerateOptions{Name: name, Email: strings.ToLower(strings.Fields(name)[0]) + "@airlock.example", Expiry: expiry, Now: t0})
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// at returns k signing at time at.
func at(k *PrivateKey, when time.Time) *PrivateKey {
	return k.WithClock(func() time.Time { return when })
}

func detached(t testing.TB, k *PrivateKey, data string) []byte {
	t.Helper()
	var b bytes.Buffer
	if err := k.SignDetached(&b, strings.NewReader(data)); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

func message(t testing.TB, k *PrivateKey, data string) []byte {
	t.Helper()
	var b bytes.Buffer
	if err := k.SignMessage(&b, []byte(data)); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// rawDetached signs data with any private key packet, bypassing the key
// policy, to make the signatures a careful signer would never make.
func rawDetached(t testing.TB, priv *packet.PrivateKey, when time.Time, o signOptions, data string) []byte {
	t.Helper()
	s, err := newSignerFor(priv, when, o)
	if err != nil {
		t.Fatal(err)
	}
	var b bytes.Buffer
	if err := s.detached(&b, strings.NewReader(data)); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// armorSig armors a raw signature body.
func armorSig(t testing.TB, body []byte) []byte {
	t.Helper()
	var b bytes.Buffer
	if err := armorBytes(&b, blockSignature, body); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// unarmor decodes an armored block produced by this package.
func unarmor(t testing.TB, armored []byte, blockType string) []byte {
	t.Helper()
	body, err := dearmor(armored, blockType, "test input", false)
	if err != nil {
		t.Fatal(err)
	}
	return body
}

// selfSigned builds a one-user-ID entity around priv with a self-signature
// of hash h, the way old or foreign tools make keys go-crypto cannot.
func selfSigned(t testing.TB, priv *packet.PrivateKey, name, email string, h crypto.Hash) *openpgp.Entity {
	t.Helper()
	e := &openpgp.Entity{PrimaryKey: &priv.PublicKey, PrivateKey: priv, Identities: map[string]*openpgp.Identity{}}
	u := packet.NewUserId(name, "", email)
	sig := &packet.Signature{
		Version:      4,
		SigType:      packet.SigTypePositiveCert,
		PubKeyAlgo:   priv.PubKeyAlgo,
		Hash:         h,
		CreationTime: priv.CreationTime,
		IssuerKeyId:  &priv.KeyId,
		FlagsValid:   true,
		FlagSign:     true,
		FlagCertify:  true,
	}
	if err := sig.SignUserId(u.Id, &priv.PublicKey, priv, &packet.Config{DefaultHash: h, NonDeterministicSignaturesViaNotation: packet.BoolPointer(false)}); err != nil {
		t.Fatal(err)
	}
	e.Identities[u.Id] = &openpgp.Identity{Primary: e, Name: u.Id, UserId: u, SelfCertifications: []*packet.VerifiableSignature{packet.NewVerifiableSig(sig)}}
	return e
}

// dsaEntity makes a DSA-1024 key (go-crypto cannot generate DSA).
func dsaEntity(t testing.TB) *openpgp.Entity {
	t.Helper()
	priv := new(dsa.PrivateKey)
	if err := dsa.GenerateParameters(&priv.Parameters, rand.Reader, dsa.L1024N160); err != nil {
		t.Fatal(err)
	}
	if err := dsa.GenerateKey(priv, rand.Reader); err != nil {
		t.Fatal(err)
	}
	return selfSigned(t, packet.NewDSAPrivateKey(t0, priv), "Old DSA", "dsa@airlock.example", crypto.SHA256)
}

// rsaEntity makes an RSA key of bits.
func rsaEntity(t testing.TB, bits int) *openpgp.Entity {
	t.Helper()
	e, err := openpgp.NewEntity("RSA Signer", "", "rsa@airlock.example", &packet.Config{
		Algorithm: packet.PubKeyAlgoRSA, RSABits: bits, Time: func() time.Time { return t0 },
	})
	if err != nil {
		t.Fatal(err)
	}
	return e
}

// publicArmor returns the armored public half of e.
func publicArmor(t testing.TB, e *openpgp.Entity) []byte {
	t.Helper()
	var raw bytes.Buffer
	if err := e.Serialize(&raw); err != nil {
		t.Fatal(err)
	}
	var b bytes.Buffer
	if err := armorBytes(&b, blockPublicKey, raw.Bytes()); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// uncheckedPublic wraps e as a PublicKey without applying the key policy,
// to test that verification enforces it again.
func uncheckedPublic(t testing.TB, e *openpgp.Entity) *PublicKey {
	t.Helper()
	fp, _ := fingerprintOf(e.PrimaryKey.Fingerprint)
	_, ident := e.PrimaryIdentity(time.Time{}, nil)
	if ident == nil {
		t.Fatal("no identity")
	}
	return &PublicKey{fp: fp, userID: ident.Name, keys: []keyInfo{{
		pub: e.PrimaryKey, fp: fp, primary: true, canSign: true, created: e.PrimaryKey.CreationTime,
	}}}
}

func store(t testing.TB, role Role, keys ...*PublicKey) *TrustStore {
	t.Helper()
	ts := NewTrustStore()
	for _, k := range keys {
		if err := ts.Add(role, k); err != nil {
			t.Fatal(err)
		}
	}
	return ts
}

func errorsIs(err, target error) bool { return errors.Is(err, target) }
