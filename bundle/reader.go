package bundle

import (
	"archive/tar"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"hash"
	"io"
	"path"
	"slices"
	"strings"
	"sync"

	"github.com/klauspost/compress/zstd"

	"github.com/airlock-project/airlock/catalog"
	"github.com/airlock-project/airlock/fault"
)

// ReadOptions bounds what a Reader accepts. The zero value is good.
type ReadOptions struct {
	// MaxWindow is the largest zstd window accepted, which bounds the
	// decoder's memory; 0 means 8 MiB (what Write produces at any level).
	MaxWindow uint64
	// MaxHeader bounds manifest.json and entitlement.asc; 0 means 4 MiB.
	// manifest.json.asc is bounded by the smaller of MaxHeader and 64 KiB.
	MaxHeader int64
}

const (
	defaultMaxWindow = 8 << 20
	blockSize        = 512
	// maxHeaderBytes bounds what one tar header may occupy, PAX extended
	// headers included, so that a hostile stream of headers cannot run on.
	maxHeaderBytes = 64 << 10
	// maxZeroPadding bounds the zeros accepted after the end-of-archive
	// marker (GNU tar pads to 10 KiB records; 1 MiB covers any blocking
	// factor in use).
	maxZeroPadding = 1 << 20
	// decoderConcurrency is the blocks the zstd decoder keeps in flight: 1,
	// synchronous, which a prefetcher runs in a goroutine of its own (see
	// prefetcher: measured faster than the library's async mode).
	decoderConcurrency = 1
)

// Header holds the raw bytes of the first three members. Nothing in it is
// trusted: verify checks the signature over Manifest and decodes it before
// anything else is believed.
type Header struct {
	Manifest    []byte
	ManifestSig []byte
	Entitlement []byte
}

// Reader reads a bundle strictly, in one pass, with bounded memory. It is
// not safe for concurrent use. See the package documentation for its
// contract.
type Reader struct {
	src   io.Reader
	guard *frameGuard
	dec   *zstd.Decoder
	pre   *prefetcher
	cnt   *countReader
	tr    *tar.Reader
	buf   []byte

	dataEnd  int64           // offset just after the data of the last member read
	member   string          // member being read, for messages
	seen     []string        // members read so far, in order
	expected map[string]bool // package members expected, once Packages runs
	used     bool            // Packages was called
	err      error           // sticky failure
}

// NewReader starts reading a bundle from r (a file, or the io.ReadCloser of
// Open): it reads and checks the first three members — manifest.json,
// manifest.json.asc, entitlement.asc, in this order, regular files within
// their size limits — and returns their raw bytes. It trusts none of them.
//
// The caller keeps ownership of r and closes it after Close. On error the
// Reader is released and nil.
func NewReader(r io.Reader, opts ReadOptions) (*Reader, Header, error) {
	maxWindow := opts.MaxWindow
	if maxWindow == 0 {
		maxWindow = defaultMaxWindow
	}
	if maxWindow < zstd.MinWindowSize {
		return nil, Header{}, fmt.Errorf("%w: zstd window limit %d is under %d", fault.ErrUsage, maxWindow, zstd.MinWindowSize)
	}
	maxHeader := opts.MaxHeader
	if maxHeader == 0 {
		maxHeader = MaxManifestSize
	}
	if maxHeader < 0 {
		return nil, Header{}, fmt.Errorf("%w: header limit %d is negative", fault.ErrUsage, maxHeader)
	}
	guard := newFrameGuard(r, maxWindow)
	dec, err := zstd.NewReader(guard, zstd.WithDecoderConcurrency(decoderConcurrency), zstd.WithDecoderLowmem(true),
		zstd.WithDecoderMaxWindow(maxWindow), zstd.WithDecoderMaxMemory(maxWindow))
	if err != nil {
		return nil, Header{}, fmt.Errorf("zstd decoder: %w", err)
	}
	pre := newPrefetcher(dec)
	cnt := &countReader{r: pre, budget: -1}
	br := &Reader{src: r, guard: guard, dec: dec, pre: pre, cnt: cnt, tr: tar.NewReader(cnt)}

	var h Header
	for _, m := range []struct {
		name  string
		limit int64
		dst   *[]byte
	}{
		{ManifestName, maxHeader, &h.Manifest},
		{SignatureName, min(maxHeader, MaxSignatureSize), &h.ManifestSig},
		{EntitlementName, maxHeader, &h.Entitlement},
	} {
		if *m.dst, err = br.readSmall(m.name, m.limit); err != nil {
			br.Close()
			return nil, Header{}, err
		}
	}
	return br, h, nil
}

