package server

import (
	"bytes"
	"cmp"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"time"

	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"

	"github.com/airlock-project/airlock/blob"
	"github.com/airlock-project/airlock/catalog"
	"github.com/airlock-project/airlock/keys"
	"github.com/airlock-project/airlock/progress"
	"github.com/airlock-project/airlock/verify"
)

// File names inside a store directory.
const (
	VendorKeyFile = "vendor.key"
	VendorPubFile = "vendor.pub.asc"
	DBFile        = "server.db"
	PackagesDir   = "packages"
	AdminSocket   = "admin.sock"
)

// schemaVersion is the layout documented in doc.go.
const schemaVersion = 1

var (
	bucketMeta     = []byte("meta")
	bucketPackages = []byte("packages")
	bucketSites    = []byte("sites")
	bucketKeys     = []byte("keys")
	bucketLedger   = []byte("ledger")
	bucketReissues = []byte("reissues")
	allBuckets     = [][]byte{bucketMeta, bucketPackages, bucketSites, bucketKeys, bucketLedger, bucketReissues}

	metaSchema = []byte("schema")
	metaVendor = []byte("vendor")
)

// Config configures a Server. Only Dir is required.
type Config struct {
	// Dir is the store directory made by Init.
	Dir string
	// Logger receives the access log and server events; nil discards.
	Logger *slog.Logger
	// Now is the server's clock; nil means time.Now.
	Now func() time.Time
	// Skew is the clock difference tolerated on download keys; zero means
	// verify.DefaultSkew.
	Skew time.Duration
	// LockTimeout bounds the wait for the database lock; zero means 1s.
	LockTimeout time.Duration
	// WriteTimeout is how long a download may make no progress before the
	// connection is dropped (each write extends the deadline); zero means
	// one minute.
	WriteTimeout time.Duration
	// ShutdownGrace is how long Serve lets requests in flight finish after
	// its context is cancelled; zero means 10s.
	ShutdownGrace time.Duration
	// Unlock makes Open decrypt a passphrase-protected vendor.key, with the
	// passphrase that Passphrase gives, before it takes the database lock;
	// without one, or with a wrong one, Open fails (keys.ErrPassphrase,
	// usage) having changed nothing. Only signing needs the private key:
	// serve sets Unlock, the admin commands do not. Without Unlock a
	// protected vendor.key is not decrypted, its passphrase never asked
	// for, and the Server can do everything but sign: Serve and the
	// exchange refuse (ErrLocked). An unprotected vendor.key is always
	// read whole.
	Unlock bool
	// Passphrase says where the passphrase of a protected vendor.key comes
	// from; it is used only with Unlock.
	Passphrase VendorPassphrase
}

func (c Config) lockTimeout() time.Duration  { return cmp.Or(c.LockTimeout, time.Second) }
func (c Config) writeTimeout() time.Duration { return cmp.Or(c.WriteTimeout, time.Minute) }
func (c Config) grace() time.Duration        { return cmp.Or(c.ShutdownGrace, 10*time.Second) }
func (c Config) skew() time.Duration         { return cmp.Or(c.Skew, verify.DefaultSkew) }

// Server is an open store: the database, the package files, the vendor
// key. It holds the database lock until Close. It is safe for concurrent
// use.
type Server struct {
	cfg    Config
	dir    string
	db     *bolt.DB
	blobs  *blob.Store
	vendor *keys.PrivateKey // nil while locked (see Config.Unlock)
	pub    *keys.PublicKey  // the vendor key's public half, always set
	log    *slog.Logger
	now    func() time.Time

	mu    sync.RWMutex
	sites siteIndex // rebuilt after every committed site change
}

// siteIndex is the trust store of registered site keys and who owns them.
type siteIndex struct {
	trust  *keys.TrustStore
	byKey  map[keys.Fingerprint]string
	byName map[string]siteRecord
}

// packageRecord is the value of the packages bucket.
type packageRecord struct {
	Package   catalog.Package `json:"package"`
	Published time.Time       `json:"published"`
}

