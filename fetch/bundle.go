package fetch

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/airlock-project/airlock/bundle"
	"github.com/airlock-project/airlock/catalog"
	"github.com/airlock-project/airlock/fault"
	"github.com/airlock-project/airlock/keys"
	"github.com/airlock-project/airlock/progress"
	"github.com/airlock-project/airlock/verify"
)

// Defaults of BundleOptions.
const (
	DefaultParallel   = 4
	DefaultRetryDelay = 2 * time.Second
	// CacheSuffix names the default download cache: the bundle path
	// followed by it.
	CacheSuffix = ".cache"
)

// BundleOptions are the options of RunBundle.
type BundleOptions struct {
	ServerOptions
	// SignKey is the path of the courier's private key; PassphraseFile, if
	// set, holds its passphrase.
	SignKey        string
	PassphraseFile string
	// Out is the bundle path; with Split > 0 the bundle is written as
	// volumes Out.001, Out.002, … and Out.sha256 (see bundle.CreateFile).
	// Nothing is ever overwritten.
	Out   string
	Split int64
	// Cache is the download directory; "" means Out + CacheSuffix.
	Cache string
	// Parallel is the number of simultaneous downloads; 0 means
	// DefaultParallel.
	Parallel int
	// Retries is how many more times a download that failed for an
	// operational reason (a broken connection, a 5xx) is resumed within
	// this run; RetryDelay (0: DefaultRetryDelay) separates the attempts.
	Retries    int
	RetryDelay time.Duration
	// Write tunes the compression.
	Write bundle.WriteOptions
	// Progress draws downloads, the write and the read-back; nil discards.
	Progress progress.Reporter
	// JSON prints a BundleReport as JSON instead of a summary.
	JSON bool
	// Now is the clock for the manifest's creation time; nil means time.Now.
	Now func() time.Time
}

// BundleReport is what RunBundle prints with --json.
type BundleReport struct {
	// Bundle is the path to give to airlock import (the file or NAME.001);
	// Files lists every file written, volumes and NAME.sha256 included.
	Bundle string   `json:"bundle"`
	Files  []string `json:"files"`
	// The manifest, as signed.
	ID          string            `json:"id"`
	Site        string            `json:"site"`
	KeyID       catalog.KeyID     `json:"key_id"`
	Created     time.Time         `json:"created"`
	Expires     time.Time         `json:"expires"`
	Courier     string            `json:"courier"`
	Entitlement catalog.Digest    `json:"entitlement_sha256"`
	Packages    []catalog.Package `json:"packages"`
	// Downloaded is how many bytes this run received from the server
	// (resumed and cached data excluded); Size is the total of the packages.
	Downloaded int64 `json:"downloaded_bytes"`
	Size       int64 `json:"size"`
	// Acknowledged lists the acknowledgements the server recorded.
	Acknowledged []AckReport `json:"acknowledged"`
}

// AckReport is one acknowledgement.
type AckReport struct {
	Package string         `json:"package"`
	SHA256  catalog.Digest `json:"sha256"`
	// First is false if the server already had it (a rerun).
	First bool `json:"first"`
}

