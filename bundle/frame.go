package bundle

import (
	"cmp"
	"encoding/binary"
	"fmt"
	"io"
	"sync"
)

// frameGuard sits between the compressed input and the zstd decoder and
// follows the zstd frame structure (RFC 8878) as the bytes go by: frame
// headers, block headers, checksums. Only headers are parsed; block contents
// are skipped, so it costs nothing measurable. It refuses what the decoder
// would accept quietly or only after allocating: skippable frames and
// stray bytes after the last frame (ErrTrailing), a window over the limit
// (ErrCompression), and an input that ends inside a frame (ErrTruncated).
// Decoding itself, checksums included, is the decoder's job.
type frameGuard struct {
	r         io.Reader
	maxWindow uint64

	off    int64 // compressed bytes consumed
	frames int   // complete frames seen
	state  int
	need   int // bytes to collect in buf, or to skip in stSkip
	have   int
	buf    [16]byte
	fhd    byte
	last   bool
	start  int64 // offset of the current frame

	// The errors are read by the Reader's goroutine while the decoder may
	// run this guard in its own.
	mu     sync.Mutex
	err    error // structural error, sticky
	srcErr error // error from r other than io.EOF, sticky
}

// errors returns the structural and the source error, if any.
func (g *frameGuard) errors() (structural, source error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.err, g.srcErr
}

func (g *frameGuard) setErr(dst *error, err error) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	*dst = err
	return err
}

const (
	stMagic = iota
	stDescriptor
	stHeader
	stBlockHeader
	stSkip
	stChecksum
)

const (
	zstdMagic     = 0xFD2FB528
	skippableMask = 0xFFFFFFF0
	skippableBase = 0x184D2A50
	maxBlockSize  = 128 << 10
)

func newFrameGuard(r io.Reader, maxWindow uint64) *frameGuard {
	return &frameGuard{r: r, maxWindow: maxWindow, state: stMagic, need: 4}
}

func (g *frameGuard) Read(p []byte) (int, error) {
	if serr, rerr := g.errors(); serr != nil || rerr != nil {
		return 0, cmp.Or(serr, rerr)
	}
	n, err := g.r.Read(p)
	if n > 0 {
		if perr := g.scan(p[:n]); perr != nil {
			return 0, g.setErr(&g.err, perr)
		}
	}
	switch {
	case err == io.EOF:
		if eerr := g.atEOF(); eerr != nil {
			return 0, g.setErr(&g.err, eerr)
		}
	case err != nil:
		g.setErr(&g.srcErr, err)
	}
	return n, err
}

func (g *frameGuard) atEOF() error {
	switch {
	case g.state == stMagic && g.have == 0 && g.frames > 0:
		return nil
	case g.state == stMagic && g.have == 0:
		return fmt.Errorf("%w: the bundle is empty", ErrTruncated)
	case g.state == stMagic && g.frames > 0:
		return fmt.Errorf("%w: %d stray bytes after the last zstd frame, at compressed offset %d", ErrTrailing, g.have, g.off-int64(g.have))
	default:
		return fmt.Errorf("%w: the compressed stream ends inside a zstd frame (frame at compressed offset %d, end at %d)", ErrTruncated, g.start, g.off)
	}
}

// scan advances the state machine over b.
func (g *frameGuard) scan(b []byte) error {
	for len(b) > 0 {
		if g.state == stSkip || g.state == stChecksum {
			k := min(len(b), g.need)
			b = b[k:]
			g.off += int64(k)
			g.need -= k
			if g.need == 0 {
				g.endSkip()
			}
			continue
		}
		k := min(len(b), g.need-g.have)
		copy(g.buf[g.have:], b[:k])
		b = b[k:]
		g.have += k
		g.off += int64(k)
		if g.have == g.need {
			if err := g.complete(); err != nil {
				return err
			}
		}
	}
	return nil
}

func (g *frameGuard) collect(state, n int) {
	g.state, g.need, g.have = state, n, 0
}

func (g *frameGuard) complete() error {
	switch g.state {
	case stMagic:
		g.start = g.off - 4
		switch m := binary.LittleEndian.Uint32(g.buf[:4]); {
		case m == zstdMagic:
			g.collect(stDescriptor, 1)
		case m&skippableMask == skippableBase:
			return fmt.Errorf("%w: skippable zstd frame at compressed offset %d: bundles never contain one", ErrTrailing, g.start)
		case g.frames == 0:
			return fmt.Errorf("%w: not a zstd stream (no zstd magic number at offset 0)", ErrCompression)
		default:
			return fmt.Errorf("%w: data that is not a zstd frame after the last frame, at compressed offset %d", ErrTrailing, g.start)
		}
	case stDescriptor:
		g.fhd = g.buf[0]
		if g.fhd&0x08 != 0 {
			return fmt.Errorf("%w: zstd frame at compressed offset %d has the reserved bit set", ErrCompression, g.start)
		}
		g.collect(stHeader, g.headerLen())
	case stHeader:
		if w := g.window(); w > g.maxWindow {
			return fmt.Errorf("%w: zstd frame at compressed offset %d needs a window of %d bytes, over the limit of %d", ErrCompression, g.start, w, g.maxWindow)
		}
		g.collect(stBlockHeader, 3)
	case stBlockHeader:
		v := uint32(g.buf[0]) | uint32(g.buf[1])<<8 | uint32(g.buf[2])<<16
		g.last = v&1 != 0
		size := int(v >> 3)
		switch typ := (v >> 1) & 3; {
		case typ == 3:
			return fmt.Errorf("%w: zstd block at compressed offset %d has the reserved type", ErrCompression, g.off-3)
		case size > maxBlockSize:
			return fmt.Errorf("%w: zstd block at compressed offset %d is %d bytes, over the %d maximum", ErrCompression, g.off-3, size, maxBlockSize)
		case typ == 1: // RLE: one byte repeated size times
			size = 1
		}
		g.state, g.need, g.have = stSkip, size, 0
		if size == 0 {
			g.endSkip()
		}
	}
	return nil
}

// endSkip runs when a block body or a checksum has been skipped.
func (g *frameGuard) endSkip() {
	switch {
	case g.state == stSkip && !g.last:
		g.collect(stBlockHeader, 3)
	case g.state == stSkip && g.fhd&0x04 != 0:
		g.state, g.need, g.have = stChecksum, 4, 0
	default:
		g.frames++
		g.collect(stMagic, 4)
	}
}

// headerLen is the length of the frame header after the descriptor:
// window descriptor, dictionary id and frame content size.
func (g *frameGuard) headerLen() int {
	single := g.fhd&0x20 != 0
	n := [4]int{0, 1, 2, 4}[g.fhd&3]
	if !single {
		n++
	}
	switch f := g.fhd >> 6; {
	case f == 0 && single:
		n++
	case f > 0:
		n += 1 << f
	}
	return n
}

// window is the window size the frame header declares; for a single
// segment frame, the content size (at least 1 KiB), as the decoder computes.
func (g *frameGuard) window() uint64 {
	if g.fhd&0x20 == 0 {
		wd := g.buf[0]
		base := uint64(1) << (10 + wd>>3)
		return base + base/8*uint64(wd&7)
	}
	fcs := g.buf[[4]int{0, 1, 2, 4}[g.fhd&3]:g.have]
	var v uint64
	for i := len(fcs) - 1; i >= 0; i-- {
		v = v<<8 | uint64(fcs[i])
	}
	if len(fcs) == 2 {
		v += 256
	}
	return max(v, 1<<10)
}
