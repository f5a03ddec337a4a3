// Package blob is a content-addressed file store: each blob lives at
// DIR/sha256/xx/<64 hex digits>, where xx are its first two digits, and its
// name is the SHA-256 of its content.
//
// A blob is ingested by streaming it into a temporary file in its final
// directory while hashing, fsyncing, and renaming it into place only when
// the caller commits; a crash leaves at most temporary files, which Clean
// removes. A published blob is never modified. A Store is safe for
// concurrent use by several goroutines and processes: the only shared state
// is the file system, and renames are atomic.
package blob

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/airlock-project/airlock/atomicfile"
	"github.com/airlock-project/airlock/catalog"
	"github.com/airlock-project/airlock/fault"
)

// Errors of the store. ErrDigest and ErrSize are of the verification class.
var (
	ErrDigest   = fault.Verification("blob digest mismatch")
	ErrSize     = fault.Verification("blob size mismatch")
	ErrNotFound = errors.New("blob not found")
)

// Store is a content-addressed blob directory.
type Store struct {
	root string // DIR/sha256
}

// Open returns the store rooted at dir, creating dir/sha256 if needed.
func Open(dir string) (*Store, error) {
	root := filepath.Join(dir, "sha256")
	if err := os.MkdirAll(root, 0o755); err != nil {
		return nil, fmt.Errorf("blob store %s: %w", dir, err)
	}
	return &Store{root: root}, nil
}

// Path returns where the blob with digest d lives (whether or not it does).
func (s *Store) Path(d catalog.Digest) string {
	h := d.String()
	return filepath.Join(s.root, h[:2], h)
}

// Stat returns the size of blob d, or an error matching ErrNotFound.
func (s *Store) Stat(d catalog.Digest) (int64, error) {
	fi, err := os.Stat(s.Path(d))
	if errors.Is(err, fs.ErrNotExist) {
		return 0, fmt.Errorf("blob %s: %w", d.Short(), ErrNotFound)
	}
	if err != nil {
		return 0, err
	}
	return fi.Size(), nil
}

// Open opens blob d for reading; the caller closes it.
func (s *Store) Open(d catalog.Digest) (*os.File, error) {
	f, err := os.Open(s.Path(d))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("blob %s: %w", d.Short(), ErrNotFound)
	}
	return f, err
}

// Remove deletes blob d; a missing blob is not an error.
func (s *Store) Remove(d catalog.Digest) error {
	err := os.Remove(s.Path(d))
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	return nil
}

// Pending is a blob written and synced to a temporary file, not yet visible.
type Pending struct {
	Digest catalog.Digest
	Size   int64
	s      *Store
	tmp    string // "" once committed or aborted
}

// Commit publishes the blob under its digest: the blob's directory is made,
// the temporary file is linked into place (never replacing an existing
// blob: same digest, same content) and removed, and the directories are
// synced. A crash between link and remove leaves only a temporary file.
func (p *Pending) Commit() error {
	if p.tmp == "" {
		return errors.New("blob: commit after commit or abort")
	}
	tmp := p.tmp
	p.tmp = ""
	defer os.Remove(tmp)
	dst := p.s.Path(p.Digest)
	dir := filepath.Dir(dst)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("publish blob %s: %w", p.Digest.Short(), err)
	}
	if err := os.Link(tmp, dst); err != nil && !errors.Is(err, fs.ErrExist) {
		return fmt.Errorf("publish blob %s: %w", p.Digest.Short(), err)
	}
	if err := atomicfile.SyncDir(dir); err != nil {
		return err
	}
	return atomicfile.SyncDir(p.s.root)
}

// Abort discards the temporary file. Safe after Commit.
func (p *Pending) Abort() error {
	if p.tmp == "" {
		return nil
	}
	err := os.Remove(p.tmp)
	p.tmp = ""
	return err
}

// Ingest streams r into a temporary file while hashing it. If want is not
// the zero digest the content must hash to it, and if size >= 0 it must be
// exactly that long (a longer stream is cut at size+1 bytes and refused).
// The result is synced but invisible until Commit; on error nothing remains.
// The data is read and written once, whether or not want is known.
func (s *Store) Ingest(ctx context.Context, r io.Reader, want catalog.Digest, size int64) (*Pending, error) {
	return s.ingest(ctx, r, want, size, true)
}

