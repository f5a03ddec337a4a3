package repo

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/airlock-project/airlock/atomicfile"
	"github.com/airlock-project/airlock/catalog"
	"github.com/airlock-project/airlock/keys"
)

// SiteKeysDir, inside the repository, keeps the public halves of replaced
// site keys (<FINGERPRINT>.pub.asc) and, only while a rotation is under
// way or was interrupted, the new key staged in rotating-<FINGERPRINT>/.
const SiteKeysDir = "site-keys"

// rotatingPrefix starts the name of a rotation's staging directory in
// SiteKeysDir; the new key's fingerprint follows.
const rotatingPrefix = "rotating-"

// Hook points of RotateSiteKey, in the order they are reached. A test hook
// that kills the process at one of them simulates a crash there.
const (
	// HookRotateStaged: the new key is written (fsynced) to
	// site-keys/rotating-NEW/ and the old public key archived; the
	// database still names the old key. A crash here is undone by the next
	// read-write open.
	HookRotateStaged = "rotate-staged"
	// HookRotateCommitted: the database names the new key, the download
	// keys are revoked, the audit entry written; site.key and site.pub.asc
	// are still the old ones. A crash here is finished by the next
	// read-write open.
	HookRotateCommitted = "rotate-committed"
	// HookRotatePublished: site.pub.asc is the new one, site.key still the
	// old one (finished by the next read-write open).
	HookRotatePublished = "rotate-published"
)

// RotateOptions says how RotateSiteKey makes the new site key.
type RotateOptions struct {
	// Passphrase, if not empty, encrypts the new site.key (as
	// InitWithPassphrase does). The old key is never read or unlocked.
	Passphrase []byte
	// Hook, if set, is called at each HookRotate* point. An error it
	// returns makes RotateSiteKey stop there as an I/O error would: before
	// the commit everything is undone; after it the rotation stands and
	// the next read-write open finishes it. It exists for crash and
	// failure tests.
	Hook func(point string) error
}

func (o RotateOptions) hook(point string) error {
	if o.Hook == nil {
		return nil
	}
	return o.Hook(point)
}

// RotateResult describes a site key rotation.
type RotateResult struct {
	// Dir is the repository directory.
	Dir string `json:"dir"`
	// Site is the site name.
	Site string `json:"site"`
	// OldSiteKey is the fingerprint of the replaced key.
	OldSiteKey keys.Fingerprint `json:"old_site_key"`
	// NewSiteKey is the fingerprint of the new key.
	NewSiteKey keys.Fingerprint `json:"new_site_key"`
	// PublicKey is the path of the new site.pub.asc, for the vendor.
	PublicKey string `json:"public_key"`
	// Archived is where the old public key is kept; empty if site.pub.asc
	// did not hold it (lost or damaged), so that it could not be kept.
	Archived string `json:"archived,omitempty"`
	// Revoked lists the download keys that were outstanding and are now
	// revoked.
	Revoked []catalog.KeyID `json:"revoked"`
	// Protected tells whether the new site.key is passphrase-protected.
	Protected bool `json:"passphrase_protected"`
}