// siteRecord is the value of the sites bucket.
type siteRecord struct {
	Name        string           `json:"name"`
	Fingerprint keys.Fingerprint `json:"fingerprint"`
	Key         string           `json:"key"`
	Added       time.Time        `json:"added"`
}

// Site is a registered site.
type Site struct {
	Name        string           `json:"name"`
	Fingerprint keys.Fingerprint `json:"fingerprint"`
	UserID      string           `json:"user_id"`
	Added       time.Time        `json:"added"`
	// Delivered counts the packages the site has acknowledged and that
	// were not reissued since (Sites fills it in).
	Delivered int `json:"delivered"`
	// Change is what AddSite did: "registered" (a new site), "unchanged"
	// (the same key again), "updated" (a new copy of the registered key,
	// e.g. a renewed expiry), "revoked" (the registered key's revoked
	// copy: its download keys are refused from now on) or "replaced" (a
	// new key for a site whose registered key is revoked or expired).
	Change string `json:"change,omitempty"`
}

// Delivery is one entry of the download ledger: a package that a site has
// acknowledged receiving.
type Delivery struct {
	Site         string         `json:"site"`
	Package      string         `json:"package"`
	SHA256       catalog.Digest `json:"sha256"`
	KeyID        catalog.KeyID  `json:"key_id"`
	Acknowledged time.Time      `json:"acknowledged"`
}

// reissueRecord is the value of the reissues bucket.
type reissueRecord struct {
	Delivery Delivery  `json:"delivery"`
	Reissued time.Time `json:"reissued"`
}

// Init makes a new store in dir (created with mode 0700 if missing; an
// existing directory must be empty): a vendor key named name, its public
// half in vendor.pub.asc, an empty database and package directory. It
// returns the vendor's public key. On error it removes what it created.
// It is InitWithPassphrase with no passphrase: vendor.key is not protected.
func Init(dir, name string, now time.Time) (*keys.PublicKey, error) {
	return InitWithPassphrase(dir, name, now, nil)
}

// InitWithPassphrase is Init with vendor.key encrypted under passphrase
// (see keys.WritePrivateFile); an empty passphrase leaves it unprotected.
// serve then needs the passphrase (Config.Unlock); the admin commands do
// not.
func InitWithPassphrase(dir, name string, now time.Time, passphrase []byte) (*keys.PublicKey, error) {
	if name == "" {
		name = "airlock vendor"
	}
	ents, err := os.ReadDir(dir)
	created := false
	switch {
	case errors.Is(err, fs.ErrNotExist):
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return nil, fmt.Errorf("init %s: %w", dir, err)
		}
		created = true
	case err != nil:
		return nil, fmt.Errorf("init %s: %w", dir, err)
	case len(ents) > 0:
		return nil, fmt.Errorf("init %s: %w: it holds %s; init never touches an existing store, choose a new directory", dir, ErrDirNotEmpty, ents[0].Name())
	}
	pub, err := initDir(dir, name, now, passphrase)
	if err != nil {
		if created {
			os.RemoveAll(dir)
		} else {
			for _, f := range []string{VendorKeyFile, VendorPubFile, DBFile, PackagesDir} {
				os.RemoveAll(filepath.Join(dir, f))
			}
		}
		return nil, fmt.Errorf("init %s: %w", dir, err)
	}
	return pub, nil
}

