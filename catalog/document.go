package catalog

import (
	"bytes"
	"crypto/rand"
	"encoding/base32"
	"encoding/json"
	"fmt"
	"io"
	"sort"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"
)

// Document formats. A decoder refuses any other format string.
const (
	DownloadKeyFormat = "airlock-download-key/v1"
	EntitlementFormat = "airlock-entitlement/v1"
)

// MaxDocumentSize bounds every JSON document this package decodes (4 MiB):
// enough for thousands of packages and nodes, small enough to hold in memory.
const MaxDocumentSize = 4 << 20

// Limits on the contents of documents.
const (
	maxNodes    = 4096
	maxPackages = 65536
)

// KeyID is the 128-bit random identifier of a download key, in unpadded
// lowercase base32 (26 characters). Only the restricted side chooses it, so
// an entitlement that names it cannot be older than the key.
type KeyID string

var keyIDEncoding = base32.StdEncoding.WithPadding(base32.NoPadding)

// NewKeyID returns a fresh random KeyID.
func NewKeyID() (KeyID, error) {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", err
	}
	return KeyID(strings.ToLower(keyIDEncoding.EncodeToString(b[:]))), nil
}

// ParseKeyID validates the spelling of a KeyID: exactly 26 lowercase base32
// characters in the one spelling NewKeyID can produce (the decoder alone
// would also accept embedded newlines and non-zero trailing bits, giving one
// id several spellings).
func ParseKeyID(s string) (KeyID, error) {
	const n = 26
	var b []byte
	var err error
	if len(s) == n {
		b, err = keyIDEncoding.DecodeString(strings.ToUpper(s))
	}
	if len(s) != n || err != nil || len(b) != 16 || strings.ToLower(keyIDEncoding.EncodeToString(b)) != s {
		return "", fmt.Errorf("%w: key id %q is not 26 lowercase base32 characters", ErrDocument, truncate(s))
	}
	return KeyID(s), nil
}

// UnmarshalText parses with ParseKeyID.
func (k *KeyID) UnmarshalText(b []byte) error {
	v, err := ParseKeyID(string(b))
	if err != nil {
		return err
	}
	*k = v
	return nil
}

// NodeInventory is what one node reports as installed.
type NodeInventory struct {
	Name      string             `json:"name"`
	Installed map[string]Version `json:"installed"`
}

// DownloadKey is the restricted side's request for updates: which site asks,
// with what inventory, within which time window. It travels as an OpenPGP
// signed message made with the site key; this type is its payload.
type DownloadKey struct {
	Format  string          `json:"format"`
	Site    string          `json:"site"`
	ID      KeyID           `json:"id"`
	Issued  time.Time       `json:"issued"`
	Expires time.Time       `json:"expires"`
	Nodes   []NodeInventory `json:"nodes"`
}

// Entitlement is the vendor's signed answer to one download key: the exact
// packages, in full metadata, that the site needs.
type Entitlement struct {
	Format   string    `json:"format"`
	Site     string    `json:"site"`
	KeyID    KeyID     `json:"key_id"`
	Issued   time.Time `json:"issued"`
	Expires  time.Time `json:"expires"`
	Packages []Package `json:"packages"`
}

// Encode returns the canonical JSON encoding of k (see EncodeCanonical):
// times in UTC truncated to the second, nodes sorted by name, an absent
// node list or inventory encoded as empty, never as null. Equal keys encode
// to equal bytes, and DecodeDownloadKey accepts whatever Encode returns.
// k itself is not modified.
func (k DownloadKey) Encode() ([]byte, error) {
	if err := k.Validate(); err != nil {
		return nil, err
	}
	k.Issued, k.Expires = canonicalTime(k.Issued), canonicalTime(k.Expires)
	// A fresh slice, never nil: "nodes":null would not decode.
	nodes := make([]NodeInventory, len(k.Nodes))
	copy(nodes, k.Nodes)
	for i := range nodes {
		if nodes[i].Installed == nil {
			nodes[i].Installed = map[string]Version{}
		}
	}
	sort.Slice(nodes, func(i, j int) bool { return nodes[i].Name < nodes[j].Name })
	k.Nodes = nodes
	return EncodeCanonical(k)
}

// canonicalTime is t as documents carry it: UTC, whole seconds.
func canonicalTime(t time.Time) time.Time { return t.UTC().Truncate(time.Second) }

