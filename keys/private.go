package keys

import (
	"bytes"
	"crypto"
	"fmt"
	"io"
	"math"
	"strings"
	"time"
	"unicode"

	"github.com/ProtonMail/go-crypto/openpgp/packet"
	"github.com/ProtonMail/go-crypto/openpgp/s2k"
	openpgp "github.com/ProtonMail/go-crypto/openpgp/v2"
	"github.com/airlock-project/airlock/fault"
)

// GenerateOptions says what key Generate makes.
type GenerateOptions struct {
	Name   string        // user ID name, e.g. "Acme Vendor"; required
	Email  string        // optional
	Expiry time.Duration // 0 = no expiry; rounded up to whole seconds
	Now    time.Time     // creation time; zero = time.Now()
}

// PrivateKey is a decrypted OpenPGP private key that can sign. Its public
// half passed the key policy (see PublicKey). A PrivateKey is immutable;
// signing with it is safe for concurrent use.
type PrivateKey struct {
	entity *openpgp.Entity // secrets decrypted; never mutated after construction
	raw    []byte          // binary transferable secret key, secrets in the clear
	pub    *PublicKey
	now    func() time.Time // signing clock; nil = time.Now
}

// newPrivateKey completes a decrypted private entity. Everything that
// serializes e happens here, once: go-crypto caches encodings in place, so
// later use must only read it.
func newPrivateKey(e *openpgp.Entity) (*PrivateKey, error) {
	pub, err := publicFromEntity(e)
	if err != nil {
		return nil, err
	}
	var buf bytes.Buffer
	if err := e.SerializePrivateWithoutSigning(&buf, nil); err != nil {
		return nil, fmt.Errorf("encode private key %s: %w", pub.fp, err)
	}
	return &PrivateKey{entity: e, raw: buf.Bytes(), pub: pub}, nil
}

// ErrKeyOptions reports GenerateOptions that cannot make a key (usage class).
var ErrKeyOptions = fault.Usage("invalid key options")

// Generate makes a new v4 key: an Ed25519 (EdDSA "legacy", algorithm 22, the
// form gpg 2.2 understands) primary key that certifies and signs, one user ID
// "Name <Email>" self-signed with SHA-256, and no subkeys.
func Generate(opts GenerateOptions) (*PrivateKey, error) {
	name := strings.TrimSpace(opts.Name)
	email := strings.TrimSpace(opts.Email)
	if name == "" {
		return nil, fmt.Errorf("a key needs a name for its user ID: %w", ErrKeyOptions)
	}
	for _, f := range []struct{ what, v string }{{"name", name}, {"email", email}} {
		if strings.ContainsAny(f.v, "()<>") || strings.IndexFunc(f.v, func(r rune) bool { return !unicode.IsPrint(r) }) >= 0 {
			return nil, fmt.Errorf("key %s %q must not contain control characters or any of ()<>: %w", f.what, printable(f.v), ErrKeyOptions)
		}
	}
	if opts.Expiry < 0 {
		return nil, fmt.Errorf("key expiry %v is negative: %w", opts.Expiry, ErrKeyOptions)
	}
	secs := (opts.Expiry + time.Second - 1) / time.Second
	if secs > math.MaxUint32 {
		return nil, fmt.Errorf("key expiry %v is too far away (at most %d seconds): %w", opts.Expiry, uint32(math.MaxUint32), ErrKeyOptions)
	}
	now := opts.Now
	if now.IsZero() {
		now = time.Now()
	}
	now = now.Truncate(time.Second)
	cfg := &packet.Config{
		Algorithm:       packet.PubKeyAlgoEdDSA,
		Curve:           packet.Curve25519,
		DefaultHash:     crypto.SHA256,
		DefaultCipher:   packet.CipherAES256,
		Time:            func() time.Time { return now },
		KeyLifetimeSecs: uint32(secs),
	}
	e, err := openpgp.NewEntity(name, "", email, cfg)
	if err != nil {
		return nil, fmt.Errorf("generate key: %w", err)
	}
	// NewEntity always adds an encryption subkey; airlock keys only sign.
	e.Subkeys = nil
	k, err := newPrivateKey(e)
	if err != nil {
		return nil, fmt.Errorf("generate key: %w", err)
	}
	return k, nil
}

// publicFromEntity builds the PublicKey of a private entity from a fresh
// parse of its public serialization, so that the two never share state.
func publicFromEntity(e *openpgp.Entity) (*PublicKey, error) {
	var buf bytes.Buffer
	if err := e.Serialize(&buf); err != nil {
		return nil, err
	}
	pe, err := readOneEntity(buf.Bytes(), "public key")
	if err != nil {
		return nil, err
	}
	return newPublicKey(pe, "public key", false)
}

