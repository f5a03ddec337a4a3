package keys

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ProtonMail/go-crypto/openpgp/packet"
	"github.com/airlock-project/airlock/fault"
)

func TestGenerate(t *testing.T) {
	k, err := Generate(GenerateOptions{Name: "  Acme Vendor ", Expiry: 1500 * time.Millisecond, Now: t0.Add(700 * time.Millisecond)})
	if err != nil {
		t.Fatal(err)
	}
	pk := k.entity.PrimaryKey
	if pk.Version != 4 || pk.PubKeyAlgo != packet.PubKeyAlgoEdDSA {
		t.Errorf("version %d algorithm %d, want v4 EdDSA (22)", pk.Version, pk.PubKeyAlgo)
	}
	if c, err := pk.Curve(); err != nil || c != packet.Curve25519 {
		t.Errorf("curve %v %v", c, err)
	}
	if len(k.entity.Subkeys) != 0 {
		t.Errorf("%d subkeys, want none", len(k.entity.Subkeys))
	}
	if k.UserID() != "Acme Vendor" || k.Public().UserID() != "Acme Vendor" {
		t.Errorf("user ID %q", k.UserID())
	}
	self := k.entity.Identities["Acme Vendor"].SelfCertifications[0].Packet
	if self.Hash.String() != "SHA-256" || !self.FlagSign || !self.FlagCertify {
		t.Errorf("self-signature hash %v sign %v certify %v", self.Hash, self.FlagSign, self.FlagCertify)
	}
	if !k.Public().Created().Equal(t0) || !k.Public().Expires().Equal(t0.Add(2*time.Second)) {
		t.Errorf("created %v expires %v: want %v and 2s (rounded up) later", k.Public().Created(), k.Public().Expires(), t0)
	}
	if k.Fingerprint() != k.Public().Fingerprint() {
		t.Error("fingerprints differ")
	}
	other, _ := Generate(GenerateOptions{Name: "Acme Vendor", Now: t0})
	if other.Fingerprint() == k.Fingerprint() {
		t.Error("two keys share a fingerprint")
	}
}

func TestGenerateRefuses(t *testing.T) {
	for name, o := range map[string]GenerateOptions{
		"no name":          {},
		"blank name":       {Name: "  "},
		"angle brackets":   {Name: "Evil <root@x>"},
		"parentheses":      {Name: "Evil (x)"},
		"control in name":  {Name: "Evil\x1b[2J"},
		"newline in email": {Name: "Ok", Email: "a@b\nc"},
		"negative expiry":  {Name: "Ok", Expiry: -time.Second},
		"expiry too far":   {Name: "Ok", Expiry: 200 * 365 * 24 * time.Hour},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := Generate(o)
			if !errors.Is(err, ErrKeyOptions) || !errors.Is(err, fault.ErrUsage) {
				t.Fatalf("got %v, want ErrKeyOptions of the usage class", err)
			}
		})
	}
}

func TestPrivateKeyPassphrase(t *testing.T) {
	k := newKey(t, "Jane Courier", 0)
	pass := []byte("correct horse battery staple")
	var enc bytes.Buffer
	if err := k.WriteArmored(&enc, pass); err != nil {
		t.Fatal(err)
	}
	var clear bytes.Buffer
	if err := k.WriteArmored(&clear, nil); err != nil {
		t.Fatal(err)
	}
	if bytes.Equal(unarmor(t, enc.Bytes(), blockPrivateKey), unarmor(t, clear.Bytes(), blockPrivateKey)) {
		t.Fatal("passphrase did not change the key encoding")
	}

	for name, pw := range map[string][]byte{"missing": nil, "empty": {}, "wrong": []byte("Tr0ub4dor&3")} {
		t.Run(name, func(t *testing.T) {
			_, err := ReadPrivate(bytes.NewReader(enc.Bytes()), pw)
			if !errors.Is(err, ErrPassphrase) || !errors.Is(err, fault.ErrUsage) {
				t.Fatalf("got %v, want ErrPassphrase of the usage class", err)
			}
			if !strings.Contains(err.Error(), k.Fingerprint().String()) {
				t.Errorf("error %q does not name the key", err)
			}
		})
	}

	got, err := ReadPrivate(bytes.NewReader(enc.Bytes()), pass)
	if err != nil {
		t.Fatal(err)
	}
	// Reading decrypts a copy; the original stays usable.
	for _, signer := range []*PrivateKey{got, k} {
		if signer.Fingerprint() != k.Fingerprint() || signer.UserID() != k.UserID() {
			t.Fatalf("read %s %q", signer.Fingerprint(), signer.UserID())
		}
		ts := store(t, RoleCourier, k.Public())
		if _, err := ts.VerifyDetached(RoleCourier, strings.NewReader("d"), bytes.NewReader(detached(t, signer, "d")), Policy{}); err != nil {
			t.Fatal(err)
		}
	}
	// A passphrase offered for a clear key is not needed and ignored.
	if _, err := ReadPrivate(bytes.NewReader(clear.Bytes()), pass); err != nil {
		t.Fatal(err)
	}
}