// readSmall reads a header member whole.
func (r *Reader) readSmall(name string, limit int64) ([]byte, error) {
	hdr, err := r.next(name)
	if err != nil {
		return nil, err
	}
	if hdr.Size > limit {
		return nil, r.fail(r.memberErr(name, fmt.Errorf("%w: declares %d bytes, limit %d", ErrSize, hdr.Size, limit)))
	}
	b := make([]byte, hdr.Size)
	if _, err := io.ReadFull(r.tr, b); err != nil {
		return nil, r.fail(r.streamErr(err))
	}
	r.dataEnd = r.cnt.n
	return b, nil
}

// next reads the next member header and requires it to be want, a regular
// file with a safe name. The end of the archive is an error too: want is
// missing (or the stream is truncated).
func (r *Reader) next(want string) (*tar.Header, error) {
	if r.err != nil {
		return nil, r.err
	}
	hdr, err := r.nextHeader()
	if err == io.EOF {
		if err := r.checkEndOfArchive(); err != nil {
			return nil, err
		}
		return nil, r.fail(r.memberErr(want, fmt.Errorf("%w: missing: the archive ends after %d members", ErrMember, len(r.seen))))
	}
	if err != nil {
		return nil, err
	}
	if err := r.checkHeader(hdr, want); err != nil {
		return nil, r.fail(err)
	}
	r.seen = append(r.seen, want)
	r.member = want
	return hdr, nil
}

// nextHeader calls tar's Next with the header budget and padding checks
// armed. It returns io.EOF as is, other errors classified.
func (r *Reader) nextHeader() (*tar.Header, error) {
	r.member = ""
	r.cnt.zeroUntil = roundBlock(r.dataEnd)
	r.cnt.budget = r.cnt.n + maxHeaderBytes
	r.cnt.zeroRun = 0
	hdr, err := r.tr.Next()
	r.cnt.budget = -1
	if err == io.EOF && r.cnt.err == nil {
		return nil, io.EOF
	}
	if err != nil {
		return nil, r.fail(r.streamErr(err))
	}
	return hdr, nil
}

// checkHeader applies the member rules to hdr; want is the expected name.
func (r *Reader) checkHeader(hdr *tar.Header, want string) error {
	name := hdr.Name
	if reason := unsafeName(name); reason != "" {
		return r.memberErr(name, fmt.Errorf("%w: unsafe name (%s) where %q was expected", ErrMember, reason, want))
	}
	if hdr.Typeflag != tar.TypeReg {
		return r.memberErr(name, fmt.Errorf("%w: %s, not a regular file", ErrMember, typeName(hdr.Typeflag)))
	}
	for k := range hdr.PAXRecords {
		if strings.HasPrefix(k, "GNU.sparse.") {
			return r.memberErr(name, fmt.Errorf("%w: a sparse file, not a plain regular file", ErrMember))
		}
	}
	if hdr.Format != tar.FormatUSTAR && hdr.Format != tar.FormatPAX {
		return r.memberErr(name, fmt.Errorf("%w: tar header format %v, want USTAR or PAX", ErrMember, hdr.Format))
	}
	if hdr.Linkname != "" {
		return r.memberErr(name, fmt.Errorf("%w: a regular file with a link name", ErrMember))
	}
	if name != want {
		var why string
		switch {
		case slices.Contains(r.seen, name):
			why = "a duplicate of an earlier member"
		case name == ManifestName || name == SignatureName || name == EntitlementName || r.expected[name]:
			why = "out of order, or a member before it is missing"
		case strings.HasPrefix(name, "packages/") && r.expected != nil:
			why = "a package the manifest does not list"
		case strings.HasPrefix(name, "packages/"):
			why = "a package where a header member belongs"
		default:
			why = "not a member of a bundle"
		}
		return r.memberErr(name, fmt.Errorf("%w: %s (expected %q)", ErrMember, why, want))
	}
	return nil
}

