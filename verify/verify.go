// Package verify is the one place that decides whether a bundle, an
// entitlement or a download key may be trusted. Callers hand it untrusted
// bytes, a trust store and a Policy, and get back a verified value or an
// error whose class (fault.ErrVerification or fault.ErrPolicy) gives the
// exit code. No caller ever holds unverified data in a verified type.
//
// A bundle is verified in this order, so that no payload byte is trusted
// before every signature is: the courier's signature over manifest.json, the
// manifest's strict decoding, the vendor's signature over entitlement.asc and
// its digest in the manifest, the agreement of manifest and entitlement, the
// policy (site, expiry, outstanding key), and only then the packages, each
// hashed while it streams to the caller's sink and checked against the
// signed digest and size, and finally the end of the archive.
package verify

import (
	"bytes"
	"context"
	"crypto/sha256"
	"fmt"
	"io"
	"sort"
	"strings"
	"time"

	"github.com/airlock-project/airlock/bundle"
	"github.com/airlock-project/airlock/catalog"
	"github.com/airlock-project/airlock/keys"
)

// DefaultSkew is the clock difference tolerated between the machines that
// sign and the machine that verifies.
const DefaultSkew = 5 * time.Minute

// Policy states what the verifier expects. The zero Policy accepts any site
// and any key id at time.Now() with DefaultSkew.
type Policy struct {
	// Now is the verifier's time; zero means time.Now().
	Now time.Time
	// Skew is the allowance for clocks; zero means DefaultSkew.
	Skew time.Duration
	// Site, if set, is the only site whose documents are accepted.
	Site string
	// Outstanding, if set, is asked whether a download key id may still be
	// answered; it returns nil or a policy-class error saying why not
	// (fulfilled, expired, revoked, unknown).
	Outstanding func(catalog.KeyID) error
	// Bundle options for decompression limits.
	Read bundle.ReadOptions
}

func (p Policy) now() time.Time {
	if p.Now.IsZero() {
		return time.Now()
	}
	return p.Now
}

func (p Policy) skew() time.Duration {
	if p.Skew == 0 {
		return DefaultSkew
	}
	return p.Skew
}

func (p Policy) keys() keys.Policy { return keys.Policy{Now: p.now(), Skew: p.skew()} }

// window checks an issue/expiry window against the policy's clock.
func (p Policy) window(what string, issued, expires time.Time) error {
	now := p.now()
	if issued.After(now.Add(p.skew())) {
		return fmt.Errorf("%s: %w: issued %s, but this machine's clock says %s; check the clock on both sides",
			what, ErrNotYetValid, issued.UTC().Format(time.RFC3339), now.UTC().Format(time.RFC3339))
	}
	if !now.Before(expires) {
		return fmt.Errorf("%s: %w at %s (now %s); make a new download key and fetch again",
			what, ErrExpired, expires.UTC().Format(time.RFC3339), now.UTC().Format(time.RFC3339))
	}
	return nil
}

// Entitlement is a verified entitlement with the vendor's signature.
type Entitlement struct {
	catalog.Entitlement
	// Signature is the vendor signature that verified.
	Signature keys.Signature
}

// VerifyEntitlement verifies an armored, vendor-signed entitlement against
// the trusted vendor keys and the policy (site, validity window, outstanding
// key id).
func VerifyEntitlement(armored []byte, trust *keys.TrustStore, pol Policy) (*Entitlement, error) {
	ent, err := openEntitlement(armored, trust, pol)
	if err != nil {
		return nil, fmt.Errorf("entitlement: %w", err)
	}
	if err := checkSiteAndKey(pol, "entitlement", ent.Site, ent.KeyID); err != nil {
		return nil, err
	}
	if err := pol.window(fmt.Sprintf("entitlement for key %s", ent.KeyID), ent.Issued, ent.Expires); err != nil {
		return nil, err
	}
	return ent, nil
}

// openEntitlement checks the vendor signature and decodes the payload; it
// applies no site, key or time policy.
func openEntitlement(armored []byte, trust *keys.TrustStore, pol Policy) (*Entitlement, error) {
	payload, sig, err := trust.VerifyMessage(keys.RoleVendor, bytes.NewReader(armored), pol.keys())
	if err != nil {
		return nil, err
	}
	ent, err := catalog.DecodeEntitlement(payload)
	if err != nil {
		return nil, err
	}
	return &Entitlement{Entitlement: ent, Signature: sig}, nil
}

