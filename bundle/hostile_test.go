package bundle

import (
	"archive/tar"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"runtime"
	"slices"
	"strings"
	"testing"

	"github.com/airlock-project/airlock/catalog"
	"github.com/airlock-project/airlock/fault"
)

// hostileFixture has three packages so that members can be moved around.
func hostileFixture(t testing.TB) fixture {
	return newFixture(t, payload(11, 3000), payload(12, 0), payload(13, 70<<10))
}

// TestHostile reads crafted bundles the way verify does; each must fail
// with a verification error wrapping the sentinel named.
func TestHostile(t *testing.T) {
	f := hostileFixture(t)
	valid := f.entries(t)
	pkg := func(i int) entry { return valid[3+i] }
	edit := func(fn func(es []entry) []entry) []entry {
		es := slices.Clone(valid)
		return fn(es)
	}
	flip := func(member, at int) []entry {
		return edit(func(es []entry) []entry {
			es[member].data = bytes.Clone(es[member].data)
			es[member].data[at] ^= 0x01
			return es
		})
	}
	rename := func(member int, name string, typ byte) []entry {
		return edit(func(es []entry) []entry {
			es[member].name = name
			es[member].typeflag = typ
			if typ != tar.TypeReg && typ != 0 {
				es[member].data = nil
				es[member].linkname = map[byte]string{tar.TypeSymlink: "/etc/shadow", tar.TypeLink: "manifest.json"}[typ]
			}
			return es
		})
	}
	other := pkg(0).name
	// A PAX extended header whose file header is missing: as long as an
	// end-of-archive marker, but not one.
	pax := buildTar(t, []entry{{name: "x", pax: map[string]string{"comment": "dangling"}}}, tarOpts{noEnd: true})
	dangling := pax[:len(pax)-512]
	if len(dangling) != 1024 {
		t.Fatalf("PAX header and data take %d bytes, want 1024", len(dangling))
	}
	extra := entry{name: "packages/" + strings.Repeat("ab", 32), data: []byte("smuggled")}

	cases := []struct {
		name     string
		entries  []entry
		opts     tarOpts
		sentinel error
		mention  string // the error message must contain it
	}{
		{"flip in manifest.json", flip(0, 30), tarOpts{}, errFakeSignature, ""},
		{"flip in manifest.json.asc", flip(1, 40), tarOpts{}, errFakeSignature, ""},
		{"flip in entitlement.asc", flip(2, 5), tarOpts{}, ErrDigest, ""},
		{"flip in first package", flip(3, 0), tarOpts{}, ErrDigest, pkg(0).name},
		{"flip in last package, last byte", flip(5, 70<<10-1), tarOpts{}, ErrDigest, pkg(2).name},
		{"flip in last package, middle", flip(5, 35<<10), tarOpts{}, ErrDigest, pkg(2).name},
		{"wrong digest: other data of the same size", edit(func(es []entry) []entry {
			es[3].data = payload(99, 3000)
			return es
		}), tarOpts{}, ErrDigest, pkg(0).name},
		{"extra member at end", append(slices.Clone(valid), extra), tarOpts{}, ErrMember, extra.name},
		{"extra member in the middle", slices.Insert(slices.Clone(valid), 4, extra), tarOpts{}, ErrMember, "does not list"},
		{"extra member before the header", slices.Insert(slices.Clone(valid), 0, extra), tarOpts{}, ErrMember, extra.name},
		{"missing middle package", slices.Delete(slices.Clone(valid), 4, 5), tarOpts{}, ErrMember, pkg(2).name},
		{"missing last package", valid[:5], tarOpts{}, ErrMember, pkg(2).name},
		{"missing all packages", valid[:3], tarOpts{}, ErrMember, pkg(0).name},
		{"missing signature", slices.Delete(slices.Clone(valid), 1, 2), tarOpts{}, ErrMember, EntitlementName},
		{"missing entitlement", valid[:2], tarOpts{}, ErrMember, EntitlementName},
		{"empty archive", nil, tarOpts{}, ErrMember, ManifestName},
		{"duplicated package", slices.Insert(slices.Clone(valid), 4, pkg(0)), tarOpts{}, ErrMember, "duplicate"},
		{"duplicated manifest", slices.Insert(slices.Clone(valid), 1, valid[0]), tarOpts{}, ErrMember, "duplicate"},
		{"reordered packages", edit(func(es []entry) []entry {
			es[3], es[5] = es[5], es[3]
			return es
		}), tarOpts{}, ErrMember, "out of order"},
		{"reordered header", edit(func(es []entry) []entry {
			es[0], es[1] = es[1], es[0]
			return es
		}), tarOpts{}, ErrMember, "out of order"},
		{"traversal ../x", rename(3, "../x", 0), tarOpts{}, ErrMember, "unsafe"},
		{"traversal packages/../../x", rename(3, "packages/../../x", 0), tarOpts{}, ErrMember, "unsafe"},
		{"absolute /etc/x", rename(3, "/etc/x", 0), tarOpts{}, ErrMember, "absolute"},
		{"absolute manifest", rename(0, "/manifest.json", 0), tarOpts{}, ErrMember, "absolute"},
		{"backslash", rename(3, `packages\..\x`, 0), tarOpts{}, ErrMember, "backslash"},
		{"dot segment", rename(3, "./"+other, 0), tarOpts{}, ErrMember, "not clean"},
		{"symlink package", rename(3, other, tar.TypeSymlink), tarOpts{}, ErrMember, "symbolic link"},
		{"hardlink package", rename(3, other, tar.TypeLink), tarOpts{}, ErrMember, "hard link"},
		{"char device", rename(3, other, tar.TypeChar), tarOpts{}, ErrMember, "character device"},
		{"block device", rename(3, other, tar.TypeBlock), tarOpts{}, ErrMember, "block device"},
		{"directory", rename(3, other, tar.TypeDir), tarOpts{}, ErrMember, "directory"},
		{"fifo", rename(3, other, tar.TypeFifo), tarOpts{}, ErrMember, "FIFO"},
		{"symlink manifest", rename(0, ManifestName, tar.TypeSymlink), tarOpts{}, ErrMember, "symbolic link"},
		{"PAX global header", slices.Insert(slices.Clone(valid), 3, entry{name: "g", typeflag: tar.TypeXGlobalHeader, pax: map[string]string{"comment": "x"}}), tarOpts{}, ErrMember, "PAX global"},
		{"GNU format header", edit(func(es []entry) []entry {
			es[3].format = tar.FormatGNU
			return es
		}), tarOpts{}, ErrMember, "format"},
		{"PAX name 100 KiB long", edit(func(es []entry) []entry {
			es[3].name = "packages/" + strings.Repeat("a", 100<<10)
			return es
		}), tarOpts{}, ErrMember, "header over"},
		{"PAX records are fine when names match", edit(func(es []entry) []entry {
			es[3].pax = map[string]string{"comment": "hello"}
			return es
		}), tarOpts{}, nil, ""},
		{"package size larger than listed", edit(func(es []entry) []entry {
			es[5].setSize, es[5].size = true, int64(len(es[5].data))+1
			return es
		}), tarOpts{}, ErrSize, pkg(2).name},
		{"package size smaller than listed", edit(func(es []entry) []entry {
			es[5].data = es[5].data[:len(es[5].data)-1]
			return es
		}), tarOpts{}, ErrSize, pkg(2).name},
		{"empty package given data", edit(func(es []entry) []entry {
			es[4].data = []byte{0}
			return es
		}), tarOpts{}, ErrSize, pkg(1).name},
		{"header size beyond the data (truncated)", edit(func(es []entry) []entry {
			es[5].setSize, es[5].size = true, int64(len(es[5].data))
			es[5].data = es[5].data[:1000]
			return es
		}), tarOpts{noEnd: true}, ErrTruncated, pkg(2).name},
		{"manifest header size beyond the data", edit(func(es []entry) []entry {
			es[0].setSize, es[0].size = true, int64(len(es[0].data))+2048
			return es[:1]
		}), tarOpts{noEnd: true}, ErrTruncated, ManifestName},
		{"manifest.json declared 10 GiB", edit(func(es []entry) []entry {
			es[0].setSize, es[0].size = true, 10<<30
			return es[:1]
		}), tarOpts{noEnd: true}, ErrSize, "limit"},
		{"manifest.json over 4 MiB", edit(func(es []entry) []entry {
			es[0].data = make([]byte, MaxManifestSize+1)
			return es
		}), tarOpts{}, ErrSize, ManifestName},
		{"signature over 64 KiB", edit(func(es []entry) []entry {
			es[1].data = make([]byte, MaxSignatureSize+1)
			return es
		}), tarOpts{}, ErrSize, SignatureName},
		{"no end-of-archive marker", valid, tarOpts{noEnd: true}, ErrTruncated, "end-of-archive"},
		{"one zero block only", valid, tarOpts{oneBlock: true}, ErrTruncated, "end-of-archive"},
		{"no end marker after the header", valid[:3], tarOpts{noEnd: true}, ErrTruncated, ""},
		{"dangling PAX header instead of the end marker", valid, tarOpts{noEnd: true, pad: dangling}, ErrTruncated, "end-of-archive"},
		{"padding in whole records is fine", valid, tarOpts{pad: make([]byte, 10240-1024)}, nil, ""},
		{"padding not in whole blocks", valid, tarOpts{pad: make([]byte, 100)}, ErrTrailing, "512-byte"},
		{"non-zero padding after the end", valid, tarOpts{pad: append(make([]byte, 511), 1)}, ErrTrailing, ""},
		{"end marker before the last package", valid[:5], tarOpts{pad: buildTar(t, valid[5:], tarOpts{})}, ErrMember, "missing"},
		{"a member after the end marker", valid, tarOpts{pad: buildTar(t, []entry{extra}, tarOpts{})}, ErrTrailing, "end-of-archive"},
		{"zeros over 1 MiB after the end", valid, tarOpts{pad: make([]byte, maxZeroPadding+512)}, ErrTrailing, "padding"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			b := compress(t, buildTar(t, c.entries, c.opts))
			_, err := readBundle(bytes.NewReader(b), ReadOptions{})
			if c.sentinel == nil {
				if err != nil {
					t.Fatalf("read: %v", err)
				}
				return
			}
			assertIs(t, err, c.sentinel)
			if !strings.Contains(err.Error(), c.mention) {
				t.Errorf("message %q does not mention %q", err, c.mention)
			}
			var me *MemberError
			if errors.As(err, &me) && !strings.Contains(err.Error(), "airlock-fetch") {
				t.Errorf("message %q does not say what to do", err)
			}
		})
	}
}

