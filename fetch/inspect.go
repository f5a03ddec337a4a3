package fetch

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/airlock-project/airlock/bundle"
	"github.com/airlock-project/airlock/catalog"
	"github.com/airlock-project/airlock/keys"
	"github.com/airlock-project/airlock/progress"
	"github.com/airlock-project/airlock/verify"
)

// InspectOptions are the options of RunInspect.
type InspectOptions struct {
	// Path is the bundle file, or the first volume NAME.001.
	Path string
	// VendorKey and CourierKey, given together, are the public keys whose
	// signatures the bundle must carry; without them the signatures are
	// not checked.
	VendorKey  string
	CourierKey string
	// JSON prints an InspectReport as JSON.
	JSON bool
	// Progress draws the read; nil discards.
	Progress progress.Reporter
}

// InspectReport is what RunInspect prints with --json: the manifest, and
// which signatures were checked.
type InspectReport struct {
	Path        string            `json:"path"`
	ID          string            `json:"id"`
	Site        string            `json:"site"`
	KeyID       catalog.KeyID     `json:"key_id"`
	Created     time.Time         `json:"created"`
	Expires     time.Time         `json:"expires"`
	Courier     string            `json:"courier"`
	Entitlement catalog.Digest    `json:"entitlement_sha256"`
	Packages    []catalog.Package `json:"packages"`
	Size        int64             `json:"size"`
	// SignaturesChecked is true only if both signatures verified against
	// the given keys; Vendor is then the vendor key's fingerprint.
	SignaturesChecked bool   `json:"signatures_checked"`
	Vendor            string `json:"vendor,omitempty"`
}

// RunInspect reads a bundle completely and prints its manifest. It always
// checks the structure, every member's size and sha256, the entitlement's
// digest and the end of the archive (exit 3 on damage, naming the member or
// volume). With both keys it also verifies the courier's and the vendor's
// signatures and their validity windows (verify.VerifyBundle, any site);
// without them it says that the signatures were NOT checked, and nothing
// in the manifest is to be trusted.
func RunInspect(ctx context.Context, o InspectOptions, stdout, stderr io.Writer) error {
	if o.Path == "" {
		return fmt.Errorf("%w: no bundle path", ErrOptions)
	}
	if (o.VendorKey == "") != (o.CourierKey == "") {
		return fmt.Errorf("%w: give both --vendor-key and --courier-key to check the signatures, or neither", ErrOptions)
	}
	rep := o.Progress
	if rep == nil {
		rep = progress.Discard
	}
	var trust *keys.TrustStore
	var vendor *keys.PublicKey
	if o.VendorKey != "" {
		var err error
		if trust, vendor, err = inspectTrust(o.VendorKey, o.CourierKey); err != nil {
			return err
		}
	}
	if _, err := os.Stat(o.Path); errors.Is(err, fs.ErrNotExist) {
		return fileError("inspect", o.Path, err, "check the path (a split bundle is given by its first volume, NAME.001)")
	}
	rc, err := bundle.Open(o.Path)
	if err != nil {
		return err
	}
	defer rc.Close()
	size := bundleSize(o.Path)
	task := rep.Start("inspect "+o.Path, size)
	r := progress.Reader(rc, task)
	var m bundle.Manifest
	if trust != nil {
		var b *verify.Bundle
		if b, err = verify.VerifyBundle(ctx, r, trust, verify.Policy{}, nil); err == nil {
			m = b.Manifest
		}
	} else {
		m, err = readUnverified(ctx, r)
	}
	task.Done(err)
	rep.Wait()
	if err != nil {
		return fmt.Errorf("inspect %s: %w", o.Path, signerAdvice(err, o))
	}
	rpt := InspectReport{Path: o.Path, ID: m.ID, Site: m.Site, KeyID: m.KeyID, Created: m.Created.UTC(), Expires: m.Expires.UTC(),
		Courier: m.Courier, Entitlement: m.Entitlement, Packages: nonNil(m.Packages), SignaturesChecked: trust != nil}
	if vendor != nil {
		rpt.Vendor = vendor.Fingerprint().String()
	}
	for _, p := range m.Packages {
		rpt.Size += p.Size
	}
	if o.JSON {
		return writeJSON(stdout, rpt)
	}
	return printInspect(stdout, rpt)
}

// signerAdvice tells a refused signer of the bundle in terms of the keys
// inspect was given (--vendor-key, --courier-key): keys states the fact, the
// remedy is about those files. The role the signature had to be made for
// says which member and key it is.
func signerAdvice(err error, o InspectOptions) error {
	var ve *keys.VerifyError
	if !errors.As(err, &ve) {
		return err
	}
	what, member, flag, path := "courier", bundle.SignatureName, "--courier-key", o.CourierKey
	if ve.Role == keys.RoleVendor {
		what, member, flag, path = "vendor", bundle.EntitlementName, "--vendor-key", o.VendorKey
	}
	switch ve.Kind {
	case keys.ErrWrongRole:
		return &keyError{err: err, msg: fmt.Sprintf("member %s: %v: the %s signature is by %s, given as the other role's key; are --vendor-key and --courier-key swapped?",
			member, ve.Kind, what, signerName(ve))}
	case keys.ErrUnknownSigner:
		return &keyError{err: err, msg: fmt.Sprintf("member %s: %v: the %s signature is by %s, not by %s %s; give the %s's public key that made this bundle, or treat the bundle as untrusted",
			member, ve.Kind, what, signerName(ve), flag, path, what)}
	case keys.ErrKeyExpired, keys.ErrKeyRevoked:
		next := "extend the courier key's expiry or make a new key ('airlock-fetch keygen'), have the restricted side trust it, and make the bundle again"
		switch {
		case ve.Role == keys.RoleVendor && ve.Kind == keys.ErrKeyExpired:
			next = "get the vendor's key with its expiry extended, by a trusted channel: the restricted side needs it too"
		case ve.Role == keys.RoleVendor:
			next = "ask the vendor for its new key"
		case ve.Kind == keys.ErrKeyRevoked:
			next = "make the bundle again, signed with the courier's new key"
		}
		return fmt.Errorf("%w; that is %s %s: the restricted side will refuse the bundle too; %s", err, flag, path, next)
	}
	return err
}

