package repo

import (
	"fmt"
	"os"
	"sort"
	"time"

	"go.etcd.io/bbolt"

	"github.com/airlock-project/airlock/catalog"
	"github.com/airlock-project/airlock/keys"
)

// StoredPackage is a package in the repository.
type StoredPackage struct {
	catalog.Package
	// Bundle is the bundle that first delivered it.
	Bundle string `json:"bundle"`
	// Imported is when.
	Imported time.Time `json:"imported"`
}

// Packages returns every stored package, sorted by name, then version.
func (r *Repo) Packages() ([]StoredPackage, error) {
	out := []StoredPackage{}
	err := r.db.View(func(tx *bbolt.Tx) error {
		return tx.Bucket(bucketPackages).ForEach(func(k, v []byte) error {
			var rec packageRecord
			if err := decodeRecord(bucketPackages, k, v, &rec); err != nil {
				return err
			}
			out = append(out, StoredPackage{Package: rec.Package, Bundle: rec.Bundle, Imported: rec.Imported})
			return nil
		})
	})
	sort.Slice(out, func(i, j int) bool {
		if out[i].Name != out[j].Name {
			return out[i].Name < out[j].Name
		}
		return out[i].Version.Less(out[j].Version)
	})
	return out, err
}

// OpenPackage opens the file of the stored package with digest d for
// reading; the caller closes it. The content is as verified at import;
// Check re-verifies it.
func (r *Repo) OpenPackage(d catalog.Digest) (*os.File, error) {
	err := r.db.View(func(tx *bbolt.Tx) error {
		if tx.Bucket(bucketPackages).Get([]byte(d.String())) == nil {
			return fmt.Errorf("%w: no package with sha256 %s in repository %s (see airlock list)", ErrNotFound, d.Short(), r.dir)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	f, err := r.blobs.Open(d)
	if err != nil {
		return nil, fmt.Errorf("repository %s: package %s: %w: run 'airlock check'", r.dir, d.Short(), err)
	}
	return f, nil
}

// BundleInfo describes an imported bundle.
type BundleInfo struct {
	ID       string           `json:"id"`
	KeyID    catalog.KeyID    `json:"key_id"`
	Site     string           `json:"site"`
	Courier  keys.Fingerprint `json:"courier"`
	Vendor   keys.Fingerprint `json:"vendor"`
	Created  time.Time        `json:"created"`
	Expires  time.Time        `json:"expires"`
	Imported time.Time        `json:"imported"`
	// Actor is who imported it.
	Actor string `json:"actor"`
	// SHA256 and Size describe the bundle's byte stream.
	SHA256 catalog.Digest `json:"sha256"`
	Size   int64          `json:"size"`
	// Packages lists the digests of its packages, in bundle order.
	Packages []catalog.Digest `json:"packages"`
}

// Bundles returns every imported bundle in the order imported.
func (r *Repo) Bundles() ([]BundleInfo, error) {
	out := []BundleInfo{}
	err := r.db.View(func(tx *bbolt.Tx) error {
		return tx.Bucket(bucketBundles).ForEach(func(k, v []byte) error {
			var b bundleRecord
			if err := decodeRecord(bucketBundles, k, v, &b); err != nil {
				return err
			}
			out = append(out, BundleInfo{ID: b.ID, KeyID: b.KeyID, Site: b.Site, Courier: b.Courier, Vendor: b.Vendor,
				Created: b.Created, Expires: b.Expires, Imported: b.Imported, Actor: b.Actor,
				SHA256: b.SHA256, Size: b.Size, Packages: b.Packages})
			return nil
		})
	})
	sort.SliceStable(out, func(i, j int) bool { return out[i].Imported.Before(out[j].Imported) })
	return out, err
}