// Non-zero bytes in a member's padding are smuggled data.
func TestHostileMemberPadding(t *testing.T) {
	f := hostileFixture(t)
	tb := buildTar(t, f.entries(t), tarOpts{})
	// manifest.json's data starts at 512; its padding follows it.
	mlen := len(f.manifestBytes(t))
	if mlen%512 == 0 {
		t.Skip("manifest is block-aligned")
	}
	tb[512+mlen] = 'X'
	_, err := readBundle(bytes.NewReader(compress(t, tb)), ReadOptions{})
	assertIs(t, err, ErrMember)
	if !strings.Contains(err.Error(), "padding") || !strings.Contains(err.Error(), ManifestName) {
		t.Errorf("message %q should blame the padding after %s", err, ManifestName)
	}
}

// Truncating the tar stream anywhere gives ErrTruncated (or, inside a
// header member, a member that then fails verification): never a shorter
// bundle.
func TestHostileTarTruncation(t *testing.T) {
	f := hostileFixture(t)
	tb := buildTar(t, f.entries(t), tarOpts{})
	cuts := []int{0, 1, 511, 512, len(tb) - 1024, len(tb) - 513, len(tb) - 512, len(tb) - 1}
	for i := 1; i < 40; i++ {
		cuts = append(cuts, len(tb)*i/40)
	}
	for _, n := range cuts {
		_, err := readBundle(bytes.NewReader(compress(t, tb[:n])), ReadOptions{})
		if err == nil {
			t.Errorf("tar cut at %d of %d: read succeeded", n, len(tb))
			continue
		}
		if !errors.Is(err, ErrTruncated) {
			t.Errorf("tar cut at %d of %d: %v, want ErrTruncated", n, len(tb), err)
		}
	}
}