// EntitledPackage verifies an armored, vendor-signed entitlement with the
// trusted vendor keys and returns the metadata of the package whose SHA-256
// is d, with the vendor signature that covers it.
//
// The signature is checked under keys' policy at pol.Now (trusted signer with the
// vendor role, key neither expired nor revoked, signature not from the
// future beyond the default skew). The entitlement's own issue/expiry window
// is deliberately not applied: an entitlement expires with its download key,
// days before a maintenance window, while the package metadata it carries
// stays the vendor's word. The payload is decoded strictly
// (catalog.DecodeEntitlement). An entitlement that does not list d is an
// error matching ErrNotEntitled.
func EntitledPackage(armored []byte, trust *keys.TrustStore, d catalog.Digest, pol Policy) (catalog.Package, keys.Signature, error) {
	payload, sig, err := trust.VerifyMessage(keys.RoleVendor, bytes.NewReader(armored), keys.Policy{Now: pol.now(), Skew: pol.skew(), MaxArmored: catalog.MaxDocumentSize})
	if err != nil {
		return catalog.Package{}, keys.Signature{}, fmt.Errorf("entitlement for package %s: %w", d.Short(), err)
	}
	ent, err := catalog.DecodeEntitlement(payload)
	if err != nil {
		return catalog.Package{}, keys.Signature{}, fmt.Errorf("entitlement for package %s, signed by %s: %w", d.Short(), sig.Signer, err)
	}
	for _, p := range ent.Packages {
		if p.SHA256 == d {
			return p, sig, nil
		}
	}
	names := make([]string, 0, len(ent.Packages))
	for _, p := range ent.Packages {
		names = append(names, p.String())
	}
	sort.Strings(names)
	if len(names) == 0 {
		names = []string{"no packages"}
	}
	if len(names) > 10 {
		names = append(names[:10], "…")
	}
	return catalog.Package{}, keys.Signature{}, fmt.Errorf("%w: the entitlement for site %s key %s lists %s, not %s; upload the entitlement that came with this package",
		ErrNotEntitled, ent.Site, ent.KeyID, strings.Join(names, ", "), d)
}

// DownloadKey is a verified download key with the site's signature.
type DownloadKey struct {
	catalog.DownloadKey
	// Signature is the site signature that verified.
	Signature keys.Signature
}

// VerifyDownloadKey verifies an armored, site-signed download key against
// the trusted site keys and the policy's validity window. Policy.Site, if
// set, must match; Outstanding is not consulted (the vendor does not know).
func VerifyDownloadKey(armored []byte, trust *keys.TrustStore, pol Policy) (*DownloadKey, error) {
	payload, sig, err := trust.VerifyMessage(keys.RoleSite, bytes.NewReader(armored), pol.keys())
	if err != nil {
		return nil, fmt.Errorf("download key: %w", err)
	}
	k, err := catalog.DecodeDownloadKey(payload)
	if err != nil {
		return nil, err
	}
	if pol.Site != "" && k.Site != pol.Site {
		return nil, fmt.Errorf("download key %s: %w: signed for site %q, expected %q", k.ID, ErrWrongSite, k.Site, pol.Site)
	}
	if err := pol.window(fmt.Sprintf("download key %s", k.ID), k.Issued, k.Expires); err != nil {
		return nil, err
	}
	return &DownloadKey{DownloadKey: k, Signature: sig}, nil
}

// Answers checks that a verified entitlement answers a verified download
// key: same site, same key id.
func Answers(e *Entitlement, k *DownloadKey) error {
	if e.Site != k.Site || e.KeyID != k.ID {
		return fmt.Errorf("%w: the entitlement is for site %q key %s, the download key is site %q key %s; the server answered another request",
			ErrKeyMismatch, e.Site, e.KeyID, k.Site, k.ID)
	}
	return nil
}

func checkSiteAndKey(pol Policy, what, site string, id catalog.KeyID) error {
	if pol.Site != "" && site != pol.Site {
		return fmt.Errorf("%s for key %s: %w: it is for site %q, not this one (%q): take it to that site", what, id, ErrWrongSite, site, pol.Site)
	}
	if pol.Outstanding != nil {
		if err := pol.Outstanding(id); err != nil {
			return fmt.Errorf("%s answers download key %s: %w", what, id, err)
		}
	}
	return nil
}

// Bundle is a fully verified bundle: every signature, digest and size
// checked, every package delivered to the sink, the archive complete.
type Bundle struct {
	// Manifest is the courier-signed manifest.
	Manifest bundle.Manifest
	// Entitlement is the vendor-signed entitlement it carries.
	Entitlement *Entitlement
	// Courier is the courier signature over the manifest.
	Courier keys.Signature
	// Header holds the exact signed bytes, for a repository to keep.
	Header bundle.Header
}

// Sink receives each package's data while it streams. The reader it is given
// returns a verification error instead of io.EOF if the data does not match
// the signed digest, so a sink must not publish anything before it has read
// to io.EOF without error, and a caller must not commit anything before
// VerifyBundle has returned without error (the end of the archive is
// checked last). A nil Sink discards the data after checking it.
type Sink func(ctx context.Context, p catalog.Package, data io.Reader) error

