package keys

import (
	"fmt"
	"hash"
	"io"
	"time"

	"github.com/ProtonMail/go-crypto/openpgp/packet"
	openpgp "github.com/ProtonMail/go-crypto/openpgp/v2"
)

// Limits and allowances of verification.
const (
	// DefaultSkew is how far in the future of the verifier's clock a
	// signature may be dated when Policy.Skew is zero.
	DefaultSkew = 5 * time.Minute
	// DefaultMaxArmored bounds armored signatures and messages when
	// Policy.MaxArmored is zero.
	DefaultMaxArmored = 8 << 20
	// MaxSignaturePacket bounds the body of any one signature packet.
	MaxSignaturePacket = 64 << 10
)

// Policy is the time and size policy of one verification. The zero Policy
// means: now, DefaultSkew, DefaultMaxArmored.
type Policy struct {
	Now        time.Time     // verification time; zero = time.Now()
	Skew       time.Duration // allowance for signatures dated in the future; zero = DefaultSkew, negative = none
	MaxArmored int64         // limit on the armored input; zero (or negative) = DefaultMaxArmored
}

func (p Policy) resolve() Policy {
	if p.Now.IsZero() {
		p.Now = time.Now()
	}
	switch {
	case p.Skew == 0:
		p.Skew = DefaultSkew
	case p.Skew < 0:
		p.Skew = 0
	}
	if p.MaxArmored <= 0 {
		p.MaxArmored = DefaultMaxArmored
	}
	return p
}

// Signature describes a verified signature.
type Signature struct {
	Signer     Fingerprint // primary key fingerprint of the trusted signer
	Role       Role        // the role the signer is trusted for (the one asked for)
	Created    time.Time   // signature creation time (whole seconds, as signed)
	UserID     string      // the signer's primary user ID, as trusted
	SigningKey Fingerprint // the key packet that signed: Signer, or a signing subkey of it
}

// VerifyDetached verifies an armored detached signature ("PGP SIGNATURE",
// exactly one v4 signature packet of type binary or text) over data, made by
// a key trusted for role, under policy p. It returns the verified signature,
// or an error matching one of the verification sentinels (all of class
// fault.ErrVerification); an error reading data is returned wrapped as it is.
//
// data is read once, to EOF, and only after every check that does not need
// it has passed. The checks, in order: size and framing (ErrArmorTooLarge,
// ErrSignatureTooLarge, ErrMalformed); hash and public-key algorithm named by
// the signature (ErrWeakHash, ErrWeakAlgorithm); the signer (ErrUnknownSigner,
// ErrWrongRole); the signer's key (ErrWeakAlgorithm, ErrWeakRSA, ErrKeyRevoked,
// ErrKeyExpired); the signature itself over data (ErrBadSignature); and then,
// on the now authenticated creation time, ErrFutureSignature and
// ErrSignatureExpired.
//
// A key that has expired at p.Now is refused even for signatures made before
// it expired: airlock does not rely on signature times it cannot bound. An
// invalid role is an error matching ErrRole (usage class).
func (t *TrustStore) VerifyDetached(role Role, data io.Reader, armoredSig io.Reader, p Policy) (Signature, error) {
	if err := role.check(); err != nil {
		return Signature{}, err
	}
	p = p.resolve()
	const what = "signature"
	b, err := readBounded(armoredSig, p.MaxArmored, what)
	if err != nil {
		return Signature{}, err
	}
	body, err := dearmor(b, blockSignature, what, false)
	if err != nil {
		return Signature{}, err
	}
	first, rest, err := nextPacket(body)
	if err != nil {
		return Signature{}, malformed("signature: %s", err)
	}
	if first.tag != tagSignature {
		return Signature{}, malformed("signature: holds a packet of type %d, not a signature", first.tag)
	}
	sig, err := parseSignature(first, what)
	if err != nil {
		return Signature{}, err
	}
	if err := onlyOne(rest, what); err != nil {
		return Signature{}, err
	}
	v, err := t.begin(role, sig, p)
	if err != nil {
		return Signature{}, err
	}
	if _, err := io.Copy(v.data, data); err != nil {
		return Signature{}, fmt.Errorf("read signed data: %w", err)
	}
	return v.finish(p)
}

