package repo

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"go.etcd.io/bbolt"

	"github.com/airlock-project/airlock/atomicfile"
	"github.com/airlock-project/airlock/blob"
	"github.com/airlock-project/airlock/catalog"
	"github.com/airlock-project/airlock/keys"
)

// InitResult describes a repository Init created.
type InitResult struct {
	// Dir is the repository directory.
	Dir string `json:"dir"`
	// Site is the site name.
	Site string `json:"site"`
	// SiteKey is the fingerprint of the new site key.
	SiteKey keys.Fingerprint `json:"site_key"`
	// PublicKey is the path of site.pub.asc, to register at the vendor.
	PublicKey string `json:"public_key"`
	// Protected tells whether site.key is passphrase-protected.
	Protected bool `json:"passphrase_protected"`
}

// Init creates a repository for site in opts.Dir (created if needed): a
// new site key (site.key, mode 0600, not passphrase-protected, and
// site.pub.asc), the
// blob store and the database, whose first audit entry records the
// creation. It refuses an invalid site name (ErrInvalid), a directory that
// already holds a repository (ErrExists), and a site key without a
// database, left by an interrupted or concurrent init (ErrExists: remove
// site.key and retry). The database is published last, under its final
// name by a no-replace link, so a repository exists completely or not at
// all. It is InitWithPassphrase with no passphrase.
func Init(ctx context.Context, opts Options, site string) (*InitResult, error) {
	return InitWithPassphrase(ctx, opts, site, nil)
}

// InitWithPassphrase is Init with site.key encrypted under passphrase
// (AES-256 under an iterated and salted SHA-256 S2K, see
// keys.WritePrivateFile), as gpg reads it; an empty passphrase leaves it
// unencrypted. Commands that sign with the site key then need the
// passphrase (see ReadSiteKey).
func InitWithPassphrase(ctx context.Context, opts Options, site string, passphrase []byte) (*InitResult, error) {
	if err := catalog.ValidName(site); err != nil {
		return nil, fmt.Errorf("%w: --site: %v", ErrInvalid, err)
	}
	dir := opts.Dir
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("init repository %s: %w; choose another --repo", dir, err)
	}
	dbPath := filepath.Join(dir, DBFile)
	if _, err := os.Lstat(dbPath); err == nil {
		return nil, fmt.Errorf("%w: %s already holds a repository (%s); use it, or choose another --repo", ErrExists, dir, DBFile)
	} else if !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("init repository %s: %w", dir, err)
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	now := opts.now()
	key, err := newSiteKey(site, now)
	if err != nil {
		return nil, fmt.Errorf("init repository %s: site key: %w", dir, err)
	}
	keyPath := filepath.Join(dir, SiteKeyFile)
	if err := keys.WritePrivateFile(keyPath, key, passphrase); errors.Is(err, keys.ErrKeyFileExists) {
		return nil, fmt.Errorf("%w: %s exists but %s does not: an init was interrupted or is running; if none is running, remove %s and retry", ErrExists, keyPath, DBFile, keyPath)
	} else if err != nil {
		return nil, fmt.Errorf("init repository %s: %w", dir, err)
	}
	pubPath := filepath.Join(dir, SitePublicKey)
	if err := keys.WritePublicFile(pubPath, key.Public()); err != nil {
		return nil, fmt.Errorf("init repository %s: %w", dir, err)
	}
	if _, err := blob.Open(filepath.Join(dir, BlobDir)); err != nil {
		return nil, fmt.Errorf("init repository %s: %w", dir, err)
	}
	if err := createDB(dir, site, key.Fingerprint(), now, opts.actor()); err != nil {
		return nil, fmt.Errorf("init repository %s: %w", dir, err)
	}
	// Make the new directories themselves durable.
	for _, d := range []string{filepath.Join(dir, BlobDir), dir, filepath.Dir(filepath.Clean(dir))} {
		if err := atomicfile.SyncDir(d); err != nil {
			return nil, fmt.Errorf("init repository %s: %w", dir, err)
		}
	}
	return &InitResult{Dir: dir, Site: site, SiteKey: key.Fingerprint(), PublicKey: pubPath, Protected: len(passphrase) > 0}, nil
}

// createDB builds the database under a temporary name and links it into
// place, refusing to replace one that appeared meanwhile.
func createDB(dir, site string, fp keys.Fingerprint, now time.Time, actor string) error {
	tmp, err := os.CreateTemp(dir, atomicfile.TempPrefix+DBFile+"-*")
	if err != nil {
		return err
	}
	tmpPath := tmp.Name()
	tmp.Close()
	defer os.Remove(tmpPath)
	db, err := bbolt.Open(tmpPath, 0o600, &bbolt.Options{Timeout: time.Second})
	if err != nil {
		return err
	}
	err = db.Update(func(tx *bbolt.Tx) error {
		for _, name := range allBuckets {
			if _, err := tx.CreateBucket(name); err != nil {
				return err
			}
		}
		meta := tx.Bucket(bucketMeta)
		for k, v := range map[string]string{
			string(metaSchema):  strconv.Itoa(SchemaVersion),
			string(metaSite):    site,
			string(metaSiteKey): fp.String(),
			string(metaCreated): now.UTC().Format(time.RFC3339),
		} {
			if err := meta.Put([]byte(k), []byte(v)); err != nil {
				return err
			}
		}
		_, err := appendAudit(tx, now, actor, ActionInit, struct {
			Site    string           `json:"site"`
			SiteKey keys.Fingerprint `json:"site_key"`
		}{site, fp})
		return err
	})
	if cerr := db.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return err
	}
	if err := os.Link(tmpPath, filepath.Join(dir, DBFile)); errors.Is(err, fs.ErrExist) {
		return fmt.Errorf("%w: another init created %s meanwhile", ErrExists, DBFile)
	} else if err != nil {
		return err
	}
	return atomicfile.SyncDir(dir)
}
