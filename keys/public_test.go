package keys

import (
	"bytes"
	"crypto"
	"strings"
	"testing"
	"time"

	"github.com/ProtonMail/go-crypto/openpgp/packet"
	openpgp "github.com/ProtonMail/go-crypto/openpgp/v2"
)

func TestReadPublicRoundTrip(t *testing.T) {
	k := newKey(t, "Acme Vendor", 48*time.Hour)
	armored := k.Public().Armored()
	if !bytes.Equal(armored, k.Public().Armored()) {
		t.Error("Armored is not deterministic")
	}
	if !bytes.HasPrefix(armored, []byte("-----BEGIN PGP PUBLIC KEY BLOCK-----\n")) || !bytes.HasSuffix(armored, []byte("-----END PGP PUBLIC KEY BLOCK-----\n")) {
		t.Errorf("armor framing:\n%s", armored)
	}
	crlf := bytes.ReplaceAll(armored, []byte("\n"), []byte("\r\n"))
	for name, in := range map[string][]byte{
		"armored":         armored,
		"CRLF and spaces": append(append([]byte("\n  \n"), crlf...), "\r\n\r\n"...),
		"binary":          k.Public().raw,
	} {
		t.Run(name, func(t *testing.T) {
			p, err := ReadPublic(bytes.NewReader(in))
			if err != nil {
				t.Fatal(err)
			}
			if p.Fingerprint() != k.Fingerprint() || p.UserID() != "Acme Vendor <acme@airlock.example>" {
				t.Errorf("read %s %q", p.Fingerprint(), p.UserID())
			}
			if !p.Created().Equal(t0) || !p.Expires().Equal(t0.Add(48*time.Hour)) || p.Revoked() {
				t.Errorf("created %v expires %v revoked %v", p.Created(), p.Expires(), p.Revoked())
			}
		})
	}
}

func TestPublicKeyValidate(t *testing.T) {
	k := newKey(t, "Short Lived", time.Hour)
	p := k.Public()
	wantErr(t, p.Validate(t0.Add(59*time.Minute)), nil)
	wantErr(t, p.Validate(t0.Add(time.Hour)), ErrKeyExpired, "expired at 2026-03-01T13:00:00Z")
	forever := newKey(t, "Forever", 0)
	if !forever.Public().Expires().IsZero() {
		t.Errorf("no-expiry key expires %v", forever.Public().Expires())
	}
	wantErr(t, forever.Public().Validate(t0.Add(100*365*24*time.Hour)), nil)
	wantErr(t, revokedPublic(t, newKey(t, "Revoked", 0)).Validate(t0), ErrKeyRevoked, "laptop stolen")
}

func TestReadPublicPolicy(t *testing.T) {
	k := newKey(t, "Jane Courier", 0)
	other := newKey(t, "Other", 0)
	var priv bytes.Buffer
	if err := k.WriteArmored(&priv, nil); err != nil {
		t.Fatal(err)
	}
	var sig bytes.Buffer
	if err := k.SignDetached(&sig, strings.NewReader("x")); err != nil {
		t.Fatal(err)
	}
	rsa2k := rsaEntity(t, 2048)
	weakSub := newKey(t, "Weak Sub", 0)
	if err := weakSub.entity.AddEncryptionSubkey(&packet.Config{Algorithm: packet.PubKeyAlgoRSA, RSABits: 1024, Time: func() time.Time { return t0 }}); err != nil {
		t.Fatal(err)
	}
	v6, err := openpgp.NewEntity("V6", "", "v6@airlock.example", &packet.Config{V6Keys: true, Algorithm: packet.PubKeyAlgoEd25519})
	if err != nil {
		t.Fatal(err)
	}
	edPriv := newKey(t, "SHA1 Self", 0).entity.PrivateKey
	sha1Self := selfSigned(t, edPriv, "SHA1 Self", "sha1@airlock.example", crypto.SHA1)

	two := append(append([]byte(nil), k.Public().raw...), other.Public().raw...)
	var twoArmored bytes.Buffer
	armorBytes(&twoArmored, blockPublicKey, two)

	cases := []struct {
		name    string
		in      []byte
		want    error
		mention []string
	}{
		{"RSA 2048 accepted", publicArmor(t, rsa2k), nil, nil},
		{"DSA", publicArmor(t, dsaEntity(t)), ErrWeakAlgorithm, []string{"DSA", "Ed25519"}},
		{"RSA 1024", publicArmor(t, rsaEntity(t, 1024)), ErrWeakRSA, []string{"1024 bits", "2048"}},
		{"RSA 1024 subkey", publicArmor(t, weakSub.entity), ErrWeakRSA, []string{"subkey"}},
		{"SHA-1 self-signature", publicArmor(t, sha1Self), ErrWeakHash, []string{"SHA-1"}},
		{"v6 key", publicArmor(t, v6), ErrMalformed, []string{"v4 keys only"}},
		{"private key", priv.Bytes(), ErrMalformed, []string{"private key"}},
		{"binary private key", unarmor(t, priv.Bytes(), blockPrivateKey), ErrMalformed, []string{"private key"}},
		{"two keys", twoArmored.Bytes(), ErrMalformed, []string{"more than one key"}},
		{"two armored keys", append(k.Public().Armored(), other.Public().Armored()...), ErrMalformed, nil},
		{"signature", sig.Bytes(), ErrMalformed, nil},
		{"empty", nil, ErrMalformed, nil},
		{"garbage", []byte("not a key"), ErrMalformed, nil},
		{"binary garbage", []byte{0x99, 0x01}, ErrMalformed, nil},
		{"too large", append(bytes.Repeat([]byte("\n"), MaxArmoredKey), k.Public().Armored()...), ErrArmorTooLarge, nil},
		{"user ID without signature", publicArmor(t, &openpgp.Entity{PrimaryKey: k.entity.PrimaryKey, Identities: map[string]*openpgp.Identity{
			"x": {Name: "x", UserId: packet.NewUserId("x", "", "")}}}), ErrMalformed, nil},
		{"self-signature does not verify", badSelfSignature(t, k), ErrMalformed, []string{"no valid self-signed user ID"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			p, err := ReadPublic(bytes.NewReader(c.in))
			wantErr(t, err, c.want, c.mention...)
			if c.want != nil && p != nil {
				t.Error("refused key returned")
			}
		})
	}
}

// badSelfSignature returns k's public key with its self-signature damaged.
func badSelfSignature(t *testing.T, k *PrivateKey) []byte {
	t.Helper()
	var out []byte
	rest := k.Public().raw
	for len(rest) > 0 {
		var p rawPacket
		var err error
		if p, rest, err = nextPacket(rest); err != nil {
			t.Fatal(err)
		}
		if p.tag == tagSignature {
			p.body = append([]byte(nil), p.body...)
			p.body[len(p.body)-2] ^= 0x01
		}
		out = append(out, p.frame()...)
	}
	var b bytes.Buffer
	if err := armorBytes(&b, blockPublicKey, out); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}
