package bundle

import (
	"bytes"
	"errors"
	"io"
	"sync"

	"github.com/klauspost/compress/zstd"
)

// frameSize is how much of the tar stream goes into one zstd frame when
// compressing in parallel. Frames are independent, so each costs a little
// ratio; 4 MiB keeps that loss small (matches stay within the default
// window) and the memory in flight at (workers+1) × 2 × frameSize.
const frameSize = 4 << 20

// frameWriter compresses its input as a sequence of independent zstd
// frames, several at a time, and writes them to w in input order. A zstd
// stream may hold any number of frames (RFC 8878 §3.1), and stock zstd, tar
// --zstd and the Reader of this package read them as one stream. It exists
// because one zstd stream is compressed by one goroutine at a time: on a
// machine with two cores that halves the throughput of writing a bundle.
//
// It is not safe for concurrent use. Close flushes; after an error every
// call returns it.
type frameWriter struct {
	w     io.Writer
	encs  chan *zstd.Encoder // idle encoders, one per worker
	bufs  chan []byte        // idle input buffers
	outs  chan *bytes.Buffer // idle output buffers
	cur   []byte             // input being filled
	queue []chan frameResult // frames in flight, oldest first
	max   int                // frames in flight at most
	err   error
	once  sync.Once
}

type frameResult struct {
	in  []byte
	out *bytes.Buffer
	err error
}

func newFrameWriter(w io.Writer, workers int, opts ...zstd.EOption) (*frameWriter, error) {
	fw := &frameWriter{w: w, encs: make(chan *zstd.Encoder, workers), bufs: make(chan []byte, workers+1),
		outs: make(chan *bytes.Buffer, workers+1), max: workers}
	opts = append(opts, zstd.WithEncoderConcurrency(1), zstd.WithWindowSize(frameSize))
	for i := 0; i < workers; i++ {
		enc, err := zstd.NewWriter(nil, opts...)
		if err != nil {
			return nil, err
		}
		fw.encs <- enc
	}
	for i := 0; i < workers+1; i++ {
		fw.bufs <- make([]byte, 0, frameSize)
		out := new(bytes.Buffer)
		out.Grow(frameSize + frameSize/16) // incompressible data grows a little
		fw.outs <- out
	}
	fw.cur = <-fw.bufs
	return fw, nil
}

// Write buffers p and hands every full frame to a worker.
func (fw *frameWriter) Write(p []byte) (int, error) {
	if fw.err != nil {
		return 0, fw.err
	}
	n := 0
	for len(p) > 0 {
		k := copy(fw.cur[len(fw.cur):cap(fw.cur)], p)
		fw.cur = fw.cur[:len(fw.cur)+k]
		p = p[k:]
		n += k
		if len(fw.cur) == cap(fw.cur) {
			if err := fw.submit(); err != nil {
				return n, err
			}
		}
	}
	return n, nil
}

// submit starts compressing the current buffer and, when too many frames
// are in flight, writes out the oldest, which also frees its buffer.
func (fw *frameWriter) submit() error {
	in := fw.cur
	res := make(chan frameResult, 1)
	fw.queue = append(fw.queue, res)
	enc := <-fw.encs
	out := <-fw.outs
	go func() {
		// A streaming encoder reset per frame: EncodeAll is tuned for small
		// inputs and is many times slower on megabytes.
		out.Reset()
		enc.Reset(out)
		_, err := enc.Write(in)
		if cerr := enc.Close(); err == nil {
			err = cerr
		}
		fw.encs <- enc
		res <- frameResult{in: in, out: out, err: err}
	}()
	for len(fw.queue) > fw.max {
		if err := fw.flushOldest(); err != nil {
			return err
		}
	}
	fw.cur = (<-fw.bufs)[:0]
	return nil
}

func (fw *frameWriter) flushOldest() error {
	r := <-fw.queue[0]
	fw.queue = fw.queue[1:]
	defer func() {
		fw.bufs <- r.in[:0]
		fw.outs <- r.out
	}()
	if fw.err == nil && r.err != nil {
		fw.err = r.err
	}
	if fw.err != nil {
		return fw.err
	}
	if _, err := fw.w.Write(r.out.Bytes()); err != nil {
		fw.err = err
	}
	return fw.err
}

// Close compresses what is buffered, writes every frame in order and
// releases the encoders. It does not close w.
func (fw *frameWriter) Close() error {
	if fw.err == nil && len(fw.cur) > 0 {
		fw.submit()
	}
	for len(fw.queue) > 0 {
		fw.flushOldest()
	}
	fw.release()
	if fw.err == nil {
		fw.err = errClosed
		return nil
	}
	if fw.err == errClosed {
		return nil
	}
	return fw.err
}

// release closes the encoders once all workers have returned them.
func (fw *frameWriter) release() {
	fw.once.Do(func() {
		for len(fw.queue) > 0 { // abandoned frames: wait for their workers
			r := <-fw.queue[0]
			fw.queue = fw.queue[1:]
			fw.bufs <- r.in[:0]
			fw.outs <- r.out
		}
		for i := 0; i < cap(fw.encs); i++ {
			(<-fw.encs).Close()
		}
	})
}

var errClosed = errors.New("bundle: write after close")
