package catalog

import (
	"fmt"
	"strconv"
	"strings"
)

// maxVersionParts and maxVersionLen bound what ParseVersion accepts.
const (
	maxVersionParts = 8
	maxVersionLen   = 64
)

// Version is a dotted numeric version such as 3.4.0, compared numerically
// component by component (3.10.0 > 3.9.1). Missing trailing components count
// as zero for comparison (3.4 == 3.4.0) but String keeps the spelling parsed.
// The zero Version is invalid; use ParseVersion or MustVersion.
type Version struct {
	s     string
	parts []uint32
}

// ParseVersion parses a dotted numeric version: 1 to 8 components of decimal
// digits without sign or leading zeros (other than "0"), each below 2^32.
func ParseVersion(s string) (Version, error) {
	if s == "" || len(s) > maxVersionLen {
		return Version{}, fmt.Errorf("%w: %q: want dotted numbers like 3.4.0", ErrVersion, truncate(s))
	}
	fields := strings.Split(s, ".")
	if len(fields) > maxVersionParts {
		return Version{}, fmt.Errorf("%w: %q has more than %d components", ErrVersion, s, maxVersionParts)
	}
	parts := make([]uint32, len(fields))
	for i, f := range fields {
		if f == "" || (len(f) > 1 && f[0] == '0') || strings.TrimLeft(f, "0123456789") != "" {
			return Version{}, fmt.Errorf("%w: %q: component %q is not a number", ErrVersion, s, f)
		}
		n, err := strconv.ParseUint(f, 10, 32)
		if err != nil {
			return Version{}, fmt.Errorf("%w: %q: component %q is too large", ErrVersion, s, f)
		}
		parts[i] = uint32(n)
	}
	return Version{s: s, parts: parts}, nil
}

// MustVersion is ParseVersion for constants in tests and tables; it panics
// on a malformed version.
func MustVersion(s string) Version {
	v, err := ParseVersion(s)
	if err != nil {
		panic(err)
	}
	return v
}

// String returns the version as parsed.
func (v Version) String() string { return v.s }

// IsZero reports whether v is the zero (unparsed) Version.
func (v Version) IsZero() bool { return v.s == "" }

// Compare returns -1, 0 or +1 as v is older than, equal to or newer than w.
func (v Version) Compare(w Version) int {
	n := max(len(v.parts), len(w.parts))
	for i := 0; i < n; i++ {
		a, b := part(v.parts, i), part(w.parts, i)
		switch {
		case a < b:
			return -1
		case a > b:
			return 1
		}
	}
	return 0
}

// key returns a spelling of v that is equal for equal versions: trailing
// zero components are dropped (3.4.0 and 3.4 both give "3.4").
func (v Version) key() string {
	n := len(v.parts)
	for n > 1 && v.parts[n-1] == 0 {
		n--
	}
	var b strings.Builder
	for i, p := range v.parts[:n] {
		if i > 0 {
			b.WriteByte('.')
		}
		b.WriteString(strconv.FormatUint(uint64(p), 10))
	}
	return b.String()
}

// Less reports whether v is older than w.
func (v Version) Less(w Version) bool { return v.Compare(w) < 0 }

func part(p []uint32, i int) uint32 {
	if i < len(p) {
		return p[i]
	}
	return 0
}

// MarshalText encodes the version; the zero Version is refused.
func (v Version) MarshalText() ([]byte, error) {
	if v.IsZero() {
		return nil, fmt.Errorf("%w: empty version", ErrVersion)
	}
	return []byte(v.s), nil
}

// UnmarshalText parses with ParseVersion.
func (v *Version) UnmarshalText(b []byte) error {
	p, err := ParseVersion(string(b))
	if err != nil {
		return err
	}
	*v = p
	return nil
}