// RotateSiteKey replaces the site key: it makes a new one (as Init does),
// keeps the old public key in site-keys/OLD.pub.asc when site.pub.asc
// holds it, revokes every outstanding download key (the old key signed
// them, and the vendor refuses them once it registers the new key),
// records the new fingerprint with a site.rotate audit entry, and puts
// the new site.key and site.pub.asc in place. The old site.key is never
// read (it may be lost, or its passphrase) and is replaced.
//
// The steps are ordered so that a crash leaves a repository that the next
// read-write open repairs (see the package documentation): the new key
// is staged in site-keys/rotating-NEW/ (fsynced), the database commit
// decides, and only then are the staged files renamed into place.
func (r *Repo) RotateSiteKey(ctx context.Context, opts RotateOptions) (*RotateResult, error) {
	if r.opts.ReadOnly {
		return nil, fmt.Errorf("rotate the site key: repository %s was opened read-only", r.dir)
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	now := r.opts.now()
	old := r.siteKey
	key, err := newSiteKey(r.site, now)
	if err != nil {
		return nil, fmt.Errorf("rotate the site key: %w", err)
	}
	fp := key.Fingerprint()
	res := &RotateResult{Dir: r.dir, Site: r.site, OldSiteKey: old, NewSiteKey: fp,
		PublicKey: filepath.Join(r.dir, SitePublicKey), Revoked: []catalog.KeyID{}, Protected: len(opts.Passphrase) > 0}

	// Stage the new key and archive the old public key; undone on failure.
	stage := r.stagingDir(fp)
	archived, createdArchive, err := r.archiveSitePublicKey(old)
	undo := func() {
		os.RemoveAll(stage)
		if createdArchive {
			os.Remove(archived)
		}
		atomicfile.SyncDir(filepath.Join(r.dir, SiteKeysDir))
	}
	if err == nil {
		err = r.stageSiteKey(stage, key, opts.Passphrase)
	}
	if err == nil {
		err = opts.hook(HookRotateStaged)
	}
	if err != nil {
		undo()
		return nil, fmt.Errorf("rotate the site key: %w; nothing was changed", err)
	}
	res.Archived = archived

	// Commit: from here on the new key is the site key.
	err = r.Update(func(tx *Tx) error {
		if cur := string(tx.Bucket(bucketMeta).Get(metaSiteKey)); cur != old.String() {
			return fmt.Errorf("the database names site key %s, not %s: another rotation ran meanwhile", cur, old)
		}
		var revoke []keyRecord
		if err := tx.Bucket(bucketKeys).ForEach(func(k, v []byte) error {
			var rec keyRecord
			if err := decodeRecord(bucketKeys, k, v, &rec); err != nil {
				return err
			}
			if rec.state(now) == KeyOutstanding {
				revoke = append(revoke, rec)
			}
			return nil
		}); err != nil {
			return err
		}
		sort.SliceStable(revoke, func(i, j int) bool { return revoke[i].Issued.Before(revoke[j].Issued) })
		res.Revoked = res.Revoked[:0]
		for _, rec := range revoke {
			rec.State, rec.Closed = KeyRevoked, now.UTC()
			if err := putJSON(tx.Bucket(bucketKeys), []byte(rec.ID), rec); err != nil {
				return err
			}
			if _, err := tx.Audit(ActionKeyRevoke, struct {
				ID  catalog.KeyID `json:"id"`
				Was KeyState      `json:"was"`
			}{rec.ID, KeyOutstanding}); err != nil {
				return err
			}
			res.Revoked = append(res.Revoked, rec.ID)
		}
		if err := tx.Bucket(bucketMeta).Put(metaSiteKey, []byte(fp.String())); err != nil {
			return err
		}
		_, err := tx.Audit(ActionSiteRotate, struct {
			Old     keys.Fingerprint `json:"old_site_key"`
			New     keys.Fingerprint `json:"new_site_key"`
			Revoked []catalog.KeyID  `json:"revoked"`
		}{old, fp, res.Revoked})
		return err
	})
	if err != nil {
		undo()
		return nil, fmt.Errorf("rotate the site key: %w; nothing was changed", err)
	}
	r.siteKey = fp

	// Publish: rename the staged files into place.
	err = opts.hook(HookRotateCommitted)
	if err == nil {
		err = r.publishRotation(stage, opts.hook)
	}
	if err != nil {
		return res, fmt.Errorf("the site key rotation to %s is recorded, but %s and %s are not yet in place: %w; run 'airlock check --repair' to finish it", fp, SiteKeyFile, SitePublicKey, err)
	}
	return res, nil
}

// stagingDir is the staging directory of a rotation to fp.
func (r *Repo) stagingDir(fp keys.Fingerprint) string {
	return filepath.Join(r.dir, SiteKeysDir, rotatingPrefix+fp.String())
}

// archiveSitePublicKey copies site.pub.asc to site-keys/OLD.pub.asc if it
// holds the key old. It returns the path ("" if site.pub.asc does not hold
// old: missing or damaged, it cannot be kept) and whether it created it.
func (r *Repo) archiveSitePublicKey(old keys.Fingerprint) (path string, created bool, err error) {
	pub, err := keys.ReadPublicFile(filepath.Join(r.dir, SitePublicKey))
	if err != nil || pub.Fingerprint() != old {
		return "", false, nil
	}
	dir := filepath.Join(r.dir, SiteKeysDir)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", false, err
	}
	path = filepath.Join(dir, old.String()+".pub.asc")
	_, statErr := os.Lstat(path)
	if err := keys.WritePublicFile(path, pub); err != nil {
		return "", false, err
	}
	if err := atomicfile.SyncDir(r.dir); err != nil {
		return path, errors.Is(statErr, fs.ErrNotExist), err
	}
	return path, errors.Is(statErr, fs.ErrNotExist), nil
}

