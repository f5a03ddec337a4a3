package bundle

import (
	"bytes"
	"errors"
	"os/exec"
	"testing"

	"github.com/klauspost/compress/zstd"
)

// TestParallelFrames writes packages larger than a frame with several
// workers: the stream holds several independent frames, which this
// package's reader, the zstd library and stock zstd read back as one, and
// the sequential and parallel writers carry identical tar streams.
func TestParallelFrames(t *testing.T) {
	payloads := [][]byte{payload(1, 9<<20), payload(2, 1), payload(3, 5<<20+17)}
	f := newFixture(t, payloads...)
	par := f.bundle(t, WriteOptions{Concurrency: 3})
	seq := f.bundle(t, WriteOptions{Concurrency: 1})
	if n := bytes.Count(par, []byte{0x28, 0xb5, 0x2f, 0xfd}); n < 4 {
		t.Fatalf("parallel bundle holds %d frame magics, want at least 4 (14 MiB in 4 MiB frames)", n)
	}
	res, err := readBundle(bytes.NewReader(par), ReadOptions{})
	if err != nil {
		t.Fatalf("reading the parallel bundle: %v", err)
	}
	for i, want := range payloads {
		if !bytes.Equal(res.data[i], want) {
			t.Fatalf("package %d differs after the round trip", i)
		}
	}
	if !bytes.Equal(decompress(t, par), decompress(t, seq)) {
		t.Fatal("parallel and sequential writers produced different tar streams")
	}
	if _, err := exec.LookPath("zstd"); err == nil {
		cmd := exec.Command("zstd", "-t", "-q")
		cmd.Stdin = bytes.NewReader(par)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("stock zstd -t refuses the parallel bundle: %v: %s", err, out)
		}
	}
}

// TestParallelFramesWriteError: a failing destination stops the writer with
// that error and leaks no worker.
func TestParallelFramesWriteError(t *testing.T) {
	fw, err := newFrameWriter(failWriter{}, 2, zstd.WithEncoderLevel(zstd.SpeedDefault))
	if err != nil {
		t.Fatal(err)
	}
	chunk := payload(4, frameSize)
	var werr error
	for i := 0; i < 6 && werr == nil; i++ {
		_, werr = fw.Write(chunk)
	}
	if cerr := fw.Close(); !errors.Is(werr, errRemoved) && !errors.Is(cerr, errRemoved) {
		t.Fatalf("write error not reported: write %v, close %v", werr, cerr)
	}
}

type failWriter struct{}

var errRemoved = errors.New("medium removed")

func (failWriter) Write(p []byte) (int, error) { return 0, errRemoved }

func decompress(t *testing.T, b []byte) []byte {
	t.Helper()
	d, err := zstd.NewReader(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	var out bytes.Buffer
	if _, err := out.ReadFrom(d); err != nil {
		t.Fatal(err)
	}
	return out.Bytes()
}