// Packages reads the package members. Call it once, after verifying the
// header, with the verified package list in manifest order.
//
// For each package p of expect, in order, the next member must be
// packages/<p.SHA256> of a regular file of p.Size bytes. fn is called with p
// and a reader of exactly that member's data; it must not keep the reader
// after it returns. The reader's last Read returns io.EOF only if the data's
// sha256 is p.SHA256, and an error wrapping ErrDigest otherwise: treat no
// byte as verified until then. If fn returns nil without reading to the
// end, Packages reads and verifies the rest itself. An error from fn stops
// Packages and is returned as is.
//
// After the last package, the archive must end: the tar end-of-archive
// marker, nothing but zero padding, the end of the zstd stream and of the
// input. Packages returns nil only if all of it held. ctx is checked between
// chunks.
func (r *Reader) Packages(ctx context.Context, expect []catalog.Package, fn func(p catalog.Package, data io.Reader) error) error {
	if r.err != nil {
		return r.err
	}
	if r.used {
		return errors.New("bundle: Packages called twice on one Reader")
	}
	r.used = true
	if err := catalog.ValidatePackages(expect); err != nil {
		return err
	}
	r.expected = make(map[string]bool, len(expect))
	for _, p := range expect {
		r.expected[PackageMember(p.SHA256)] = true
	}
	if r.buf == nil {
		r.buf = *bufPool.Get().(*[]byte)
	}
	for _, p := range expect {
		if err := ctx.Err(); err != nil {
			return err
		}
		name := PackageMember(p.SHA256)
		hdr, err := r.next(name)
		if err != nil {
			return err
		}
		if hdr.Size != p.Size {
			return r.fail(r.memberErr(name, fmt.Errorf("%w: declares %d bytes, package %s is %d bytes", ErrSize, hdr.Size, p, p.Size)))
		}
		mr := &memberReader{r: r, ctx: ctx, p: p, name: name, left: p.Size, h: sha256.New()}
		if err := fn(p, mr); err != nil {
			return err
		}
		if mr.err == nil {
			if _, err := io.CopyBuffer(io.Discard, onlyReader{mr}, r.buf); err != nil {
				return err
			}
		}
		if mr.err != io.EOF {
			return mr.err
		}
		r.dataEnd = r.cnt.n
	}
	return r.finish()
}

// finish checks the end of the archive and of the streams.
func (r *Reader) finish() error {
	hdr, err := r.nextHeader()
	if err == nil {
		return r.fail(r.memberErr(hdr.Name, fmt.Errorf("%w: an extra member after the last package", ErrMember)))
	}
	if err != io.EOF {
		return err
	}
	if err := r.checkEndOfArchive(); err != nil {
		return err
	}
	// Zero padding (whole blocks, bounded), then the end of the zstd stream.
	var pad int64
	for {
		n, err := r.cnt.Read(r.buf[:min(int64(len(r.buf)), maxZeroPadding+1-pad)])
		for i, c := range r.buf[:n] {
			if c != 0 {
				return r.fail(&MemberError{Offset: r.cnt.n - int64(n) + int64(i), Err: fmt.Errorf("%w: data after the tar end-of-archive marker", ErrTrailing)})
			}
		}
		pad += int64(n)
		if pad > maxZeroPadding {
			return r.fail(&MemberError{Offset: r.cnt.n, Err: fmt.Errorf("%w: more than %d bytes of padding after the tar end-of-archive marker", ErrTrailing, maxZeroPadding)})
		}
		if err == io.EOF {
			break
		}
		if err != nil {
			return r.fail(r.streamErr(err))
		}
	}
	if pad%blockSize != 0 {
		return r.fail(&MemberError{Offset: r.cnt.n, Err: fmt.Errorf("%w: %d bytes of padding after the tar end-of-archive marker, not whole 512-byte blocks", ErrTrailing, pad)})
	}
	r.err = errors.New("bundle: Reader already read to the end")
	return nil
}

// checkEndOfArchive runs when tar reports the end of the archive. tar says
// io.EOF both after the two zero blocks and at a bare end of input; only the
// former is a complete bundle.
func (r *Reader) checkEndOfArchive() error {
	if r.cnt.n == roundBlock(r.dataEnd)+2*blockSize && r.cnt.zeroRun >= 2*blockSize {
		return nil
	}
	return r.fail(&MemberError{Offset: r.cnt.n, Err: fmt.Errorf("%w: the tar stream ends without its end-of-archive marker", ErrTruncated)})
}

// Close stops the decoder (which decodes ahead in goroutines of its own)
// and releases its memory. Call it whatever happened, before closing the
// source, which it does not close. It is safe to call more than once.
func (r *Reader) Close() error {
	r.stopDecoder()
	if r.buf != nil {
		buf := r.buf
		r.buf = nil
		bufPool.Put(&buf)
	}
	if r.err == nil {
		r.err = errors.New("bundle: Reader is closed")
	}
	return nil
}

