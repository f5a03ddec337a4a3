package repo

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"syscall"
	"time"

	"go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"

	"github.com/airlock-project/airlock/blob"
	"github.com/airlock-project/airlock/catalog"
	"github.com/airlock-project/airlock/keys"
)

// SchemaVersion is the database layout this package reads and writes (see
// the package documentation).
const SchemaVersion = 1

// DefaultLockTimeout is how long Open waits for another process to release
// the repository when Options.LockTimeout is zero.
const DefaultLockTimeout = 5 * time.Second

// File and directory names inside the repository directory.
const (
	DBFile        = "airlock.db"
	LockFile      = "airlock.lock"
	BlobDir       = "blobs"
	SiteKeyFile   = "site.key"
	SitePublicKey = "site.pub.asc"
)

// Bucket names and meta keys of schema 1.
var (
	bucketMeta     = []byte("meta")
	bucketTrust    = []byte("trust")
	bucketKeys     = []byte("keys")
	bucketBundles  = []byte("bundles")
	bucketPackages = []byte("packages")
	bucketAudit    = []byte("audit")

	allBuckets = [][]byte{bucketMeta, bucketTrust, bucketKeys, bucketBundles, bucketPackages, bucketAudit}

	metaSchema    = []byte("schema")
	metaSite      = []byte("site")
	metaSiteKey   = []byte("site_key")
	metaCreated   = []byte("created")
	metaAuditHead = []byte("audit_head")
)

// Options locates the repository and describes the caller. The zero value
// of every field but Dir is usable.
type Options struct {
	// Dir is the repository directory.
	Dir string
	// ReadOnly opens the database with a shared lock, so that several
	// readers may run at once; nothing is written, not even airlock.lock.
	ReadOnly bool
	// LockTimeout bounds the wait for another process's lock; zero means
	// DefaultLockTimeout.
	LockTimeout time.Duration
	// Actor names who acts in audit entries, "user@host".
	Actor string
	// Command describes the running command in airlock.lock, for the
	// message another process gets while this one holds the lock.
	Command string
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// Logger receives diagnostics (crash recovery); nil discards them.
	Logger *slog.Logger
}

func (o Options) now() time.Time {
	if o.Now != nil {
		return o.Now()
	}
	return time.Now()
}

func (o Options) actor() string {
	if o.Actor == "" {
		return "unknown"
	}
	return o.Actor
}

func (o Options) logger() *slog.Logger {
	if o.Logger == nil {
		return slog.New(slog.DiscardHandler)
	}
	return o.Logger
}

// Repo is an open repository. It is safe for concurrent use by several
// goroutines. Close releases the lock.
type Repo struct {
	dir     string
	opts    Options
	db      *bbolt.DB
	blobs   *blob.Store
	site    string
	siteKey keys.Fingerprint
	holder  *Holder // written to airlock.lock by this process; nil for readers
	// recovered lists what the read-write open removed (see Repair).
	recovered []string
	// rotated says what the read-write open did about an interrupted
	// site key rotation (see recoverRotation).
	rotated []string
}

// Open opens the repository in opts.Dir, waiting at most opts.LockTimeout
// for the lock. It refuses a directory without airlock.db (ErrNoRepository,
// it never creates one: see Init), a database of another schema (ErrSchema),
// and a lock held too long (*InUseError). A read-write open first finishes
// or undoes an interrupted site key rotation (see RotateSiteKey) and
// removes what an interrupted import left behind (temporary files and
// blobs no package references), so that every write starts from a clean
// store.
func Open(ctx context.Context, opts Options) (*Repo, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	dir := opts.Dir
	dbPath := filepath.Join(dir, DBFile)
	if err := findDB(dir); err != nil {
		return nil, err
	}
	timeout := opts.LockTimeout
	if timeout <= 0 {
		timeout = DefaultLockTimeout
	}
	start := time.Now()
	db, err := bbolt.Open(dbPath, 0o600, &bbolt.Options{Timeout: timeout, ReadOnly: opts.ReadOnly})
	if errors.Is(err, berrors.ErrTimeout) {
		return nil, &InUseError{Dir: dir, Holder: readHolder(dir), Waited: time.Since(start)}
	}
	var errno syscall.Errno
	if err != nil && errors.As(err, &errno) {
		return nil, fmt.Errorf("open repository database %s: %w", dbPath, err)
	}
	if err != nil {
		// bbolt found no valid database in the file.
		return nil, fmt.Errorf("open repository %s: %s is not an airlock database or is damaged (%w: %w): restore the repository from a backup, or point --repo or AIRLOCK_REPO at another", dir, dbPath, ErrSchema, err)
	}
	r := &Repo{dir: dir, opts: opts, db: db}
	if err := r.readMeta(); err != nil {
		db.Close()
		return nil, err
	}
	if r.blobs, err = blob.Open(filepath.Join(dir, BlobDir)); err != nil {
		db.Close()
		return nil, fmt.Errorf("open repository %s: %w", dir, err)
	}
	if opts.ReadOnly {
		return r, nil
	}
	r.holder = writeHolder(dir, opts.Command, opts.now(), opts.logger())
	if r.rotated, err = r.recoverRotation(); err != nil {
		r.Close()
		return nil, fmt.Errorf("open repository %s: %w", dir, err)
	}
	if r.recovered, err = r.Repair(ctx); err != nil {
		r.Close()
		return nil, fmt.Errorf("open repository %s: recover from an interrupted import: %w", dir, err)
	}
	return r, nil
}

