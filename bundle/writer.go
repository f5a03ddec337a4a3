package bundle

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"runtime"
	"time"

	"github.com/klauspost/compress/zstd"

	"github.com/airlock-project/airlock/catalog"
	"github.com/airlock-project/airlock/fault"
)

// Signer makes the courier's detached signature over the manifest. The keys
// package provides one; tests use fakes.
type Signer interface {
	// SignDetached writes an ASCII-armored detached signature over
	// everything read from data to w.
	SignDetached(w io.Writer, data io.Reader) error
}

// WriteOptions tunes Write. The zero value is good.
type WriteOptions struct {
	// Level is a zstd compression level, 1 to 22, mapped to the nearest
	// level the encoder implements (zstd.EncoderLevelFromZstd); 0 means 3.
	Level int
	// Concurrency is the number of frames compressed at once; 0 means
	// GOMAXPROCS, at most 4. Above 1 the stream is a sequence of independent
	// 4 MiB zstd frames compressed in parallel (see frameWriter); 1 is one
	// frame compressed in the caller's goroutine.
	Concurrency int
}

const (
	defaultLevel          = 3
	maxDefaultConcurrency = 4
	copyBufferSize        = 256 << 10
)

// Write streams a bundle for m to w, which it does not close:
//
//   - manifest.json: m.Encode();
//   - manifest.json.asc: sign's detached signature over those bytes
//     (at most MaxSignatureSize);
//   - entitlement.asc: entitlement exactly as given, whose sha256 must be
//     m.Entitlement (at most MaxEntitlementSize);
//   - packages/<sha256>: for each package of m.Packages in order, the data
//     read once from open(p), which Write closes.
//
// Each package is hashed as it streams to the compressor: a source that is
// shorter, longer or has another sha256 than m lists aborts Write with an
// error wrapping ErrSize or ErrDigest that names the package. Memory does
// not grow with package size. ctx is checked before each member and between
// chunks of package data.
//
// On error, whatever was written to w is not a bundle: discard it (see
// Output.Abort).
func Write(ctx context.Context, w io.Writer, m Manifest, sign Signer, entitlement []byte, open func(catalog.Package) (io.ReadCloser, error), opts WriteOptions) (err error) {
	if sign == nil || open == nil {
		return errors.New("bundle.Write: nil signer or package opener")
	}
	level, conc, err := opts.resolve()
	if err != nil {
		return err
	}
	manifest, err := m.Encode()
	if err != nil {
		return err
	}
	if len(entitlement) > MaxEntitlementSize {
		return fmt.Errorf("%w: entitlement is %d bytes, limit %d", ErrSize, len(entitlement), MaxEntitlementSize)
	}
	if got := catalog.Digest(sha256.Sum256(entitlement)); got != m.Entitlement {
		return fmt.Errorf("%w: entitlement sha256 %s differs from %s listed in the manifest of bundle %s", ErrDigest, got.Short(), m.Entitlement.Short(), m.ID)
	}
	var sig bytes.Buffer
	if err := sign.SignDetached(&limitWriter{w: &sig, n: MaxSignatureSize}, bytes.NewReader(manifest)); err != nil {
		return fmt.Errorf("sign manifest of bundle %s: %w", m.ID, err)
	}

	var enc io.WriteCloser
	zopts := []zstd.EOption{zstd.WithEncoderLevel(zstd.EncoderLevelFromZstd(level)), zstd.WithEncoderCRC(true)}
	if conc > 1 {
		enc, err = newFrameWriter(w, conc, zopts...)
	} else {
		enc, err = zstd.NewWriter(w, append(zopts, zstd.WithEncoderConcurrency(1))...)
	}
	if err != nil {
		return fmt.Errorf("bundle %s: zstd encoder: %w", m.ID, err)
	}
	defer func() {
		if err != nil {
			// The output is abandoned; only the encoder's goroutines matter.
			enc.Close()
		}
	}()
	mtime := m.Created.UTC().Truncate(time.Second)
	tw := tar.NewWriter(enc)
	for _, mem := range []struct {
		name string
		data []byte
	}{{ManifestName, manifest}, {SignatureName, sig.Bytes()}, {EntitlementName, entitlement}} {
		if err := ctx.Err(); err != nil {
			return err
		}
		if err := tw.WriteHeader(memberHeader(mem.name, int64(len(mem.data)), mtime)); err != nil {
			return fmt.Errorf("bundle %s: write %s: %w", m.ID, mem.name, err)
		}
		if _, err := tw.Write(mem.data); err != nil {
			return fmt.Errorf("bundle %s: write %s: %w", m.ID, mem.name, err)
		}
	}
	buf := make([]byte, copyBufferSize)
	for _, p := range m.Packages {
		if err := writePackage(ctx, tw, p, open, mtime, buf); err != nil {
			return err
		}
	}
	if err := tw.Close(); err != nil {
		return fmt.Errorf("bundle %s: finish tar stream: %w", m.ID, err)
	}
	if err := enc.Close(); err != nil {
		return fmt.Errorf("bundle %s: finish zstd stream: %w", m.ID, err)
	}
	return nil
}

