package keys

import (
	"bytes"
	"crypto"
	"crypto/rsa"
	"fmt"
	"io"
	"time"

	"github.com/ProtonMail/go-crypto/openpgp/packet"
	openpgp "github.com/ProtonMail/go-crypto/openpgp/v2"
)

// MaxArmoredKey bounds the input ReadPublic and ReadPrivate accept, armored
// or binary. A key with its self-signatures is a few hundred bytes; the
// limit leaves room for third-party certifications.
const MaxArmoredKey = 1 << 20

// MinRSABits is the shortest RSA modulus accepted anywhere in a key.
const MinRSABits = 2048

// weakHashIDs are the OpenPGP hash algorithm IDs that are refused.
var weakHashIDs = map[byte]string{1: "MD5", 2: "SHA-1", 3: "RIPEMD-160"}

var weakHashes = map[crypto.Hash]bool{crypto.MD5: true, crypto.SHA1: true, crypto.RIPEMD160: true}

// policyConfig is what go-crypto is told when it checks self-signatures,
// binding signatures and revocations at read time. Read-only.
var policyConfig = &packet.Config{
	RejectHashAlgorithms:        weakHashes,
	RejectMessageHashAlgorithms: weakHashes,
	RejectPublicKeyAlgorithms:   map[packet.PublicKeyAlgorithm]bool{packet.PubKeyAlgoDSA: true, packet.PubKeyAlgoElGamal: true},
	RejectCurves:                map[packet.Curve]bool{packet.CurveSecP256k1: true},
	MinRSABits:                  MinRSABits,
}

// PublicKey is a v4 OpenPGP public key (certificate) that passed the key
// policy when it was read: every key packet in it uses an accepted algorithm
// (no DSA, ElGamal, RSA below MinRSABits), and it has a valid self-signature
// made with an accepted hash. It may be expired or revoked: that is decided
// at verification time (see Validate).
//
// A PublicKey is immutable and safe for concurrent use.
type PublicKey struct {
	fp     Fingerprint
	userID string
	keys   []keyInfo // keys[0] is the primary key, then the validly bound subkeys
	raw    []byte    // binary transferable public key
}

// keyInfo is what verification needs to know about one key packet, computed
// once when the certificate is read so that verifying never touches
// go-crypto's entity (which caches validity in place and is not safe for
// concurrent use).
type keyInfo struct {
	pub        *packet.PublicKey
	fp         Fingerprint
	primary    bool
	canSign    bool
	created    time.Time
	expires    time.Time // zero: never; a subkey's includes its primary's
	revoked    bool
	revocation string // reason given, for messages
}

// ReadPublic reads exactly one public key, armored ("PGP PUBLIC KEY BLOCK")
// or binary, of at most MaxArmoredKey bytes, and applies the key policy. A
// private key, several keys, or anything else is refused with ErrMalformed;
// weak algorithms with ErrWeakAlgorithm, ErrWeakRSA or ErrWeakHash.
func ReadPublic(r io.Reader) (*PublicKey, error) { return readPublic(r, "public key", false) }

// readPublic is ReadPublic; what names the input in messages. If file is
// set, every error names it (see inFile).
func readPublic(r io.Reader, what string, file bool) (*PublicKey, error) {
	b, err := readBounded(r, MaxArmoredKey, what)
	if err != nil {
		return nil, err
	}
	if bytes.Contains(b, []byte("-----BEGIN "+blockPrivateKey+"-----")) {
		return nil, inFile(notPublic(), what, file)
	}
	body, err := dearmor(b, blockPublicKey, what, true)
	if err != nil {
		return nil, err
	}
	e, err := readOneEntity(body, what)
	if err != nil {
		return nil, err
	}
	if hasSecrets(e) {
		return nil, inFile(notPublic(), what, file)
	}
	return newPublicKey(e, what, file)
}

// notPublic is the error of a private key given to ReadPublic.
func notPublic() error {
	e := verr(ErrMalformed, "this is a private key, not a public key: give the public key (the .pub.asc file), and keep the private key secret")
	e.WrongKind = true
	return e
}

