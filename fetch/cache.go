package fetch

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"hash"
	"io"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/airlock-project/airlock/catalog"
	"github.com/airlock-project/airlock/fault"
	"github.com/airlock-project/airlock/progress"
)

// The download cache is a directory holding, for each package,
// DIR/<sha256> once it is complete and verified, and DIR/<sha256>.part while
// it is being downloaded. A rerun skips complete files and continues
// partial ones with a Range request; the prefix already there is hashed
// again, so the digest check still covers every byte. DIR/.lock keeps two
// runs from sharing a cache.
type cache struct {
	dir    string
	unlock func()
}

const (
	partSuffix = ".part"
	lockName   = ".lock"
	copyBuffer = 256 << 10
)

// openCache creates (if needed) and locks the cache directory dir.
func openCache(dir string) (*cache, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("download cache %s: %w; give another --cache", dir, err)
	}
	unlock, err := lockFile(filepath.Join(dir, lockName))
	if err != nil {
		return nil, fmt.Errorf("download cache %s: %w", dir, err)
	}
	return &cache{dir: dir, unlock: sync.OnceFunc(unlock)}, nil
}

// path returns where the complete, verified package d lives.
func (c *cache) path(d catalog.Digest) string { return filepath.Join(c.dir, d.String()) }

func (c *cache) partPath(d catalog.Digest) string { return c.path(d) + partSuffix }

// close releases the lock. Files worth resuming stay; a cache left with
// nothing but its lock is removed.
func (c *cache) close() {
	ents, err := os.ReadDir(c.dir)
	if err == nil && len(ents) == 1 && ents[0].Name() == lockName {
		os.Remove(filepath.Join(c.dir, lockName))
		c.unlock()
		os.Remove(c.dir)
		return
	}
	c.unlock()
}

