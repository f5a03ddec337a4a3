package repo

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"hash"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"time"

	"go.etcd.io/bbolt"

	"github.com/airlock-project/airlock/atomicfile"
	"github.com/airlock-project/airlock/blob"
	"github.com/airlock-project/airlock/bundle"
	"github.com/airlock-project/airlock/catalog"
	"github.com/airlock-project/airlock/keys"
	"github.com/airlock-project/airlock/progress"
	"github.com/airlock-project/airlock/verify"
)

// Hook points of Import, in the order they are reached. A test hook that
// kills the process at one of them simulates a crash there.
const (
	// HookIngested: a package was streamed into a pending blob (reached
	// once per package that was not already stored).
	HookIngested = "ingested"
	// HookVerified: VerifyBundle accepted the whole bundle; nothing is
	// published yet.
	HookVerified = "verified"
	// HookPublished: every new blob is published; no metadata committed.
	HookPublished = "published"
	// HookCommit: inside the bbolt transaction, everything written, just
	// before it commits.
	HookCommit = "commit"
	// HookCommitted: the transaction committed; the bundle is imported.
	HookCommitted = "committed"
)

// ImportOptions tunes Verify and Import. The zero value is good.
type ImportOptions struct {
	// AllowDowngrade accepts packages older than what a node of the
	// download key's inventory runs.
	AllowDowngrade bool
	// Progress reports the bytes of the bundle read; nil reports nothing.
	Progress progress.Reporter
	// Hook, if set, is called at each Hook* point of Import. An error it
	// returns makes Import fail there as an I/O error would, and undo
	// everything; at HookCommitted the bundle is already imported and the
	// error is ignored. It exists for crash and failure tests.
	Hook func(point string) error
}

func (o ImportOptions) hook(point string) error {
	if o.Hook == nil {
		return nil
	}
	return o.Hook(point)
}

// ImportResult describes a verified (and, for Import, imported) bundle.
type ImportResult struct {
	// Bundle is the bundle id.
	Bundle string `json:"bundle"`
	// KeyID is the download key it answers.
	KeyID catalog.KeyID `json:"key_id"`
	// Site is the site it is for.
	Site string `json:"site"`
	// Courier is the fingerprint of the courier who signed the manifest,
	// CourierUserID the user ID of that trusted key.
	Courier       keys.Fingerprint `json:"courier"`
	CourierUserID string           `json:"courier_user_id"`
	// Vendor is the fingerprint of the vendor key that signed the
	// entitlement.
	Vendor keys.Fingerprint `json:"vendor"`
	// Created and Expires are the bundle's validity window.
	Created time.Time `json:"created"`
	Expires time.Time `json:"expires"`
	// Imported is when Import committed it (zero for Verify).
	Imported time.Time `json:"imported,omitzero"`
	// SHA256 and Size describe the bundle's byte stream (all volumes).
	SHA256 catalog.Digest `json:"sha256"`
	Size   int64          `json:"size"`
	// Packages lists the packages in bundle order.
	Packages []ImportedPackage `json:"packages"`
}

// ImportedPackage is a package of a bundle; New is false when the
// repository already stored an identical package.
type ImportedPackage struct {
	catalog.Package
	New bool `json:"new"`
}

// packageRecord is the value of the packages bucket.
type packageRecord struct {
	Package  catalog.Package `json:"package"`
	Bundle   string          `json:"bundle"`
	Imported time.Time       `json:"imported"`
}

// bundleRecord is the value of the bundles bucket.
type bundleRecord struct {
	ID          string           `json:"id"`
	KeyID       catalog.KeyID    `json:"key_id"`
	Site        string           `json:"site"`
	Courier     keys.Fingerprint `json:"courier"`
	Vendor      keys.Fingerprint `json:"vendor"`
	Created     time.Time        `json:"created"`
	Expires     time.Time        `json:"expires"`
	Imported    time.Time        `json:"imported"`
	Actor       string           `json:"actor"`
	SHA256      catalog.Digest   `json:"sha256"`
	Size        int64            `json:"size"`
	Packages    []catalog.Digest `json:"packages"`
	Manifest    []byte           `json:"manifest"`
	ManifestSig []byte           `json:"manifest_sig"`
	Entitlement []byte           `json:"entitlement"`
}

// snapshot is what a bundle is judged against, read in one transaction.
type snapshot struct {
	now      time.Time
	site     string
	trust    *keys.TrustStore
	keys     map[catalog.KeyID]keyRecord
	bundles  map[string]bool
	packages map[catalog.Digest]catalog.Package
	byName   map[string][]catalog.Package
}