// IngestVerified is Ingest for a stream that verifies itself: r must
// return an error instead of io.EOF unless everything it yielded hashes to
// d, as the package readers of bundle.Reader (and so a verify.Sink's) do.
// The store then does not hash the data a second time; it still checks the
// size. d must not be the zero digest.
func (s *Store) IngestVerified(ctx context.Context, r io.Reader, d catalog.Digest, size int64) (*Pending, error) {
	if d.IsZero() {
		return nil, errors.New("blob: IngestVerified needs the digest the stream verifies")
	}
	return s.ingest(ctx, r, d, size, false)
}

func (s *Store) ingest(ctx context.Context, r io.Reader, want catalog.Digest, size int64, hash bool) (*Pending, error) {
	f, err := os.CreateTemp(s.root, atomicfile.TempPrefix+"ingest-*")
	if err != nil {
		return nil, err
	}
	fail := func(err error) (*Pending, error) {
		f.Close()
		os.Remove(f.Name())
		return nil, err
	}
	if err := f.Chmod(0o444); err != nil {
		return fail(err)
	}
	h := sha256.New()
	var dst io.Writer = f
	if hash {
		dst = io.MultiWriter(f, h)
	}
	src := r
	if size >= 0 {
		src = io.LimitReader(r, size+1)
	}
	n, err := io.Copy(dst, ctxReader{ctx, src})
	if err != nil {
		return fail(err)
	}
	if size >= 0 && n != size {
		return fail(fmt.Errorf("%w: got %d bytes, want %d", ErrSize, n, size))
	}
	got := want
	if hash {
		got = catalog.SumOf(h)
	}
	if !want.IsZero() && got != want {
		return fail(fmt.Errorf("%w: content hashes to %s, want %s", ErrDigest, got.Short(), want.Short()))
	}
	if err := f.Sync(); err != nil {
		return fail(err)
	}
	if err := f.Close(); err != nil {
		os.Remove(f.Name())
		return nil, err
	}
	return &Pending{Digest: got, Size: n, s: s, tmp: f.Name()}, nil
}

// Put ingests r and commits it at once (see Ingest).
func (s *Store) Put(ctx context.Context, r io.Reader, want catalog.Digest, size int64) (catalog.Digest, int64, error) {
	p, err := s.Ingest(ctx, r, want, size)
	if err != nil {
		return catalog.Digest{}, 0, err
	}
	if err := p.Commit(); err != nil {
		return catalog.Digest{}, 0, err
	}
	return p.Digest, p.Size, nil
}

// Verify re-reads blob d and checks its digest (and size, if size >= 0).
func (s *Store) Verify(d catalog.Digest, size int64) error {
	f, err := s.Open(d)
	if err != nil {
		return err
	}
	defer f.Close()
	got, n, err := catalog.DigestReader(f)
	if err != nil {
		return fmt.Errorf("blob %s: %w", d.Short(), err)
	}
	if got != d {
		return fmt.Errorf("blob %s: %w: content hashes to %s", d.Short(), ErrDigest, got.Short())
	}
	if size >= 0 && n != size {
		return fmt.Errorf("blob %s: %w: %d bytes, want %d", d.Short(), ErrSize, n, size)
	}
	return nil
}

// Walk calls fn for every published blob. Files that are neither blobs nor
// temporary files are reported to fn with a zero digest and their path as
// stray, so a checker can name them.
func (s *Store) Walk(fn func(d catalog.Digest, size int64, stray string) error) error {
	return filepath.WalkDir(s.root, func(path string, e fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if path == s.root {
			return nil
		}
		if e.IsDir() {
			if len(e.Name()) != 2 || filepath.Dir(path) != s.root {
				return fn(catalog.Digest{}, 0, path)
			}
			return nil
		}
		if strings.HasPrefix(e.Name(), atomicfile.TempPrefix) {
			return nil
		}
		d, perr := catalog.ParseDigest(e.Name())
		if perr != nil || filepath.Base(filepath.Dir(path)) != e.Name()[:2] || !e.Type().IsRegular() {
			return fn(catalog.Digest{}, 0, path)
		}
		fi, err := e.Info()
		if err != nil {
			return err
		}
		return fn(d, fi.Size(), "")
	})
}

// Clean removes temporary files left by an interrupted ingest and returns
// how many it removed. Call it only while no ingest is running (under the
// owner's lock).
func (s *Store) Clean() (int, error) {
	n := 0
	err := filepath.WalkDir(s.root, func(path string, e fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !e.IsDir() && strings.HasPrefix(e.Name(), atomicfile.TempPrefix) {
			if err := os.Remove(path); err != nil {
				return err
			}
			n++
		}
		return nil
	})
	return n, err
}

type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}
