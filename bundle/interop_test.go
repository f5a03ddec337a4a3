package bundle

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// tarZstd returns the path of GNU tar if it and zstd are installed.
func tarZstd(t *testing.T) string {
	t.Helper()
	tarBin, err := exec.LookPath("tar")
	if err != nil {
		t.Skip("tar not installed")
	}
	if _, err := exec.LookPath("zstd"); err != nil {
		t.Skip("zstd not installed")
	}
	return tarBin
}

func TestStockTarListsAndExtracts(t *testing.T) {
	tarBin := tarZstd(t)
	f := newFixture(t, payload(1, 1<<20+3), payload(2, 0), payload(3, 777))
	dir := t.TempDir()
	path := filepath.Join(dir, "b.airlock")
	writeSplit(t, f, path, 0)

	out, err := exec.Command(tarBin, "--zstd", "-tf", path).CombinedOutput()
	if err != nil {
		t.Fatalf("tar -t: %v\n%s", err, out)
	}
	var want []string
	for _, e := range f.entries(t) {
		want = append(want, e.name)
	}
	if got := strings.Fields(string(out)); !slices.Equal(got, want) {
		t.Errorf("tar lists %v, want %v", got, want)
	}

	out, err = exec.Command(tarBin, "--zstd", "-tvf", path).CombinedOutput()
	if err != nil {
		t.Fatalf("tar -tv: %v\n%s", err, out)
	}
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		if !strings.HasPrefix(line, "-rw-r--r-- 0/0 ") || !strings.Contains(line, " 2025-03-14 09:26 ") {
			t.Errorf("tar -tv line %q: want a 0644 regular file of 0/0 dated the manifest's creation", line)
		}
	}

	ex := t.TempDir()
	if out, err := exec.Command(tarBin, "--zstd", "-xf", path, "-C", ex).CombinedOutput(); err != nil {
		t.Fatalf("tar -x: %v\n%s", err, out)
	}
	for _, e := range f.entries(t) {
		got, err := os.ReadFile(filepath.Join(ex, filepath.FromSlash(e.name)))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, e.data) {
			t.Errorf("tar extracted %s with %d bytes, differing from the %d written", e.name, len(got), len(e.data))
		}
	}
}

// A bundle recompressed by the zstd tool, or archived by GNU tar (which pads
// to 10 KiB records), is still read: the reader's checks follow the formats,
// not this package's writer.
func TestReadsStockTools(t *testing.T) {
	tarBin := tarZstd(t)
	f := newFixture(t, payload(1, 300<<10), payload(2, 1))
	whole := f.bundle(t, WriteOptions{})
	plain := zstdTool(t, whole, "-d")

	for _, args := range [][]string{{"-1"}, {"-19"}, {"-3", "--no-check"}, {"-3", "-T2", "--content-size"}, {"-3", "--no-content-size"}} {
		t.Run("zstd "+strings.Join(args, " "), func(t *testing.T) {
			if _, err := readBundle(bytes.NewReader(zstdTool(t, plain, args...)), ReadOptions{}); err != nil {
				t.Fatalf("read: %v", err)
			}
		})
	}
	t.Run("zstd --long=27 is over the window limit", func(t *testing.T) {
		big := append(bytes.Clone(plain), make([]byte, 20<<20)...) // window follows the input size
		_, err := readBundle(bytes.NewReader(zstdTool(t, big, "--long=27", "-3")), ReadOptions{})
		assertIs(t, err, ErrCompression)
	})
	t.Run("GNU tar", func(t *testing.T) {
		dir := t.TempDir()
		var names []string
		for _, e := range f.entries(t) {
			p := filepath.Join(dir, filepath.FromSlash(e.name))
			if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(p, e.data, 0o644); err != nil {
				t.Fatal(err)
			}
			names = append(names, e.name)
		}
		out := filepath.Join(t.TempDir(), "gnu.tar.zst")
		args := append([]string{"--zstd", "--format=ustar", "--owner=0", "--group=0", "--numeric-owner", "-cf", out, "-C", dir}, names...)
		if msg, err := exec.Command(tarBin, args...).CombinedOutput(); err != nil {
			t.Fatalf("tar -c: %v\n%s", err, msg)
		}
		b, err := os.ReadFile(out)
		if err != nil {
			t.Fatal(err)
		}
		if n := len(zstdTool(t, b, "-d")); n%10240 != 0 {
			t.Fatalf("GNU tar wrote %d bytes, expected whole 10 KiB records", n)
		}
		if _, err := readBundle(bytes.NewReader(b), ReadOptions{}); err != nil {
			t.Fatalf("read: %v", err)
		}
	})
}

func zstdTool(t *testing.T, in []byte, args ...string) []byte {
	t.Helper()
	cmd := exec.Command("zstd", append([]string{"-q", "-c"}, args...)...)
	cmd.Stdin = bytes.NewReader(in)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		t.Fatalf("zstd %v: %v\n%s", args, err, errb.String())
	}
	return out.Bytes()
}
