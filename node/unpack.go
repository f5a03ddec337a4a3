package node

import (
	"archive/tar"
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"sort"
	"strings"

	"github.com/klauspost/compress/zstd"

	"github.com/airlock-project/airlock/catalog"
)

// Unpacking limits and their defaults.
const (
	// DefaultMaxEntries bounds the members of one package archive.
	DefaultMaxEntries = 100_000
	// defaultUnpackSlack is added to four times the package size to give
	// the default bound on the bytes a package may unpack to.
	defaultUnpackSlack = 1 << 30
	// maxMemberName bounds a member name or symlink target.
	maxMemberName = 4096
	// maxDepth bounds the directory depth of a member.
	maxDepth = 128
	// maxLinkHops bounds symlink resolution, as the kernel's ELOOP does.
	maxLinkHops = 40
	// zstdMaxWindow bounds the decompression window (zstd --long=27).
	zstdMaxWindow = 1 << 27
)

// zstdMagic starts every zstd frame.
var zstdMagic = []byte{0x28, 0xB5, 0x2F, 0xFD}

// payloadKind is how a package file is unpacked.
type payloadKind int

const (
	payloadPlain   payloadKind = iota // kept as one file
	payloadTar                        // a tar archive
	payloadTarZstd                    // a zstd-compressed tar archive
)

func (k payloadKind) String() string {
	switch k {
	case payloadTar:
		return "tar"
	case payloadTarZstd:
		return "tar.zst"
	}
	return "plain file"
}

// unpackLimits bound what one package may unpack to.
type unpackLimits struct {
	maxBytes   int64 // total bytes of regular files
	maxEntries int   // members
}

// limitsFor returns the limits for package p under the agent's options.
func (o Options) limitsFor(p catalog.Package) unpackLimits {
	l := unpackLimits{maxBytes: o.MaxUnpack, maxEntries: o.MaxEntries}
	if l.maxBytes <= 0 {
		l.maxBytes = 4*p.Size + defaultUnpackSlack
	}
	if l.maxEntries <= 0 {
		l.maxEntries = DefaultMaxEntries
	}
	return l
}

// isTar reports whether b starts with a ustar (POSIX or GNU) header.
func isTar(b []byte) bool { return len(b) >= 262 && string(b[257:262]) == "ustar" }

func newZstdReader(r io.Reader) (*zstd.Decoder, error) {
	return zstd.NewReader(r, zstd.WithDecoderConcurrency(1), zstd.WithDecoderLowmem(true),
		zstd.WithDecoderMaxWindow(zstdMaxWindow), zstd.WithDecoderMaxMemory(zstdMaxWindow))
}

// detectPayload looks at the first bytes of f (and, for zstd, at the first
// decompressed bytes) to decide how to unpack it. It reads at most a few
// blocks and leaves f's offset alone.
func detectPayload(f *os.File, size int64) payloadKind {
	head := make([]byte, 512)
	n, _ := f.ReadAt(head, 0)
	head = head[:n]
	if isTar(head) {
		return payloadTar
	}
	if !bytes.HasPrefix(head, zstdMagic) {
		return payloadPlain
	}
	dec, err := newZstdReader(io.NewSectionReader(f, 0, size))
	if err != nil {
		return payloadPlain
	}
	defer dec.Close()
	inner := make([]byte, 512)
	n, _ = io.ReadFull(dec, inner)
	if isTar(inner[:n]) {
		return payloadTarZstd
	}
	return payloadPlain
}

