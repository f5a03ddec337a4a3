package catalog

import (
	"fmt"
	"time"
)

// Kind is a package's ordering class: base updates install before product
// updates, product before license, license before hotfix.
type Kind string

// The package kinds, in install order.
const (
	KindBase    Kind = "base"
	KindProduct Kind = "product"
	KindLicense Kind = "license"
	KindHotfix  Kind = "hotfix"
)

// Rank returns the kind's place in the install order (base is 0), or -1 for
// an unknown kind.
func (k Kind) Rank() int {
	switch k {
	case KindBase:
		return 0
	case KindProduct:
		return 1
	case KindLicense:
		return 2
	case KindHotfix:
		return 3
	}
	return -1
}

// ParseKind validates a kind name.
func ParseKind(s string) (Kind, error) {
	k := Kind(s)
	if k.Rank() < 0 {
		return "", fmt.Errorf("%w: kind %q: want base, product, license or hotfix", ErrPackage, truncate(s))
	}
	return k, nil
}

// MaxPackageSize bounds the size a package may declare (1 TiB).
const MaxPackageSize = 1 << 40

// maxRequires bounds the constraints one package may carry.
const maxRequires = 32

// Package is the vendor-signed metadata of one vendor file. Its JSON form is
// part of signed documents: fields are never renamed.
type Package struct {
	// Name is the component the package updates: base, product, license…
	Name string `json:"name"`
	// Kind is the ordering class.
	Kind Kind `json:"kind"`
	// Version is the version of Name the package installs.
	Version Version `json:"version"`
	// SHA256 and Size identify the vendor file exactly.
	SHA256 Digest `json:"sha256"`
	Size   int64  `json:"size"`
	// Requires must all hold on a node before the package is installed.
	Requires []Constraint `json:"requires"`
	// Settle is how long to wait after installing this package before the
	// next package of the same kind on the same node.
	Settle Duration `json:"settle"`
	// Reboot reports whether the node restarts during install.
	Reboot bool `json:"reboot"`
}

// ID returns "name@version", the name people use for a package.
func (p Package) ID() string { return p.Name + "@" + p.Version.String() }

// String returns "name@version (sha256 prefix)".
func (p Package) String() string { return p.ID() + " (" + p.SHA256.Short() + ")" }

// Validate checks that the metadata is complete and within bounds.
func (p Package) Validate() error {
	if err := ValidName(p.Name); err != nil {
		return fmt.Errorf("%w: %v", ErrPackage, err)
	}
	if p.Kind.Rank() < 0 {
		return fmt.Errorf("%w: %s: kind %q: want base, product, license or hotfix", ErrPackage, p.Name, truncate(string(p.Kind)))
	}
	if p.Version.IsZero() {
		return fmt.Errorf("%w: %s: no version", ErrPackage, p.Name)
	}
	if p.SHA256.IsZero() {
		return fmt.Errorf("%w: %s: no sha256", ErrPackage, p.ID())
	}
	if p.Size < 0 || p.Size > MaxPackageSize {
		return fmt.Errorf("%w: %s: size %d out of range", ErrPackage, p.ID(), p.Size)
	}
	if len(p.Requires) > maxRequires {
		return fmt.Errorf("%w: %s: more than %d requirements", ErrPackage, p.ID(), maxRequires)
	}
	for _, c := range p.Requires {
		if !c.complete() {
			return fmt.Errorf("%w: %s: incomplete requirement", ErrPackage, p.ID())
		}
	}
	if p.Settle < 0 || time.Duration(p.Settle) > 365*24*time.Hour {
		return fmt.Errorf("%w: %s: settle %s out of range", ErrPackage, p.ID(), time.Duration(p.Settle))
	}
	return nil
}

// Duration is a time.Duration whose JSON form is a Go duration string such
// as "24h0m0s"; zero encodes as "0s".
type Duration time.Duration

// MarshalText encodes d with time.Duration.String.
func (d Duration) MarshalText() ([]byte, error) { return []byte(time.Duration(d).String()), nil }

// UnmarshalText parses with time.ParseDuration.
func (d *Duration) UnmarshalText(b []byte) error {
	if len(b) > 32 {
		return fmt.Errorf("%w: duration too long", ErrDocument)
	}
	v, err := time.ParseDuration(string(b))
	if err != nil {
		return fmt.Errorf("%w: duration %q: %v", ErrDocument, b, err)
	}
	*d = Duration(v)
	return nil
}

// Equal reports whether p and q are the same package metadata: every field
// equal, versions spelled the same, requirements equal in order. A nil and
// an empty Requires are equal (both encode as no requirements).
func (p Package) Equal(q Package) bool {
	if p.Name != q.Name || p.Kind != q.Kind || p.Version.String() != q.Version.String() ||
		p.SHA256 != q.SHA256 || p.Size != q.Size || p.Settle != q.Settle || p.Reboot != q.Reboot ||
		len(p.Requires) != len(q.Requires) {
		return false
	}
	for i := range p.Requires {
		if p.Requires[i].String() != q.Requires[i].String() {
			return false
		}
	}
	return true
}