// stageSiteKey writes the new key's two files into the staging directory
// and makes them, and the directory, durable.
func (r *Repo) stageSiteKey(stage string, key *keys.PrivateKey, passphrase []byte) error {
	if err := os.MkdirAll(stage, 0o700); err != nil {
		return err
	}
	if err := keys.WritePrivateFile(filepath.Join(stage, SiteKeyFile), key, passphrase); err != nil {
		return err
	}
	if err := keys.WritePublicFile(filepath.Join(stage, SitePublicKey), key.Public()); err != nil {
		return err
	}
	for _, d := range []string{filepath.Dir(stage), r.dir} {
		if err := atomicfile.SyncDir(d); err != nil {
			return err
		}
	}
	return nil
}

// publishRotation renames the staged site.pub.asc, then site.key, into
// place (a file already moved is skipped, so it can resume), and removes
// the staging directory.
func (r *Repo) publishRotation(stage string, hook func(string) error) error {
	for _, name := range []string{SitePublicKey, SiteKeyFile} {
		src := filepath.Join(stage, name)
		if _, err := os.Lstat(src); errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err := os.Rename(src, filepath.Join(r.dir, name)); err != nil {
			return err
		}
		if err := atomicfile.SyncDir(r.dir); err != nil {
			return err
		}
		if name == SitePublicKey {
			if err := hook(HookRotatePublished); err != nil {
				return err
			}
		}
	}
	if err := os.RemoveAll(stage); err != nil {
		return err
	}
	return atomicfile.SyncDir(filepath.Dir(stage))
}

// rotation is a staging directory found in site-keys.
type rotation struct {
	path string
	fp   keys.Fingerprint
	ok   bool // the name parses as rotating-<fingerprint>
}

// rotations lists the staging directories of rotations under way or
// interrupted.
func rotations(dir string) ([]rotation, error) {
	entries, err := os.ReadDir(filepath.Join(dir, SiteKeysDir))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var out []rotation
	for _, e := range entries {
		name, found := strings.CutPrefix(e.Name(), rotatingPrefix)
		if !found {
			continue
		}
		fp, err := keys.ParseFingerprint(name)
		out = append(out, rotation{path: filepath.Join(dir, SiteKeysDir, e.Name()), fp: fp, ok: err == nil && e.IsDir()})
	}
	return out, nil
}

// recoverRotation finishes or undoes an interrupted rotation: a staging
// directory of the key the database names was committed, and its files
// are renamed into place; any other was not, and is removed. It returns
// what it did, for people. Every read-write Open runs it.
func (r *Repo) recoverRotation() ([]string, error) {
	rots, err := rotations(r.dir)
	if err != nil {
		return nil, err
	}
	var done []string
	for _, rot := range rots {
		switch {
		case !rot.ok:
			continue // Check reports it; it is not ours to remove
		case rot.fp == r.siteKey:
			if err := r.publishRotation(rot.path, func(string) error { return nil }); err != nil {
				return done, fmt.Errorf("finish the interrupted rotation to site key %s (%s): %w", rot.fp, r.rel(rot.path), err)
			}
			done = append(done, fmt.Sprintf("finished the interrupted rotation to site key %s: %s and %s are the new key", rot.fp, SiteKeyFile, SitePublicKey))
		default:
			if err := os.RemoveAll(rot.path); err != nil {
				return done, fmt.Errorf("remove %s, left by an interrupted site key rotation: %w", r.rel(rot.path), err)
			}
			if err := atomicfile.SyncDir(filepath.Dir(rot.path)); err != nil {
				return done, err
			}
			done = append(done, fmt.Sprintf("removed %s (left by a site key rotation interrupted before it was recorded; the site key is unchanged)", r.rel(rot.path)))
		}
	}
	if len(done) > 0 {
		r.opts.logger().Info("recovered from an interrupted site key rotation", "repository", r.dir, "actions", done)
	}
	return done, nil
}