// ReadPrivate reads exactly one private key, armored ("PGP PRIVATE KEY
// BLOCK") or binary, of at most MaxArmoredKey bytes, as written by
// WriteArmored or exported by gpg --export-secret-keys. If the key is
// encrypted it is decrypted with passphrase; an encrypted key with an empty
// passphrase, or a passphrase that does not decrypt it, is an error matching
// ErrPassphrase. A passphrase given for an unencrypted key is ignored. The
// key policy of ReadPublic applies, and the key must hold the secret of a
// signing key.
func ReadPrivate(r io.Reader, passphrase []byte) (*PrivateKey, error) {
	return readPrivate(r, passphrase, "private key", false)
}

// readPrivate is ReadPrivate; what names the input in messages. If file is
// set, every error names it (see inFile).
func readPrivate(r io.Reader, passphrase []byte, what string, file bool) (*PrivateKey, error) {
	b, err := readBounded(r, MaxArmoredKey, what)
	if err != nil {
		return nil, err
	}
	if bytes.Contains(b, []byte("-----BEGIN "+blockPublicKey+"-----")) {
		return nil, inFile(notPrivate(), what, file)
	}
	body, err := dearmor(b, blockPrivateKey, what, true)
	if err != nil {
		return nil, err
	}
	e, err := readOneEntity(body, what)
	if err != nil {
		return nil, err
	}
	if e.PrivateKey == nil {
		return nil, inFile(notPrivate(), what, file)
	}
	fp, _ := fingerprintOf(e.PrimaryKey.Fingerprint)
	if anyEncrypted(e) {
		if len(passphrase) == 0 {
			return nil, inFile(fmt.Errorf("private key %s is protected by a passphrase: supply it: %w", fp, ErrPassphrase), what, file)
		}
		err := safely(what, func() error { return e.DecryptPrivateKeys(passphrase) })
		if err != nil {
			return nil, inFile(fmt.Errorf("private key %s: the passphrase does not decrypt it (wrong passphrase, or a damaged key file): %w", fp, ErrPassphrase), what, file)
		}
	}
	k, err := newPrivateKey(e)
	if err != nil {
		return nil, inFile(err, what, file)
	}
	if _, _, err := k.signingKey(time.Time{}); err != nil {
		return nil, inFile(err, what, file)
	}
	return k, nil
}

// notPrivate is the error of a public key given to ReadPrivate.
func notPrivate() error {
	e := verr(ErrMalformed, "this is a public key, not a private key: give the private key file")
	e.WrongKind = true
	return e
}

func anyEncrypted(e *openpgp.Entity) bool {
	if e.PrivateKey != nil && !e.PrivateKey.Dummy() && e.PrivateKey.Encrypted {
		return true
	}
	for _, s := range e.Subkeys {
		if s.PrivateKey != nil && !s.PrivateKey.Dummy() && s.PrivateKey.Encrypted {
			return true
		}
	}
	return false
}

// Fingerprint returns the fingerprint of the primary key.
func (k *PrivateKey) Fingerprint() Fingerprint { return k.pub.fp }

// Public returns the public half of the key.
func (k *PrivateKey) Public() *PublicKey { return k.pub }

// UserID returns the primary user ID.
func (k *PrivateKey) UserID() string { return k.pub.userID }

// s2kCount is the iterated-and-salted S2K count used to protect written
// keys: the largest gpg accepts, as gpg 2.2 cannot read Argon2.
const s2kCount = 65011712

// WriteArmored writes the private key as one armored "PGP PRIVATE KEY
// BLOCK". With an empty passphrase the secrets are written in the clear (gpg
// --import takes them as they are); otherwise they are encrypted with
// AES-256 under an iterated and salted SHA-256 S2K of the passphrase.
// Self-signatures are written as they are, never re-made.
func (k *PrivateKey) WriteArmored(w io.Writer, passphrase []byte) error {
	if len(passphrase) == 0 {
		return armorBytes(w, blockPrivateKey, k.raw)
	}
	// Encrypt a copy: k itself stays decrypted and unchanged.
	e, err := readOneEntity(k.raw, "private key")
	if err != nil {
		return err
	}
	cfg := &packet.Config{
		DefaultCipher: packet.CipherAES256,
		S2KConfig:     &s2k.Config{S2KMode: s2k.IteratedSaltedS2K, Hash: crypto.SHA256, S2KCount: s2kCount},
	}
	if err := e.EncryptPrivateKeys(passphrase, cfg); err != nil {
		return fmt.Errorf("encrypt private key %s: %w", k.pub.fp, err)
	}
	var buf bytes.Buffer
	if err := e.SerializePrivateWithoutSigning(&buf, nil); err != nil {
		return fmt.Errorf("encode private key %s: %w", k.pub.fp, err)
	}
	return armorBytes(w, blockPrivateKey, buf.Bytes())
}