// VerifyMessage verifies an armored signed message ("PGP MESSAGE": one-pass
// signature, literal data, signature, optionally all inside one compressed
// packet, as gpg --sign --armor writes) made by a key trusted for role, and
// returns the literal data, only if the signature verified. The checks and
// errors are those of VerifyDetached; p.MaxArmored also bounds the
// decompressed message (ErrArmorTooLarge). Encrypted messages, messages with
// more or fewer than one signature and old-style (signature first) messages
// are refused with ErrMalformed. The whole message is held in memory.
func (t *TrustStore) VerifyMessage(role Role, armoredMsg io.Reader, p Policy) ([]byte, Signature, error) {
	if err := role.check(); err != nil {
		return nil, Signature{}, err
	}
	p = p.resolve()
	const what = "message"
	b, err := readBounded(armoredMsg, p.MaxArmored, what)
	if err != nil {
		return nil, Signature{}, err
	}
	body, err := dearmor(b, blockMessage, what, false)
	if err != nil {
		return nil, Signature{}, err
	}
	data, sig, err := parseMessage(body, p.MaxArmored)
	if err != nil {
		return nil, Signature{}, err
	}
	v, err := t.begin(role, sig, p)
	if err != nil {
		return nil, Signature{}, err
	}
	v.data.Write(data)
	s, err := v.finish(p)
	if err != nil {
		return nil, Signature{}, err
	}
	return data, s, nil
}

// parseSignature applies the size and algorithm policy to the raw packet
// before go-crypto parses it (go-crypto cannot even parse MD5 or RIPEMD-160
// signatures, so only the raw bytes can say why they are refused).
func parseSignature(p rawPacket, what string) (*packet.Signature, error) {
	if len(p.body) > MaxSignaturePacket {
		return nil, verr(ErrSignatureTooLarge, "%s: signature packet of %d bytes, more than the %d allowed: refused without parsing it", what, len(p.body), MaxSignaturePacket)
	}
	b := p.body
	if len(b) < 4 {
		return nil, malformed("%s: truncated signature packet", what)
	}
	if b[0] != 4 {
		return nil, malformed("%s: version %d signature: airlock accepts v4 signatures only", what, b[0])
	}
	if name, weak := weakHashIDs[b[3]]; weak {
		return nil, verr(ErrWeakHash, "%s uses the hash %s, which is refused: the signer must sign with SHA-256 or stronger (gpg --digest-algo SHA256)", what, name)
	}
	switch packet.PublicKeyAlgorithm(b[2]) {
	case packet.PubKeyAlgoDSA:
		return nil, verr(ErrWeakAlgorithm, "%s is a DSA signature, which is refused: the signer needs an Ed25519 key", what)
	case packet.PubKeyAlgoElGamal, 20:
		return nil, verr(ErrWeakAlgorithm, "%s is an ElGamal signature, which is refused: the signer needs an Ed25519 key", what)
	}
	pkt, err := p.parse(what)
	if err != nil {
		return nil, err
	}
	sig, ok := pkt.(*packet.Signature)
	if !ok {
		return nil, malformed("%s: not a signature packet", what)
	}
	if sig.SigType != packet.SigTypeBinary && sig.SigType != packet.SigTypeText {
		return nil, malformed("%s: signature of type 0x%02x is not a signature over a document", what, uint8(sig.SigType))
	}
	return sig, nil
}

// onlyOne refuses anything after the one signature packet.
func onlyOne(rest []byte, what string) error {
	if len(rest) == 0 {
		return nil
	}
	if next, _, err := nextPacket(rest); err == nil && next.tag == tagSignature {
		return malformed("%s holds more than one signature: airlock accepts exactly one", what)
	}
	return malformed("%s: %d bytes of unexpected data after the signature", what, len(rest))
}