func TestReadPrivateRefuses(t *testing.T) {
	k := newKey(t, "Jane Courier", 0)
	var priv bytes.Buffer
	k.WriteArmored(&priv, nil)
	for name, in := range map[string][]byte{
		"public key":        k.Public().Armored(),
		"binary public key": k.Public().raw,
		"empty":             nil,
		"garbage":           []byte("-----BEGIN PGP PRIVATE KEY BLOCK-----\n\nAAAA\n-----END PGP PRIVATE KEY BLOCK-----\n"),
		"truncated":         priv.Bytes()[:len(priv.Bytes())/2],
		"too large":         append(bytes.Repeat([]byte(" "), MaxArmoredKey), priv.Bytes()...),
	} {
		t.Run(name, func(t *testing.T) {
			if _, err := ReadPrivate(bytes.NewReader(in), nil); !errors.Is(err, fault.ErrVerification) {
				t.Fatalf("got %v, want a verification-class error", err)
			}
		})
	}
}

func TestSignWithExpiredOrRevokedKey(t *testing.T) {
	k := newKey(t, "Short Lived", time.Hour)
	var b bytes.Buffer
	err := at(k, t0.Add(2*time.Hour)).SignDetached(&b, strings.NewReader("x"))
	if !errors.Is(err, ErrKeyExpired) {
		t.Fatalf("got %v, want ErrKeyExpired", err)
	}
	if err := at(k, t0.Add(2*time.Hour)).SignMessage(&b, []byte("x")); !errors.Is(err, ErrKeyExpired) {
		t.Fatalf("got %v, want ErrKeyExpired", err)
	}
	if b.Len() != 0 {
		t.Error("refused signing wrote output")
	}
	r := newKey(t, "Revoked", 0)
	revokedPublic(t, r)
	r, err = newPrivateKey(r.entity)
	if err != nil {
		t.Fatal(err)
	}
	if err := r.SignDetached(&b, strings.NewReader("x")); !errors.Is(err, ErrKeyRevoked) {
		t.Fatalf("got %v, want ErrKeyRevoked", err)
	}
}

func TestWithClock(t *testing.T) {
	k := newKey(t, "Jane Courier", 0)
	when := t0.Add(7 * time.Hour)
	ts := store(t, RoleCourier, k.Public())
	s, err := ts.VerifyDetached(RoleCourier, strings.NewReader("d"), bytes.NewReader(detached(t, at(k, when), "d")), Policy{Now: when})
	if err != nil {
		t.Fatal(err)
	}
	if !s.Created.Equal(when) {
		t.Errorf("created %v, want %v", s.Created, when)
	}
	if k.now != nil {
		t.Error("WithClock changed the original key")
	}
}

func TestKeyFiles(t *testing.T) {
	dir := t.TempDir()
	k := newKey(t, "Jane Courier", 0)
	keyPath := filepath.Join(dir, "courier.key")
	pubPath := filepath.Join(dir, "courier.pub.asc")
	if err := WritePrivateFile(keyPath, k, nil); err != nil {
		t.Fatal(err)
	}
	if err := WritePublicFile(pubPath, k.Public()); err != nil {
		t.Fatal(err)
	}
	for path, mode := range map[string]os.FileMode{keyPath: 0o600, pubPath: 0o644} {
		fi, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != mode {
			t.Errorf("%s: mode %v, want %v", path, fi.Mode().Perm(), mode)
		}
	}
	before, _ := os.ReadFile(keyPath)
	other := newKey(t, "Other", 0)
	err := WritePrivateFile(keyPath, other, nil)
	if !errors.Is(err, ErrKeyFileExists) || !strings.Contains(err.Error(), keyPath) {
		t.Fatalf("overwrite: got %v, want ErrKeyFileExists naming the path", err)
	}
	if after, _ := os.ReadFile(keyPath); !bytes.Equal(before, after) {
		t.Fatal("existing private key was changed")
	}
	// Public keys may be replaced.
	if err := WritePublicFile(pubPath, other.Public()); err != nil {
		t.Fatal(err)
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 2 {
		t.Errorf("directory holds %d entries, want 2 (temporary files left?)", len(entries))
	}

	rk, err := ReadPrivateFile(keyPath, nil)
	if err != nil || rk.Fingerprint() != k.Fingerprint() {
		t.Fatalf("ReadPrivateFile: %v", err)
	}
	rp, err := ReadPublicFile(pubPath)
	if err != nil || rp.Fingerprint() != other.Fingerprint() {
		t.Fatalf("ReadPublicFile: %v", err)
	}

	encPath := filepath.Join(dir, "enc.key")
	if err := WritePrivateFile(encPath, k, []byte("pw")); err != nil {
		t.Fatal(err)
	}
	if _, err := ReadPrivateFile(encPath, []byte("nope")); !errors.Is(err, ErrPassphrase) || !strings.Contains(err.Error(), encPath) {
		t.Errorf("wrong passphrase: got %v, want ErrPassphrase naming the path", err)
	}
	if rk, err := ReadPrivateFile(encPath, []byte("pw")); err != nil || rk.Fingerprint() != k.Fingerprint() {
		t.Errorf("ReadPrivateFile with passphrase: %v", err)
	}

	missing := filepath.Join(dir, "missing.asc")
	if _, err := ReadPublicFile(missing); !errors.Is(err, os.ErrNotExist) || !strings.Contains(err.Error(), missing) {
		t.Errorf("missing public key: %v", err)
	}
	if _, err := ReadPrivateFile(missing, nil); !errors.Is(err, os.ErrNotExist) || !strings.Contains(err.Error(), missing) {
		t.Errorf("missing private key: %v", err)
	}
	if _, err := ReadPublicFile(keyPath); !errors.Is(err, ErrMalformed) || !strings.Contains(err.Error(), keyPath) {
		t.Errorf("private key read as public: %v", err)
	}
	if err := WritePrivateFile(filepath.Join(dir, "no", "such", "dir.key"), k, nil); err == nil {
		t.Error("write into a missing directory succeeded")
	}
}
