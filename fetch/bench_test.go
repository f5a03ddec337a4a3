package fetch

import (
	"context"
	"io"
	"path/filepath"
	"strconv"
	"testing"
)

// BenchmarkBundle measures the whole bundle command on loopback: exchange,
// four parallel downloads of 16 MiB each (random, incompressible data),
// the streaming write, the read-back verification and the acks. Bytes per
// operation are the package bytes, so the MB/s is end-to-end throughput.
func BenchmarkBundle(b *testing.B) {
	const size = 16 << 20
	fx := newFixture(b, size, size, size, size)
	b.SetBytes(fx.totalSize())
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		o := fx.bundleOptions("b" + strconv.Itoa(i) + ".airlock")
		o.Out = filepath.Join(b.TempDir(), "b.airlock")
		if err := RunBundle(context.Background(), o, io.Discard, io.Discard); err != nil {
			b.Fatal(err)
		}
	}
}