// parseMessage splits a signed message into its literal data and signature,
// checking the packet sequence exactly.
func parseMessage(b []byte, limit int64) ([]byte, *packet.Signature, error) {
	const what = "message"
	first, rest, err := nextPacket(b)
	if err != nil {
		return nil, nil, malformed("%s: %s", what, err)
	}
	if first.tag == tagCompressed {
		if len(rest) != 0 {
			return nil, nil, malformed("%s: unexpected data after the compressed packet", what)
		}
		pkt, err := first.parse(what)
		if err != nil {
			return nil, nil, err
		}
		c, ok := pkt.(*packet.Compressed)
		if !ok {
			return nil, nil, malformed("%s: bad compressed packet", what)
		}
		var inner []byte
		err = safely(what, func() error {
			var err error
			inner, err = io.ReadAll(io.LimitReader(c.Body, limit+1))
			if err != nil {
				return malformed("%s: cannot decompress: %s", what, printable(err.Error()))
			}
			return nil
		})
		if err != nil {
			return nil, nil, err
		}
		if int64(len(inner)) > limit {
			return nil, nil, verr(ErrArmorTooLarge, "%s decompresses to more than %d bytes: refused", what, limit)
		}
		if first, rest, err = nextPacket(inner); err != nil {
			return nil, nil, malformed("%s: %s", what, err)
		}
		if first.tag == tagCompressed {
			return nil, nil, malformed("%s: nested compression is not accepted", what)
		}
	}
	switch first.tag {
	case tagOnePassSig:
	case 1, 3, 18, 20:
		return nil, nil, malformed("%s is encrypted: airlock reads signed, unencrypted messages", what)
	case tagSignature:
		return nil, nil, malformed("%s puts the signature before the data (old style): sign with gpg --sign", what)
	case tagLiteral:
		return nil, nil, malformed("%s is not signed", what)
	default:
		return nil, nil, malformed("%s starts with a packet of type %d, not a one-pass signature", what, first.tag)
	}
	lit, rest, err := nextPacket(rest)
	if err != nil {
		return nil, nil, malformed("%s: %s", what, err)
	}
	switch lit.tag {
	case tagLiteral:
	case tagOnePassSig:
		return nil, nil, malformed("%s holds more than one signature: airlock accepts exactly one", what)
	default:
		return nil, nil, malformed("%s: packet of type %d where the signed data should be", what, lit.tag)
	}
	sigRaw, rest, err := nextPacket(rest)
	if err != nil {
		return nil, nil, malformed("%s: no signature after the data: %s", what, err)
	}
	if sigRaw.tag != tagSignature {
		return nil, nil, malformed("%s: packet of type %d where the signature should be", what, sigRaw.tag)
	}
	// The signature first, so that its algorithms decide which error is
	// reported, then the one-pass header that must describe it.
	sig, err := parseSignature(sigRaw, what)
	if err != nil {
		return nil, nil, err
	}
	if err := onlyOne(rest, what); err != nil {
		return nil, nil, err
	}
	pkt, err := first.parse(what)
	if err != nil {
		return nil, nil, err
	}
	ops, ok := pkt.(*packet.OnePassSignature)
	if !ok || ops.Version != 3 {
		return nil, nil, malformed("%s: unsupported one-pass signature", what)
	}
	keyID, ok := issuerKeyID(sig)
	if !ops.IsLast || ops.SigType != sig.SigType || ops.Hash != sig.Hash || ops.PubKeyAlgo != sig.PubKeyAlgo || !ok || ops.KeyId != keyID {
		return nil, nil, malformed("%s: the one-pass signature header does not match the signature", what)
	}
	pkt, err = lit.parse(what)
	if err != nil {
		return nil, nil, err
	}
	ld, ok := pkt.(*packet.LiteralData)
	if !ok {
		return nil, nil, malformed("%s: bad literal data packet", what)
	}
	var data []byte
	err = safely(what, func() error {
		var err error
		// Bounded: the body is a slice of the already bounded input.
		data, err = io.ReadAll(ld.Body)
		if err != nil {
			return malformed("%s: %s", what, printable(err.Error()))
		}
		return nil
	})
	if err != nil {
		return nil, nil, err
	}
	return data, sig, nil
}

// issuerKeyID is the key ID the signature names, directly or through its
// issuer fingerprint.
func issuerKeyID(sig *packet.Signature) (uint64, bool) {
	if fp, ok := fingerprintOf(sig.IssuerFingerprint); ok {
		return fp.KeyID(), true
	}
	if sig.IssuerKeyId != nil {
		return *sig.IssuerKeyId, true
	}
	return 0, false
}

// verification is a signature that passed every check that does not need
// the data; the data goes into data, then finish decides.
type verification struct {
	tr   Trusted
	ki   *keyInfo
	sig  *packet.Signature
	h    hash.Hash
	data io.Writer
}