func initDir(dir, name string, now time.Time, passphrase []byte) (*keys.PublicKey, error) {
	k, err := keys.Generate(keys.GenerateOptions{Name: name, Now: now})
	if err != nil {
		return nil, err
	}
	if err := keys.WritePrivateFile(filepath.Join(dir, VendorKeyFile), k, passphrase); err != nil {
		return nil, err
	}
	if err := keys.WritePublicFile(filepath.Join(dir, VendorPubFile), k.Public()); err != nil {
		return nil, err
	}
	if _, err := blob.Open(filepath.Join(dir, PackagesDir)); err != nil {
		return nil, err
	}
	// The database last: its presence marks a complete store.
	db, err := bolt.Open(filepath.Join(dir, DBFile), 0o600, &bolt.Options{Timeout: time.Second})
	if err != nil {
		return nil, err
	}
	err = db.Update(func(tx *bolt.Tx) error {
		for _, b := range allBuckets {
			if _, err := tx.CreateBucketIfNotExists(b); err != nil {
				return err
			}
		}
		m := tx.Bucket(bucketMeta)
		if err := m.Put(metaSchema, []byte(strconv.Itoa(schemaVersion))); err != nil {
			return err
		}
		return m.Put(metaVendor, []byte(k.Fingerprint().String()))
	})
	if cerr := db.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return nil, err
	}
	return k.Public(), nil
}

// Open opens the store in cfg.Dir for exclusive use. If another process
// holds the database for longer than cfg.LockTimeout the error matches
// ErrInUse (use Connect to reach a running server instead). Open removes
// the temporary files an interrupted publish left behind. It reads
// vendor.key first, before it takes the lock or changes anything: a
// passphrase-protected one is decrypted only with cfg.Unlock (see Config).
func Open(cfg Config) (*Server, error) {
	dir := cfg.Dir
	dbPath := filepath.Join(dir, DBFile)
	if fi, err := os.Stat(dir); err == nil && !fi.IsDir() {
		return nil, fmt.Errorf("%s: %w: it is a file, not a directory; give the store directory that 'airlock-server init' made as --dir", dir, ErrNotInitialized)
	}
	if _, err := os.Stat(dbPath); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("%s: %w: no %s; make one with 'airlock-server init --dir %s' or give the right --dir", dir, ErrNotInitialized, DBFile, dir)
		}
		return nil, fmt.Errorf("open store %s: %w", dir, err)
	}
	vendor, pub, err := readVendorKey(dir, cfg.Unlock, cfg.Passphrase)
	if err != nil {
		return nil, fmt.Errorf("open store %s: %w", dir, err)
	}
	db, err := bolt.Open(dbPath, 0o600, &bolt.Options{Timeout: cfg.lockTimeout()})
	if errors.Is(err, berrors.ErrTimeout) {
		return nil, fmt.Errorf("%s: %w: another airlock-server process holds %s and does not answer on %s; stop it or wait for it to finish", dir, ErrInUse, DBFile, AdminSocket)
	}
	if err != nil {
		return nil, fmt.Errorf("open store %s: %w", dir, err)
	}
	s := &Server{cfg: cfg, dir: dir, db: db, pub: pub, log: cfg.Logger, now: cfg.Now}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	if s.now == nil {
		s.now = time.Now
	}
	if vendor != nil {
		s.vendor = vendor.WithClock(s.now)
	}
	if err := s.load(); err != nil {
		db.Close()
		return nil, fmt.Errorf("open store %s: %w", dir, err)
	}
	return s, nil
}

// load checks the schema and the vendor key, opens the package directory
// and builds the site index.
func (s *Server) load() error {
	err := s.db.View(func(tx *bolt.Tx) error {
		for _, b := range allBuckets {
			if tx.Bucket(b) == nil {
				return fmt.Errorf("%w: bucket %q missing", ErrSchema, b)
			}
		}
		m := tx.Bucket(bucketMeta)
		if v := string(m.Get(metaSchema)); v != strconv.Itoa(schemaVersion) {
			return fmt.Errorf("%w: version %q, this airlock-server knows %d; use a matching airlock-server", ErrSchema, v, schemaVersion)
		}
		if v := string(m.Get(metaVendor)); v != s.pub.Fingerprint().String() {
			file := VendorKeyFile
			if s.vendor == nil {
				file = VendorPubFile // what the fingerprint was read from
			}
			return fmt.Errorf("%s was made with vendor key %s, but %s is %s; restore the original %s", DBFile, v, file, s.pub.Fingerprint(), file)
		}
		return nil
	})
	if err != nil {
		return err
	}
	if s.blobs, err = blob.Open(filepath.Join(s.dir, PackagesDir)); err != nil {
		return err
	}
	if _, err := s.blobs.Clean(); err != nil {
		return err
	}
	return s.reloadSites()
}

