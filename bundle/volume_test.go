package bundle

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/airlock-project/airlock/fault"
)

func TestParseSize(t *testing.T) {
	good := map[string]int64{
		"123":        123,
		"1":          1,
		"700MiB":     700 << 20,
		"700M":       700 << 20,
		"700mb":      700e6,
		"1G":         1 << 30,
		"1GB":        1e9,
		"4GiB-1":     4<<30 - 1,
		"4GiB - 1":   4<<30 - 1,
		"4gib-1":     4<<30 - 1,
		"1T":         1 << 40,
		"2TiB":       2 << 40,
		"1TB":        1e12,
		"64KiB":      64 << 10,
		"64k":        64 << 10,
		"10KB":       10e3,
		"1G+1":       1<<30 + 1,
		"1G+1M":      1<<30 + 1<<20,
		"100B":       100,
		" 5 MiB ":    5 << 20,
		"1000000TiB": 1000000 << 40,
	}
	for in, want := range good {
		got, err := ParseSize(in)
		if err != nil || got != want {
			t.Errorf("ParseSize(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, in := range []string{"", "0", "-1", "1-1", "1-2", "1.5G", "G", "1X", "1GiBB", "1G-", "1G+-1", "1e9",
		"99999999999999999999", "9999999999TiB", "1G-1-1", "abc", "1 2", "0x10", "+5"} {
		if n, err := ParseSize(in); !errors.Is(err, fault.ErrUsage) || !errors.Is(err, ErrSizeSyntax) {
			t.Errorf("ParseSize(%q) = %d, %v; want a usage error", in, n, err)
		}
	}
}

// writeSplit writes f's bundle with CreateFile and returns the paths.
func writeSplit(t *testing.T, f fixture, path string, split int64) []string {
	t.Helper()
	out, err := CreateFile(path, split)
	if err != nil {
		t.Fatal(err)
	}
	defer out.Abort()
	if err := Write(context.Background(), out, f.m, fakeSigner{}, f.ent, f.open, WriteOptions{Concurrency: 2}); err != nil {
		t.Fatal(err)
	}
	if err := out.Commit(); err != nil {
		t.Fatal(err)
	}
	return out.Paths()
}

func readPath(path string) (readResult, error) {
	rc, err := Open(path)
	if err != nil {
		return readResult{}, err
	}
	defer rc.Close()
	return readBundle(rc, ReadOptions{})
}

func dirNames(t *testing.T, dir string) []string {
	t.Helper()
	es, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range es {
		names = append(names, e.Name())
	}
	return names
}

func TestSingleFile(t *testing.T) {
	f := newFixture(t, payload(1, 200<<10), payload(2, 5))
	dir := t.TempDir()
	path := filepath.Join(dir, "b.airlock")
	paths := writeSplit(t, f, path, 0)
	if !slices.Equal(paths, []string{path}) {
		t.Errorf("Paths = %v", paths)
	}
	if names := dirNames(t, dir); !slices.Equal(names, []string{"b.airlock"}) {
		t.Errorf("directory holds %v, want only the bundle", names)
	}
	got := mustReadAll(t, mustOpen(t, path))
	if want := f.bundle(t, WriteOptions{Concurrency: 2}); !bytes.Equal(got, want) {
		t.Errorf("file differs from the bundle written to memory")
	}
	res, err := readPath(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(res.data) != 2 || !bytes.Equal(res.data[0], f.data[f.m.Packages[0].SHA256]) {
		t.Errorf("packages read back differ")
	}
}

func mustOpen(t *testing.T, path string) *os.File {
	t.Helper()
	fh, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { fh.Close() })
	return fh
}

func splitFixture(t *testing.T) (fixture, string, []string) {
	t.Helper()
	f := newFixture(t, payload(1, 300<<10), payload(2, 0), payload(3, 100<<10))
	dir := t.TempDir()
	path := filepath.Join(dir, "b.airlock")
	return f, path, writeSplit(t, f, path, MinSplit)
}

func TestSplitRoundTrip(t *testing.T) {
	f, path, paths := splitFixture(t)
	whole := f.bundle(t, WriteOptions{Concurrency: 2})
	nvol := (len(whole) + MinSplit - 1) / MinSplit
	if nvol < 3 {
		t.Fatalf("bundle of %d bytes makes only %d volumes; the test needs 3 or more", len(whole), nvol)
	}
	if len(paths) != nvol+1 || paths[0] != path+".001" || paths[nvol] != path+".sha256" {
		t.Fatalf("Paths = %v, want %d volumes and the sha256 list", paths, nvol)
	}
	var cat []byte
	for i, p := range paths[:nvol] {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		if i < nvol-1 && len(b) != MinSplit {
			t.Errorf("%s is %d bytes, want %d", p, len(b), MinSplit)
		}
		cat = append(cat, b...)
	}
	if !bytes.Equal(cat, whole) {
		t.Errorf("the concatenated volumes differ from the bundle")
	}
	for _, n := range dirNames(t, filepath.Dir(path)) {
		if strings.HasSuffix(n, partialSuffix) {
			t.Errorf("temporary file %s left behind", n)
		}
	}
	res, err := readPath(path + ".001")
	if err != nil {
		t.Fatal(err)
	}
	for i, p := range f.m.Packages {
		if !bytes.Equal(res.data[i], f.data[p.SHA256]) {
			t.Errorf("package %d differs", i)
		}
	}
}

func TestSplitSha256sum(t *testing.T) {
	bin, err := exec.LookPath("sha256sum")
	if err != nil {
		t.Skip("sha256sum not installed")
	}
	_, path, _ := splitFixture(t)
	cmd := exec.Command(bin, "--strict", "-c", filepath.Base(path)+".sha256")
	cmd.Dir = filepath.Dir(path)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("sha256sum -c: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), "b.airlock.001: OK") || !strings.Contains(string(out), "b.airlock.003: OK") {
		t.Errorf("sha256sum -c output lacks the volumes:\n%s", out)
	}
}

func TestSplitMissingVolume(t *testing.T) {
	_, path, _ := splitFixture(t)
	if err := os.Remove(path + ".002"); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(path + ".003"); err != nil {
		t.Fatal(err)
	}
	_, err := Open(path + ".001")
	assertIs(t, err, ErrVolume)
	var ve *VolumeError
	if !errors.As(err, &ve) || ve.Volume != path+".002" {
		t.Errorf("error %v does not name %s as the volume", err, path+".002")
	}
	if !strings.Contains(err.Error(), "b.airlock.003") || !strings.Contains(err.Error(), "copy it again") {
		t.Errorf("error %q should name every missing volume and the next step", err)
	}
}

func TestSplitDamagedVolume(t *testing.T) {
	for _, where := range []string{"start", "middle", "end"} {
		t.Run(where, func(t *testing.T) {
			_, path, _ := splitFixture(t)
			vol := path + ".002"
			b, err := os.ReadFile(vol)
			if err != nil {
				t.Fatal(err)
			}
			i := map[string]int{"start": 0, "middle": len(b) / 2, "end": len(b) - 1}[where]
			b[i] ^= 0x20
			if err := os.WriteFile(vol, b, 0o644); err != nil {
				t.Fatal(err)
			}
			_, err = readPath(path + ".001")
			assertIs(t, err, ErrVolume)
			var ve *VolumeError
			if !errors.As(err, &ve) || ve.Volume != vol {
				t.Fatalf("error %v does not name %s", err, vol)
			}
			if !strings.Contains(err.Error(), "b.airlock.002") {
				t.Errorf("message %q does not name the volume", err)
			}
		})
	}
}

func TestSplitShortVolume(t *testing.T) {
	_, path, _ := splitFixture(t)
	vol := path + ".003"
	b, err := os.ReadFile(vol)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(vol, b[:len(b)-100], 0o644); err != nil {
		t.Fatal(err)
	}
	_, err = readPath(path + ".001")
	var ve *VolumeError
	if !errors.As(err, &ve) || ve.Volume != vol {
		t.Fatalf("error %v does not name %s", err, vol)
	}
}

func TestOpenRefusals(t *testing.T) {
	_, path, _ := splitFixture(t)
	t.Run("second volume", func(t *testing.T) {
		_, err := Open(path + ".002")
		if !errors.Is(err, fault.ErrUsage) || !strings.Contains(err.Error(), "b.airlock.001") {
			t.Fatalf("Open(.002) = %v, want a usage error pointing at .001", err)
		}
	})
	t.Run("base name", func(t *testing.T) {
		_, err := Open(path)
		if !errors.Is(err, fault.ErrUsage) || !strings.Contains(err.Error(), "b.airlock.001") {
			t.Fatalf("Open(base) = %v, want a usage error pointing at .001", err)
		}
	})
	t.Run("bad list", func(t *testing.T) {
		sums := path + ".sha256"
		b, err := os.ReadFile(sums)
		if err != nil {
			t.Fatal(err)
		}
		for name, s := range map[string]string{
			"renamed": strings.Replace(string(b), "b.airlock.002", "b.airlock.009", 1),
			"short":   string(b[:10]),
			"empty":   "",
			"bad hex": strings.Replace(string(b), string(b[:64]), strings.Repeat("g", 64), 1),
		} {
			if err := os.WriteFile(sums, []byte(s), 0o644); err != nil {
				t.Fatal(err)
			}
			_, err := Open(path + ".001")
			var ve *VolumeError
			if !errors.As(err, &ve) || ve.Volume != sums || !errors.Is(err, ErrVolume) {
				t.Errorf("%s: Open = %v, want a volume error naming %s", name, err, sums)
			}
		}
		if err := os.Remove(sums); err != nil {
			t.Fatal(err)
		}
		_, err = Open(path + ".001")
		assertIs(t, err, ErrVolume)
		if !strings.Contains(err.Error(), "b.airlock.sha256") {
			t.Errorf("error %q does not name the missing list", err)
		}
	})
}

func TestAbortRemovesEverything(t *testing.T) {
	for _, split := range []int64{0, MinSplit} {
		dir := t.TempDir()
		out, err := CreateFile(filepath.Join(dir, "b"), split)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := out.Write(make([]byte, 3*MinSplit+5)); err != nil {
			t.Fatal(err)
		}
		if err := out.Abort(); err != nil {
			t.Fatal(err)
		}
		if err := out.Abort(); err != nil {
			t.Fatalf("second Abort: %v", err)
		}
		if names := dirNames(t, dir); len(names) != 0 {
			t.Errorf("split %d: Abort left %v", split, names)
		}
		if _, err := out.Write([]byte{1}); err == nil {
			t.Errorf("split %d: Write after Abort succeeded", split)
		}
	}
}

func TestCommitRemovesStaleVolumes(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "b")
	for i := 1; i <= 6; i++ {
		if err := os.WriteFile(volumeName(path, i), []byte("old"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	out, err := CreateFile(path, MinSplit)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := out.Write(make([]byte, MinSplit+1)); err != nil {
		t.Fatal(err)
	}
	if err := out.Commit(); err != nil {
		t.Fatal(err)
	}
	if err := out.Abort(); err != nil {
		t.Fatalf("Abort after Commit: %v", err)
	}
	if names := dirNames(t, dir); !slices.Equal(names, []string{"b.001", "b.002", "b.sha256"}) {
		t.Errorf("directory holds %v", names)
	}
}

func TestCreateFileRefusesTinySplit(t *testing.T) {
	if _, err := CreateFile(filepath.Join(t.TempDir(), "b"), 1000); !errors.Is(err, fault.ErrUsage) {
		t.Fatalf("CreateFile(split 1000) = %v, want a usage error", err)
	}
}

// progressReader stands for a progress counter that forwards CheckVolume.
type progressReader struct {
	r io.Reader
	n int64
}

func (p *progressReader) Read(b []byte) (int, error) {
	n, err := p.r.Read(b)
	p.n += int64(n)
	return n, err
}

func (p *progressReader) CheckVolume() error {
	if vc, ok := p.r.(VolumeChecker); ok {
		return vc.CheckVolume()
	}
	return nil
}

// Damage that the stream reveals in the middle of a volume (here, a
// package's digest) is blamed on the volume through CheckVolume, also
// through a wrapper that forwards it; a wrapper that does not forward it
// leaves a damaged bundle.
func TestVolumeCheckerThroughWrapper(t *testing.T) {
	target := payload(32, 10<<10)
	rnd := func(seed uint64) []byte { return payload(seed, 3<<20)[:3<<19] } // the random half
	f := newFixture(t, rnd(31), target, rnd(33))
	path := filepath.Join(t.TempDir(), "b")
	writeSplit(t, f, path, 1<<20)
	vol := path + ".002"
	b, err := os.ReadFile(vol)
	if err != nil {
		t.Fatal(err)
	}
	at := bytes.Index(b, target[:64])
	if at < 0 || at > len(b)-64<<10 {
		t.Skipf("the target package is not stored verbatim well inside %s (at %d)", vol, at)
	}
	b[at+10] ^= 0x20
	if err := os.WriteFile(vol, b, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, forward := range []bool{true, false} {
		rc, err := Open(path + ".001")
		if err != nil {
			t.Fatal(err)
		}
		var src io.Reader = &progressReader{r: rc}
		if !forward {
			src = struct{ io.Reader }{src}
		}
		_, err = readBundle(src, ReadOptions{})
		rc.Close()
		var ve *VolumeError
		if forward != errors.As(err, &ve) {
			t.Fatalf("forward %v: %v", forward, err)
		}
		if forward && ve.Volume != vol {
			t.Errorf("damage blamed on %s, want %s", ve.Volume, vol)
		}
		// Either way, the damage found in the stream is kept.
		assertIs(t, err, ErrDigest)
	}
}

func TestOpenStreamsAndDirectories(t *testing.T) {
	// A device or pipe is read as a stream: /dev/null is an empty bundle,
	// which the reader then refuses as truncated (exit 3), not an I/O error.
	r, err := Open(os.DevNull)
	if err != nil {
		t.Fatalf("Open(%s): %v", os.DevNull, err)
	}
	_, _, err = NewReader(r, ReadOptions{})
	r.Close()
	if !errors.Is(err, ErrTruncated) {
		t.Fatalf("empty stream: %v, want ErrTruncated", err)
	}
	if _, err := Open(t.TempDir()); !errors.Is(err, fault.ErrUsage) {
		t.Fatalf("Open(directory): %v, want a usage error", err)
	}
}