// Truncating the compressed file anywhere fails with ErrTruncated.
func TestHostileTruncation(t *testing.T) {
	f := hostileFixture(t)
	b := f.bundle(t, WriteOptions{})
	cuts := []int{0, 1, 3, 4, 5, 8, len(b) - 4, len(b) - 1}
	for i := 1; i < 20; i++ {
		cuts = append(cuts, len(b)*i/20)
	}
	for _, n := range cuts {
		_, err := readBundle(bytes.NewReader(b[:n]), ReadOptions{})
		if !errors.Is(err, ErrTruncated) || !errors.Is(err, fault.ErrVerification) {
			t.Errorf("cut at %d of %d: %v, want ErrTruncated", n, len(b), err)
		}
	}
}

// Flipping any compressed byte is caught: by the frame checks, the
// decoder, its checksum, a member check or a digest.
func TestHostileCompressedFlips(t *testing.T) {
	f := hostileFixture(t)
	b := f.bundle(t, WriteOptions{})
	for i := 0; i < 60; i++ {
		at := len(b) * i / 60
		d := bytes.Clone(b)
		d[at] ^= 0x04
		_, err := readBundle(bytes.NewReader(d), ReadOptions{})
		if !errors.Is(err, fault.ErrVerification) {
			t.Errorf("flip at %d of %d: %v, want a verification error", at, len(b), err)
			continue
		}
		known := false
		for _, s := range []error{ErrCompression, ErrDigest, ErrTruncated, ErrMember, ErrSize, ErrTrailing, errFakeSignature, ErrManifest} {
			known = known || errors.Is(err, s)
		}
		if !known {
			t.Errorf("flip at %d: %v wraps no known sentinel", at, err)
		}
	}
}