// Close releases the database. The Server must not be used afterwards.
func (s *Server) Close() error { return s.db.Close() }

// VendorKey returns the vendor's public key.
func (s *Server) VendorKey() *keys.PublicKey { return s.pub }

// Locked reports whether the vendor key is passphrase-protected and was not
// unlocked (Config.Unlock): the Server cannot sign, so Serve refuses.
func (s *Server) Locked() bool { return s.vendor == nil }

// errLocked is the refusal to sign with a locked vendor key.
func (s *Server) errLocked() error {
	return fmt.Errorf("%w: %s is passphrase-protected and the store was opened without its passphrase, so entitlements cannot be signed; serve unlocks it (--passphrase-file)",
		ErrLocked, filepath.Join(s.dir, VendorKeyFile))
}

// reloadSites rebuilds the site index from the database.
func (s *Server) reloadSites() error {
	idx := siteIndex{trust: keys.NewTrustStore(), byKey: map[keys.Fingerprint]string{}, byName: map[string]siteRecord{}}
	err := s.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketSites).ForEach(func(k, v []byte) error {
			var r siteRecord
			if err := decode(v, &r); err != nil {
				return fmt.Errorf("site %q: %w", k, err)
			}
			pub, err := keys.ReadPublic(bytes.NewReader([]byte(r.Key)))
			if err != nil {
				return fmt.Errorf("site %s: stored key: %w", r.Name, err)
			}
			if err := idx.trust.Add(keys.RoleSite, pub); err != nil {
				return fmt.Errorf("site %s: %w", r.Name, err)
			}
			idx.byKey[r.Fingerprint] = r.Name
			idx.byName[r.Name] = r
			return nil
		})
	})
	if err != nil {
		return err
	}
	s.mu.Lock()
	s.sites = idx
	s.mu.Unlock()
	return nil
}

func (s *Server) siteSnapshot() siteIndex {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.sites
}

// PublishRequest describes a package to add to the catalog.
type PublishRequest struct {
	Name     string               `json:"name"`
	Kind     catalog.Kind         `json:"kind"`
	Version  catalog.Version      `json:"version"`
	Requires []catalog.Constraint `json:"requires"`
	Settle   catalog.Duration     `json:"settle"`
	Reboot   bool                 `json:"reboot"`
	// File is the path of the package file, read by the process that owns
	// the store (absolute when sent to a running server).
	File string `json:"file"`
}

// PublishResult says what Publish recorded.
type PublishResult struct {
	Package catalog.Package `json:"package"`
	// Added is false when the identical package was already published.
	Added bool `json:"added"`
}