func inspectTrust(vendorPath, courierPath string) (*keys.TrustStore, *keys.PublicKey, error) {
	vendor, err := readPublicKey("--vendor-key", vendorPath, hintVendorKey)
	if err != nil {
		return nil, nil, err
	}
	courier, err := readPublicKey("--courier-key", courierPath, hintCourierPub)
	if err != nil {
		return nil, nil, err
	}
	if vendor.Fingerprint() == courier.Fingerprint() {
		return nil, nil, fmt.Errorf("%w: --vendor-key %s and --courier-key %s are the same key %s; a key has one role: give the vendor's key and the courier's key", ErrOptions, vendorPath, courierPath, vendor.Fingerprint())
	}
	trust := keys.NewTrustStore()
	if err := trust.Add(keys.RoleVendor, vendor); err != nil {
		return nil, nil, fmt.Errorf("vendor key %s: %w", vendorPath, err)
	}
	if err := trust.Add(keys.RoleCourier, courier); err != nil {
		return nil, nil, fmt.Errorf("courier key %s: %w", courierPath, err)
	}
	return trust, vendor, nil
}

// readUnverified reads the whole bundle, checking everything but the
// signatures. The manifest it returns is untrusted.
func readUnverified(ctx context.Context, r io.Reader) (bundle.Manifest, error) {
	br, hdr, err := bundle.NewReader(r, bundle.ReadOptions{})
	if err != nil {
		return bundle.Manifest{}, err
	}
	defer br.Close()
	m, err := bundle.DecodeManifest(hdr.Manifest)
	if err != nil {
		return bundle.Manifest{}, fmt.Errorf("member %s: %w", bundle.ManifestName, err)
	}
	if got := catalog.Digest(sha256.Sum256(hdr.Entitlement)); got != m.Entitlement {
		return bundle.Manifest{}, fmt.Errorf("member %s: %w: sha256 %s, the manifest says %s", bundle.EntitlementName, bundle.ErrDigest, got.Short(), m.Entitlement.Short())
	}
	err = br.Packages(ctx, m.Packages, func(catalog.Package, io.Reader) error { return nil })
	if err != nil {
		return bundle.Manifest{}, err
	}
	return m, nil
}

func printInspect(w io.Writer, r InspectReport) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "bundle\t%s\n", r.Path)
	fmt.Fprintf(tw, "id\t%s\n", r.ID)
	fmt.Fprintf(tw, "site\t%s\n", r.Site)
	fmt.Fprintf(tw, "download key\t%s\n", r.KeyID)
	fmt.Fprintf(tw, "created\t%s\n", r.Created.Format(time.RFC3339))
	fmt.Fprintf(tw, "expires\t%s\n", r.Expires.Format(time.RFC3339))
	fmt.Fprintf(tw, "courier\t%s\n", r.Courier)
	fmt.Fprintf(tw, "entitlement\tsha256 %s\n", r.Entitlement)
	fmt.Fprintf(tw, "packages\t%d, %s\n", len(r.Packages), progress.Bytes(r.Size))
	if err := tw.Flush(); err != nil {
		return err
	}
	if len(r.Packages) > 0 {
		tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "  PACKAGE\tKIND\tSIZE\tSHA256")
		for _, p := range r.Packages {
			fmt.Fprintf(tw, "  %s\t%s\t%d\t%s\n", p.ID(), p.Kind, p.Size, p.SHA256)
		}
		if err := tw.Flush(); err != nil {
			return err
		}
	}
	fmt.Fprintln(w, "structure, sizes and sha256 digests: OK")
	var err error
	if r.SignaturesChecked {
		_, err = fmt.Fprintf(w, "signatures: OK (courier %s, vendor %s)\n", r.Courier, r.Vendor)
	} else {
		_, err = fmt.Fprintln(w, "signatures: NOT checked; nothing above is authenticated (give --vendor-key and --courier-key to check them)")
	}
	return err
}

// bundleSize is the size of the bundle file, or of all the volumes of a
// split bundle given as NAME.001, for progress.
func bundleSize(path string) int64 {
	paths := []string{path}
	if base, ok := strings.CutSuffix(path, ".001"); ok {
		paths, _ = filepath.Glob(base + ".[0-9][0-9][0-9]")
	}
	var n int64
	for _, p := range paths {
		if fi, err := os.Stat(p); err == nil {
			n += fi.Size()
		}
	}
	return n
}