// findDB refuses a directory that holds no repository database, or an
// empty one, with the messages of Open.
func findDB(dir string) error {
	dbPath := filepath.Join(dir, DBFile)
	st, err := os.Stat(dbPath)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return fmt.Errorf("%w at %s (no %s): create one with 'airlock init --site NAME', or point --repo or AIRLOCK_REPO at it", ErrNoRepository, dir, DBFile)
	case errors.Is(err, syscall.ENOTDIR):
		return fmt.Errorf("%w at %s (not a directory): point --repo or AIRLOCK_REPO at the repository's directory", ErrNoRepository, dir)
	case err != nil:
		return fmt.Errorf("open repository %s: %w", dir, err)
	case st.Size() == 0:
		// bbolt would try to initialise it, and fail read-only.
		return fmt.Errorf("open repository %s: %s is empty (%w): restore the repository from a backup, or point --repo or AIRLOCK_REPO at another", dir, dbPath, ErrSchema)
	}
	return nil
}

// readMeta checks the schema and loads the site identity.
func (r *Repo) readMeta() error {
	return r.db.View(func(tx *bbolt.Tx) error {
		meta := tx.Bucket(bucketMeta)
		if meta == nil {
			return fmt.Errorf("%w: %s has no meta bucket: it is not an airlock repository database", ErrSchema, r.dbPath())
		}
		v, err := strconv.Atoi(string(meta.Get(metaSchema)))
		if err != nil {
			return fmt.Errorf("%w: %s has no readable schema version: it is not an airlock repository database", ErrSchema, r.dbPath())
		}
		if v > SchemaVersion {
			return fmt.Errorf("%w: %s has schema %d, written by a newer airlock; this airlock knows schema %d: upgrade airlock", ErrSchema, r.dbPath(), v, SchemaVersion)
		}
		if v < SchemaVersion {
			return fmt.Errorf("%w: %s has schema %d, which no airlock release wrote; it cannot be migrated", ErrSchema, r.dbPath(), v)
		}
		for _, b := range allBuckets {
			if tx.Bucket(b) == nil {
				return fmt.Errorf("%w: %s lacks bucket %q of schema %d: the database is damaged; restore the repository from a backup", ErrSchema, r.dbPath(), b, SchemaVersion)
			}
		}
		r.site = string(meta.Get(metaSite))
		if err := catalog.ValidName(r.site); err != nil {
			return fmt.Errorf("%w: %s: site name: %v", ErrSchema, r.dbPath(), err)
		}
		fp, err := keys.ParseFingerprint(string(meta.Get(metaSiteKey)))
		if err != nil {
			return fmt.Errorf("%w: %s: site key fingerprint: %v", ErrSchema, r.dbPath(), err)
		}
		r.siteKey = fp
		return nil
	})
}

// Close releases the lock (and removes airlock.lock if this process wrote
// it). It returns the database's close error.
func (r *Repo) Close() error {
	if r.holder != nil {
		removeHolder(r.dir, r.holder)
		r.holder = nil
	}
	return r.db.Close()
}

// Dir returns the repository directory.
func (r *Repo) Dir() string { return r.dir }

// Site returns the site name the repository was created for.
func (r *Repo) Site() string { return r.site }

// SiteKey returns the fingerprint of the site key.
func (r *Repo) SiteKey() keys.Fingerprint { return r.siteKey }

// Blobs returns the blob store holding the package files. Callers only
// read from it; the repository alone adds and removes blobs.
func (r *Repo) Blobs() *blob.Store { return r.blobs }

func (r *Repo) dbPath() string { return filepath.Join(r.dir, DBFile) }

// Tx is a transaction on the repository's database with the audit log at
// hand. It is valid only inside the function given to View or Update.
type Tx struct {
	*bbolt.Tx
	r *Repo
}

// Audit appends an entry to the audit log in this (writable) transaction:
// it becomes visible, chained to the previous entry, when the transaction
// commits, and not at all if it rolls back. details is encoded as JSON.
func (t *Tx) Audit(action string, details any) (AuditEntry, error) {
	return appendAudit(t.Tx, t.r.opts.now(), t.r.opts.actor(), action, details)
}

// View runs fn in a read-only transaction.
func (r *Repo) View(fn func(*Tx) error) error {
	return r.db.View(func(tx *bbolt.Tx) error { return fn(&Tx{tx, r}) })
}

// Update runs fn in a read-write transaction, committed if fn returns nil
// and rolled back otherwise. It fails on a repository opened read-only.
func (r *Repo) Update(fn func(*Tx) error) error {
	if r.opts.ReadOnly {
		return fmt.Errorf("repository %s was opened read-only", r.dir)
	}
	return r.db.Update(func(tx *bbolt.Tx) error { return fn(&Tx{tx, r}) })
}

// putJSON stores v as JSON under key.
func putJSON(b *bbolt.Bucket, key []byte, v any) error {
	data, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return b.Put(key, data)
}

// getJSON decodes the JSON value under key in bucket name into v; found is
// false if there is none.
func getJSON(tx *bbolt.Tx, name, key []byte, v any) (found bool, err error) {
	data := tx.Bucket(name).Get(key)
	if data == nil {
		return false, nil
	}
	if err := decodeRecord(name, key, data, v); err != nil {
		return true, err
	}
	return true, nil
}

// decodeRecord decodes a stored JSON value, naming it on error.
func decodeRecord(name, key, data []byte, v any) error {
	if err := json.Unmarshal(data, v); err != nil {
		return fmt.Errorf("database bucket %s, key %q: undecodable record (%v): run 'airlock check'", name, key, err)
	}
	return nil
}
