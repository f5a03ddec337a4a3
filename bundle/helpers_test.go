package bundle

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/klauspost/compress/zstd"

	"github.com/airlock-project/airlock/catalog"
	"github.com/airlock-project/airlock/fault"
)

// fakeSigner writes an armored-looking block holding the sha256 of the data.
// Real signing is tested in keys/ and verify/.
type fakeSigner struct{}

func (fakeSigner) SignDetached(w io.Writer, data io.Reader) error {
	h := sha256.New()
	if _, err := io.Copy(h, data); err != nil {
		return err
	}
	_, err := fmt.Fprintf(w, "-----BEGIN PGP SIGNATURE-----\n\n%x\n-----END PGP SIGNATURE-----\n", h.Sum(nil))
	return err
}

func fakeSig(manifest []byte) []byte {
	var b bytes.Buffer
	if err := (fakeSigner{}).SignDetached(&b, bytes.NewReader(manifest)); err != nil {
		panic(err)
	}
	return b.Bytes()
}

// errFakeSignature stands for verify's verdict on a bad signature.
var errFakeSignature = fault.Verification("bad manifest signature (fake verifier)")

// fakeVerify does what verify does with a Header, with the fake signer.
func fakeVerify(h Header) (Manifest, error) {
	if !bytes.Equal(h.ManifestSig, fakeSig(h.Manifest)) {
		return Manifest{}, errFakeSignature
	}
	m, err := DecodeManifest(h.Manifest)
	if err != nil {
		return Manifest{}, err
	}
	if catalog.Digest(sha256.Sum256(h.Entitlement)) != m.Entitlement {
		return Manifest{}, fmt.Errorf("%w: entitlement", ErrDigest)
	}
	return m, nil
}

// fixture is a manifest with the data of its packages.
type fixture struct {
	m    Manifest
	ent  []byte
	data map[catalog.Digest][]byte
}

var testCreated = time.Date(2025, 3, 14, 9, 26, 53, 0, time.UTC)

func newFixture(t testing.TB, payloads ...[]byte) fixture {
	t.Helper()
	ent := []byte("-----BEGIN PGP MESSAGE-----\n\nentitlement for plant-3\n-----END PGP MESSAGE-----\n")
	f := fixture{ent: ent, data: map[catalog.Digest][]byte{}}
	f.m = Manifest{
		Format:      ManifestFormat,
		ID:          "aaaaaaaaaaaaaaaaaaaaaaaaaa",
		Created:     testCreated,
		Expires:     testCreated.Add(72 * time.Hour),
		Site:        "plant-3",
		KeyID:       "bbbbbbbbbbbbbbbbbbbbbbbbba",
		Courier:     "0123456789ABCDEF0123456789ABCDEF01234567",
		Entitlement: catalog.Digest(sha256.Sum256(ent)),
		Packages:    []catalog.Package{},
	}
	for i, p := range payloads {
		pkg := catalog.Package{
			Name:    "base",
			Kind:    catalog.KindBase,
			Version: catalog.MustVersion(fmt.Sprintf("3.4.%d", i)),
			SHA256:  catalog.Digest(sha256.Sum256(p)),
			Size:    int64(len(p)),
		}
		if _, dup := f.data[pkg.SHA256]; dup {
			t.Fatalf("fixture: payload %d duplicates an earlier one", i)
		}
		f.data[pkg.SHA256] = p
		f.m.Packages = append(f.m.Packages, pkg)
	}
	return f
}

func (f fixture) open(p catalog.Package) (io.ReadCloser, error) {
	d, ok := f.data[p.SHA256]
	if !ok {
		return nil, fmt.Errorf("no data for %s", p)
	}
	return io.NopCloser(bytes.NewReader(d)), nil
}