// unpack writes package p, read from f, into the empty directory dst,
// reading f once: the same pass hashes it, and its size and SHA-256 must be
// p's. A tar member that is unsafe or over the limits stops it with an error
// matching ErrArchive; data that differs from p, ErrDigest (reported in
// preference, since it means the staged file itself is damaged). On error
// dst holds a partial tree, which the caller removes.
func unpack(ctx context.Context, f *os.File, dst string, p catalog.Package, lim unpackLimits) (payloadKind, error) {
	kind := detectPayload(f, p.Size)
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return kind, err
	}
	h := sha256.New()
	cr := &countReader{r: io.LimitReader(f, p.Size+1)}
	br := bufio.NewReaderSize(ctxReader{ctx, io.TeeReader(cr, h)}, 256<<10)

	root, err := os.OpenRoot(dst)
	if err != nil {
		return kind, err
	}
	defer root.Close()

	var xerr error
	switch kind {
	case payloadPlain:
		xerr = writePlain(root, p.Name, br)
	case payloadTar:
		xerr = extractTar(ctx, tar.NewReader(br), root, lim)
	case payloadTarZstd:
		dec, err := newZstdReader(br)
		if err != nil {
			return kind, err
		}
		xerr = extractTar(ctx, tar.NewReader(dec), root, lim)
		dec.Close()
	}
	if ctx.Err() != nil {
		return kind, ctx.Err()
	}
	// Whatever follows the archive (padding, a trailing frame) is signed
	// content too: hash it.
	if _, err := io.Copy(io.Discard, br); err != nil {
		if ctx.Err() != nil {
			return kind, ctx.Err()
		}
		return kind, fmt.Errorf("read staged package %s: %w", p, err)
	}
	if got := catalog.SumOf(h); cr.n != p.Size || got != p.SHA256 {
		return kind, fmt.Errorf("%w: staged package %s: %d bytes hashing to %s, the vendor signed %d bytes hashing to %s; the staged file is damaged and was dropped: stage the package again with 'airlock distribute'",
			ErrDigest, p, cr.n, got.Short(), p.Size, p.SHA256.Short())
	}
	if xerr != nil {
		var ae *archiveError
		if errors.As(xerr, &ae) {
			return kind, fmt.Errorf("%w: package %s (%s): %s; nothing was installed: report the package to the vendor", ErrArchive, p, kind, ae.msg)
		}
		return kind, fmt.Errorf("unpack package %s: %w", p, xerr)
	}
	return kind, nil
}

// archiveError is a refusal of the archive's content (as opposed to an I/O
// failure of the node); unpack reports it as ErrArchive.
type archiveError struct{ msg string }

func (e *archiveError) Error() string { return e.msg }

func refuse(format string, args ...any) error {
	return &archiveError{msg: fmt.Sprintf(format, args...)}
}

// writePlain keeps a non-archive package as the single file name.
func writePlain(root *os.Root, name string, r io.Reader) error {
	out, err := root.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return err
	}
	_, err = io.Copy(out, r)
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	return err
}

// extractor holds what extractTar has seen of one archive.
type extractor struct {
	root  *os.Root
	lim   unpackLimits
	kinds map[string]byte   // member or implied directory -> 'd', 'f' or 'l'
	links map[string]string // symlink member -> target
	total int64
	count int
}

// extractTar writes the members of tr below root (see the package
// documentation for what is refused). Symlinks are created last, after every
// target has been checked against the whole archive, so that nothing is
// ever written through a link.
func extractTar(ctx context.Context, tr *tar.Reader, root *os.Root, lim unpackLimits) error {
	x := &extractor{root: root, lim: lim, kinds: map[string]byte{".": 'd'}, links: map[string]string{}}
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			var ae *archiveError
			if errors.As(err, &ae) {
				return err
			}
			return refuse("malformed tar after %d members: %v", x.count, err)
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		if err := x.member(hdr, tr); err != nil {
			return err
		}
	}
	return x.finishLinks()
}

// member checks and writes one member.
func (x *extractor) member(hdr *tar.Header, r io.Reader) error {
	if hdr.Typeflag == tar.TypeXGlobalHeader {
		return nil
	}
	x.count++
	if x.count > x.lim.maxEntries {
		return refuse("more than %d members (limit)", x.lim.maxEntries)
	}
	name, err := memberPath(hdr.Name)
	if err != nil {
		return err
	}
	switch hdr.Typeflag {
	case tar.TypeDir:
		if err := x.claim(name, 'd'); err != nil {
			return err
		}
		if name == "." {
			return nil
		}
		return x.root.MkdirAll(name, 0o755)
	case tar.TypeReg:
		if err := x.claim(name, 'f'); err != nil {
			return err
		}
		if hdr.Size < 0 || hdr.Size > x.lim.maxBytes-x.total {
			return refuse("member %q: %d bytes would unpack past the limit of %d bytes", hdr.Name, hdr.Size, x.lim.maxBytes)
		}
		x.total += hdr.Size
		if dir := path.Dir(name); dir != "." {
			if err := x.root.MkdirAll(dir, 0o755); err != nil {
				return err
			}
		}
		mode := os.FileMode(0o644)
		if hdr.Mode&0o111 != 0 {
			mode = 0o755
		}
		out, err := x.root.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_EXCL, mode)
		if err != nil {
			return err
		}
		n, err := io.Copy(out, markReadErrors{io.LimitReader(r, hdr.Size), hdr.Name})
		if cerr := out.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return err
		}
		if n != hdr.Size {
			return refuse("member %q: truncated (%d of %d bytes)", hdr.Name, n, hdr.Size)
		}
		return nil
	case tar.TypeSymlink:
		if err := x.claim(name, 'l'); err != nil {
			return err
		}
		t := hdr.Linkname
		switch {
		case t == "" || len(t) > maxMemberName || strings.ContainsRune(t, 0):
			return refuse("symlink %q: invalid target", hdr.Name)
		case strings.HasPrefix(t, "/"):
			return refuse("symlink %q points to the absolute path %q; only relative links inside the release are allowed", hdr.Name, t)
		}
		x.links[name] = t
		return nil
	case tar.TypeLink:
		return refuse("member %q is a hard link (to %q); hard links are not allowed", hdr.Name, hdr.Linkname)
	case tar.TypeChar, tar.TypeBlock:
		return refuse("member %q is a device node; devices are not allowed", hdr.Name)
	case tar.TypeFifo:
		return refuse("member %q is a fifo; fifos are not allowed", hdr.Name)
	default:
		return refuse("member %q has type %q, which is not allowed (only files, directories and symlinks)", hdr.Name, string(hdr.Typeflag))
	}
}