// Publish streams the file into the package directory, hashing it on the
// way, and records its metadata in the catalog. Publishing the same file
// with the same metadata again is a no-op (Added false). A name@version
// already published with other content or metadata, or the same file under
// another name@version, is refused with ErrConflict and leaves the store
// unchanged. rep (may be nil) reports the bytes read.
func (s *Server) Publish(ctx context.Context, req PublishRequest, rep progress.Reporter) (PublishResult, error) {
	p, err := req.metadata()
	if err != nil {
		return PublishResult{}, err
	}
	f, err := os.Open(req.File)
	if err != nil {
		return PublishResult{}, fmt.Errorf("publish %s: %w", req.File, err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return PublishResult{}, fmt.Errorf("publish %s: %w", req.File, err)
	}
	if !fi.Mode().IsRegular() {
		return PublishResult{}, fmt.Errorf("publish %s: %w: not a regular file", req.File, ErrBadRequest)
	}
	if fi.Size() > catalog.MaxPackageSize {
		return PublishResult{}, fmt.Errorf("publish %s: %w: %d bytes is over the %d-byte limit of a package", req.File, ErrBadRequest, fi.Size(), int64(catalog.MaxPackageSize))
	}
	if rep == nil {
		rep = progress.Discard
	}
	task := rep.Start(p.ID(), fi.Size())
	pending, err := s.blobs.Ingest(ctx, progress.Reader(f, task), catalog.Digest{}, fi.Size())
	task.Done(err)
	if err != nil {
		return PublishResult{}, fmt.Errorf("publish %s: %w (did the file change while it was read?)", req.File, err)
	}
	defer pending.Abort()
	p.SHA256, p.Size = pending.Digest, pending.Size
	if err := p.Validate(); err != nil {
		return PublishResult{}, fmt.Errorf("publish %s: %w", req.File, err)
	}

	added := false
	err = s.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketPackages)
		dup, err := findConflict(b, p)
		if err != nil || dup {
			return err
		}
		v, err := catalog.EncodeCanonical(packageRecord{Package: p, Published: s.now().UTC()})
		if err != nil {
			return err
		}
		if err := b.Put(p.SHA256[:], v); err != nil {
			return err
		}
		// The file is durable before the record that names it commits.
		if err := pending.Commit(); err != nil {
			return err
		}
		added = true
		return nil
	})
	if err != nil {
		return PublishResult{}, fmt.Errorf("publish %s as %s: %w", req.File, p.ID(), err)
	}
	if added {
		s.log.Info("published", "package", p.ID(), "sha256", p.SHA256.String(), "size", p.Size)
	}
	return PublishResult{Package: p, Added: added}, nil
}

// metadata validates the request's metadata and returns the package
// without digest and size.
func (req PublishRequest) metadata() (catalog.Package, error) {
	p := catalog.Package{Name: req.Name, Kind: req.Kind, Version: req.Version, Requires: req.Requires, Settle: req.Settle, Reboot: req.Reboot}
	if p.Requires == nil {
		p.Requires = []catalog.Constraint{}
	}
	probe := p
	probe.SHA256 = catalog.Digest{1}
	if err := probe.Validate(); err != nil {
		return p, fmt.Errorf("publish %s: %w: %v", req.File, ErrBadRequest, err)
	}
	if req.File == "" {
		return p, fmt.Errorf("publish: %w: no package file given", ErrBadRequest)
	}
	return p, nil
}

// findConflict reports whether p is already published identically (true),
// or returns ErrConflict if it clashes with a published package.
func findConflict(b *bolt.Bucket, p catalog.Package) (bool, error) {
	if v := b.Get(p.SHA256[:]); v != nil {
		var r packageRecord
		if err := decode(v, &r); err != nil {
			return false, err
		}
		if r.Package.Equal(p) {
			return true, nil
		}
		if r.Package.Name == p.Name && r.Package.Version.Compare(p.Version) == 0 {
			return false, fmt.Errorf("%w: %s is already published with this file but other metadata (%s); a published package never changes: publish a new version", ErrConflict, r.Package.ID(), describe(r.Package))
		}
		return false, fmt.Errorf("%w: this file is already published as %s; each file is published once, under one name and version", ErrConflict, r.Package.ID())
	}
	var clash error
	err := b.ForEach(func(_, v []byte) error {
		var r packageRecord
		if err := decode(v, &r); err != nil {
			return err
		}
		if r.Package.Name == p.Name && r.Package.Version.Compare(p.Version) == 0 {
			clash = fmt.Errorf("%w: %s is already published with other content (sha256 %s); a published version never changes: publish a new version", ErrConflict, r.Package.ID(), r.Package.SHA256.Short())
		}
		return nil
	})
	if err == nil {
		err = clash
	}
	return false, err
}

func describe(p catalog.Package) string {
	return fmt.Sprintf("kind %s, requires %v, settle %s, reboot %v", p.Kind, p.Requires, time.Duration(p.Settle), p.Reboot)
}

// Catalog returns every published package, ordered by kind, name and
// version.
func (s *Server) Catalog(context.Context) ([]catalog.Package, error) {
	var ps []catalog.Package
	err := s.db.View(func(tx *bolt.Tx) error {
		var err error
		ps, err = readCatalog(tx)
		return err
	})
	return ps, err
}