func (f fixture) manifestBytes(t testing.TB) []byte {
	t.Helper()
	b, err := f.m.Encode()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func (f fixture) bundle(t testing.TB, opts WriteOptions) []byte {
	t.Helper()
	var buf bytes.Buffer
	if err := Write(context.Background(), &buf, f.m, fakeSigner{}, f.ent, f.open, opts); err != nil {
		t.Fatalf("Write: %v", err)
	}
	return buf.Bytes()
}

// entries returns the members of a valid bundle, to be altered.
func (f fixture) entries(t testing.TB) []entry {
	mb := f.manifestBytes(t)
	es := []entry{
		{name: ManifestName, data: mb},
		{name: SignatureName, data: fakeSig(mb)},
		{name: EntitlementName, data: f.ent},
	}
	for _, p := range f.m.Packages {
		es = append(es, entry{name: PackageMember(p.SHA256), data: f.data[p.SHA256]})
	}
	return es
}

// readResult is what reading a bundle the way verify does produced.
type readResult struct {
	header   Header
	manifest Manifest
	data     [][]byte
}

// readBundle reads src as verify would: header, fake verification, then
// packages, collecting their data.
func readBundle(src io.Reader, opts ReadOptions) (readResult, error) {
	var res readResult
	r, h, err := NewReader(src, opts)
	if err != nil {
		return res, err
	}
	defer r.Close()
	res.header = h
	m, err := fakeVerify(h)
	if err != nil {
		return res, err
	}
	res.manifest = m
	err = r.Packages(context.Background(), m.Packages, func(p catalog.Package, rd io.Reader) error {
		b, err := io.ReadAll(rd)
		if err != nil {
			return err
		}
		res.data = append(res.data, b)
		return nil
	})
	return res, err
}

// entry is a raw tar member for crafting hostile bundles.
type entry struct {
	name     string
	typeflag byte // 0 means tar.TypeReg
	data     []byte
	size     int64 // declared size when >= 0 and set is true
	setSize  bool
	linkname string
	format   tar.Format
	pax      map[string]string
}

// tarOpts shapes the end of a crafted tar stream.
type tarOpts struct {
	noEnd    bool // omit the end-of-archive marker
	oneBlock bool // only one zero block
	pad      []byte
}

// buildTar writes entries with archive/tar. A declared size different from
// the data is written raw: the header says size, the data follows as is.
func buildTar(t testing.TB, es []entry, o tarOpts) []byte {
	t.Helper()
	var buf bytes.Buffer
	for _, e := range es {
		tw := tar.NewWriter(&buf)
		typ := e.typeflag
		if typ == 0 {
			typ = tar.TypeReg
		}
		size := int64(len(e.data))
		if e.setSize {
			size = e.size
		}
		hdr := &tar.Header{Typeflag: typ, Name: e.name, Size: size, Mode: 0o644, ModTime: testCreated,
			Linkname: e.linkname, Format: e.format, PAXRecords: e.pax}
		if typ != tar.TypeReg && typ != tar.TypeRegA {
			hdr.Size = 0
		}
		if typ == tar.TypeXGlobalHeader {
			hdr = &tar.Header{Typeflag: typ, Name: e.name, PAXRecords: e.pax}
		}
		if err := tw.WriteHeader(hdr); err != nil {
			t.Fatalf("crafting %q: %v", e.name, err)
		}
		// Bypass tar.Writer for the data, so that it can disagree with the
		// header; pad to the block as tar would.
		buf.Write(e.data)
		if n := buf.Len() % 512; n != 0 {
			buf.Write(make([]byte, 512-n))
		}
	}
	switch {
	case o.noEnd:
	case o.oneBlock:
		buf.Write(make([]byte, 512))
	default:
		buf.Write(make([]byte, 1024))
	}
	buf.Write(o.pad)
	return buf.Bytes()
}

func compress(t testing.TB, b []byte) []byte {
	t.Helper()
	enc, err := zstd.NewWriter(nil, zstd.WithEncoderConcurrency(1))
	if err != nil {
		t.Fatal(err)
	}
	defer enc.Close()
	return enc.EncodeAll(b, nil)
}

// rawFrame builds a zstd frame by hand: window descriptor wd, the prefix
// in raw blocks, zeros in RLE blocks, the suffix in raw blocks, no checksum.
// It is a reader, so a frame of a terabyte of zeros costs nothing to make.
func rawFrame(wd byte, prefix []byte, zeros int64, suffix []byte) *frameSynth {
	return &frameSynth{wd: wd, prefix: prefix, zeros: zeros, suffix: suffix}
}

type frameSynth struct {
	wd             byte
	prefix, suffix []byte
	zeros          int64
	out            []byte
	started, done  bool
	lastSent       bool
	consumed       int64
}

func (s *frameSynth) Read(p []byte) (int, error) {
	for len(s.out) == 0 {
		if s.done {
			return 0, io.EOF
		}
		s.fill()
	}
	n := copy(p, s.out)
	s.out = s.out[n:]
	s.consumed += int64(n)
	return n, nil
}

func (s *frameSynth) fill() {
	if !s.started {
		s.started = true
		s.out = binary.LittleEndian.AppendUint32(nil, zstdMagic)
		s.out = append(s.out, 0x00, s.wd) // descriptor: no checksum, no FCS, window descriptor
		return
	}
	block := func(typ int, size int, body []byte) {
		last := 0
		if len(s.prefix) == 0 && s.zeros == 0 && len(s.suffix) == 0 {
			last = 1
			s.lastSent = true
		}
		v := uint32(last | typ<<1 | size<<3)
		s.out = append(s.out, byte(v), byte(v>>8), byte(v>>16))
		s.out = append(s.out, body...)
	}
	switch {
	case len(s.prefix) > 0:
		k := min(len(s.prefix), maxBlockSize)
		body := s.prefix[:k]
		s.prefix = s.prefix[k:]
		block(0, k, body)
	case s.zeros > 0:
		k := min(s.zeros, maxBlockSize)
		s.zeros -= k
		block(1, int(k), []byte{0})
	case len(s.suffix) > 0:
		k := min(len(s.suffix), maxBlockSize)
		body := s.suffix[:k]
		s.suffix = s.suffix[k:]
		block(0, k, body)
	default:
		s.done = true
		if !s.lastSent {
			block(0, 0, nil)
		}
	}
}

// window descriptors for rawFrame.
const (
	wd8MiB = 13 << 3 // 2^(10+13)
	wd1GiB = 20 << 3 // 2^(10+20)
)

func mustReadAll(t testing.TB, r io.Reader) []byte {
	t.Helper()
	b, err := io.ReadAll(r)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// payload makes deterministic test data: half random, half text-like.
func payload(seed uint64, n int) []byte {
	rng := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	b := make([]byte, 0, n)
	half := n / 2
	for len(b) < half {
		b = binary.LittleEndian.AppendUint64(b, rng.Uint64())
	}
	b = b[:half]
	words := strings.Fields("update base product license hotfix node cluster install verify bundle package settle reboot region primary backup traffic")
	for len(b) < n {
		line := fmt.Sprintf("%08d %s %s %s %x\n", len(b), words[rng.IntN(len(words))], words[rng.IntN(len(words))], words[rng.IntN(len(words))], rng.Uint32())
		b = append(b, line...)
	}
	return b[:n]
}

func hexSum(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// assertIs checks the class and the sentinel of err.
func assertIs(t testing.TB, err error, sentinel error) {
	t.Helper()
	if err == nil {
		t.Fatalf("got no error, want %v", sentinel)
	}
	if !errors.Is(err, fault.ErrVerification) {
		t.Errorf("error is not of the verification class: %v", err)
	}
	if !errors.Is(err, sentinel) {
		t.Errorf("error %q does not wrap %q", err, sentinel)
	}
}