// memberPath validates a member name and returns it cleaned (relative,
// slash-separated, "." for the archive's root).
func memberPath(name string) (string, error) {
	switch {
	case name == "" || len(name) > maxMemberName || strings.ContainsRune(name, 0):
		return "", refuse("member name %q is empty, too long or contains NUL", name)
	case strings.HasPrefix(name, "/"):
		return "", refuse("member %q has an absolute name", name)
	case strings.ContainsRune(name, '\\'):
		return "", refuse("member %q contains a backslash", name)
	}
	parts := strings.Split(name, "/")
	for _, e := range parts {
		if e == ".." {
			return "", refuse("member %q contains '..'", name)
		}
	}
	if len(parts) > maxDepth {
		return "", refuse("member %q is nested deeper than %d", name, maxDepth)
	}
	return path.Clean(name), nil
}

// claim records name as kind and refuses conflicts: a name seen twice
// (directories excepted), or a member below a file or symlink.
func (x *extractor) claim(name string, kind byte) error {
	for dir := path.Dir(name); ; dir = path.Dir(dir) {
		switch x.kinds[dir] {
		case 'f':
			return refuse("member %q lies below the file %q", name, dir)
		case 'l':
			return refuse("member %q lies below the symlink %q", name, dir)
		}
		x.kinds[dir] = 'd'
		if dir == "." {
			break
		}
	}
	if old, ok := x.kinds[name]; ok && (old != 'd' || kind != 'd') {
		return refuse("member %q appears twice or conflicts with another member", name)
	}
	x.kinds[name] = kind
	return nil
}

// finishLinks checks every symlink against the whole archive and creates it.
func (x *extractor) finishLinks() error {
	names := make([]string, 0, len(x.links))
	for n := range x.links {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		if !resolvesInside(n, x.links) {
			return refuse("symlink %q -> %q points outside the release", n, x.links[n])
		}
	}
	for _, n := range names {
		if dir := path.Dir(n); dir != "." {
			if err := x.root.MkdirAll(dir, 0o755); err != nil {
				return err
			}
		}
		if err := x.root.Symlink(x.links[n], n); err != nil {
			return err
		}
	}
	return nil
}

// resolvesInside reports whether the symlink name, resolved as the kernel
// would through every other symlink of the archive, stays inside the root.
// Components that are not symlinks are directories or files of the archive
// (or absent), whose parent is the lexical parent.
func resolvesInside(name string, links map[string]string) bool {
	var stack []string // resolved components below the root
	if d := path.Dir(name); d != "." {
		stack = strings.Split(d, "/")
	}
	pending := strings.Split(links[name], "/")
	for hops := 0; len(pending) > 0; {
		c := pending[0]
		pending = pending[1:]
		switch c {
		case "", ".":
			continue
		case "..":
			if len(stack) == 0 {
				return false
			}
			stack = stack[:len(stack)-1]
			continue
		}
		p := strings.Join(append(stack[:len(stack):len(stack)], c), "/")
		if t, ok := links[p]; ok {
			hops++
			if hops > maxLinkHops || strings.HasPrefix(t, "/") {
				return false
			}
			pending = append(strings.Split(t, "/"), pending...)
			continue
		}
		stack = append(stack, c)
	}
	return true
}

// markReadErrors turns an error reading a member's data (a corrupt zstd
// frame, a truncated tar) into a refusal of the archive, so that it is not
// mistaken for a failure of the node's own disk.
type markReadErrors struct {
	r    io.Reader
	name string
}

func (m markReadErrors) Read(p []byte) (int, error) {
	n, err := m.r.Read(p)
	if err != nil && err != io.EOF {
		if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
			return n, err
		}
		return n, refuse("member %q: %v", m.name, err)
	}
	return n, err
}

// countReader counts the bytes read through it.
type countReader struct {
	r io.Reader
	n int64
}

func (c *countReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}

// ctxReader fails reads once ctx is done, so that a long copy stops.
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
