package bundle

import (
	"bytes"
	"context"
	"errors"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/airlock-project/airlock/catalog"
	"github.com/airlock-project/airlock/fault"
)

func TestRoundTrip(t *testing.T) {
	cases := []struct {
		name     string
		payloads [][]byte
		opts     WriteOptions
	}{
		{"no packages", nil, WriteOptions{}},
		{"one package", [][]byte{payload(1, 1000)}, WriteOptions{}},
		{"several", [][]byte{{}, payload(2, 17), payload(3, 3<<20/2), payload(4, 200<<10)}, WriteOptions{}},
		{"level 19 single thread", [][]byte{payload(5, 300<<10), {}}, WriteOptions{Level: 19, Concurrency: 1}},
		{"level 1", [][]byte{payload(6, 5000)}, WriteOptions{Level: 1, Concurrency: 4}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			f := newFixture(t, c.payloads...)
			b := f.bundle(t, c.opts)
			res, err := readBundle(bytes.NewReader(b), ReadOptions{})
			if err != nil {
				t.Fatalf("read: %v", err)
			}
			if want := f.manifestBytes(t); !bytes.Equal(res.header.Manifest, want) {
				t.Errorf("manifest.json = %q, want %q", res.header.Manifest, want)
			}
			if !bytes.Equal(res.header.Entitlement, f.ent) {
				t.Errorf("entitlement.asc differs")
			}
			if len(res.data) != len(c.payloads) {
				t.Fatalf("read %d packages, want %d", len(res.data), len(c.payloads))
			}
			for i, p := range c.payloads {
				if !bytes.Equal(res.data[i], p) {
					t.Errorf("package %d: read %d bytes, differing from the %d written", i, len(res.data[i]), len(p))
				}
			}
		})
	}
}