func (r *Repo) snapshot() (*snapshot, error) {
	s := &snapshot{
		now: r.opts.now(), site: r.site,
		keys: map[catalog.KeyID]keyRecord{}, bundles: map[string]bool{},
		packages: map[catalog.Digest]catalog.Package{}, byName: map[string][]catalog.Package{},
	}
	err := r.db.View(func(tx *bbolt.Tx) error {
		var err error
		if s.trust, err = loadTrust(tx); err != nil {
			return err
		}
		if err := tx.Bucket(bucketKeys).ForEach(func(k, v []byte) error {
			var rec keyRecord
			if err := decodeRecord(bucketKeys, k, v, &rec); err != nil {
				return err
			}
			s.keys[catalog.KeyID(k)] = rec
			return nil
		}); err != nil {
			return err
		}
		if err := tx.Bucket(bucketBundles).ForEach(func(k, _ []byte) error {
			s.bundles[string(k)] = true
			return nil
		}); err != nil {
			return err
		}
		return tx.Bucket(bucketPackages).ForEach(func(k, v []byte) error {
			var rec packageRecord
			if err := decodeRecord(bucketPackages, k, v, &rec); err != nil {
				return err
			}
			p := rec.Package
			s.packages[p.SHA256] = p
			s.byName[p.Name] = append(s.byName[p.Name], p)
			return nil
		})
	})
	if err != nil {
		return nil, fmt.Errorf("repository %s: %w", r.dir, err)
	}
	return s, nil
}

// judge applies the repository's policy to one bundle as verify streams it.
type judge struct {
	snap  *snapshot
	opts  ImportOptions
	keyID catalog.KeyID
}

// outstanding is verify.Policy.Outstanding.
func (j *judge) outstanding(id catalog.KeyID) error {
	j.keyID = id
	rec, ok := j.snap.keys[id]
	if !ok {
		return &KeyClosedError{ID: id, Err: ErrKeyUnknown}
	}
	return rec.answerable(j.snap.now)
}

// admit decides whether package p may enter the repository, and whether an
// identical package is already stored.
func (j *judge) admit(p catalog.Package) (stored bool, err error) {
	if old, ok := j.snap.packages[p.SHA256]; ok {
		if !sameMetadata(old, p) {
			return false, fmt.Errorf("package %s: %w: the repository stores this file (sha256 %s) as %s with other metadata; ask the vendor which is right",
				p, ErrConflict, p.SHA256.Short(), old.ID())
		}
		return true, nil
	}
	for _, old := range j.snap.byName[p.Name] {
		if old.Version.Compare(p.Version) == 0 {
			return false, fmt.Errorf("package %s: %w: the repository already stores %s with another file (sha256 %s); ask the vendor which is right",
				p, ErrConflict, old.ID(), old.SHA256.Short())
		}
	}
	// Older than a version the repository stores is no rollback: it may be
	// an intermediate step the install order needs (21.1 -> 22.2 -> 23.1),
	// and install never goes below what a node runs. Older than what a
	// node runs is one.
	if j.opts.AllowDowngrade {
		return false, nil
	}
	for _, n := range j.snap.keys[j.keyID].Nodes {
		if v, ok := n.Installed[p.Name]; ok && p.Version.Less(v) {
			return false, fmt.Errorf("package %s: %w: node %s runs %s@%s (download key %s); import with --allow-downgrade if the older version is really wanted",
				p, ErrDowngrade, n.Name, p.Name, v, j.keyID)
		}
	}
	return false, nil
}

func sameMetadata(a, b catalog.Package) bool {
	x, err1 := catalog.EncodeCanonical(a)
	y, err2 := catalog.EncodeCanonical(b)
	return err1 == nil && err2 == nil && bytes.Equal(x, y)
}

// storeFunc receives each admitted package's data; it must read it to EOF.
type storeFunc func(ctx context.Context, p catalog.Package, stored bool, data io.Reader) error

