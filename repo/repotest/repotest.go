// Package repotest builds what the repository's tests need from the other
// side of the air gap: a vendor and a courier with real OpenPGP keys, and
// bundles signed by them (or, for hostile tests, by the wrong keys, for the
// wrong site, or damaged afterwards). It also snapshots a directory to
// prove that a refused operation changed nothing. It is for tests only.
package repotest

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/airlock-project/airlock/bundle"
	"github.com/airlock-project/airlock/catalog"
	"github.com/airlock-project/airlock/keys"
	"github.com/airlock-project/airlock/verify"
)

// File names World writes in its directory.
const (
	VendorKey     = "vendor.key"
	VendorPublic  = "vendor.pub.asc"
	CourierKey    = "courier.key"
	CourierPublic = "courier.pub.asc"
)

// World is a vendor and a courier, with their keys on disk in Dir.
type World struct {
	Dir     string
	Vendor  *keys.PrivateKey
	Courier *keys.PrivateKey
}

// NewWorld generates a vendor and a courier key, and writes both halves of
// each into dir: vendor.key, vendor.pub.asc, courier.key, courier.pub.asc.
func NewWorld(dir string) (*World, error) {
	w := &World{Dir: dir}
	var err error
	// Made a year ago, so that tests may date signatures in the past.
	born := time.Now().Add(-365 * 24 * time.Hour)
	if w.Vendor, err = keys.Generate(keys.GenerateOptions{Name: "Test Vendor", Email: "vendor@example.com", Now: born}); err != nil {
		return nil, err
	}
	if w.Courier, err = keys.Generate(keys.GenerateOptions{Name: "Test Courier", Email: "courier@example.com", Now: born}); err != nil {
		return nil, err
	}
	for _, k := range []struct {
		priv, pub string
		key       *keys.PrivateKey
	}{{VendorKey, VendorPublic, w.Vendor}, {CourierKey, CourierPublic, w.Courier}} {
		if err := keys.WritePrivateFile(filepath.Join(dir, k.priv), k.key, nil); err != nil {
			return nil, err
		}
		if err := keys.WritePublicFile(filepath.Join(dir, k.pub), k.key.Public()); err != nil {
			return nil, err
		}
	}
	return w, nil
}

// LoadWorld reads the keys NewWorld wrote in dir.
func LoadWorld(dir string) (*World, error) {
	w := &World{Dir: dir}
	var err error
	if w.Vendor, err = keys.ReadPrivateFile(filepath.Join(dir, VendorKey), nil); err != nil {
		return nil, err
	}
	if w.Courier, err = keys.ReadPrivateFile(filepath.Join(dir, CourierKey), nil); err != nil {
		return nil, err
	}
	return w, nil
}

// Pkg describes a made-up vendor package. Its content is Size
// pseudo-random bytes determined by Name@Version, so equal specs give
// identical packages.
type Pkg struct {
	Name     string
	Kind     catalog.Kind // empty: Name if it is a kind, else hotfix
	Version  string
	Size     int64
	Requires []string
	Settle   time.Duration
	Reboot   bool
}

// ParsePkg parses "name@version[:size]" (size in bytes, default 4096).
func ParsePkg(s string) (Pkg, error) {
	spec, size, hasSize := strings.Cut(s, ":")
	name, version, ok := strings.Cut(spec, "@")
	if !ok {
		return Pkg{}, fmt.Errorf("package %q: want name@version[:size]", s)
	}
	p := Pkg{Name: name, Version: version, Size: 4096}
	if hasSize {
		if _, err := fmt.Sscan(size, &p.Size); err != nil {
			return Pkg{}, fmt.Errorf("package %q: size: %v", s, err)
		}
	}
	return p, nil
}

// Data returns the package's content.
func (p Pkg) Data() io.Reader {
	seed := sha256.Sum256([]byte(p.Name + "@" + p.Version))
	return io.LimitReader(rand.NewChaCha8(seed), p.Size)
}

// Package returns the package's metadata, hashing its content.
func (p Pkg) Package() (catalog.Package, error) {
	kind := p.Kind
	if kind == "" {
		kind = catalog.Kind(p.Name)
		if kind.Rank() < 0 {
			kind = catalog.KindHotfix
		}
	}
	v, err := catalog.ParseVersion(p.Version)
	if err != nil {
		return catalog.Package{}, err
	}
	d, n, err := catalog.DigestReader(p.Data())
	if err != nil {
		return catalog.Package{}, err
	}
	cp := catalog.Package{Name: p.Name, Kind: kind, Version: v, SHA256: d, Size: n,
		Requires: []catalog.Constraint{}, Settle: catalog.Duration(p.Settle), Reboot: p.Reboot}
	for _, r := range p.Requires {
		c, err := catalog.ParseConstraint(r)
		if err != nil {
			return catalog.Package{}, err
		}
		cp.Requires = append(cp.Requires, c)
	}
	return cp, cp.Validate()
}

