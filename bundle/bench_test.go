package bundle

import (
	"bytes"
	"context"
	"io"
	"os"
	"strconv"
	"testing"

	"github.com/airlock-project/airlock/catalog"
)

// benchFixture makes AIRLOCK_BENCH_MB MiB (default 64) of package data in
// four packages, half random and half text-like (see payload).
func benchFixture(b *testing.B) (fixture, int64) {
	b.Helper()
	mb := 64
	if s := os.Getenv("AIRLOCK_BENCH_MB"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 {
			b.Fatalf("AIRLOCK_BENCH_MB=%q: want a positive number of MiB", s)
		}
		mb = n
	}
	total := int64(mb) << 20
	var ps [][]byte
	for i := range 4 {
		ps = append(ps, payload(uint64(100+i), int(total/4)))
	}
	return newFixture(b, ps...), total
}

func BenchmarkWrite(b *testing.B) {
	f, total := benchFixture(b)
	for _, conc := range []int{0, 1} {
		b.Run("concurrency="+strconv.Itoa(conc), func(b *testing.B) {
			b.SetBytes(total)
			b.ReportAllocs()
			var cw countWriter
			for b.Loop() {
				cw = 0
				if err := Write(context.Background(), &cw, f.m, fakeSigner{}, f.ent, f.open, WriteOptions{Concurrency: conc}); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(cw)/float64(total), "ratio")
		})
	}
}

func BenchmarkRead(b *testing.B) {
	f, total := benchFixture(b)
	bundle := f.bundle(b, WriteOptions{})
	b.SetBytes(total)
	b.ReportAllocs()
	for b.Loop() {
		r, h, err := NewReader(bytes.NewReader(bundle), ReadOptions{})
		if err != nil {
			b.Fatal(err)
		}
		m, err := fakeVerify(h)
		if err != nil {
			b.Fatal(err)
		}
		err = r.Packages(context.Background(), m.Packages, func(_ catalog.Package, rd io.Reader) error {
			_, err := io.Copy(io.Discard, rd)
			return err
		})
		if err != nil {
			b.Fatal(err)
		}
		r.Close()
	}
}

type countWriter int64

func (c *countWriter) Write(p []byte) (int, error) { *c += countWriter(len(p)); return len(p), nil }
