package catalog

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"hash"
	"io"
)

// Digest is a SHA-256 digest. It is parsed and validated once, from exactly
// 64 lowercase hex digits, and travels as a value everywhere else. The zero
// Digest is "no digest" and is never valid in a document.
type Digest [sha256.Size]byte

// ParseDigest parses 64 lowercase hex digits.
func ParseDigest(s string) (Digest, error) {
	var d Digest
	if len(s) != 2*len(d) {
		return d, fmt.Errorf("%w: %q is not 64 hex digits", ErrDigest, truncate(s))
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return d, fmt.Errorf("%w: %q is not lowercase hex", ErrDigest, truncate(s))
		}
	}
	if _, err := hex.Decode(d[:], []byte(s)); err != nil {
		return d, fmt.Errorf("%w: %v", ErrDigest, err)
	}
	return d, nil
}

// String returns the 64 lowercase hex digits.
func (d Digest) String() string { return hex.EncodeToString(d[:]) }

// Short returns the first 12 hex digits, for messages meant for people.
func (d Digest) Short() string { return d.String()[:12] }

// IsZero reports whether d is the zero Digest.
func (d Digest) IsZero() bool { return d == Digest{} }

// MarshalText encodes d as hex; the zero digest is refused.
func (d Digest) MarshalText() ([]byte, error) {
	if d.IsZero() {
		return nil, fmt.Errorf("%w: zero digest", ErrDigest)
	}
	return []byte(d.String()), nil
}

// UnmarshalText parses hex with ParseDigest.
func (d *Digest) UnmarshalText(b []byte) error {
	v, err := ParseDigest(string(b))
	if err != nil {
		return err
	}
	if v.IsZero() {
		return fmt.Errorf("%w: zero digest", ErrDigest)
	}
	*d = v
	return nil
}

// SumOf returns the digest of everything in the hash h, which must be a
// SHA-256 hash (as returned by sha256.New).
func SumOf(h hash.Hash) Digest {
	var d Digest
	h.Sum(d[:0])
	return d
}

// DigestReader returns the digest and length of everything read from r.
func DigestReader(r io.Reader) (Digest, int64, error) {
	h := sha256.New()
	n, err := io.Copy(h, r)
	if err != nil {
		return Digest{}, n, err
	}
	return SumOf(h), n, nil
}

func truncate(s string) string {
	if len(s) > 80 {
		return s[:80] + "…"
	}
	return s
}