// check verifies the bundle at path against snap, streaming each admitted
// package to store, and returns the result with the verified bundle.
func check(ctx context.Context, verb, path string, snap *snapshot, opts ImportOptions, store storeFunc) (*ImportResult, *verify.Bundle, error) {
	f, err := bundle.Open(path)
	if err != nil {
		return nil, nil, err // it names the bundle or volume
	}
	defer f.Close()
	rep := opts.Progress
	if rep == nil {
		rep = progress.Discard
	}
	task := rep.Start(verb+" "+filepath.Base(path), bundleSize(path))
	src := &digestReader{r: f, h: sha256.New()}
	j := &judge{snap: snap, opts: opts}
	res := &ImportResult{Packages: []ImportedPackage{}}
	pol := verify.Policy{Now: snap.now, Site: snap.site, Outstanding: j.outstanding}
	vb, err := verify.VerifyBundle(ctx, progress.Reader(src, task), snap.trust, pol,
		func(ctx context.Context, p catalog.Package, data io.Reader) error {
			stored, err := j.admit(p)
			if err != nil {
				return err
			}
			if err := store(ctx, p, stored, data); err != nil {
				return err
			}
			res.Packages = append(res.Packages, ImportedPackage{Package: p, New: !stored})
			return nil
		})
	if err == nil {
		// Hash to the very end, so that the digest is the stream's.
		_, err = io.Copy(io.Discard, src)
	}
	task.Done(err)
	rep.Wait()
	if err != nil {
		return nil, nil, trustAdvice(fmt.Errorf("bundle %s: %w", path, err))
	}
	m := vb.Manifest
	if snap.bundles[m.ID] {
		return nil, nil, fmt.Errorf("bundle %s: %w: bundle %s is already in the repository (see airlock bundles)", path, ErrReplay, m.ID)
	}
	res.Bundle, res.KeyID, res.Site = m.ID, m.KeyID, m.Site
	res.Courier, res.CourierUserID = vb.Courier.Signer, vb.Courier.UserID
	res.Vendor = vb.Entitlement.Signature.Signer
	res.Created, res.Expires = m.Created, m.Expires
	res.SHA256, res.Size = catalog.SumOf(src.h), src.n
	return res, vb, nil
}

// digestReader hashes and counts what is read through it.
type digestReader struct {
	r io.Reader
	h hash.Hash
	n int64
}

func (d *digestReader) Read(p []byte) (int, error) {
	n, err := d.r.Read(p)
	d.h.Write(p[:n])
	d.n += int64(n)
	return n, err
}

var volumeName = regexp.MustCompile(`\.[0-9]{3}$`)

// bundleSize returns the size of a bundle file or of all its volumes, or
// -1 if unknown; it is only for progress.
func bundleSize(path string) int64 {
	if !volumeName.MatchString(path) {
		fi, err := os.Stat(path)
		if err != nil || !fi.Mode().IsRegular() {
			return -1
		}
		return fi.Size()
	}
	base := path[:len(path)-4]
	var total int64
	for i := 1; i <= bundle.MaxVolumes; i++ {
		fi, err := os.Stat(fmt.Sprintf("%s.%03d", base, i))
		if err != nil {
			break
		}
		total += fi.Size()
	}
	return total
}

// Verify checks everything Import would check of the bundle at path (a
// bundle file or its first volume NAME.001) — signatures, trust, site, the
// download key being outstanding, every digest and size, the end of the
// archive, replay, downgrades and conflicts — and changes nothing.
func (r *Repo) Verify(ctx context.Context, path string, opts ImportOptions) (*ImportResult, error) {
	snap, err := r.snapshot()
	if err != nil {
		return nil, err
	}
	return verifySnapshot(ctx, path, snap, opts)
}

func verifySnapshot(ctx context.Context, path string, snap *snapshot, opts ImportOptions) (*ImportResult, error) {
	res, _, err := check(ctx, "verify", path, snap, opts, func(_ context.Context, _ catalog.Package, _ bool, data io.Reader) error {
		_, err := io.Copy(io.Discard, data)
		return err
	})
	return res, err
}