// remove deletes the files of the given packages, the lock, and the
// directory if that leaves it empty. It is called once the packages are
// safely in a verified bundle.
func (c *cache) remove(ps []catalog.Package) error {
	var errs []error
	for _, p := range ps {
		for _, f := range []string{c.path(p.SHA256), c.partPath(p.SHA256)} {
			if err := os.Remove(f); err != nil && !errors.Is(err, fs.ErrNotExist) {
				errs = append(errs, err)
			}
		}
	}
	os.Remove(filepath.Join(c.dir, lockName))
	c.unlock()
	if err := os.Remove(c.dir); err != nil && !errors.Is(err, fs.ErrNotExist) {
		// Other files (a user's own cache directory): leave them.
		var pe *fs.PathError
		if !errors.As(err, &pe) {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// item is one package to download, with its absolute URL.
type item struct {
	pkg catalog.Package
	url string
}

// downloader fills a cache from the server, in parallel.
type downloader struct {
	c          *client
	cache      *cache
	parallel   int
	retries    int
	retryDelay time.Duration
	progress   progress.Reporter

	mu     sync.Mutex
	gotten int64 // bytes received from the server in this run
}

// fetchAll makes sure the cache holds every item complete and verified. It
// runs at most d.parallel downloads at once and returns the first failure
// (naming the package). A failure of the server's data (verification) stops
// every download at once; an operational one (a broken connection) lets
// the others finish, so that a rerun has less to fetch.
func (d *downloader) fetchAll(ctx context.Context, items []item) error {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	sem := make(chan struct{}, max(d.parallel, 1))
	var (
		wg     sync.WaitGroup
		mu     sync.Mutex
		first  error
		failed int
	)
	fail := func(err error) {
		mu.Lock()
		defer mu.Unlock()
		failed++
		// A verification failure outranks a broken connection: it is the
		// one to report (and its exit code).
		if first == nil || fault.Code(first) == fault.ExitOperational && fault.Code(err) != fault.ExitOperational {
			first = err
		}
		if fault.Code(err) != fault.ExitOperational {
			cancel(err)
		}
	}
loop:
	for _, it := range items {
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
			break loop
		}
		wg.Go(func() {
			defer func() { <-sem }()
			if err := d.fetchRetrying(ctx, it); err != nil {
				fail(err)
			}
		})
	}
	wg.Wait()
	if first != nil && failed > 1 && fault.Code(first) == fault.ExitOperational {
		return fmt.Errorf("%w (and %d more packages did not finish)", first, failed-1)
	}
	if first != nil {
		return first
	}
	return ctx.Err()
}

// fetchRetrying fetches one item, retrying operational failures (a broken
// connection, a 5xx) up to d.retries times; each retry resumes.
func (d *downloader) fetchRetrying(ctx context.Context, it item) error {
	task := d.progress.Start("download "+it.pkg.ID(), it.pkg.Size)
	var err error
	for attempt := 0; ; attempt++ {
		err = d.fetch(ctx, it, task)
		if err == nil || attempt >= d.retries || !retryable(err) || ctx.Err() != nil {
			break
		}
		select {
		case <-ctx.Done():
		case <-time.After(d.retryDelay):
		}
	}
	task.Done(err)
	if err != nil {
		return &PackageError{Package: it.pkg, Err: err}
	}
	return nil
}

// retryable reports whether err is worth another attempt: operational
// failures other than a client-side HTTP refusal.
func retryable(err error) bool {
	if fault.Code(err) != fault.ExitOperational || errors.Is(err, context.Canceled) {
		return false
	}
	var se *ServerError
	if errors.As(err, &se) && se.Status < 500 {
		return false
	}
	return true
}

// fetch makes the cache hold it.pkg complete and verified, resuming what a
// previous attempt left. Verification failures remove the partial file, so
// that the next attempt starts afresh; other failures keep it for resuming.
func (d *downloader) fetch(ctx context.Context, it item, task progress.Task) (err error) {
	p := it.pkg
	final := d.cache.path(p.SHA256)
	if fi, err := os.Stat(final); err == nil && fi.Mode().IsRegular() && fi.Size() == p.Size {
		task.SetCurrent(p.Size)
		return nil // verified when it was completed; bundle.Write checks it again
	}
	os.Remove(final)

	part := d.cache.partPath(p.SHA256)
	f, err := os.OpenFile(part, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return fmt.Errorf("download cache: %w", err)
	}
	defer func() {
		if f != nil {
			if cerr := f.Close(); cerr != nil && err == nil {
				err = fmt.Errorf("download cache: %w", cerr)
			}
		}
		// Data that failed a check is worthless; what a stall or a broken
		// connection left is a prefix worth resuming.
		if err != nil && (fault.Code(err) == fault.ExitVerification || emptyFile(part)) {
			os.Remove(part)
		}
	}()
	h := sha256.New()
	have, err := hashPrefix(f, h, p.Size)
	if err != nil {
		return fmt.Errorf("download cache %s: %w", part, err)
	}
	task.SetCurrent(have)
	if have < p.Size {
		if have, err = d.get(ctx, it, f, h, have, task); err != nil {
			return err
		}
	}
	if got := catalog.SumOf(h); got != p.SHA256 {
		return fmt.Errorf("%w: the server sent %s of data whose sha256 is %s, the vendor's entitlement says %s; the data was discarded: rerun to fetch it again, and if this repeats, report it to the vendor",
			ErrDigest, progress.Bytes(p.Size), got.Short(), p.SHA256.Short())
	}
	// No fsync: a cached file that a power loss damaged is caught by its
	// digest when the bundle is written, dropped, and fetched again.
	cerr := f.Close()
	f = nil
	if cerr != nil {
		return fmt.Errorf("download cache: %w", cerr)
	}
	if err := os.Rename(part, final); err != nil {
		return fmt.Errorf("download cache: %w", err)
	}
	return nil
}

func emptyFile(path string) bool {
	fi, err := os.Stat(path)
	return err == nil && fi.Size() == 0
}

// hashPrefix hashes what f already holds into h and returns its length;
// a file longer than size is emptied (it cannot be a prefix).
func hashPrefix(f *os.File, h hash.Hash, size int64) (int64, error) {
	fi, err := f.Stat()
	if err != nil {
		return 0, err
	}
	if fi.Size() > size {
		return 0, f.Truncate(0)
	}
	n, err := io.CopyBuffer(h, io.NewSectionReader(f, 0, fi.Size()), make([]byte, copyBuffer))
	if err != nil {
		return 0, err
	}
	if n != fi.Size() {
		return 0, io.ErrUnexpectedEOF
	}
	return n, nil
}

// get downloads the rest of the package from offset have into f, hashing
// it into h, and returns the new length. Bytes past the entitled size are
// refused (ErrOversize); a body cut short is an operational error and what
// arrived is kept for the next attempt.
func (d *downloader) get(ctx context.Context, it item, f *os.File, h hash.Hash, have int64, task progress.Task) (int64, error) {
	p := it.pkg
	req, err := http.NewRequest(http.MethodGet, it.url, nil)
	if err != nil {
		return have, err
	}
	if have > 0 {
		req.Header.Set("Range", fmt.Sprintf("bytes=%d-", have))
		req.Header.Set("If-Range", `"`+p.SHA256.String()+`"`)
	}
	resp, err := d.c.do(ctx, req)
	if err != nil {
		return have, fmt.Errorf("download from %s: %w", d.c.base.Redacted(), err)
	}
	defer resp.Body.Close()
	switch {
	case resp.StatusCode == http.StatusOK:
		if have > 0 { // the server ignored the range: start over
			if err := f.Truncate(0); err != nil {
				return have, fmt.Errorf("download cache: %w", err)
			}
			h.Reset()
			have = 0
			task.SetCurrent(0)
		}
	case resp.StatusCode == http.StatusPartialContent && have > 0:
		if err := checkContentRange(resp.Header.Get("Content-Range"), have, p.Size); err != nil {
			return have, err
		}
	default:
		if resp.StatusCode >= 300 && resp.StatusCode < 400 || resp.StatusCode == http.StatusPartialContent {
			return have, fmt.Errorf("%w: status %d to GET %s", ErrProtocol, resp.StatusCode, it.url)
		}
		return have, d.c.serverError("download", resp)
	}
	want := p.Size - have
	if resp.ContentLength > want {
		return have, fmt.Errorf("%w: Content-Length %d, but %d bytes remain of the %s entitled", ErrOversize, resp.ContentLength, want, progress.Bytes(p.Size))
	}
	if resp.ContentLength >= 0 && resp.ContentLength < want {
		return have, fmt.Errorf("%w: Content-Length %d, but %d bytes remain of the %s entitled", ErrProtocol, resp.ContentLength, want, progress.Bytes(p.Size))
	}
	if _, err := f.Seek(have, io.SeekStart); err != nil {
		return have, fmt.Errorf("download cache: %w", err)
	}
	w := io.MultiWriter(f, h, progress.Writer(io.Discard, task))
	n, err := io.CopyBuffer(w, io.LimitReader(resp.Body, want+1), make([]byte, copyBuffer))
	d.mu.Lock()
	d.gotten += n
	d.mu.Unlock()
	if n > want {
		return have, fmt.Errorf("%w: the body runs past the %s entitled", ErrOversize, progress.Bytes(p.Size))
	}
	have += n
	if err != nil {
		var werr *fs.PathError
		if errors.As(err, &werr) {
			return have, fmt.Errorf("download cache: %w", err)
		}
		return have, fmt.Errorf("download from %s, after %s of %s: %w", d.c.base.Redacted(), progress.Bytes(have), progress.Bytes(p.Size), err)
	}
	if n < want {
		return have, fmt.Errorf("download from %s: the connection ended after %s of %s: %w", d.c.base.Redacted(), progress.Bytes(have), progress.Bytes(p.Size), io.ErrUnexpectedEOF)
	}
	return have, nil
}

// checkContentRange requires "bytes FROM-(SIZE-1)/SIZE".
func checkContentRange(v string, from, size int64) error {
	bad := fmt.Errorf("%w: Content-Range %q, asked for bytes %d-%d/%d", ErrProtocol, printable(v), from, size-1, size)
	rest, ok := strings.CutPrefix(v, "bytes ")
	if !ok {
		return bad
	}
	span, total, ok := strings.Cut(rest, "/")
	if !ok {
		return bad
	}
	a, b, ok := strings.Cut(span, "-")
	if !ok {
		return bad
	}
	for _, x := range []struct {
		s    string
		want int64
	}{{a, from}, {b, size - 1}, {total, size}} {
		n, err := strconv.ParseInt(x.s, 10, 64)
		if err != nil || n != x.want {
			return bad
		}
	}
	return nil
}