func readCatalog(tx *bolt.Tx) ([]catalog.Package, error) {
	var ps []catalog.Package
	err := tx.Bucket(bucketPackages).ForEach(func(_, v []byte) error {
		var r packageRecord
		if err := decode(v, &r); err != nil {
			return err
		}
		ps = append(ps, r.Package)
		return nil
	})
	slices.SortFunc(ps, func(a, b catalog.Package) int {
		return cmp.Or(cmp.Compare(a.Kind.Rank(), b.Kind.Rank()), cmp.Compare(a.Name, b.Name), a.Version.Compare(b.Version))
	})
	return ps, err
}

// AddSite registers site name with its armored public key, trusted for the
// site role from then on (a running server uses it at once). Registering
// the same site with the same key again is a no-op; a new copy of the
// registered key (renewed expiry) updates it; its revoked copy records
// the revocation, so that the site's download keys are refused. A new key
// replaces a registered key that is revoked or expired. A site registered
// with another, valid key, or a key registered for another site, is
// refused with ErrSiteConflict; an expired or revoked key, or one that is
// not a valid public key, with a verification error. Site.Change says
// what was done.
func (s *Server) AddSite(ctx context.Context, name string, armoredKey []byte) (Site, error) {
	return s.addSite(ctx, name, armoredKey, false)
}

// ReplaceSiteKey registers a new key for the registered site name even
// though its key is still valid: the vendor's remedy when a site reports,
// by a trusted channel, that its key was lost or compromised. The site
// keeps its name and its ledger (what was delivered stays delivered);
// download keys signed by the old key are refused from then on.
func (s *Server) ReplaceSiteKey(ctx context.Context, name string, armoredKey []byte) (Site, error) {
	return s.addSite(ctx, name, armoredKey, true)
}

func (s *Server) addSite(_ context.Context, name string, armoredKey []byte, replace bool) (Site, error) {
	if err := catalog.ValidName(name); err != nil {
		return Site{}, fmt.Errorf("%w: --name: site %v", ErrBadRequest, err)
	}
	pub, err := keys.ReadPublic(bytes.NewReader(armoredKey))
	if err != nil {
		var ve *keys.VerifyError
		if errors.As(err, &ve) && ve.WrongKind {
			return Site{}, err // keys says which kind of file to give
		}
		return Site{}, fmt.Errorf("%w; give the site's public key, REPO/site.pub.asc that 'airlock init' wrote", err)
	}
	now := s.now()
	invalid := pub.Validate(now)
	// dead refuses a key that is expired or revoked now; keys states the
	// fact, the remedy is the site's.
	dead := func(err error) error {
		var ve *keys.VerifyError
		if !errors.As(err, &ve) {
			return err
		}
		state := "is revoked"
		if ve.Kind == keys.ErrKeyExpired {
			state = "expired at " + ve.Expired.UTC().Format(time.RFC3339)
		}
		return &keyError{err: err, msg: fmt.Sprintf("%v: key %s %s; ask the site for its current public key (REPO/site.pub.asc)", ve.Kind, ve.Signer, state)}
	}
	fp := pub.Fingerprint()
	rec := siteRecord{Name: name, Fingerprint: fp, Key: string(pub.Armored()), Added: now.UTC()}
	change := "registered"
	err = s.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketSites)
		if replace && b.Get([]byte(name)) == nil {
			return fmt.Errorf("%w: %q is not registered, so there is no key to replace: register it without --replace", ErrUnknownSite, name)
		}
		if v := b.Get([]byte(name)); v != nil {
			var old siteRecord
			if err := decode(v, &old); err != nil {
				return err
			}
			oldPub, err := keys.ReadPublic(bytes.NewReader([]byte(old.Key)))
			if err != nil {
				return fmt.Errorf("site %s: stored key: %w", name, err)
			}
			switch {
			case old.Fingerprint == fp && oldPub.Revoked() && !pub.Revoked():
				return fmt.Errorf("%w: site %s's key %s is recorded as revoked; an unrevoked copy does not undo that: register the site's new key", ErrSiteConflict, name, fp)
			case old.Fingerprint == fp && errors.Is(invalid, keys.ErrKeyRevoked):
				// The site's key was revoked (compromised, retired):
				// record it so that its download keys are refused.
				rec.Added, change = old.Added, "revoked"
			case old.Fingerprint == fp && invalid != nil:
				return dead(invalid)
			case old.Fingerprint == fp && old.Key == rec.Key:
				rec, change = old, "unchanged"
				return nil
			case old.Fingerprint == fp:
				rec.Added, change = old.Added, "updated" // e.g. a renewed expiry
			case (replace || oldPub.Validate(now) != nil) && invalid == nil:
				// A new key replaces a dead one; the site keeps its name,
				// and with it its ledger: delivered stays delivered.
				change = "replaced"
			case invalid != nil:
				return dead(invalid)
			default:
				return fmt.Errorf("%w: site %s is already registered with key %s; if the site's key was lost or compromised, and the site told you so by a trusted channel, replace it with --replace", ErrSiteConflict, name, old.Fingerprint)
			}
		} else if invalid != nil {
			return dead(invalid)
		}
		err := b.ForEach(func(_, v []byte) error {
			var other siteRecord
			if err := decode(v, &other); err != nil {
				return err
			}
			if other.Fingerprint == fp && other.Name != name {
				return fmt.Errorf("%w: key %s is already registered for site %s; each site needs its own key", ErrSiteConflict, fp, other.Name)
			}
			return nil
		})
		if err != nil {
			return err
		}
		v, err := catalog.EncodeCanonical(rec)
		if err != nil {
			return err
		}
		return b.Put([]byte(name), v)
	})
	if err != nil {
		return Site{}, err
	}
	if err := s.reloadSites(); err != nil {
		return Site{}, err
	}
	if change != "unchanged" {
		s.log.Info("site key "+change, "site", name, "key", fp.String())
	}
	return Site{Name: name, Fingerprint: fp, UserID: pub.UserID(), Added: rec.Added, Change: change}, nil
}