func TestHostileTrailing(t *testing.T) {
	f := hostileFixture(t)
	b := f.bundle(t, WriteOptions{})
	skippable := binary.LittleEndian.AppendUint32(nil, 0x184D2A50)
	skippable = binary.LittleEndian.AppendUint32(skippable, 3)
	skippable = append(skippable, "abc"...)
	cases := map[string][]byte{
		"1 byte":                {0},
		"3 bytes":               {0x28, 0xb5, 0x2f},
		"4 bytes":               {1, 2, 3, 4},
		"100 bytes":             bytes.Repeat([]byte("x"), 100),
		"skippable frame":       skippable,
		"a second bundle":       b,
		"a frame with one byte": compress(t, []byte{1}),
		"plain tar":             buildTar(t, f.entries(t), tarOpts{}),
	}
	for name, tail := range cases {
		t.Run(name, func(t *testing.T) {
			_, err := readBundle(bytes.NewReader(append(bytes.Clone(b), tail...)), ReadOptions{})
			assertIs(t, err, ErrTrailing)
		})
	}
	// Further frames that add nothing or only zero padding in whole blocks
	// are the same tar stream, as if the padding had been written in the
	// first frame.
	for name, tail := range map[string][]byte{"empty": compress(t, nil), "zeros": compress(t, make([]byte, 4096))} {
		t.Run("a frame of "+name+" is harmless", func(t *testing.T) {
			if _, err := readBundle(bytes.NewReader(append(bytes.Clone(b), tail...)), ReadOptions{}); err != nil {
				t.Fatal(err)
			}
		})
	}
}

func TestHostileCompression(t *testing.T) {
	f := hostileFixture(t)
	tb := buildTar(t, f.entries(t), tarOpts{})
	t.Run("not zstd", func(t *testing.T) {
		_, err := readBundle(bytes.NewReader(tb), ReadOptions{})
		assertIs(t, err, ErrCompression)
	})
	t.Run("empty input", func(t *testing.T) {
		_, err := readBundle(bytes.NewReader(nil), ReadOptions{})
		assertIs(t, err, ErrTruncated)
	})
	t.Run("hand-made frame is read", func(t *testing.T) {
		if _, err := readBundle(rawFrame(wd8MiB, tb, 0, nil), ReadOptions{}); err != nil {
			t.Fatalf("a valid hand-made frame: %v", err)
		}
	})
	t.Run("window of 1 GiB", func(t *testing.T) {
		_, err := readBundle(rawFrame(wd1GiB, tb, 0, nil), ReadOptions{})
		assertIs(t, err, ErrCompression)
		if !strings.Contains(err.Error(), "window") {
			t.Errorf("message %q does not mention the window", err)
		}
	})
	t.Run("window over a lowered limit", func(t *testing.T) {
		_, err := readBundle(bytes.NewReader(f.bundle(t, WriteOptions{})), ReadOptions{MaxWindow: 64 << 10})
		assertIs(t, err, ErrCompression)
	})
	t.Run("reserved block type", func(t *testing.T) {
		b := []byte{0x28, 0xb5, 0x2f, 0xfd, 0x00, wd8MiB, 0x07, 0x00, 0x00}
		_, err := readBundle(bytes.NewReader(b), ReadOptions{})
		assertIs(t, err, ErrCompression)
	})
	t.Run("reserved descriptor bit", func(t *testing.T) {
		b := []byte{0x28, 0xb5, 0x2f, 0xfd, 0x08, wd8MiB, 0x01, 0x00, 0x00}
		_, err := readBundle(bytes.NewReader(b), ReadOptions{})
		assertIs(t, err, ErrCompression)
	})
	t.Run("checksum mismatch", func(t *testing.T) {
		b := f.bundle(t, WriteOptions{})
		b[len(b)-1] ^= 1
		_, err := readBundle(bytes.NewReader(b), ReadOptions{})
		assertIs(t, err, ErrCompression)
	})
}