// RunBundle exchanges the download key, downloads every entitled package
// into the cache, writes the courier-signed bundle at o.Out in one streaming
// pass, reads it back from the medium and verifies it completely, and only
// then acknowledges the downloads to the server.
//
// Guarantees: nothing is acknowledged unless the bundle was committed and
// verified; a failure before that leaves no bundle at o.Out and every
// package still downloadable. Downloads resume: complete files in the cache
// are not fetched again, partial ones continue with a Range request, so
// rerunning the same command after an interruption finishes the job. Every
// byte is checked against the entitled size and sha256. After success the
// packages are removed from the cache (and the cache directory, if that
// empties it). Memory does not grow with package size.
func RunBundle(ctx context.Context, o BundleOptions, stdout, stderr io.Writer) error {
	if o.Out == "" {
		return fmt.Errorf("%w: no --out", ErrOptions)
	}
	if o.SignKey == "" {
		return fmt.Errorf("%w: no --sign-key", ErrOptions)
	}
	if o.Split > 0 && o.Split < bundle.MinSplit {
		return fmt.Errorf("%w: --split %d: volumes must be at least %d bytes", ErrOptions, o.Split, bundle.MinSplit)
	}
	if o.Parallel < 0 || o.Retries < 0 {
		return fmt.Errorf("%w: --parallel and --retries must not be negative", ErrOptions)
	}
	// Checked before anything is downloaded, not when the bundle is written.
	if o.Write.Level != 0 && (o.Write.Level < 1 || o.Write.Level > 22) {
		return fmt.Errorf("%w: --level %d: want a zstd level from 1 to 22", ErrOptions, o.Write.Level)
	}
	if err := checkOutputFree(o.Out); err != nil {
		return err
	}
	rep := o.Progress
	if rep == nil {
		rep = progress.Discard
	}
	wait := sync.OnceFunc(rep.Wait)
	defer wait()
	now := time.Now
	if o.Now != nil {
		now = o.Now
	}
	pass, err := keys.ReadPassphraseFile(o.PassphraseFile)
	if err != nil {
		return err
	}
	courier, err := readSignKey(o.SignKey, o.PassphraseFile, pass)
	if err != nil {
		return err
	}
	// A key that cannot sign now is refused before anything is downloaded.
	if err := courier.Public().Validate(now()); err != nil {
		return signKeyDead(o.SignKey, err)
	}

	g, err := obtain(ctx, o.ServerOptions)
	if err != nil {
		return err
	}
	defer g.client.close()
	if courier.Fingerprint() == g.vendor.Fingerprint() {
		// The read-back could not trust one key for both roles: say so
		// before anything is downloaded.
		return fmt.Errorf("%w: --sign-key %s is the vendor's key %s; sign with the courier's own key ('airlock-fetch keygen')", ErrOptions, o.SignKey, courier.Fingerprint())
	}

	cacheDir := o.Cache
	if cacheDir == "" {
		cacheDir = o.Out + CacheSuffix
	}
	c, err := openCache(cacheDir)
	if err != nil {
		return err
	}
	defer c.close()

	d := &downloader{c: g.client, cache: c, parallel: o.Parallel, retries: o.Retries, retryDelay: o.RetryDelay, progress: rep}
	if d.parallel == 0 {
		d.parallel = DefaultParallel
	}
	if d.retryDelay <= 0 {
		d.retryDelay = DefaultRetryDelay
	}
	err = d.fetchAll(ctx, g.items)
	if err != nil {
		wait()
		return notAcknowledged(err)
	}

	m, files, err := writeBundle(ctx, o, g, c, courier, now(), rep)
	if err != nil {
		wait()
		return notAcknowledged(err)
	}
	wait()

	r := BundleReport{Bundle: files[0], Files: files, ID: m.ID, Site: m.Site, KeyID: m.KeyID, Created: m.Created.UTC(), Expires: m.Expires.UTC(),
		Courier: m.Courier, Entitlement: m.Entitlement, Packages: nonNil(m.Packages), Downloaded: d.gotten, Acknowledged: []AckReport{}}
	for _, p := range m.Packages {
		r.Size += p.Size
	}
	var failed []string
	var ackErr error // the first failure, unclassed
	for _, it := range g.items {
		first, err := g.client.ack(ctx, it.url, it.pkg.SHA256)
		if err != nil {
			failed = append(failed, it.pkg.ID())
			if ackErr == nil {
				// Unclassed: whatever the cause, the bundle is good; this is
				// not an interruption to resume nor a refusal of the bundle.
				ackErr = &PackageError{it.pkg, errors.New(err.Error())}
			}
			continue
		}
		r.Acknowledged = append(r.Acknowledged, AckReport{Package: it.pkg.ID(), SHA256: it.pkg.SHA256, First: first})
	}
	// The packages are in a verified bundle: the cache has done its job.
	if err := c.remove(m.Packages); err != nil {
		fmt.Fprintf(stderr, "warning: download cache %s: %v\n", cacheDir, err)
	}
	if o.JSON {
		if err := writeJSON(stdout, r); err != nil {
			return err
		}
	} else {
		printBundle(stdout, r)
	}
	if ackErr != nil {
		more := ""
		if len(failed) > 1 {
			more = fmt.Sprintf(" (and %d more)", len(failed)-1)
		}
		return fmt.Errorf("the bundle %s is complete and verified: import it; but the server did not record the download of %s, so it will offer them again (harmless: the restricted side stores a package once): %w%s",
			r.Bundle, strings.Join(failed, ", "), ackErr, more)
	}
	return nil
}

// notAcknowledged completes the error of a bundle run that stopped before
// any acknowledgement: the packages stay downloadable, and a failure of
// the network or the disk is resumed by a rerun. A refusal by the server
// (a package already delivered) carries the server's own advice, and an
// interruption cliapp's.
func notAcknowledged(err error) error {
	switch {
	case errors.Is(err, context.Canceled), fault.Code(err) == fault.ExitPolicy:
		return err
	case fault.Code(err) == fault.ExitOperational:
		return fmt.Errorf("%w; nothing was acknowledged, so the packages stay downloadable: rerun the same command to resume", err)
	}
	return fmt.Errorf("%w; nothing was acknowledged, so the packages stay downloadable", err)
}