// validWindow checks issue and expiry times as they will be encoded (UTC,
// whole seconds), so that Encode never writes a window that Decode refuses.
func validWindow(issued, expires time.Time) error {
	i, x := canonicalTime(issued), canonicalTime(expires)
	for _, t := range []time.Time{i, x} {
		if t.IsZero() || t.Year() < 1 || t.Year() > 9999 {
			return fmt.Errorf("issue and expiry times must be set, between years 1 and 9999 UTC (got %s)", t.Format(time.RFC3339))
		}
	}
	if !x.After(i) {
		return fmt.Errorf("expiry %s must be after issue time %s", x.Format(time.RFC3339), i.Format(time.RFC3339))
	}
	return nil
}

// Validate checks that k is complete and consistent: format, site, id, a
// non-empty time window (judged at whole seconds, as encoded), at most 4096
// nodes with valid, distinct names, and inventories of valid component
// names with versions.
func (k DownloadKey) Validate() error {
	if k.Format != DownloadKeyFormat {
		return fmt.Errorf("%w: download key format %q, want %q", ErrFormat, truncate(k.Format), DownloadKeyFormat)
	}
	if err := ValidName(k.Site); err != nil {
		return fmt.Errorf("%w: download key site: %v", ErrDocument, err)
	}
	if _, err := ParseKeyID(string(k.ID)); err != nil {
		return err
	}
	if err := validWindow(k.Issued, k.Expires); err != nil {
		return fmt.Errorf("%w: download key %s: %v", ErrDocument, k.ID, err)
	}
	if len(k.Nodes) > maxNodes {
		return fmt.Errorf("%w: download key %s: more than %d nodes", ErrDocument, k.ID, maxNodes)
	}
	seen := map[string]bool{}
	for _, n := range k.Nodes {
		if err := ValidName(n.Name); err != nil {
			return fmt.Errorf("%w: download key %s: node: %v", ErrDocument, k.ID, err)
		}
		if seen[n.Name] {
			return fmt.Errorf("%w: download key %s: node %s listed twice", ErrDocument, k.ID, n.Name)
		}
		seen[n.Name] = true
		for c, v := range n.Installed {
			if err := ValidName(c); err != nil {
				return fmt.Errorf("%w: download key %s: node %s: component: %v", ErrDocument, k.ID, n.Name, err)
			}
			// JSON null leaves a zero Version in the map.
			if v.IsZero() {
				return fmt.Errorf("%w: download key %s: node %s: component %s: no version", ErrDocument, k.ID, n.Name, c)
			}
		}
	}
	return nil
}

// DecodeDownloadKey strictly decodes a download key payload: unknown or
// missing fields, a wrong format string, trailing data and input over
// MaxDocumentSize are errors.
func DecodeDownloadKey(b []byte) (DownloadKey, error) {
	var k DownloadKey
	if err := decodeStrict(b, &k, []string{"format", "site", "id", "issued", "expires", "nodes"}); err != nil {
		return DownloadKey{}, fmt.Errorf("download key: %w", err)
	}
	if err := k.Validate(); err != nil {
		return DownloadKey{}, err
	}
	return k, nil
}

// Encode returns the canonical JSON encoding of e: times in UTC truncated
// to the second, packages in the order given, absent lists encoded as empty,
// never as null. Equal entitlements encode to equal bytes, and
// DecodeEntitlement accepts whatever Encode returns. e itself is not
// modified.
func (e Entitlement) Encode() ([]byte, error) {
	if err := e.Validate(); err != nil {
		return nil, err
	}
	e.Issued, e.Expires = canonicalTime(e.Issued), canonicalTime(e.Expires)
	ps := make([]Package, len(e.Packages))
	copy(ps, e.Packages)
	for i := range ps {
		if ps[i].Requires == nil {
			ps[i].Requires = []Constraint{}
		}
	}
	e.Packages = ps
	return EncodeCanonical(e)
}

// Validate checks that e is complete and consistent: format, site, key id,
// a non-empty time window (judged at whole seconds, as encoded), every
// package valid, no digest or name@version listed twice.
func (e Entitlement) Validate() error {
	if e.Format != EntitlementFormat {
		return fmt.Errorf("%w: entitlement format %q, want %q", ErrFormat, truncate(e.Format), EntitlementFormat)
	}
	if err := ValidName(e.Site); err != nil {
		return fmt.Errorf("%w: entitlement site: %v", ErrDocument, err)
	}
	if _, err := ParseKeyID(string(e.KeyID)); err != nil {
		return err
	}
	if err := validWindow(e.Issued, e.Expires); err != nil {
		return fmt.Errorf("%w: entitlement for key %s: %v", ErrDocument, e.KeyID, err)
	}
	return ValidatePackages(e.Packages)
}