// Decompression bombs: a terabyte of zeros costs 32 MiB compressed, and
// the reader must stop at the first limit, reading almost none of it.
func TestHostileBombs(t *testing.T) {
	f := hostileFixture(t)
	valid := f.entries(t)
	hdrOnly := func(name string, size int64) []byte {
		var buf bytes.Buffer
		tw := tar.NewWriter(&buf)
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: name, Size: size, Mode: 0o644, ModTime: testCreated}); err != nil {
			t.Fatal(err)
		}
		return buf.Bytes()
	}
	const tib = int64(1) << 40
	cases := []struct {
		name     string
		prefix   []byte
		sentinel error
	}{
		{"manifest.json of a terabyte", hdrOnly(ManifestName, tib), ErrSize},
		{"extra member of a terabyte", append(buildTar(t, valid, tarOpts{noEnd: true}), hdrOnly("packages/bomb", tib)...), ErrMember},
		{"package of a terabyte", append(buildTar(t, valid[:3], tarOpts{noEnd: true}), hdrOnly(valid[3].name, tib)...), ErrSize},
		{"a terabyte of padding", buildTar(t, valid, tarOpts{}), ErrTrailing},
		{"a terabyte where a header belongs", buildTar(t, valid[:4], tarOpts{noEnd: true}), ErrMember},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			src := rawFrame(wd8MiB, c.prefix, tib, nil)
			var before, after runtime.MemStats
			runtime.GC()
			runtime.ReadMemStats(&before)
			_, err := readBundle(src, ReadOptions{})
			runtime.ReadMemStats(&after)
			assertIs(t, err, c.sentinel)
			// Each RLE block is 4 bytes for 128 KiB: stopping within a few
			// MiB of zeros reads a few hundred bytes past the prefix.
			if over := src.consumed - int64(len(c.prefix)); over > 4096 {
				t.Errorf("read %d compressed bytes (≈ %d MiB of zeros) past the prefix before failing", over, over/4*maxBlockSize>>20)
			}
			if alloc := after.TotalAlloc - before.TotalAlloc; alloc > 64<<20 {
				t.Errorf("allocated %d MiB", alloc>>20)
			}
		})
	}
}

// Package sizes in a valid manifest may be large: the reader trusts the
// verified size, yet still stops at the first byte it cannot account for.
func TestHostilePackageLargerThanStream(t *testing.T) {
	f := hostileFixture(t)
	m := f.m
	m.Packages = slices.Clone(m.Packages)
	m.Packages[2].Size = catalog.MaxPackageSize
	b := compress(t, buildTar(t, f.entries(t), tarOpts{}))
	r, _, err := NewReader(bytes.NewReader(b), ReadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	err = r.Packages(t.Context(), m.Packages, func(catalog.Package, io.Reader) error { return nil })
	assertIs(t, err, ErrSize)
}

func ExampleMemberError() {
	err := &MemberError{Member: "packages/ab", Offset: 1536, Err: fmt.Errorf("%w: declares 10 bytes", ErrSize)}
	fmt.Println(errors.Is(err, ErrSize), errors.Is(err, fault.ErrVerification))
	// Output: true true
}