// Sites returns the registered sites, by name.
func (s *Server) Sites(context.Context) ([]Site, error) {
	idx := s.siteSnapshot()
	// Ledger keys are SITE 0x00 ...: count them without decoding entries.
	delivered := map[string]int{}
	err := s.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketLedger).ForEach(func(k, _ []byte) error {
			if site, _, ok := bytes.Cut(k, []byte{0}); ok {
				delivered[string(site)]++
			}
			return nil
		})
	})
	if err != nil {
		return nil, err
	}
	out := make([]Site, 0, len(idx.byName))
	for _, r := range idx.byName {
		site := Site{Name: r.Name, Fingerprint: r.Fingerprint, Added: r.Added, Delivered: delivered[r.Name]}
		if t, ok := idx.trust.Lookup(r.Fingerprint); ok {
			site.UserID = t.Key.UserID()
		}
		out = append(out, site)
	}
	slices.SortFunc(out, func(a, b Site) int { return cmp.Compare(a.Name, b.Name) })
	return out, nil
}

// Deliveries returns the ledger entries of site (every site if empty).
func (s *Server) Deliveries(_ context.Context, site string) ([]Delivery, error) {
	var out []Delivery
	err := s.db.View(func(tx *bolt.Tx) error {
		c := tx.Bucket(bucketLedger).Cursor()
		prefix := []byte(nil)
		if site != "" {
			prefix = append([]byte(site), 0)
		}
		for k, v := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, v = c.Next() {
			var d Delivery
			if err := decode(v, &d); err != nil {
				return err
			}
			out = append(out, d)
		}
		return nil
	})
	return out, err
}