func TestPackagesDrainsWhatFnLeaves(t *testing.T) {
	f := newFixture(t, payload(1, 700<<10), payload(2, 10), payload(3, 300<<10))
	b := f.bundle(t, WriteOptions{})
	r, _, err := NewReader(bytes.NewReader(b), ReadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	var calls int
	err = r.Packages(context.Background(), f.m.Packages, func(p catalog.Package, rd io.Reader) error {
		calls++
		if calls == 1 {
			_, err := io.ReadFull(rd, make([]byte, 1000)) // a little, then leave
			return err
		}
		return nil // nothing at all
	})
	if err != nil {
		t.Fatalf("Packages: %v", err)
	}
	if calls != 3 {
		t.Fatalf("fn called %d times, want 3", calls)
	}
}

func TestPackagesDrainStillVerifies(t *testing.T) {
	f := newFixture(t, payload(1, 4096), payload(2, 4096))
	es := f.entries(t)
	es[3].data = bytes.Clone(es[3].data)
	es[3].data[4000] ^= 1
	b := compress(t, buildTar(t, es, tarOpts{}))
	r, _, err := NewReader(bytes.NewReader(b), ReadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	var calls int
	err = r.Packages(context.Background(), f.m.Packages, func(catalog.Package, io.Reader) error {
		calls++
		return nil
	})
	assertIs(t, err, ErrDigest)
	if calls != 1 {
		t.Errorf("fn called %d times after a damaged first package, want 1", calls)
	}
	if !strings.Contains(err.Error(), es[3].name) {
		t.Errorf("error %q does not name member %s", err, es[3].name)
	}
}

func TestFinalReadReportsDigest(t *testing.T) {
	f := newFixture(t, payload(1, 100<<10))
	es := f.entries(t)
	es[3].data = bytes.Clone(es[3].data)
	es[3].data[0] ^= 0x80
	b := compress(t, buildTar(t, es, tarOpts{}))
	r, _, err := NewReader(bytes.NewReader(b), ReadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	var got []byte
	var readErr error
	perr := r.Packages(context.Background(), f.m.Packages, func(_ catalog.Package, rd io.Reader) error {
		got, readErr = io.ReadAll(rd)
		return readErr
	})
	if len(got) != len(es[3].data) {
		t.Errorf("read %d bytes before the verdict, want all %d", len(got), len(es[3].data))
	}
	assertIs(t, readErr, ErrDigest)
	assertIs(t, perr, ErrDigest)
}

func TestPackagesFnErrorStops(t *testing.T) {
	f := newFixture(t, payload(1, 10), payload(2, 10))
	b := f.bundle(t, WriteOptions{})
	r, _, err := NewReader(bytes.NewReader(b), ReadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	stop := errors.New("disk full")
	var calls int
	err = r.Packages(context.Background(), f.m.Packages, func(catalog.Package, io.Reader) error {
		calls++
		return stop
	})
	if !errors.Is(err, stop) || calls != 1 {
		t.Fatalf("Packages = %v after %d calls, want the callback's error after 1", err, calls)
	}
	if err := r.Packages(context.Background(), f.m.Packages, func(catalog.Package, io.Reader) error { return nil }); err == nil {
		t.Fatal("second Packages call succeeded")
	}
}

func TestPackagesContext(t *testing.T) {
	f := newFixture(t, payload(1, 1<<20))
	b := f.bundle(t, WriteOptions{})
	r, _, err := NewReader(bytes.NewReader(b), ReadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	ctx, cancel := context.WithCancel(context.Background())
	err = r.Packages(ctx, f.m.Packages, func(_ catalog.Package, rd io.Reader) error {
		cancel()
		_, err := io.Copy(io.Discard, rd)
		return err
	})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("Packages = %v, want context.Canceled", err)
	}
}

func TestWriteRefusesMismatchedSources(t *testing.T) {
	good := payload(1, 300<<10)
	f := newFixture(t, payload(9, 10), good)
	cases := []struct {
		name     string
		data     []byte
		sentinel error
	}{
		{"shorter", good[:len(good)-1], ErrSize},
		{"longer", append(bytes.Clone(good), 'x'), ErrSize},
		{"other bytes", append(bytes.Clone(good[:len(good)-1]), good[len(good)-1]^1), ErrDigest},
		{"empty", nil, ErrSize},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			open := func(p catalog.Package) (io.ReadCloser, error) {
				if p.SHA256 == f.m.Packages[1].SHA256 {
					return io.NopCloser(bytes.NewReader(c.data)), nil
				}
				return f.open(p)
			}
			err := Write(context.Background(), io.Discard, f.m, fakeSigner{}, f.ent, open, WriteOptions{})
			assertIs(t, err, c.sentinel)
			if !strings.Contains(err.Error(), f.m.Packages[1].String()) {
				t.Errorf("error %q does not name the package %s", err, f.m.Packages[1])
			}
		})
	}
}

func TestWriteChecks(t *testing.T) {
	f := newFixture(t, payload(1, 10))
	t.Run("entitlement digest", func(t *testing.T) {
		err := Write(context.Background(), io.Discard, f.m, fakeSigner{}, append(bytes.Clone(f.ent), ' '), f.open, WriteOptions{})
		assertIs(t, err, ErrDigest)
	})
	t.Run("invalid manifest", func(t *testing.T) {
		m := f.m
		m.Courier = "not a fingerprint"
		err := Write(context.Background(), io.Discard, m, fakeSigner{}, f.ent, f.open, WriteOptions{})
		assertIs(t, err, ErrManifest)
	})
	t.Run("level", func(t *testing.T) {
		err := Write(context.Background(), io.Discard, f.m, fakeSigner{}, f.ent, f.open, WriteOptions{Level: 40})
		if !errors.Is(err, fault.ErrUsage) {
			t.Fatalf("level 40: %v, want a usage error", err)
		}
	})
	t.Run("huge signature", func(t *testing.T) {
		err := Write(context.Background(), io.Discard, f.m, bigSigner{}, f.ent, f.open, WriteOptions{})
		assertIs(t, err, ErrSize)
	})
	t.Run("open error", func(t *testing.T) {
		boom := errors.New("cache gone")
		err := Write(context.Background(), io.Discard, f.m, fakeSigner{}, f.ent, func(catalog.Package) (io.ReadCloser, error) { return nil, boom }, WriteOptions{})
		if !errors.Is(err, boom) || !strings.Contains(err.Error(), f.m.Packages[0].String()) {
			t.Fatalf("Write = %v, want the open error naming the package", err)
		}
	})
	t.Run("context", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		if err := Write(ctx, io.Discard, f.m, fakeSigner{}, f.ent, f.open, WriteOptions{}); !errors.Is(err, context.Canceled) {
			t.Fatalf("Write = %v, want context.Canceled", err)
		}
	})
}

type bigSigner struct{}

func (bigSigner) SignDetached(w io.Writer, _ io.Reader) error {
	_, err := w.Write(make([]byte, MaxSignatureSize+1))
	return err
}

// Write reads each package exactly once, and closes it.
func TestWriteReadsOnce(t *testing.T) {
	f := newFixture(t, payload(1, 1<<20), payload(2, 10))
	opened := map[catalog.Digest]int{}
	var closed int
	open := func(p catalog.Package) (io.ReadCloser, error) {
		opened[p.SHA256]++
		return &closeCounter{Reader: bytes.NewReader(f.data[p.SHA256]), n: &closed}, nil
	}
	if err := Write(context.Background(), io.Discard, f.m, fakeSigner{}, f.ent, open, WriteOptions{}); err != nil {
		t.Fatal(err)
	}
	for _, p := range f.m.Packages {
		if opened[p.SHA256] != 1 {
			t.Errorf("%s opened %d times", p, opened[p.SHA256])
		}
	}
	if closed != 2 {
		t.Errorf("closed %d sources, want 2", closed)
	}
}

type closeCounter struct {
	io.Reader
	n *int
}

func (c *closeCounter) Close() error { *c.n++; return nil }

func TestManifest(t *testing.T) {
	f := newFixture(t, payload(1, 10), payload(2, 20))
	b := f.manifestBytes(t)
	m, err := DecodeManifest(b)
	if err != nil {
		t.Fatal(err)
	}
	b2, err := m.Encode()
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(b, b2) {
		t.Errorf("re-encoding differs:\n%s\n%s", b, b2)
	}
	if !m.Created.Equal(testCreated) || len(m.Packages) != 2 || m.Packages[1].SHA256 != f.m.Packages[1].SHA256 {
		t.Errorf("decoded manifest differs: %+v", m)
	}
	id, err := NewBundleID()
	if err != nil || !validBundleID(id) {
		t.Errorf("NewBundleID = %q, %v", id, err)
	}
	if id2, _ := NewBundleID(); id2 == id {
		t.Errorf("NewBundleID repeated %q", id)
	}

	bad := map[string]string{
		"unknown field":  strings.Replace(string(b), `"format":`, `"extra":1,"format":`, 1),
		"missing field":  strings.Replace(string(b), `"site":"plant-3",`, ``, 1),
		"null packages":  strings.Replace(string(b), `"packages":[`, `"packages":null,"x":[`, 1),
		"format":         strings.Replace(string(b), ManifestFormat, "airlock-bundle/v2", 1),
		"expiry":         strings.Replace(string(b), `"expires":"2025-03-17T09:26:53Z"`, `"expires":"2025-03-14T09:26:53Z"`, 1),
		"courier":        strings.Replace(string(b), f.m.Courier, strings.ToLower(f.m.Courier), 1),
		"id":             strings.Replace(string(b), f.m.ID, "AAAAAAAAAAAAAAAAAAAAAAAAAA", 1),
		"trailing data":  string(b) + "{}",
		"duplicate pkg":  strings.Replace(string(b), `"version":"3.4.1"`, `"version":"3.4.0"`, 1),
		"not json":       "manifest",
		"zero digest":    strings.Replace(string(b), f.m.Entitlement.String(), strings.Repeat("0", 64), 1),
		"bad key id":     strings.Replace(string(b), string(f.m.KeyID), "x", 1),
		"negative size":  strings.Replace(string(b), `"size":10,`, `"size":-10,`, 1),
		"site with dots": strings.Replace(string(b), `"site":"plant-3"`, `"site":"../etc"`, 1),
	}
	for name, s := range bad {
		if s == string(b) {
			t.Errorf("%s: the replacement did not apply", name)
			continue
		}
		if _, err := DecodeManifest([]byte(s)); !errors.Is(err, fault.ErrVerification) {
			t.Errorf("%s: DecodeManifest = %v, want a verification error", name, err)
		}
	}
}

func TestManifestEncodeNormalizes(t *testing.T) {
	f := newFixture(t)
	m := f.m
	m.Packages = nil
	loc := time.FixedZone("X", 3600)
	m.Created = testCreated.In(loc).Add(400 * time.Millisecond)
	b, err := m.Encode()
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(b, []byte(`"created":"2025-03-14T09:26:53Z"`)) || !bytes.Contains(b, []byte(`"packages":[]`)) {
		t.Errorf("not normalized: %s", b)
	}
}