func hasSecrets(e *openpgp.Entity) bool {
	if e.PrivateKey != nil {
		return true
	}
	for _, s := range e.Subkeys {
		if s.PrivateKey != nil {
			return true
		}
	}
	return false
}

// readOneEntity parses body as exactly one transferable key.
func readOneEntity(body []byte, what string) (*openpgp.Entity, error) {
	var e *openpgp.Entity
	err := safely(what, func() error {
		pr := packet.NewReader(bytes.NewReader(body))
		var err error
		e, err = openpgp.ReadEntity(pr)
		if err != nil {
			return malformed("%s: %s", what, printable(err.Error()))
		}
		switch _, err := openpgp.ReadEntity(pr); {
		case err == io.EOF:
			return nil
		case err == nil:
			return malformed("%s holds more than one key: export exactly one (gpg --armor --export FINGERPRINT)", what)
		default:
			return malformed("%s: unreadable data after the key: %s", what, printable(err.Error()))
		}
	})
	return e, err
}

// newPublicKey applies the key policy to e and records what verification
// needs. It is called only while e is private to the caller. what and file
// are readPublic's.
func newPublicKey(e *openpgp.Entity, what string, file bool) (*PublicKey, error) {
	pk := e.PrimaryKey
	if pk.Version != 4 {
		return nil, malformed("%s: version %d key: airlock accepts v4 keys only", what, pk.Version)
	}
	fp, ok := fingerprintOf(pk.Fingerprint)
	if !ok {
		return nil, malformed("%s: bad fingerprint", what)
	}
	if err := checkKeyAlgorithm(pk, fp, fp); err != nil {
		return nil, inFile(err, what, file)
	}
	for _, s := range e.Subkeys {
		sfp, ok := fingerprintOf(s.PublicKey.Fingerprint)
		if s.PublicKey.Version != 4 || !ok {
			return nil, malformed("%s %s: subkey of version %d: airlock accepts v4 keys only", what, fp, s.PublicKey.Version)
		}
		if err := checkKeyAlgorithm(s.PublicKey, fp, sfp); err != nil {
			return nil, inFile(err, what, file)
		}
	}

	k := &PublicKey{fp: fp}
	var selfSig *packet.Signature
	var ident *openpgp.Identity
	var direct *packet.Signature
	var revoked bool
	var reason string
	err := safely(what, func() error {
		selfSig, ident = e.PrimaryIdentity(time.Time{}, policyConfig)
		direct, _ = e.LatestValidDirectSignature(time.Time{}, policyConfig)
		for _, r := range e.Revocations {
			if weakHashes[r.Packet.Hash] || pk.VerifyRevocationSignature(r.Packet) != nil {
				continue
			}
			revoked = true
			reason = revocationReason(r.Packet)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	if selfSig == nil {
		for _, id := range e.Identities {
			for _, s := range id.SelfCertifications {
				if weakHashes[s.Packet.Hash] {
					return nil, inFile(&VerifyError{Kind: ErrWeakHash, Signer: fp, msg: fmt.Sprintf(
						"key %s: its self-signature uses %s, which is refused: re-sign the key with SHA-256 or stronger (gpg --cert-digest-algo SHA256 --quick-set-expire %s ...) or make a new key",
						fp, s.Packet.Hash, fp)}, what, file)
				}
			}
		}
		return nil, inFile(&VerifyError{Kind: ErrMalformed, Signer: fp, msg: fmt.Sprintf("key %s has no valid self-signed user ID", fp)}, what, file)
	}
	k.userID = ident.Name

	primary := keyInfo{
		pub:        pk,
		fp:         fp,
		primary:    true,
		canSign:    pk.PubKeyAlgo.CanSign() && (!selfSig.FlagsValid || selfSig.FlagSign),
		created:    pk.CreationTime,
		expires:    earliest(lifetimeEnd(pk.CreationTime, selfSig.KeyLifetimeSecs), lifetimeEnd(selfSig.CreationTime, selfSig.SigLifetimeSecs)),
		revoked:    revoked,
		revocation: reason,
	}
	if direct != nil {
		primary.expires = earliest(primary.expires, lifetimeEnd(pk.CreationTime, direct.KeyLifetimeSecs))
	}
	k.keys = append(k.keys, primary)

	for i := range e.Subkeys {
		s := &e.Subkeys[i]
		sfp, _ := fingerprintOf(s.PublicKey.Fingerprint)
		var bind *packet.Signature
		var srevoked bool
		err := safely(what, func() error {
			var err error
			bind, err = s.LatestValidBindingSignature(time.Time{}, policyConfig)
			if err == nil {
				srevoked = s.Revoked(bind, time.Time{})
			}
			return nil
		})
		if err != nil {
			return nil, err
		}
		if bind == nil {
			continue // not validly bound to this primary key: never used
		}
		info := keyInfo{
			pub:     s.PublicKey,
			fp:      sfp,
			canSign: s.PublicKey.PubKeyAlgo.CanSign() && bind.FlagsValid && bind.FlagSign,
			created: s.PublicKey.CreationTime,
			expires: earliest(primary.expires,
				earliest(lifetimeEnd(s.PublicKey.CreationTime, bind.KeyLifetimeSecs), lifetimeEnd(bind.CreationTime, bind.SigLifetimeSecs))),
			revoked:    primary.revoked || srevoked,
			revocation: primary.revocation,
		}
		if srevoked && !primary.revoked {
			info.revocation = "subkey revoked"
		}
		k.keys = append(k.keys, info)
	}

	var buf bytes.Buffer
	if err := e.Serialize(&buf); err != nil {
		return nil, malformed("%s %s: cannot re-encode the key: %s", what, fp, printable(err.Error()))
	}
	k.raw = buf.Bytes()
	return k, nil
}

// checkKeyAlgorithm applies the algorithm policy to one key packet of the
// certificate fp.
func checkKeyAlgorithm(pk *packet.PublicKey, fp, keyFP Fingerprint) error {
	which := "key " + fp.String()
	if keyFP != fp {
		which = fmt.Sprintf("key %s (subkey %s)", fp, keyFP)
	}
	weak := func(kind error, format string, args ...any) error {
		return &VerifyError{Kind: kind, Signer: fp, msg: which + " " + fmt.Sprintf(format, args...) +
			": it is refused; make a new Ed25519 key"}
	}
	switch pk.PubKeyAlgo {
	case packet.PubKeyAlgoRSA, packet.PubKeyAlgoRSAEncryptOnly, packet.PubKeyAlgoRSASignOnly:
		rk, ok := pk.PublicKey.(*rsa.PublicKey)
		if !ok || rk.N == nil {
			return malformed("%s: unreadable RSA key", which)
		}
		if bits := rk.N.BitLen(); bits < MinRSABits {
			return weak(ErrWeakRSA, "is RSA with %d bits, below the minimum of %d", bits, MinRSABits)
		}
	case packet.PubKeyAlgoDSA:
		return weak(ErrWeakAlgorithm, "uses DSA")
	case packet.PubKeyAlgoElGamal, 20: // 20: ElGamal sign-or-encrypt, withdrawn
		return weak(ErrWeakAlgorithm, "uses ElGamal")
	case packet.PubKeyAlgoECDSA, packet.PubKeyAlgoECDH, packet.PubKeyAlgoEdDSA:
		curve, err := pk.Curve()
		if err != nil {
			return weak(ErrWeakAlgorithm, "uses an unknown elliptic curve")
		}
		if policyConfig.RejectCurve(curve) {
			return weak(ErrWeakAlgorithm, "uses the curve %s", curve)
		}
	case packet.PubKeyAlgoX25519, packet.PubKeyAlgoX448, packet.PubKeyAlgoEd25519, packet.PubKeyAlgoEd448:
	default:
		return weak(ErrWeakAlgorithm, "uses public-key algorithm %d, which airlock does not accept", pk.PubKeyAlgo)
	}
	return nil
}

func revocationReason(s *packet.Signature) string {
	reason := "no reason given"
	if s.RevocationReason != nil {
		switch *s.RevocationReason {
		case packet.KeySuperseded:
			reason = "superseded"
		case packet.KeyCompromised:
			reason = "compromised"
		case packet.KeyRetired:
			reason = "retired"
		}
	}
	if s.RevocationReasonText != "" {
		reason += ": " + printable(s.RevocationReasonText)
	}
	return reason
}

// lifetimeEnd is start+secs, or zero (never) when secs is absent or 0.
func lifetimeEnd(start time.Time, secs *uint32) time.Time {
	if secs == nil || *secs == 0 {
		return time.Time{}
	}
	return start.Add(time.Duration(*secs) * time.Second)
}

// earliest of two expiry times where zero means never.
func earliest(a, b time.Time) time.Time {
	switch {
	case a.IsZero():
		return b
	case b.IsZero():
		return a
	case b.Before(a):
		return b
	}
	return a
}

// Fingerprint returns the fingerprint of the primary key.
func (k *PublicKey) Fingerprint() Fingerprint { return k.fp }

// UserID returns the primary user ID, e.g. "Acme Vendor <ops@acme.example>".
// It is text from the key's owner: quote or sanitise it before printing.
func (k *PublicKey) UserID() string { return k.userID }

// Created returns the creation time of the primary key.
func (k *PublicKey) Created() time.Time { return k.keys[0].created }

// Expires returns when the primary key expires, or the zero time if never.
func (k *PublicKey) Expires() time.Time { return k.keys[0].expires }

// Revoked reports whether the primary key carries a valid revocation.
func (k *PublicKey) Revoked() bool { return k.keys[0].revoked }

// Validate reports whether the key may be used at now: an error matching
// ErrKeyRevoked or ErrKeyExpired if not, nil if so. Callers that add a key to
// a trust store use it to refuse dead keys early. The error is a
// *VerifyError with Signer, UserID and Revocation or Expired set; its
// message states the fact only, and the caller says what to do.
func (k *PublicKey) Validate(now time.Time) error {
	if e := k.keys[0].usable(k, now, "key "+k.describe()); e != nil {
		return e
	}
	return nil
}

// describe names the key for messages: fingerprint and user ID.
func (k *PublicKey) describe() string {
	return fmt.Sprintf("%s (%s)", k.fp, printable(k.userID))
}

// usable returns the ErrKeyRevoked or ErrKeyExpired error of a key packet
// of k that may not be used at now, or nil. The message starts with subject
// ("key X (uid)", "signed by X (uid)", "cannot sign with X (uid)") and
// states the fact only: what to do about a dead key depends on who holds it
// and who trusts it, which only the caller knows.
func (ki *keyInfo) usable(k *PublicKey, now time.Time, subject string) *VerifyError {
	var e *VerifyError
	switch {
	case ki.revoked:
		e = verr(ErrKeyRevoked, "%s, whose key has been revoked (%s)", subject, ki.revocation)
		e.Revocation = ki.revocation
	case !ki.expires.IsZero() && !now.Before(ki.expires):
		e = verr(ErrKeyExpired, "%s, whose key expired at %s", subject, ki.expires.UTC().Format(time.RFC3339))
		e.Expired = ki.expires
	default:
		return nil
	}
	e.Signer, e.UserID = k.fp, k.userID
	return e
}

// WriteArmored writes the key as one armored "PGP PUBLIC KEY BLOCK", which
// gpg --import accepts.
func (k *PublicKey) WriteArmored(w io.Writer) error {
	return armorBytes(w, blockPublicKey, k.raw)
}

// Armored returns the key as WriteArmored writes it.
func (k *PublicKey) Armored() []byte {
	var b bytes.Buffer
	_ = k.WriteArmored(&b) // writing to a bytes.Buffer does not fail
	return b.Bytes()
}