// Reissue makes a package that site has acknowledged downloadable again
// for it: the ledger entry moves to the reissue log, and the site's next
// download key is entitled to the package again. ref is NAME@VERSION or
// the package's sha256. An unknown site or package is a usage error; a
// package the site never acknowledged is refused with ErrNotDelivered.
func (s *Server) Reissue(_ context.Context, site, ref string) (Delivery, error) {
	var d Delivery
	err := s.db.Update(func(tx *bolt.Tx) error {
		if tx.Bucket(bucketSites).Get([]byte(site)) == nil {
			return fmt.Errorf("%w: %q is not registered; 'airlock-server site add' registers it", ErrUnknownSite, site)
		}
		p, err := resolvePackage(tx, ref)
		if err != nil {
			return err
		}
		lk := ledgerKey(site, p.SHA256)
		lb := tx.Bucket(bucketLedger)
		v := lb.Get(lk)
		if v == nil {
			return fmt.Errorf("%w: site %s has not acknowledged %s, so it can download it already; nothing to reissue", ErrNotDelivered, site, p.ID())
		}
		if err := decode(v, &d); err != nil {
			return err
		}
		rb := tx.Bucket(bucketReissues)
		seq, err := rb.NextSequence()
		if err != nil {
			return err
		}
		rv, err := catalog.EncodeCanonical(reissueRecord{Delivery: d, Reissued: s.now().UTC()})
		if err != nil {
			return err
		}
		if err := rb.Put(binary.BigEndian.AppendUint64(nil, seq), rv); err != nil {
			return err
		}
		return lb.Delete(lk)
	})
	if err != nil {
		return Delivery{}, fmt.Errorf("reissue %s to %s: %w", ref, site, err)
	}
	s.log.Info("reissued", "site", site, "package", d.Package, "sha256", d.SHA256.String())
	return d, nil
}

// resolvePackage finds the package that ref (NAME@VERSION or sha256) names.
func resolvePackage(tx *bolt.Tx, ref string) (catalog.Package, error) {
	b := tx.Bucket(bucketPackages)
	if d, err := catalog.ParseDigest(ref); err == nil {
		v := b.Get(d[:])
		if v == nil {
			return catalog.Package{}, fmt.Errorf("%w: no package with sha256 %s; 'airlock-server catalog' lists them", ErrUnknownPackage, d.Short())
		}
		var r packageRecord
		err := decode(v, &r)
		return r.Package, err
	}
	name, vs, ok := bytes.Cut([]byte(ref), []byte("@"))
	ver, err := catalog.ParseVersion(string(vs))
	if !ok || err != nil || catalog.ValidName(string(name)) != nil {
		return catalog.Package{}, fmt.Errorf("%w: package %q: want NAME@VERSION (base@3.4.0) or a sha256 of 64 lowercase hex digits", ErrBadRequest, ref)
	}
	ps, err := readCatalog(tx)
	if err != nil {
		return catalog.Package{}, err
	}
	for _, p := range ps {
		if p.Name == string(name) && p.Version.Compare(ver) == 0 {
			return p, nil
		}
	}
	return catalog.Package{}, fmt.Errorf("%w: no package %s in the catalog; 'airlock-server catalog' lists them", ErrUnknownPackage, ref)
}

func ledgerKey(site string, d catalog.Digest) []byte {
	k := make([]byte, 0, len(site)+1+len(d))
	k = append(k, site...)
	k = append(k, 0)
	return append(k, d[:]...)
}

// decode reads a stored record. The database is written only by this
// package, so plain decoding suffices (untrusted input goes through the
// strict decoders); an error here means corruption.
func decode(v []byte, into any) error {
	if err := json.Unmarshal(v, into); err != nil {
		return fmt.Errorf("corrupt record in %s: %w", DBFile, err)
	}
	return nil
}

// readAllLimit reads r up to limit bytes; more is an error.
func readAllLimit(r io.Reader, limit int64) ([]byte, error) {
	b, err := io.ReadAll(io.LimitReader(r, limit+1))
	if err != nil {
		return nil, err
	}
	if int64(len(b)) > limit {
		return nil, fmt.Errorf("%w: more than %d bytes", keys.ErrArmorTooLarge, limit)
	}
	return b, nil
}