// Import verifies the bundle at path (see Verify) while streaming each new
// package into a pending blob, then publishes the blobs and commits all
// metadata in one transaction: the packages, the bundle, its download key
// marked fulfilled, and an audit entry. The whole bundle is imported or, on
// any error, nothing: pending and published blobs are removed and the
// database is not written, so a refused bundle leaves the repository
// byte-for-byte unchanged. Identical packages are stored once. The
// repository must be open read-write.
func (r *Repo) Import(ctx context.Context, path string, opts ImportOptions) (*ImportResult, error) {
	if r.opts.ReadOnly {
		return nil, fmt.Errorf("import: repository %s was opened read-only", r.dir)
	}
	snap, err := r.snapshot()
	if err != nil {
		return nil, err
	}
	var (
		pending   []*blob.Pending
		published []catalog.Digest
		created   []string // shard directories this import created
	)
	undo := func() {
		for _, p := range pending {
			p.Abort()
		}
		for _, d := range published {
			r.blobs.Remove(d)
		}
		for i := len(created) - 1; i >= 0; i-- {
			os.Remove(created[i]) // only if empty: never another blob's directory
		}
	}
	res, vb, err := check(ctx, "import", path, snap, opts, func(ctx context.Context, p catalog.Package, stored bool, data io.Reader) error {
		if stored {
			if n, err := r.blobs.Stat(p.SHA256); err == nil && n == p.Size {
				_, err := io.Copy(io.Discard, data)
				return err
			}
			// Stored but its blob is missing or damaged: store it again.
		}
		shard := filepath.Dir(r.blobs.Path(p.SHA256))
		if _, err := os.Stat(shard); errors.Is(err, fs.ErrNotExist) {
			created = append(created, shard)
		}
		// data fails unless it hashes to p.SHA256 (verify.Sink): no
		// second hash of every byte.
		pe, err := r.blobs.IngestVerified(ctx, data, p.SHA256, p.Size)
		var me *bundle.MemberError
		if errors.As(err, &me) {
			return err // damage in the bundle: it names the package's member
		}
		if err != nil {
			return fmt.Errorf("package %s: %w", p, err)
		}
		pending = append(pending, pe)
		return opts.hook(HookIngested)
	})
	if err == nil {
		if err = opts.hook(HookVerified); err != nil {
			err = fmt.Errorf("import %s: %w", path, err)
		}
	}
	if err != nil {
		undo()
		return nil, err
	}
	for _, pe := range pending {
		_, statErr := r.blobs.Stat(pe.Digest)
		if err := pe.Commit(); err != nil {
			undo()
			return nil, fmt.Errorf("import %s: publish package %s: %w", path, pe.Digest.Short(), err)
		}
		if errors.Is(statErr, blob.ErrNotFound) {
			published = append(published, pe.Digest)
		}
	}
	// A shard directory this import created must itself be durable before
	// the metadata that points into it is committed.
	if len(created) > 0 {
		if err := atomicfile.SyncDir(filepath.Dir(created[0])); err != nil {
			undo()
			return nil, fmt.Errorf("import %s: %w", path, err)
		}
	}
	if err := opts.hook(HookPublished); err != nil {
		undo()
		return nil, fmt.Errorf("import %s: %w", path, err)
	}
	now := r.opts.now().UTC()
	res.Imported = now
	err = r.Update(func(tx *Tx) error {
		if err := r.record(tx, res, vb, now); err != nil {
			return err
		}
		return opts.hook(HookCommit)
	})
	if err != nil {
		undo()
		return nil, fmt.Errorf("import %s: %w", path, err)
	}
	opts.hook(HookCommitted)
	return res, nil
}

// record writes an imported bundle's metadata in tx.
func (r *Repo) record(tx *Tx, res *ImportResult, vb *verify.Bundle, now time.Time) error {
	if tx.Bucket(bucketBundles).Get([]byte(res.Bundle)) != nil {
		return fmt.Errorf("%w: bundle %s", ErrReplay, res.Bundle)
	}
	var key keyRecord
	if found, err := getJSON(tx.Tx, bucketKeys, []byte(res.KeyID), &key); err != nil {
		return err
	} else if !found {
		return &KeyClosedError{ID: res.KeyID, Err: ErrKeyUnknown}
	}
	if err := key.answerable(now); err != nil {
		return err
	}
	rec := bundleRecord{
		ID: res.Bundle, KeyID: res.KeyID, Site: res.Site, Courier: res.Courier, Vendor: res.Vendor,
		Created: res.Created, Expires: res.Expires, Imported: now, Actor: r.opts.actor(),
		SHA256: res.SHA256, Size: res.Size, Packages: make([]catalog.Digest, 0, len(res.Packages)),
		Manifest: vb.Header.Manifest, ManifestSig: vb.Header.ManifestSig, Entitlement: vb.Header.Entitlement,
	}
	ids := make([]string, 0, len(res.Packages))
	newCount := 0
	pkgs := tx.Bucket(bucketPackages)
	for _, p := range res.Packages {
		rec.Packages = append(rec.Packages, p.SHA256)
		ids = append(ids, p.ID())
		if !p.New {
			continue
		}
		newCount++
		if err := putJSON(pkgs, []byte(p.SHA256.String()), packageRecord{Package: p.Package, Bundle: res.Bundle, Imported: now}); err != nil {
			return err
		}
	}
	if err := putJSON(tx.Bucket(bucketBundles), []byte(res.Bundle), rec); err != nil {
		return err
	}
	key.State, key.Bundle, key.Closed = KeyFulfilled, res.Bundle, now
	if err := putJSON(tx.Bucket(bucketKeys), []byte(res.KeyID), key); err != nil {
		return err
	}
	_, err := tx.Audit(ActionBundleImport, struct {
		Bundle   string           `json:"bundle"`
		KeyID    catalog.KeyID    `json:"key_id"`
		Courier  keys.Fingerprint `json:"courier"`
		SHA256   catalog.Digest   `json:"sha256"`
		Size     int64            `json:"size"`
		Packages []string         `json:"packages"`
		New      int              `json:"new"`
	}{res.Bundle, res.KeyID, res.Courier, res.SHA256, res.Size, ids, newCount})
	return err
}
