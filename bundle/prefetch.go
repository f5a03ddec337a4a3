package bundle

import (
	"errors"
	"io"
)

// prefetcher reads ahead of its consumer in a goroutine of its own, into a
// few recycled buffers, so that decompression (in that goroutine) overlaps
// with tar parsing and hashing (in the consumer's). The zstd library's own
// asynchronous stream decoding was measured slower here than its
// synchronous decoder, which is what this wraps.
//
// Read is for one consumer. stop must be called before the source is used
// by anyone else or closed: it waits for the goroutine to leave Read.
type prefetcher struct {
	full chan prefetchChunk
	free chan []byte
	quit chan struct{}
	done chan struct{}
	cur  []byte // unread part of the chunk being consumed
	last []byte // the chunk being consumed, to recycle
	err  error
}

type prefetchChunk struct {
	b   []byte
	err error
}

const (
	prefetchBuffers = 4
	prefetchSize    = 512 << 10
)

func newPrefetcher(r io.Reader) *prefetcher {
	p := &prefetcher{
		full: make(chan prefetchChunk, prefetchBuffers),
		free: make(chan []byte, prefetchBuffers),
		quit: make(chan struct{}),
		done: make(chan struct{}),
	}
	for i := 0; i < prefetchBuffers; i++ {
		p.free <- make([]byte, prefetchSize)
	}
	go p.run(r)
	return p
}

func (p *prefetcher) run(r io.Reader) {
	defer close(p.done)
	for {
		var buf []byte
		select {
		case buf = <-p.free:
		case <-p.quit:
			return
		}
		n, err := io.ReadFull(r, buf)
		if errors.Is(err, io.ErrUnexpectedEOF) {
			err = io.EOF // a short last chunk: the data, then EOF
		}
		// Deliver before looking at quit: stop wants an error read ahead,
		// and a select between a ready send and a closed quit picks at
		// random. There is always room (chunks in flight never outnumber
		// the buffers), so the send does not block.
		p.full <- prefetchChunk{buf[:n], err}
		if err != nil {
			return
		}
	}
}

// Read returns prefetched data in order, then the source's error.
func (p *prefetcher) Read(b []byte) (int, error) {
	for len(p.cur) == 0 {
		if p.last != nil {
			p.free <- p.last[:cap(p.last)]
			p.last = nil
		}
		if p.err != nil {
			return 0, p.err
		}
		c := <-p.full
		p.cur, p.last, p.err = c.b, c.b, c.err
	}
	n := copy(b, p.cur)
	p.cur = p.cur[n:]
	return n, nil
}

// stop ends the goroutine and waits until it no longer reads the source.
// It returns the error the source had already returned ahead of the
// consumer, if any (a volume found damaged while reading ahead), so that
// the consumer can report the cause rather than a consequence. It is safe
// to call more than once.
func (p *prefetcher) stop() error {
	select {
	case <-p.quit:
	default:
		close(p.quit)
	}
	<-p.done
	for {
		select {
		case c := <-p.full:
			if c.err != nil && c.err != io.EOF {
				return c.err
			}
		default:
			return nil
		}
	}
}