func (o WriteOptions) resolve() (level, conc int, err error) {
	level, conc = o.Level, o.Concurrency
	if level == 0 {
		level = defaultLevel
	}
	if level < 1 || level > 22 {
		return 0, 0, fmt.Errorf("%w: compression level %d: want 1 to 22", fault.ErrUsage, o.Level)
	}
	if conc == 0 {
		conc = min(runtime.GOMAXPROCS(0), maxDefaultConcurrency)
	}
	if conc < 0 {
		return 0, 0, fmt.Errorf("%w: compression concurrency %d: want 0 or more", fault.ErrUsage, o.Concurrency)
	}
	return level, conc, nil
}

// memberHeader is the header of every member: a regular file, mode 0644,
// owned by 0:0 with no names, dated mtime. archive/tar picks USTAR, or PAX
// for a size USTAR cannot hold.
func memberHeader(name string, size int64, mtime time.Time) *tar.Header {
	return &tar.Header{
		Typeflag: tar.TypeReg,
		Name:     name,
		Size:     size,
		Mode:     0o644,
		ModTime:  mtime,
	}
}

func writePackage(ctx context.Context, tw *tar.Writer, p catalog.Package, open func(catalog.Package) (io.ReadCloser, error), mtime time.Time, buf []byte) (err error) {
	if err := ctx.Err(); err != nil {
		return err
	}
	rc, err := open(p)
	if err != nil {
		return fmt.Errorf("package %s: open: %w", p, err)
	}
	defer func() {
		if cerr := rc.Close(); cerr != nil && err == nil {
			err = fmt.Errorf("package %s: close: %w", p, cerr)
		}
	}()
	name := PackageMember(p.SHA256)
	if err := tw.WriteHeader(memberHeader(name, p.Size, mtime)); err != nil {
		return fmt.Errorf("package %s: write %s: %w", p, name, err)
	}
	h := sha256.New()
	var n int64
	for n < p.Size {
		if err := ctx.Err(); err != nil {
			return err
		}
		chunk := buf[:min(int64(len(buf)), p.Size-n)]
		k, rerr := rc.Read(chunk)
		if k > 0 {
			h.Write(chunk[:k])
			if _, err := tw.Write(chunk[:k]); err != nil {
				return fmt.Errorf("package %s: write %s: %w", p, name, err)
			}
			n += int64(k)
		}
		if rerr == io.EOF && n < p.Size {
			return fmt.Errorf("%w: package %s: the source has %d bytes, the manifest lists %d: download the package again", ErrSize, p, n, p.Size)
		}
		if rerr != nil && rerr != io.EOF {
			return fmt.Errorf("package %s: read: %w", p, rerr)
		}
	}
	var one [1]byte
	switch k, rerr := io.ReadFull(rc, one[:]); {
	case k > 0:
		return fmt.Errorf("%w: package %s: the source is longer than the %d bytes the manifest lists: download the package again", ErrSize, p, p.Size)
	case rerr != io.EOF:
		return fmt.Errorf("package %s: read: %w", p, rerr)
	}
	if got := catalog.SumOf(h); got != p.SHA256 {
		return fmt.Errorf("%w: package %s: the source's sha256 is %s: download the package again", ErrDigest, p, got.Short())
	}
	return nil
}

// limitWriter fails writes beyond n bytes in total.
type limitWriter struct {
	w io.Writer
	n int64
}

func (l *limitWriter) Write(p []byte) (int, error) {
	if int64(len(p)) > l.n {
		return 0, fmt.Errorf("%w: signature over %d bytes", ErrSize, MaxSignatureSize)
	}
	l.n -= int64(len(p))
	return l.w.Write(p)
}
