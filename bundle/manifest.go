package bundle

import (
	"crypto/rand"
	"encoding/base32"
	"fmt"
	"strings"
	"time"

	"github.com/airlock-project/airlock/catalog"
)

// ManifestFormat is the format string of every manifest this package writes
// and the only one DecodeManifest accepts.
const ManifestFormat = "airlock-bundle/v1"

// Limits on the header members. A writer refuses to exceed them and a reader
// with default ReadOptions refuses members over them.
const (
	// MaxManifestSize bounds manifest.json (4 MiB).
	MaxManifestSize = catalog.MaxDocumentSize
	// MaxSignatureSize bounds manifest.json.asc (64 KiB).
	MaxSignatureSize = 64 << 10
	// MaxEntitlementSize bounds entitlement.asc (4 MiB).
	MaxEntitlementSize = 4 << 20
)

// Member names of the header members, in the order they appear.
const (
	ManifestName    = "manifest.json"
	SignatureName   = "manifest.json.asc"
	EntitlementName = "entitlement.asc"
)

// PackageMember returns the member name of a package: "packages/<sha256 hex>".
func PackageMember(d catalog.Digest) string { return "packages/" + d.String() }

// Manifest is the courier-signed table of contents of a bundle. Its JSON
// form (Encode) is the exact content of manifest.json, over which
// manifest.json.asc is a detached signature. Fields are never renamed.
type Manifest struct {
	// Format is ManifestFormat.
	Format string `json:"format"`
	// ID is the bundle's random 128-bit id (see NewBundleID).
	ID string `json:"id"`
	// Created is when the bundle was written; it is also the mtime of every
	// member. Expires is when it stops being acceptable.
	Created time.Time `json:"created"`
	Expires time.Time `json:"expires"`
	// Site is the site the bundle is for.
	Site string `json:"site"`
	// KeyID is the download key the entitlement answers.
	KeyID catalog.KeyID `json:"key_id"`
	// Courier is the fingerprint of the courier key that signs the
	// manifest: 40 uppercase hex digits.
	Courier string `json:"courier"`
	// Entitlement is the sha256 of the exact bytes of entitlement.asc.
	Entitlement catalog.Digest `json:"entitlement_sha256"`
	// Packages lists the package members, in member order.
	Packages []catalog.Package `json:"packages"`
}

var manifestFields = []string{"format", "id", "created", "expires", "site", "key_id", "courier", "entitlement_sha256", "packages"}

var idEncoding = base32.StdEncoding.WithPadding(base32.NoPadding)

// NewBundleID returns a fresh random 128-bit bundle id, spelled like a
// catalog.KeyID: 26 lowercase unpadded base32 characters.
func NewBundleID() (string, error) {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("new bundle id: %w", err)
	}
	return strings.ToLower(idEncoding.EncodeToString(b[:])), nil
}

func validBundleID(s string) bool {
	if len(s) != 26 || strings.ToLower(s) != s {
		return false
	}
	b, err := idEncoding.DecodeString(strings.ToUpper(s))
	return err == nil && len(b) == 16
}

func validFingerprint(s string) bool {
	if len(s) != 40 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('0' <= c && c <= '9' || 'A' <= c && c <= 'F') {
			return false
		}
	}
	return true
}

// Validate checks that m is complete and consistent: the format, id, site,
// key id and courier fingerprint are well formed, Expires is after Created,
// and the packages are valid with no digest or name@version listed twice. It
// checks nothing against the clock or any trust store: that is verify's job.
func (m Manifest) Validate() error {
	if m.Format != ManifestFormat {
		return fmt.Errorf("%w: format %q, want %q", ErrManifest, shorten(m.Format), ManifestFormat)
	}
	if !validBundleID(m.ID) {
		return fmt.Errorf("%w: id %q is not 26 lowercase base32 characters", ErrManifest, shorten(m.ID))
	}
	if m.Created.IsZero() || !m.Expires.After(m.Created) {
		return fmt.Errorf("%w: bundle %s: expiry must be after creation time", ErrManifest, m.ID)
	}
	if err := catalog.ValidName(m.Site); err != nil {
		return fmt.Errorf("%w: bundle %s: site: %v", ErrManifest, m.ID, err)
	}
	if _, err := catalog.ParseKeyID(string(m.KeyID)); err != nil {
		return fmt.Errorf("%w: bundle %s: %v", ErrManifest, m.ID, err)
	}
	if !validFingerprint(m.Courier) {
		return fmt.Errorf("%w: bundle %s: courier %q is not a fingerprint of 40 uppercase hex digits", ErrManifest, m.ID, shorten(m.Courier))
	}
	if m.Entitlement.IsZero() {
		return fmt.Errorf("%w: bundle %s: no entitlement digest", ErrManifest, m.ID)
	}
	if err := catalog.ValidatePackages(m.Packages); err != nil {
		return fmt.Errorf("%w: bundle %s: %w", ErrManifest, m.ID, err)
	}
	return nil
}

// Encode validates m and returns its canonical JSON encoding (see
// catalog.EncodeCanonical): times in UTC truncated to the second, an empty
// package list as []. Equal manifests encode to equal bytes.
func (m Manifest) Encode() ([]byte, error) {
	if err := m.Validate(); err != nil {
		return nil, err
	}
	m.Created, m.Expires = m.Created.UTC().Truncate(time.Second), m.Expires.UTC().Truncate(time.Second)
	if !m.Expires.After(m.Created) {
		return nil, fmt.Errorf("%w: bundle %s: expiry must be at least a second after creation time", ErrManifest, m.ID)
	}
	if m.Packages == nil {
		m.Packages = []catalog.Package{}
	}
	b, err := catalog.EncodeCanonical(m)
	if err != nil {
		return nil, fmt.Errorf("encode manifest of bundle %s: %w", m.ID, err)
	}
	if len(b) > MaxManifestSize {
		return nil, fmt.Errorf("%w: bundle %s: manifest is %d bytes, limit %d", ErrManifest, m.ID, len(b), MaxManifestSize)
	}
	return b, nil
}

// DecodeManifest strictly decodes manifest.json: unknown, missing or null
// fields, trailing data, input over MaxManifestSize, a wrong format and an
// invalid manifest (see Validate) are errors of the verification class. It
// does not check the signature: decode only bytes that verify has accepted,
// or treat the result as untrusted.
func DecodeManifest(b []byte) (Manifest, error) {
	var m Manifest
	if err := catalog.DecodeStrict(b, &m, manifestFields); err != nil {
		return Manifest{}, fmt.Errorf("%w: %w", ErrManifest, err)
	}
	if err := m.Validate(); err != nil {
		return Manifest{}, err
	}
	return m, nil
}

func shorten(s string) string {
	if len(s) > 80 {
		return s[:80] + "…"
	}
	return s
}