// pendingRotation returns an error naming an interrupted rotation in dir,
// or nil if there is none: site.key and site.pub.asc may then not be the
// key the database names until a read-write open has finished it.
func pendingRotation(dir string) error {
	rots, err := rotations(dir)
	if err != nil {
		return err
	}
	for _, rot := range rots {
		if rot.ok {
			return fmt.Errorf("a site key rotation was interrupted (%s): run 'airlock check --repair' to finish or undo it, then retry",
				filepath.Join(dir, SiteKeysDir, filepath.Base(rot.path)))
		}
	}
	return nil
}

// checkSiteKeyFiles adds Check's problems with the site key files: an
// interrupted rotation (and then nothing else, as the files are expected
// to be the old ones), a site.pub.asc or readable site.key that is not
// the key the database names, an archived public key that is not the one
// its name says.
func (r *Repo) checkSiteKeyFiles(add func(kind, subject, format string, a ...any)) error {
	const rotate = "restore it from a backup of the repository, or replace the site key with 'airlock key rotate'"
	rots, err := rotations(r.dir)
	if err != nil {
		return err
	}
	pending := false
	for _, rot := range rots {
		switch {
		case !rot.ok:
			add("stray-file", r.rel(rot.path), "not a site key rotation's staging directory: remove it if nothing else needs it")
		case rot.fp == r.siteKey:
			pending = true
			add("rotation", r.rel(rot.path), "the rotation to site key %s is recorded but %s and %s were not yet replaced (interrupted): 'airlock check --repair' finishes it", rot.fp, SiteKeyFile, SitePublicKey)
		default:
			add("rotation", r.rel(rot.path), "left by a site key rotation interrupted before it was recorded; the site key is unchanged: 'airlock check --repair' removes it")
		}
	}
	if !pending {
		pubPath := filepath.Join(r.dir, SitePublicKey)
		switch pub, err := keys.ReadPublicFile(pubPath); {
		case err != nil:
			add("site-key", SitePublicKey, "%v: %s", err, rotate)
		case pub.Fingerprint() != r.siteKey:
			add("site-key", SitePublicKey, "holds key %s, but the site key is %s: %s", pub.Fingerprint(), r.siteKey, rotate)
		}
		keyPath := filepath.Join(r.dir, SiteKeyFile)
		switch k, err := keys.ReadPrivateFile(keyPath, nil); {
		case errors.Is(err, keys.ErrPassphrase):
			// Encrypted: its fingerprint is checked when it signs.
		case err != nil:
			add("site-key", SiteKeyFile, "%v: the repository signs download keys with it: %s", err, rotate)
		case k.Fingerprint() != r.siteKey:
			add("site-key", SiteKeyFile, "holds key %s, but the site key is %s: %s", k.Fingerprint(), r.siteKey, rotate)
		}
	}
	entries, err := os.ReadDir(filepath.Join(r.dir, SiteKeysDir))
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), rotatingPrefix) {
			continue
		}
		path := filepath.Join(r.dir, SiteKeysDir, e.Name())
		name, isPub := strings.CutSuffix(e.Name(), ".pub.asc")
		want, ferr := keys.ParseFingerprint(name)
		if !isPub || ferr != nil {
			add("stray-file", r.rel(path), "not a replaced site key (FINGERPRINT.pub.asc): remove it if nothing else needs it")
			continue
		}
		switch pub, err := keys.ReadPublicFile(path); {
		case err != nil:
			add("site-key", r.rel(path), "%v: the public half of a replaced site key; restore it from a backup of the repository", err)
		case pub.Fingerprint() != want:
			add("site-key", r.rel(path), "holds key %s, not the one its name says: restore it from a backup of the repository", pub.Fingerprint())
		}
	}
	return nil
}