// writeBundle writes the bundle, commits it, and reads it back from the
// medium to verify it. On error nothing is left at o.Out. It returns the
// manifest and the files written, the bundle path first.
func writeBundle(ctx context.Context, o BundleOptions, g *grant, c *cache, courier *keys.PrivateKey, now time.Time, rep progress.Reporter) (bundle.Manifest, []string, error) {
	id, err := bundle.NewBundleID()
	if err != nil {
		return bundle.Manifest{}, nil, err
	}
	m := bundle.Manifest{
		Format:      bundle.ManifestFormat,
		ID:          id,
		Created:     now.UTC().Truncate(time.Second),
		Expires:     g.ent.Expires,
		Site:        g.ent.Site,
		KeyID:       g.ent.KeyID,
		Courier:     courier.Fingerprint().String(),
		Entitlement: catalog.Digest(sha256.Sum256(g.armored)),
		Packages:    g.ent.Packages,
	}
	var total int64
	for _, p := range m.Packages {
		total += p.Size
	}
	out, err := bundle.CreateFile(o.Out, o.Split)
	if err != nil {
		return m, nil, err
	}
	committed := false
	defer func() {
		if !committed || err != nil {
			out.Abort()
		}
	}()
	task := rep.Start("write "+filepath.Base(o.Out), total)
	var current catalog.Package
	open := func(p catalog.Package) (io.ReadCloser, error) {
		current = p
		f, err := os.Open(c.path(p.SHA256))
		if err != nil {
			return nil, err
		}
		return readCloser{progress.Reader(f, task), f}, nil
	}
	err = bundle.Write(ctx, out, m, courier, g.armored, open, o.Write)
	if err == nil {
		err = out.Commit()
	}
	task.Done(err)
	if err != nil {
		if errors.Is(err, bundle.ErrDigest) || errors.Is(err, bundle.ErrSize) {
			// The cached copy went bad after it was verified: fetch it again.
			os.Remove(c.path(current.SHA256))
		}
		return m, nil, fmt.Errorf("write bundle %s: %w", o.Out, err)
	}
	committed = true
	files := out.Paths()
	if err = readBack(ctx, files, g, courier, m.ID, rep); err != nil {
		// Abort does nothing after Commit: remove the bad bundle here.
		for _, f := range files {
			os.Remove(f)
		}
		return m, nil, err
	}
	return m, files, nil
}

// readBack reads the committed bundle from the medium and verifies it as
// the restricted side will: signatures of vendor and courier, the site,
// every digest and size, the end of the archive.
func readBack(ctx context.Context, files []string, g *grant, courier *keys.PrivateKey, id string, rep progress.Reporter) error {
	var size int64
	for _, f := range files {
		if strings.HasSuffix(f, ".sha256") {
			continue
		}
		dropCached(f)
		if fi, err := os.Stat(f); err == nil {
			size += fi.Size()
		}
	}
	trust := keys.NewTrustStore()
	if err := trust.Add(keys.RoleVendor, g.vendor); err != nil {
		return fmt.Errorf("vendor key: %w", err)
	}
	if err := trust.Add(keys.RoleCourier, courier.Public()); err != nil {
		return fmt.Errorf("courier key: %w", err)
	}
	rc, err := bundle.Open(files[0])
	if err != nil {
		return fmt.Errorf("read back bundle %s: %w", files[0], err)
	}
	defer rc.Close()
	task := rep.Start("verify "+filepath.Base(files[0]), size)
	b, err := verify.VerifyBundle(ctx, progress.Reader(rc, task), trust, verify.Policy{Site: g.ent.Site}, nil)
	if err == nil && b.Manifest.ID != id {
		err = fmt.Errorf("%w: read back bundle %s instead of %s", bundle.ErrManifest, b.Manifest.ID, id)
	}
	task.Done(err)
	if err != nil {
		return fmt.Errorf("read back bundle %s from the medium: %w; the medium may be faulty: try another one", files[0], err)
	}
	return nil
}

// checkOutputFree refuses to start if the bundle, its first volume or its
// checksum file exists, or if its directory does not.
func checkOutputFree(out string) error {
	for _, p := range []string{out, out + ".001", out + ".sha256"} {
		if _, err := os.Lstat(p); err == nil {
			return fmt.Errorf("%w: %s: choose another --out, or move the old bundle away first", ErrExists, p)
		}
	}
	dir := filepath.Dir(out)
	if fi, err := os.Stat(dir); err != nil || !fi.IsDir() {
		return fmt.Errorf("--out %s: directory %s does not exist; mount the medium or create the directory", out, dir)
	}
	return nil
}

type readCloser struct {
	io.Reader
	io.Closer
}

func printBundle(w io.Writer, r BundleReport) {
	fmt.Fprintf(w, "bundle %s written and verified: %d packages, %s, for site %s (download key %s)\n",
		r.Bundle, len(r.Packages), progress.Bytes(r.Size), r.Site, r.KeyID)
	if len(r.Files) > 1 {
		fmt.Fprintf(w, "files: %s\n", strings.Join(r.Files, " "))
	}
	fmt.Fprintf(w, "id %s, signed by courier %s, expires %s\n", r.ID, r.Courier, r.Expires.Format(time.RFC3339))
	fmt.Fprintf(w, "downloaded %s; %d of %d downloads acknowledged\n", progress.Bytes(r.Downloaded), len(r.Acknowledged), len(r.Packages))
	fmt.Fprintf(w, "next: carry it to the restricted side and run: airlock import %s\n", r.Bundle)
}