// VerifyBundle reads an untrusted bundle stream and verifies it completely
// (see the package documentation for the order). Manifest and entitlement
// must both be signed by keys that the trust store holds for the courier and
// vendor roles.
func VerifyBundle(ctx context.Context, r io.Reader, trust *keys.TrustStore, pol Policy, sink Sink) (*Bundle, error) {
	br, hdr, err := bundle.NewReader(r, pol.Read)
	if err != nil {
		return nil, err
	}
	defer br.Close()
	b, err := verifyHeader(hdr, trust, pol)
	if err != nil {
		return nil, err
	}
	err = br.Packages(ctx, b.Manifest.Packages, func(p catalog.Package, data io.Reader) error {
		if sink == nil {
			_, err := io.Copy(io.Discard, data)
			return err
		}
		return sink(ctx, p, data)
	})
	if err != nil {
		return nil, err
	}
	return b, nil
}

// verifyHeader checks the three signed members and the policy.
func verifyHeader(hdr bundle.Header, trust *keys.TrustStore, pol Policy) (*Bundle, error) {
	csig, err := trust.VerifyDetached(keys.RoleCourier, bytes.NewReader(hdr.Manifest), bytes.NewReader(hdr.ManifestSig), pol.keys())
	if err != nil {
		return nil, fmt.Errorf("member manifest.json.asc: %w", err)
	}
	m, err := bundle.DecodeManifest(hdr.Manifest)
	if err != nil {
		return nil, fmt.Errorf("member manifest.json: %w: %s", err, adviceRemake)
	}
	if m.Courier != csig.Signer.String() {
		return nil, fmt.Errorf("member manifest.json: %w: names %s, signed by %s: %s", ErrCourierMismatch, m.Courier, csig.Signer, adviceRemake)
	}
	if got := catalog.Digest(sha256.Sum256(hdr.Entitlement)); got != m.Entitlement {
		return nil, fmt.Errorf("member entitlement.asc: %w: sha256 %s, manifest says %s: %s", ErrEntitlementDigest, got.Short(), m.Entitlement.Short(), adviceRemake)
	}
	ent, err := openEntitlement(hdr.Entitlement, trust, pol)
	if err != nil {
		return nil, fmt.Errorf("member entitlement.asc: %w", err)
	}
	if err := consistent(m, ent); err != nil {
		return nil, err
	}
	if err := checkSiteAndKey(pol, "bundle "+m.ID, m.Site, m.KeyID); err != nil {
		return nil, err
	}
	if err := pol.window("bundle "+m.ID, m.Created, m.Expires); err != nil {
		return nil, err
	}
	if err := pol.window(fmt.Sprintf("bundle %s: entitlement for key %s", m.ID, ent.KeyID), ent.Issued, ent.Expires); err != nil {
		return nil, err
	}
	return &Bundle{Manifest: m, Entitlement: ent, Courier: csig, Header: hdr}, nil
}

// adviceRemake is the next step for a bundle whose courier signature
// verifies but whose content does not hold together: its maker is at fault.
const adviceRemake = "the courier signed a bundle that is wrong: make it again with airlock-fetch bundle"

// consistent requires the manifest to list exactly the entitled packages,
// with identical metadata, for the same site and key.
func consistent(m bundle.Manifest, e *Entitlement) error {
	if m.Site != e.Site || m.KeyID != e.KeyID {
		return fmt.Errorf("bundle %s: %w: manifest is for site %q key %s, entitlement for site %q key %s: %s",
			m.ID, ErrInconsistent, m.Site, m.KeyID, e.Site, e.KeyID, adviceRemake)
	}
	entitled := make(map[catalog.Digest]catalog.Package, len(e.Packages))
	for _, p := range e.Packages {
		entitled[p.SHA256] = p
	}
	if len(m.Packages) != len(entitled) {
		return fmt.Errorf("bundle %s: %w: manifest lists %d packages, the entitlement %d: %s", m.ID, ErrInconsistent, len(m.Packages), len(entitled), adviceRemake)
	}
	for _, p := range m.Packages {
		want, ok := entitled[p.SHA256]
		if !ok {
			return fmt.Errorf("bundle %s: %w: package %s is not in the vendor's entitlement: %s", m.ID, ErrInconsistent, p, adviceRemake)
		}
		if !p.Equal(want) {
			return fmt.Errorf("bundle %s: %w: package %s metadata differs from the vendor's entitlement: %s", m.ID, ErrInconsistent, p, adviceRemake)
		}
		delete(entitled, p.SHA256)
	}
	return nil
}
