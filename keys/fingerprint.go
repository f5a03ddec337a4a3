package keys

import (
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"strings"

	"github.com/airlock-project/airlock/fault"
)

// Fingerprint is the 20-byte fingerprint of a v4 OpenPGP key. It is the one
// identity of a key in airlock: the trust store, signatures and messages name
// keys by it, never by the 64-bit key ID.
type Fingerprint [20]byte

// ErrFingerprint reports text that is not a fingerprint (usage class).
var ErrFingerprint = fault.Usage("invalid fingerprint")

// ParseFingerprint parses 40 hexadecimal digits in any case; spaces and
// colons between them are ignored ("7F3A 0B12 …" as gpg prints it works).
// Anything else is an error matching ErrFingerprint.
func ParseFingerprint(s string) (Fingerprint, error) {
	var fp Fingerprint
	clean := strings.Map(func(r rune) rune {
		if r == ' ' || r == ':' || r == '\t' {
			return -1
		}
		return r
	}, s)
	if len(clean) != 2*len(fp) {
		return Fingerprint{}, fmt.Errorf("fingerprint %q: want 40 hex digits, got %d characters: %w", printable(s), len(clean), ErrFingerprint)
	}
	if _, err := hex.Decode(fp[:], []byte(clean)); err != nil {
		return Fingerprint{}, fmt.Errorf("fingerprint %q is not hexadecimal: %w", printable(s), ErrFingerprint)
	}
	return fp, nil
}

// String returns the fingerprint as 40 uppercase hex digits, as gpg prints
// it with --with-colons.
func (f Fingerprint) String() string { return strings.ToUpper(hex.EncodeToString(f[:])) }

// IsZero reports whether f is the zero value (no fingerprint).
func (f Fingerprint) IsZero() bool { return f == Fingerprint{} }

// KeyID returns the 64-bit v4 key ID: the low 8 bytes of the fingerprint.
func (f Fingerprint) KeyID() uint64 { return binary.BigEndian.Uint64(f[12:]) }

// MarshalText encodes the fingerprint as String does.
func (f Fingerprint) MarshalText() ([]byte, error) { return []byte(f.String()), nil }

// UnmarshalText decodes what ParseFingerprint accepts.
func (f *Fingerprint) UnmarshalText(b []byte) error {
	fp, err := ParseFingerprint(string(b))
	if err != nil {
		return err
	}
	*f = fp
	return nil
}

func fingerprintOf(b []byte) (Fingerprint, bool) {
	var fp Fingerprint
	if len(b) != len(fp) {
		return fp, false
	}
	copy(fp[:], b)
	return fp, true
}

func keyIDString(id uint64) string { return fmt.Sprintf("%016X", id) }