// ValidatePackages checks every package and that no digest or name@version
// appears twice. Versions are compared numerically, so base@3.4 and
// base@3.4.0 are the same package.
func ValidatePackages(ps []Package) error {
	if len(ps) > maxPackages {
		return fmt.Errorf("%w: more than %d packages", ErrDocument, maxPackages)
	}
	digests := make(map[Digest]bool, len(ps))
	ids := make(map[string]bool, len(ps))
	for _, p := range ps {
		if err := p.Validate(); err != nil {
			return err
		}
		id := p.Name + "@" + p.Version.key()
		if digests[p.SHA256] || ids[id] {
			return fmt.Errorf("%w: package %s listed twice", ErrDocument, p)
		}
		digests[p.SHA256], ids[id] = true, true
	}
	return nil
}

// DecodeEntitlement strictly decodes an entitlement payload.
func DecodeEntitlement(b []byte) (Entitlement, error) {
	var e Entitlement
	if err := decodeStrict(b, &e, []string{"format", "site", "key_id", "issued", "expires", "packages"}); err != nil {
		return Entitlement{}, fmt.Errorf("entitlement: %w", err)
	}
	if err := e.Validate(); err != nil {
		return Entitlement{}, err
	}
	return e, nil
}

// EncodeCanonical encodes v as compact JSON without HTML escaping, followed
// by a newline. Struct fields keep their declared order and map keys are
// sorted, so equal values always encode to equal bytes.
func EncodeCanonical(v any) ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// DecodeStrict decodes one JSON object from b into v: unknown fields, any of
// the required top-level fields missing or null, an object (at any depth)
// holding the same key twice, trailing data and input over MaxDocumentSize
// are errors of the verification class. Keys are compared as encoding/json
// matches them to struct fields, without regard to case, so {"site":"a",
// "Site":"b"} is refused rather than read as either. Other packages use it
// for their own signed documents.
func DecodeStrict(b []byte, v any, required []string) error {
	return decodeStrict(b, v, required)
}

func decodeStrict(b []byte, v any, required []string) error {
	if len(b) > MaxDocumentSize {
		return fmt.Errorf("%w: %d bytes, limit %d", ErrTooLarge, len(b), MaxDocumentSize)
	}
	// Required fields: check presence on a shallow decode first, so that a
	// missing field is named rather than silently left at its zero value.
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(b, &fields); err != nil {
		return fmt.Errorf("%w: %v", ErrDocument, err)
	}
	for _, f := range required {
		raw, ok := fields[f]
		if !ok || string(raw) == "null" {
			return fmt.Errorf("%w: missing field %q", ErrDocument, f)
		}
	}
	if err := checkDuplicateKeys(b); err != nil {
		return err
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return fmt.Errorf("%w: %v", ErrDocument, err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return fmt.Errorf("%w: trailing data after the JSON object", ErrDocument)
	}
	return nil
}

// checkDuplicateKeys refuses JSON text b if any object in it holds the same
// key twice. encoding/json would keep the last one silently, so a signed
// document could say two things to two readers. b must already be known to
// be well-formed JSON.
func checkDuplicateKeys(b []byte) error {
	type frame struct {
		keys    map[string]bool // nil for an array
		wantKey bool            // the next string in this object is a key
	}
	var stack []*frame
	dec := json.NewDecoder(bytes.NewReader(b))
	for {
		tok, err := dec.Token()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return fmt.Errorf("%w: %v", ErrDocument, err)
		}
		var top *frame
		if len(stack) > 0 {
			top = stack[len(stack)-1]
		}
		if s, ok := tok.(string); ok && top != nil && top.wantKey {
			k := foldKey(s)
			if top.keys[k] {
				return fmt.Errorf("%w: key %q appears twice in one object", ErrDocument, truncate(s))
			}
			top.keys[k] = true
			top.wantKey = false
			continue
		}
		if d, ok := tok.(json.Delim); ok && (d == '}' || d == ']') {
			stack = stack[:len(stack)-1]
			continue
		}
		// tok is a value: the next token of an enclosing object is a key.
		if top != nil && top.keys != nil {
			top.wantKey = true
		}
		switch tok {
		case json.Delim('{'):
			stack = append(stack, &frame{keys: map[string]bool{}, wantKey: true})
		case json.Delim('['):
			stack = append(stack, &frame{})
		}
	}
}

// foldKey folds s as encoding/json does when it matches a key to a struct
// field, so that keys it would treat as one fold to the same string.
func foldKey(s string) string {
	var b strings.Builder
	for _, r := range s {
		if r < utf8.RuneSelf {
			if 'a' <= r && r <= 'z' {
				r -= 'a' - 'A'
			}
			b.WriteRune(r)
			continue
		}
		// The smallest rune of r's fold set, as encoding/json's foldName.
		for {
			f := unicode.SimpleFold(r)
			if f <= r {
				r = f
				break
			}
			r = f
		}
		b.WriteRune(r)
	}
	return b.String()
}