// memberErr makes a MemberError at the current offset.
func (r *Reader) memberErr(name string, err error) error {
	return &MemberError{Member: shorten(name), Offset: r.cnt.n, Err: err}
}

// streamErr classifies an error from reading the tar stream, by where it
// came from: the decoder (and below it the frame guard and the source), the
// padding and header checks, or tar itself.
func (r *Reader) streamErr(err error) error {
	var ve *VolumeError
	if derr := r.cnt.err; derr != nil {
		gerr, serr := r.guard.errors()
		switch {
		case errors.As(derr, &ve):
			return ve
		case serr != nil && errors.As(serr, &ve):
			return ve
		case serr != nil:
			return fmt.Errorf("read bundle: %w", serr)
		case gerr != nil:
			return &MemberError{Member: shorten(r.member), Offset: r.cnt.n, Err: gerr}
		default:
			return &MemberError{Member: shorten(r.member), Offset: r.cnt.n, Err: fmt.Errorf("%w: %v", ErrCompression, derr)}
		}
	}
	switch {
	case errors.Is(err, errHeaderBudget):
		return &MemberError{Offset: r.cnt.n, Err: fmt.Errorf("%w: a tar header over %d bytes", ErrMember, maxHeaderBytes)}
	case errors.Is(err, errPadding):
		return &MemberError{Member: r.previous(), Offset: r.cnt.n, Err: fmt.Errorf("%w: non-zero bytes in the padding after the member's data", ErrMember)}
	case errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF):
		return &MemberError{Member: shorten(r.member), Offset: r.cnt.n, Err: fmt.Errorf("%w: the stream ends inside a member or header", ErrTruncated)}
	default:
		return &MemberError{Member: shorten(r.member), Offset: r.cnt.n, Err: fmt.Errorf("%w: malformed tar header: %v", ErrMember, err)}
	}
}

func (r *Reader) previous() string {
	if len(r.seen) == 0 {
		return ""
	}
	return r.seen[len(r.seen)-1]
}

// stopDecoder stops the prefetching goroutine, then the decoder, so that
// neither reads the source any more. It returns an error the source
// returned ahead of the consumer, if any.
func (r *Reader) stopDecoder() (ahead error) {
	if r.pre != nil {
		ahead = r.pre.stop()
		r.pre = nil
	}
	if r.dec != nil {
		r.dec.Close()
		r.dec = nil
	}
	return ahead
}

// fail records err as the Reader's sticky error. If the source is a split
// bundle (see Open and VolumeChecker) and err reveals damage, it first has
// the current volume hashed to its end, so that a damaged volume is named.
func (r *Reader) fail(err error) error {
	if r.err != nil {
		return r.err
	}
	var ve *VolumeError
	if vc, ok := r.src.(VolumeChecker); ok && !errors.As(err, &ve) && errors.Is(err, fault.ErrVerification) {
		// Stop the decoder first: it may be reading the source. Reading
		// ahead, it may already have met the end of the damaged volume.
		verr := r.stopDecoder()
		if !errors.As(verr, &ve) {
			verr = vc.CheckVolume()
		}
		if errors.As(verr, &ve) {
			err = &VolumeError{Volume: ve.Volume, Err: fmt.Errorf("%w (reading it failed: %w)", ve.Err, err)}
		}
	}
	r.err = err
	return err
}

// VolumeChecker is implemented by the reader Open returns for a split
// bundle. When a Reader finds damage, it calls CheckVolume on its source,
// if the source implements it, and reports the *VolumeError it returns
// (wrapping the damage found) instead of a damaged bundle.
//
// A wrapper around Open's reader, such as a progress counter, hides it:
// such a wrapper should implement VolumeChecker by calling the wrapped
// reader's, or the damage is blamed on the bundle rather than on the volume.
type VolumeChecker interface {
	// CheckVolume reads the volume being read to its end and returns a
	// *VolumeError if its sha256 differs from the listed one, nil if it
	// matches or no volume is being read. The reader is spent afterwards.
	CheckVolume() error
}

// memberReader yields one package member's data, hashing it.
type memberReader struct {
	r    *Reader
	ctx  context.Context
	p    catalog.Package
	name string
	left int64
	h    hash.Hash
	err  error // io.EOF once verified
}

