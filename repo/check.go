package repo

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"go.etcd.io/bbolt"

	"github.com/airlock-project/airlock/atomicfile"
	"github.com/airlock-project/airlock/blob"
	"github.com/airlock-project/airlock/catalog"
	"github.com/airlock-project/airlock/progress"
)

// damagedDB is the next step for a record that the database should not
// hold: Check cannot repair it.
const damagedDB = "the database is damaged; restore the repository from a backup"

// CheckOptions tunes Check. The zero value is good.
type CheckOptions struct {
	// Progress reports the bytes of blobs re-hashed; nil reports nothing.
	Progress progress.Reporter
}

// CheckReport summarises what Check examined and found.
type CheckReport struct {
	Dir      string `json:"dir"`
	Packages int    `json:"packages"`
	Bundles  int    `json:"bundles"`
	Keys     int    `json:"keys"`
	Trusted  int    `json:"trusted"`
	// Bytes is the total size of the blobs re-hashed.
	Bytes int64 `json:"bytes"`
	// Audit is the verified audit chain (zero if it is broken).
	Audit AuditSummary `json:"audit"`
	// Problems lists every inconsistency; empty when the repository is sound.
	Problems []Problem `json:"problems"`
}

// Check verifies the whole repository without changing it: every stored
// package's blob exists with the recorded size and hashes to its digest;
// no blob, temporary file or other file in the blob store lacks a package;
// every bundle's packages, every package's bundle and every fulfilled key's
// bundle exist; the audit chain verifies; site.pub.asc (and site.key, unless
// it is passphrase-protected) hold the site key the database names, no
// site key rotation was interrupted, and every replaced site key kept in
// site-keys/ is the key its name says. It returns the report and, if it
// found problems, a *CheckError (ErrCheck, verification class) naming each.
func (r *Repo) Check(ctx context.Context, opts CheckOptions) (*CheckReport, error) {
	rep := &CheckReport{Dir: r.dir, Problems: []Problem{}}
	add := func(kind, subject, format string, a ...any) {
		rep.Problems = append(rep.Problems, Problem{Kind: kind, Subject: subject, Detail: fmt.Sprintf(format, a...)})
	}
	pkgs := map[catalog.Digest]packageRecord{}
	err := r.db.View(func(tx *bbolt.Tx) error {
		bundles := map[string]bundleRecord{}
		if err := tx.Bucket(bucketBundles).ForEach(func(k, v []byte) error {
			var b bundleRecord
			if err := decodeRecord(bucketBundles, k, v, &b); err != nil {
				add("record", "bundle "+string(k), "undecodable: %s", damagedDB)
				return nil
			}
			bundles[string(k)] = b
			return nil
		}); err != nil {
			return err
		}
		if err := tx.Bucket(bucketPackages).ForEach(func(k, v []byte) error {
			var p packageRecord
			d, derr := catalog.ParseDigest(string(k))
			if err := decodeRecord(bucketPackages, k, v, &p); err != nil || derr != nil || p.Package.SHA256 != d {
				add("record", "package "+string(k), "undecodable, or stored under another digest than its own: %s", damagedDB)
				return nil
			}
			pkgs[d] = p
			if _, ok := bundles[p.Bundle]; !ok {
				add("dangling", p.Package.String(), "names bundle %s, which the repository does not hold: %s", p.Bundle, damagedDB)
			}
			return nil
		}); err != nil {
			return err
		}
		for _, b := range bundles {
			for _, d := range b.Packages {
				if _, ok := pkgs[d]; !ok {
					add("dangling", "bundle "+b.ID, "lists package sha256 %s, which the repository does not hold: %s", d.Short(), damagedDB)
				}
			}
		}
		if err := tx.Bucket(bucketKeys).ForEach(func(k, v []byte) error {
			rep.Keys++
			var key keyRecord
			if err := decodeRecord(bucketKeys, k, v, &key); err != nil {
				add("record", "download key "+string(k), "undecodable: %s", damagedDB)
				return nil
			}
			if key.State == KeyFulfilled {
				if _, ok := bundles[key.Bundle]; !ok {
					add("dangling", "download key "+string(k), "fulfilled by bundle %s, which the repository does not hold: %s", key.Bundle, damagedDB)
				}
			}
			return nil
		}); err != nil {
			return err
		}
		if _, err := loadTrust(tx); err != nil {
			add("record", "trust", "%v", err)
		}
		rep.Trusted = tx.Bucket(bucketTrust).Stats().KeyN
		rep.Bundles = len(bundles)
		rep.Packages = len(pkgs)
		a, err := verifyAudit(tx)
		if err != nil {
			add("audit", "audit log", "%v", err)
		}
		rep.Audit = a
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("check %s: %w", r.dir, err)
	}
	if err := r.checkSiteKeyFiles(add); err != nil {
		return nil, fmt.Errorf("check %s: %w", r.dir, err)
	}
	if err := r.checkBlobs(ctx, pkgs, rep, opts, add); err != nil {
		return nil, fmt.Errorf("check %s: %w", r.dir, err)
	}
	if len(rep.Problems) > 0 {
		return rep, &CheckError{Dir: r.dir, Problems: rep.Problems}
	}
	return rep, nil
}

// checkBlobs re-hashes every stored package and walks the blob store.
func (r *Repo) checkBlobs(ctx context.Context, pkgs map[catalog.Digest]packageRecord, rep *CheckReport, opts CheckOptions, add func(kind, subject, format string, a ...any)) error {
	digests := make([]catalog.Digest, 0, len(pkgs))
	var total int64
	for d, p := range pkgs {
		digests = append(digests, d)
		total += p.Package.Size
	}
	sort.Slice(digests, func(i, j int) bool { return pkgs[digests[i]].Package.ID() < pkgs[digests[j]].Package.ID() })
	pr := opts.Progress
	if pr == nil || len(digests) == 0 {
		pr = progress.Discard
	}
	task := pr.Start("check blobs", total)
	defer pr.Wait()
	buf := make([]byte, 256<<10)
	for _, d := range digests {
		if err := ctx.Err(); err != nil {
			task.Done(err)
			return err
		}
		p := pkgs[d].Package
		path := r.rel(r.blobs.Path(d))
		f, err := r.blobs.Open(d)
		if errors.Is(err, blob.ErrNotFound) {
			add("missing-blob", p.String(), "%s is missing: restore it from a backup of the repository", path)
			continue
		}
		if err != nil {
			add("missing-blob", p.String(), "%s cannot be opened: %v", path, err)
			continue
		}
		h := sha256.New()
		n, err := io.CopyBuffer(io.MultiWriter(h, progress.Writer(io.Discard, task)), f, buf)
		f.Close()
		switch {
		case err != nil:
			add("corrupt-blob", p.String(), "%s cannot be read: %v", path, err)
		case n != p.Size:
			add("corrupt-blob", p.String(), "%s is %d bytes, the package %d: restore it from a backup of the repository", path, n, p.Size)
		case catalog.SumOf(h) != d:
			add("corrupt-blob", p.String(), "%s hashes to %s: its content is damaged; restore it from a backup of the repository", path, catalog.SumOf(h).Short())
		default:
			rep.Bytes += n
		}
	}
	task.Done(nil)
	err := r.blobs.Walk(func(d catalog.Digest, _ int64, stray string) error {
		switch {
		case stray != "":
			add("stray-file", r.rel(stray), "not a blob of the store: remove it if nothing else needs it")
		case pkgs[d].Package.SHA256.IsZero():
			add("orphan-blob", r.rel(r.blobs.Path(d)), "no package references it (left by an interrupted import): 'airlock check --repair' removes it")
		}
		return nil
	})
	if err != nil {
		return err
	}
	temps, err := r.tempFiles()
	for _, t := range temps {
		add("temp-file", r.rel(t), "left by an interrupted import: 'airlock check --repair' removes it")
	}
	return err
}

// rel returns path relative to the repository, for messages.
func (r *Repo) rel(path string) string {
	if rel, err := filepath.Rel(r.dir, path); err == nil && !strings.HasPrefix(rel, "..") {
		return rel
	}
	return path
}

// tempFiles lists the temporary files in the blob store.
func (r *Repo) tempFiles() ([]string, error) {
	var out []string
	root := filepath.Join(r.dir, BlobDir)
	err := filepath.WalkDir(root, func(path string, e fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !e.IsDir() && strings.HasPrefix(e.Name(), atomicfile.TempPrefix) {
			out = append(out, path)
		}
		return nil
	})
	return out, err
}

// Repair removes what interrupted imports leave behind: temporary files in
// the blob store and published blobs that no package references (orphans).
// It never removes a blob a package references, nor a file it does not
// recognise. It returns the repository-relative paths removed. Every
// read-write Open runs it; the repository must be open read-write.
func (r *Repo) Repair(ctx context.Context) ([]string, error) {
	if r.opts.ReadOnly {
		return nil, fmt.Errorf("repair: repository %s was opened read-only", r.dir)
	}
	removed := []string{}
	temps, err := r.tempFiles()
	if err != nil {
		return removed, err
	}
	for _, t := range temps {
		if err := os.Remove(t); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return removed, err
		}
		removed = append(removed, r.rel(t))
	}
	known := map[catalog.Digest]bool{}
	if err := r.db.View(func(tx *bbolt.Tx) error {
		return tx.Bucket(bucketPackages).ForEach(func(k, _ []byte) error {
			if d, err := catalog.ParseDigest(string(k)); err == nil {
				known[d] = true
			}
			return nil
		})
	}); err != nil {
		return removed, err
	}
	var orphans []catalog.Digest
	if err := r.blobs.Walk(func(d catalog.Digest, _ int64, stray string) error {
		if stray == "" && !known[d] {
			orphans = append(orphans, d)
		}
		return ctx.Err()
	}); err != nil {
		return removed, err
	}
	for _, d := range orphans {
		if err := r.blobs.Remove(d); err != nil {
			return removed, err
		}
		removed = append(removed, r.rel(r.blobs.Path(d)))
	}
	if len(removed) > 0 {
		r.opts.logger().Info("removed leftovers of an interrupted import", "repository", r.dir, "files", removed)
	}
	return removed, nil
}
