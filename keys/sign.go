package keys

import (
	"bytes"
	"crypto"
	"fmt"
	"hash"
	"io"
	"sort"
	"time"

	"github.com/ProtonMail/go-crypto/openpgp/packet"
	openpgp "github.com/ProtonMail/go-crypto/openpgp/v2"
)

// WithClock returns a copy of k whose signatures carry the creation time
// that now returns instead of time.Now(). It exists for tests and for
// callers that sign several documents with one time; k is not changed.
func (k *PrivateKey) WithClock(now func() time.Time) *PrivateKey {
	c := *k
	c.now = now
	return &c
}

func (k *PrivateKey) clock() time.Time {
	if k.now != nil {
		return k.now()
	}
	return time.Now()
}

// signOptions are the knobs of a signature. The exported methods use
// defaultSignOptions; tests make weak or expiring signatures with others.
type signOptions struct {
	hash     crypto.Hash
	sigType  packet.SignatureType
	lifetime uint32 // seconds; 0 = no signature expiry
	noSalt   bool   // omit go-crypto's salt notation (it has none for SHA-1)
}

var defaultSignOptions = signOptions{hash: crypto.SHA256, sigType: packet.SigTypeBinary}

// SignDetached reads data once and writes an armored detached signature
// ("PGP SIGNATURE", a v4 binary-document signature, SHA-256) over it, made
// now (see WithClock) by the key's signing key. gpg --verify SIG DATA accepts
// it. A revoked or expired key does not sign (ErrKeyRevoked, ErrKeyExpired).
func (k *PrivateKey) SignDetached(w io.Writer, data io.Reader) error {
	return k.signDetached(w, data, defaultSignOptions)
}

// SignMessage writes an armored signed message ("PGP MESSAGE": one-pass
// signature, binary literal data, signature; not compressed) over data, as
// gpg --sign --armor does. gpg --decrypt and VerifyMessage read it.
func (k *PrivateKey) SignMessage(w io.Writer, data []byte) error {
	return k.signMessage(w, data, defaultSignOptions)
}

func (k *PrivateKey) signDetached(w io.Writer, data io.Reader, o signOptions) error {
	s, err := k.newSigner(o)
	if err != nil {
		return err
	}
	return s.detached(w, data)
}

func (k *PrivateKey) signMessage(w io.Writer, data []byte, o signOptions) error {
	s, err := k.newSigner(o)
	if err != nil {
		return err
	}
	return s.message(w, data)
}

// detached hashes data and writes the armored signature.
func (s *signer) detached(w io.Writer, data io.Reader) error {
	if _, err := io.Copy(s.wrapped, data); err != nil {
		return fmt.Errorf("sign: read data: %w", err)
	}
	var body bytes.Buffer
	if err := s.finish(&body); err != nil {
		return err
	}
	return armorBytes(w, blockSignature, body.Bytes())
}

// message writes data as an armored one-pass signed message.
func (s *signer) message(w io.Writer, data []byte) error {
	s.wrapped.Write(data)
	var body bytes.Buffer
	ops := &packet.OnePassSignature{
		Version:    3,
		SigType:    s.sig.SigType,
		Hash:       s.sig.Hash,
		PubKeyAlgo: s.sig.PubKeyAlgo,
		KeyId:      s.priv.KeyId,
		IsLast:     true,
	}
	if err := ops.Serialize(&body); err != nil {
		return fmt.Errorf("sign: %w", err)
	}
	lit, err := packet.SerializeLiteral(nopCloser{&body}, s.sig.SigType == packet.SigTypeBinary, "", 0)
	if err != nil {
		return fmt.Errorf("sign: %w", err)
	}
	if _, err := lit.Write(data); err != nil {
		return fmt.Errorf("sign: %w", err)
	}
	if err := lit.Close(); err != nil {
		return fmt.Errorf("sign: %w", err)
	}
	if err := s.finish(&body); err != nil {
		return err
	}
	return armorBytes(w, blockMessage, body.Bytes())
}

type nopCloser struct{ io.Writer }

func (nopCloser) Close() error { return nil }

// signer is a signature being made: data goes into wrapped, then finish.
type signer struct {
	sig     *packet.Signature
	priv    *packet.PrivateKey
	cfg     *packet.Config
	h       hash.Hash
	wrapped io.Writer
}

func (k *PrivateKey) newSigner(o signOptions) (*signer, error) {
	now := k.clock()
	_, priv, err := k.signingKey(now)
	if err != nil {
		return nil, err
	}
	return newSignerFor(priv, now, o)
}

// newSignerFor starts a v4 signature by priv dated now.
func newSignerFor(priv *packet.PrivateKey, now time.Time, o signOptions) (*signer, error) {
	cfg := &packet.Config{DefaultHash: o.hash, Time: func() time.Time { return now }}
	if o.noSalt {
		cfg.NonDeterministicSignaturesViaNotation = packet.BoolPointer(false)
	}
	keyID := priv.KeyId
	sig := &packet.Signature{
		Version:      4,
		SigType:      o.sigType,
		PubKeyAlgo:   priv.PubKeyAlgo,
		Hash:         o.hash,
		CreationTime: now,
		IssuerKeyId:  &keyID,
	}
	if o.lifetime != 0 {
		l := o.lifetime
		sig.SigLifetimeSecs = &l
	}
	h, err := sig.PrepareSign(cfg)
	if err != nil {
		return nil, fmt.Errorf("sign: %w", err)
	}
	s := &signer{sig: sig, priv: priv, cfg: cfg, h: h, wrapped: h}
	if o.sigType == packet.SigTypeText {
		s.wrapped = openpgp.NewCanonicalTextHash(h)
	}
	return s, nil
}

func (s *signer) finish(w io.Writer) error {
	if err := s.sig.Sign(s.h, s.priv, s.cfg); err != nil {
		return fmt.Errorf("sign: %w", err)
	}
	if err := s.sig.Serialize(w); err != nil {
		return fmt.Errorf("sign: %w", err)
	}
	return nil
}

// signingKey picks the key that signs at now (zero: any time): the newest
// usable signing subkey whose secret is present, else the primary key, as
// gpg does.
func (k *PrivateKey) signingKey(now time.Time) (*keyInfo, *packet.PrivateKey, error) {
	secrets := map[Fingerprint]*packet.PrivateKey{}
	add := func(p *packet.PrivateKey) {
		if p != nil && !p.Dummy() && !p.Encrypted {
			if fp, ok := fingerprintOf(p.Fingerprint); ok {
				secrets[fp] = p
			}
		}
	}
	add(k.entity.PrivateKey)
	for _, s := range k.entity.Subkeys {
		add(s.PrivateKey)
	}
	var cands []*keyInfo
	var lastErr error
	for i := range k.pub.keys {
		ki := &k.pub.keys[i]
		if !ki.canSign || secrets[ki.fp] == nil {
			continue
		}
		if !now.IsZero() {
			if e := ki.usable(k.pub, now, "cannot sign with "+k.pub.describe()); e != nil {
				lastErr = e
				continue
			}
		}
		cands = append(cands, ki)
	}
	if len(cands) == 0 {
		if lastErr != nil {
			return nil, nil, lastErr
		}
		return nil, nil, malformed("private key %s holds no secret key that may sign", k.pub.fp)
	}
	sort.SliceStable(cands, func(i, j int) bool {
		if cands[i].primary != cands[j].primary {
			return !cands[i].primary
		}
		return cands[i].created.After(cands[j].created)
	})
	return cands[0], secrets[cands[0].fp], nil
}