func (m *memberReader) Read(b []byte) (int, error) {
	if m.err != nil {
		return 0, m.err
	}
	if m.left == 0 {
		if got := catalog.SumOf(m.h); got != m.p.SHA256 {
			m.err = m.r.fail(m.r.memberErr(m.name, fmt.Errorf("%w: the data's sha256 is %s, package %s", ErrDigest, got.Short(), m.p)))
		} else {
			m.err = io.EOF
		}
		return 0, m.err
	}
	if err := m.ctx.Err(); err != nil {
		m.err = err
		m.r.err = err
		return 0, err
	}
	if int64(len(b)) > m.left {
		b = b[:m.left]
	}
	n, err := m.r.tr.Read(b)
	m.h.Write(b[:n])
	m.left -= int64(n)
	if err != nil && !(err == io.EOF && m.left == 0) {
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		m.err = m.r.fail(m.r.streamErr(err))
		return n, m.err
	}
	return n, nil
}

// WriteTo lets io.Copy use the Reader's large buffer.
func (m *memberReader) WriteTo(w io.Writer) (int64, error) {
	var total int64
	for {
		n, err := m.Read(m.r.buf)
		if n > 0 {
			k, werr := w.Write(m.r.buf[:n])
			total += int64(k)
			if werr != nil {
				return total, werr
			}
		}
		if err == io.EOF {
			return total, nil
		}
		if err != nil {
			return total, err
		}
	}
}

// bufPool holds the copy buffers of Readers.
var bufPool = sync.Pool{New: func() any { b := make([]byte, copyBufferSize); return &b }}

// onlyReader hides WriteTo, so that io.CopyBuffer uses the buffer given.
type onlyReader struct{ io.Reader }

var (
	errHeaderBudget = errors.New("tar header too large")
	errPadding      = errors.New("non-zero tar padding")
)

// countReader counts the uncompressed bytes read, enforces the header
// budget and checks that the tar padding is zero.
type countReader struct {
	r         io.Reader
	n         int64
	budget    int64 // when >= 0, reading past this offset fails
	zeroUntil int64 // bytes before this offset must be zero
	zeroRun   int64 // zero bytes at the end of what was read with a budget
	err       error // first error from r other than io.EOF
}

func (c *countReader) Read(p []byte) (int, error) {
	if c.budget >= 0 {
		if c.n >= c.budget {
			return 0, errHeaderBudget
		}
		if int64(len(p)) > c.budget-c.n {
			p = p[:c.budget-c.n]
		}
	}
	n, err := c.r.Read(p)
	if err != nil && err != io.EOF && c.err == nil {
		c.err = err
	}
	if c.n < c.zeroUntil {
		for _, b := range p[:min(int64(n), c.zeroUntil-c.n)] {
			if b != 0 {
				c.n += int64(n)
				return 0, errPadding
			}
		}
	}
	if c.budget >= 0 {
		// Headers are small: finding the trailing zeros costs nothing, and
		// tells a true end-of-archive marker from a header cut short.
		i := n
		for i > 0 && p[i-1] == 0 {
			i--
		}
		if i == 0 {
			c.zeroRun += int64(n)
		} else {
			c.zeroRun = int64(n - i)
		}
	}
	c.n += int64(n)
	return n, err
}

func roundBlock(n int64) int64 { return (n + blockSize - 1) &^ (blockSize - 1) }

// unsafeName says why a member name could be dangerous as a path, or "".
// Names are never used as paths; this only makes the error precise.
func unsafeName(name string) string {
	switch {
	case name == "":
		return "empty"
	case strings.ContainsRune(name, 0):
		return "contains NUL"
	case strings.Contains(name, "\\"):
		return "contains a backslash"
	case strings.HasPrefix(name, "/"):
		return "absolute"
	case slices.Contains(strings.Split(name, "/"), ".."):
		return "contains .."
	case path.Clean(name) != name:
		return "not clean"
	}
	return ""
}

func typeName(t byte) string {
	switch t {
	case tar.TypeSymlink:
		return "a symbolic link"
	case tar.TypeLink:
		return "a hard link"
	case tar.TypeDir:
		return "a directory"
	case tar.TypeChar:
		return "a character device"
	case tar.TypeBlock:
		return "a block device"
	case tar.TypeFifo:
		return "a FIFO"
	case tar.TypeGNUSparse:
		return "a sparse file"
	case tar.TypeXGlobalHeader:
		return "a PAX global header"
	case tar.TypeCont:
		return "a contiguous file"
	default:
		return fmt.Sprintf("of type %q", t)
	}
}
