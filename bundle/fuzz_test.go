package bundle

import (
	"bytes"
	"context"
	"errors"
	"io"
	"testing"

	"github.com/airlock-project/airlock/catalog"
	"github.com/airlock-project/airlock/fault"
)

// FuzzReader feeds arbitrary bytes to the reader, driven the way verify
// drives it. It must never panic, and every failure must be a verification
// error: the input is an in-memory byte slice, so nothing else can fail.
func FuzzReader(f *testing.F) {
	fx := newFixture(f, payload(21, 600), payload(22, 0), payload(23, 2000))
	valid := fx.bundle(f, WriteOptions{Concurrency: 1})
	f.Add(valid)
	f.Add(valid[:len(valid)/2])
	f.Add(append(bytes.Clone(valid), 0, 0, 0, 0))
	damaged := bytes.Clone(valid)
	damaged[len(damaged)/3] ^= 0x10
	f.Add(damaged)
	es := fx.entries(f)
	f.Add(compress(f, buildTar(f, es, tarOpts{noEnd: true})))
	f.Add(compress(f, buildTar(f, append(es[:4:4], es[5], es[4]), tarOpts{})))
	f.Add(compress(f, buildTar(f, es, tarOpts{pad: make([]byte, 9216)})))
	f.Add(mustReadAll(f, rawFrame(wd8MiB, buildTar(f, es, tarOpts{}), 0, nil)))
	f.Add([]byte{})

	f.Fuzz(func(t *testing.T, b []byte) {
		opts := ReadOptions{MaxWindow: 1 << 20, MaxHeader: 64 << 10}
		r, h, err := NewReader(bytes.NewReader(b), opts)
		if err != nil {
			checkFuzzErr(t, err)
			return
		}
		defer r.Close()
		// Use the manifest found if it decodes (as verify would after the
		// signature), the fixture's list otherwise.
		expect := fx.m.Packages
		if m, err := DecodeManifest(h.Manifest); err == nil {
			expect = m.Packages
		}
		err = r.Packages(context.Background(), expect, func(p catalog.Package, rd io.Reader) error {
			n, err := io.Copy(io.Discard, rd)
			if err == nil && n != p.Size {
				t.Fatalf("package %s: read %d bytes without error, want %d", p, n, p.Size)
			}
			return err
		})
		if err != nil {
			checkFuzzErr(t, err)
		}
	})
}

func checkFuzzErr(t *testing.T, err error) {
	t.Helper()
	if !errors.Is(err, fault.ErrVerification) {
		t.Fatalf("error of the wrong class: %v", err)
	}
}