func (t *TrustStore) begin(role Role, sig *packet.Signature, p Policy) (*verification, error) {
	var fp Fingerprint
	hasFP := false
	if sig.IssuerFingerprint != nil {
		var ok bool
		if fp, ok = fingerprintOf(sig.IssuerFingerprint); !ok || sig.IssuerKeyVersion != 4 {
			return nil, malformed("signature names an issuer key of version %d: airlock accepts v4 keys only", sig.IssuerKeyVersion)
		}
		hasFP = true
		if sig.IssuerKeyId != nil && *sig.IssuerKeyId != fp.KeyID() {
			return nil, malformed("signature names issuer %s and key ID %s, which disagree", fp, keyIDString(*sig.IssuerKeyId))
		}
	} else if sig.IssuerKeyId == nil {
		return nil, malformed("signature names no issuer key")
	}
	keyID, _ := issuerKeyID(sig)
	tr, ki, n := t.findSigner(fp, hasFP, keyID)
	created := sig.CreationTime
	switch {
	case n == 0:
		who := "key ID " + keyIDString(keyID)
		if hasFP {
			who = fp.String()
		}
		// How a key comes to be trusted is the caller's to say: each
		// program is told its keys in its own way.
		e := verr(ErrUnknownSigner, "signed by %s, which is not trusted", who)
		e.Signer, e.KeyID, e.Created, e.Role = fp, keyID, created, role
		return nil, e
	case n > 1:
		return nil, malformed("signature names key ID %s, which matches several trusted keys: it must carry an issuer fingerprint", keyIDString(keyID))
	}
	k := tr.Key
	signer := k.describe()
	tag := func(e *VerifyError) *VerifyError {
		e.Signer, e.KeyID, e.UserID, e.Created, e.Role = k.fp, keyID, k.userID, created, role
		return e
	}
	if tr.Role != role {
		e := tag(verr(ErrWrongRole, "signed by %s, which is trusted as %s, not %s: a key is trusted for one role only, and this document must be signed by a %s key",
			signer, tr.Role, role, role))
		e.TrustedAs = tr.Role
		return nil, e
	}
	// The algorithm policy held when the key was read; checked again so
	// that no key ever verifies outside it.
	if err := checkKeyAlgorithm(ki.pub, k.fp, ki.fp); err != nil {
		return nil, err
	}
	if sig.PubKeyAlgo != ki.pub.PubKeyAlgo {
		return nil, tag(verr(ErrBadSignature, "signature claims to be by %s but uses another public-key algorithm than that key: it is not that key's signature", signer))
	}
	if !ki.canSign {
		return nil, tag(verr(ErrBadSignature, "signed by key %s of %s, which its owner has not allowed to sign: the signature is refused", ki.fp, signer))
	}
	if e := ki.usable(k, p.Now, "signed by "+signer); e != nil {
		return nil, tag(e)
	}
	for _, n := range sig.Notations {
		if n.IsCritical {
			return nil, tag(verr(ErrBadSignature, "signature by %s carries the critical notation %q, which airlock does not understand: refused", signer, printable(n.Name)))
		}
	}
	var h hash.Hash
	err := safely("signature", func() error {
		var err error
		h, err = sig.PrepareVerify()
		if err != nil {
			return malformed("signature by %s: hash %s not available", signer, sig.Hash)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	v := &verification{tr: tr, ki: ki, sig: sig, h: h, data: h}
	if sig.SigType == packet.SigTypeText {
		v.data = openpgp.NewCanonicalTextHash(h)
	}
	return v, nil
}

func (v *verification) finish(p Policy) (Signature, error) {
	k := v.tr.Key
	signer := k.describe()
	created := v.sig.CreationTime
	tag := func(e *VerifyError) *VerifyError {
		e.Signer, e.KeyID, e.UserID, e.Created, e.Role = k.fp, v.ki.fp.KeyID(), k.userID, created, v.tr.Role
		return e
	}
	err := safely("signature", func() error { return v.ki.pub.VerifySignature(v.h, v.sig) })
	if err != nil {
		return Signature{}, tag(verr(ErrBadSignature, "signature by %s does not match the data: the data or the signature was changed or damaged after signing", signer))
	}
	if created.Before(v.ki.created) {
		return Signature{}, tag(verr(ErrBadSignature, "signature by %s is dated %s, before its key was created (%s): refused",
			signer, created.UTC().Format(time.RFC3339), v.ki.created.UTC().Format(time.RFC3339)))
	}
	if limit := p.Now.Add(p.Skew); created.After(limit) {
		return Signature{}, tag(verr(ErrFutureSignature, "signature by %s is dated %s, %s ahead of this host's clock (%s; %s allowed): check the clocks of this host and of the signer",
			signer, created.UTC().Format(time.RFC3339), created.Sub(p.Now).Round(time.Second), p.Now.UTC().Format(time.RFC3339), p.Skew))
	}
	if exp := lifetimeEnd(created, v.sig.SigLifetimeSecs); !exp.IsZero() && !p.Now.Before(exp) {
		e := tag(verr(ErrSignatureExpired, "signature by %s expired at %s: ask the signer for a new signature",
			signer, exp.UTC().Format(time.RFC3339)))
		e.Expired = exp
		return Signature{}, e
	}
	return Signature{
		Signer:     k.fp,
		Role:       v.tr.Role,
		Created:    created,
		UserID:     k.userID,
		SigningKey: v.ki.fp,
	}, nil
}

// UnverifiedPayload returns the literal data of an armored signed message
// WITHOUT verifying the
// signature. It exists for the unrestricted side, which must read a download
// key's site and id to check that an entitlement answers it but holds no
// site key. The result is untrusted: use it only to compare against data
// that is itself verified, never to grant anything. Input is bounded by
// DefaultMaxArmored and parsed with the same strictness as VerifyMessage.
func UnverifiedPayload(armoredMsg io.Reader) ([]byte, error) {
	const what = "message"
	limit := Policy{}.resolve().MaxArmored
	b, err := readBounded(armoredMsg, limit, what)
	if err != nil {
		return nil, err
	}
	body, err := dearmor(b, blockMessage, what, false)
	if err != nil {
		return nil, err
	}
	data, _, err := parseMessage(body, limit)
	if err != nil {
		return nil, err
	}
	return data, nil
}