// BundleSpec describes a bundle to write. Zero fields take good defaults.
type BundleSpec struct {
	// Site and KeyID say which download key the bundle answers.
	Site  string
	KeyID catalog.KeyID
	// ID is the bundle id; empty means a new random one.
	ID string
	// Packages are the packages, in bundle order.
	Packages []Pkg
	// Now is when the bundle and its entitlement are made; zero: time.Now().
	Now time.Time
	// Valid is how long both stay valid; zero: 72h.
	Valid time.Duration
	// EntitlementSigner signs the entitlement; nil: the vendor.
	EntitlementSigner *keys.PrivateKey
	// ManifestSigner signs the manifest; nil: the courier.
	ManifestSigner *keys.PrivateKey
	// Split cuts the bundle into volumes of this size (see bundle.CreateFile).
	Split int64
}

// WriteBundle writes the bundle spec describes to path (or its volumes)
// and returns its manifest.
func (w *World) WriteBundle(ctx context.Context, path string, spec BundleSpec) (bundle.Manifest, error) {
	now := spec.Now
	if now.IsZero() {
		now = time.Now()
	}
	now = now.UTC().Truncate(time.Second)
	valid := spec.Valid
	if valid == 0 {
		valid = 72 * time.Hour
	}
	entSigner, manSigner := spec.EntitlementSigner, spec.ManifestSigner
	if entSigner == nil {
		entSigner = w.Vendor
	}
	if manSigner == nil {
		manSigner = w.Courier
	}
	entSigner = entSigner.WithClock(func() time.Time { return now })
	manSigner = manSigner.WithClock(func() time.Time { return now })
	data := map[catalog.Digest]Pkg{}
	pkgs := make([]catalog.Package, 0, len(spec.Packages))
	for _, p := range spec.Packages {
		cp, err := p.Package()
		if err != nil {
			return bundle.Manifest{}, err
		}
		pkgs = append(pkgs, cp)
		data[cp.SHA256] = p
	}
	ent := catalog.Entitlement{Format: catalog.EntitlementFormat, Site: spec.Site, KeyID: spec.KeyID,
		Issued: now, Expires: now.Add(valid), Packages: pkgs}
	payload, err := ent.Encode()
	if err != nil {
		return bundle.Manifest{}, err
	}
	var armored bytes.Buffer
	if err := entSigner.SignMessage(&armored, payload); err != nil {
		return bundle.Manifest{}, err
	}
	id := spec.ID
	if id == "" {
		if id, err = bundle.NewBundleID(); err != nil {
			return bundle.Manifest{}, err
		}
	}
	m := bundle.Manifest{
		Format: bundle.ManifestFormat, ID: id, Created: now, Expires: now.Add(valid),
		Site: spec.Site, KeyID: spec.KeyID, Courier: manSigner.Fingerprint().String(),
		Entitlement: sha256.Sum256(armored.Bytes()), Packages: pkgs,
	}
	out, err := bundle.CreateFile(path, spec.Split)
	if err != nil {
		return bundle.Manifest{}, err
	}
	err = bundle.Write(ctx, out, m, manSigner, armored.Bytes(), func(p catalog.Package) (io.ReadCloser, error) {
		return io.NopCloser(data[p.SHA256].Data()), nil
	}, bundle.WriteOptions{})
	if err != nil {
		out.Abort()
		return bundle.Manifest{}, err
	}
	if err := out.Commit(); err != nil {
		return bundle.Manifest{}, err
	}
	return m, nil
}

// ReadDownloadKey verifies the download key file at path with the site's
// public key file and returns its payload.
func ReadDownloadKey(path, sitePublicKey string) (catalog.DownloadKey, error) {
	pub, err := keys.ReadPublicFile(sitePublicKey)
	if err != nil {
		return catalog.DownloadKey{}, err
	}
	ts := keys.NewTrustStore()
	if err := ts.Add(keys.RoleSite, pub); err != nil {
		return catalog.DownloadKey{}, err
	}
	armored, err := os.ReadFile(path)
	if err != nil {
		return catalog.DownloadKey{}, err
	}
	k, err := verify.VerifyDownloadKey(armored, ts, verify.Policy{})
	if err != nil {
		return catalog.DownloadKey{}, err
	}
	return k.DownloadKey, nil
}

// FlipByte inverts the byte at offset off of the file at path (negative:
// from the end).
func FlipByte(path string, off int64) error {
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return err
	}
	defer f.Close()
	if off < 0 {
		fi, err := f.Stat()
		if err != nil {
			return err
		}
		off += fi.Size()
	}
	var b [1]byte
	if _, err := f.ReadAt(b[:], off); err != nil {
		return err
	}
	b[0] ^= 0xff
	if _, err := f.WriteAt(b[:], off); err != nil {
		return err
	}
	return f.Close()
}

// Snapshot returns a description of every file and directory under dir —
// path, type, and the sha256 of each regular file's content — except files
// named *.lock, as the contract test compares repositories. Two snapshots
// are equal exactly when nothing but *.lock files changed.
func Snapshot(dir string) (string, error) {
	var lines []string
	err := filepath.WalkDir(dir, func(path string, e fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, path)
		switch {
		case e.IsDir():
			lines = append(lines, "dir  "+rel)
		case strings.HasSuffix(e.Name(), ".lock"):
		case e.Type().IsRegular():
			data, err := os.ReadFile(path)
			if err != nil {
				return err
			}
			sum := sha256.Sum256(data)
			lines = append(lines, "file "+rel+" "+hex.EncodeToString(sum[:]))
		default:
			lines = append(lines, "other "+rel+" "+e.Type().String())
		}
		return nil
	})
	sort.Strings(lines)
	return strings.Join(lines, "\n") + "\n", err
}
