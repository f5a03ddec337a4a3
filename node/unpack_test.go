package node

import (
	"archive/tar"
	"bytes"
	"context"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestResolvesInside(t *testing.T) {
	for _, tc := range []struct {
		name  string
		links map[string]string
		link  string
		want  bool
	}{
		{"sibling", map[string]string{"lib/a.so": "a.so.1"}, "lib/a.so", true},
		{"up and over", map[string]string{"bin/lib": "../lib"}, "bin/lib", true},
		{"to the root", map[string]string{"a/root": ".."}, "a/root", true},
		{"above the root", map[string]string{"a/up": "../.."}, "a/up", false},
		{"above from the top", map[string]string{"up": ".."}, "up", false},
		{"dot", map[string]string{"self": "."}, "self", true},
		{"through a link to the root", map[string]string{"q": ".", "p": "q/.."}, "p", false},
		{"through a deep link", map[string]string{"d": "x/y", "p": "d/../.."}, "p", true},
		{"through a deep link, too far", map[string]string{"d": "x/y", "p": "d/../../.."}, "p", false},
		{"chain inside", map[string]string{"a": "b", "b": "c/d"}, "a", true},
		{"chain to absolute", map[string]string{"a": "b", "b": "/etc"}, "a", false},
		{"loop", map[string]string{"a": "b", "b": "a"}, "a", false},
		{"dir link then up", map[string]string{"x/l": "../y", "p": "x/l/../.."}, "p", false},
	} {
		if got := resolvesInside(tc.link, tc.links); got != tc.want {
			t.Errorf("%s: resolvesInside(%q, %v) = %v, want %v", tc.name, tc.link, tc.links, got, tc.want)
		}
	}
}

func TestMemberPath(t *testing.T) {
	for in, want := range map[string]string{
		"a":      "a",
		"./a":    "a",
		"a/b/":   "a/b",
		"./":     ".",
		"a//b":   "a/b",
		"a/./b":  "a/b",
		"a.b..c": "a.b..c",
	} {
		got, err := memberPath(in)
		if err != nil || got != want {
			t.Errorf("memberPath(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	for _, in := range []string{"", "/a", "..", "../a", "a/..", "a/../b", `a\b`, "a\x00b", strings.Repeat("a/", maxDepth+1), strings.Repeat("a", maxMemberName+1)} {
		if got, err := memberPath(in); err == nil {
			t.Errorf("memberPath(%q) = %q, want an error", in, got)
		}
	}
}

func TestDetectPayload(t *testing.T) {
	tb := tarBytes(t, member{name: "a", body: "x"})
	for _, tc := range []struct {
		name string
		data []byte
		want payloadKind
	}{
		{"tar", tb, payloadTar},
		{"tar.zst", zstdBytes(t, tb), payloadTarZstd},
		{"zst of something else", zstdBytes(t, []byte("hello")), payloadPlain},
		{"plain", []byte("#!/bin/sh\necho hi\n"), payloadPlain},
		{"empty", nil, payloadPlain},
		{"zstd magic only", zstdMagic, payloadPlain},
	} {
		f, err := os.CreateTemp(t.TempDir(), "p")
		if err != nil {
			t.Fatal(err)
		}
		f.Write(tc.data)
		if got := detectPayload(f, int64(len(tc.data))); got != tc.want {
			t.Errorf("%s: detected %v, want %v", tc.name, got, tc.want)
		}
		f.Close()
	}
}

func TestExtractModesAndDirs(t *testing.T) {
	root := t.TempDir()
	r, err := os.OpenRoot(root)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	tb := tarBytes(t,
		member{name: "./", typ: tar.TypeDir},
		member{name: "d/", typ: tar.TypeDir, mode: 0o777},
		member{name: "d/", typ: tar.TypeDir},
		member{name: "d/x", body: "x", mode: 0o4777},
		member{name: "implicit/dir/f", body: "f", mode: 0o600},
		member{name: "pax_global_header", typ: tar.TypeXGlobalHeader},
	)
	if err := extractTar(context.Background(), tar.NewReader(bytes.NewReader(tb)), r, unpackLimits{maxBytes: 100, maxEntries: 10}); err != nil {
		t.Fatal(err)
	}
	for path, want := range map[string]fs.FileMode{"d": fs.ModeDir | 0o755, "d/x": 0o755, "implicit/dir/f": 0o644} {
		fi, err := os.Lstat(filepath.Join(root, path))
		if err != nil {
			t.Fatal(err)
		}
		if got := fi.Mode() &^ (fs.ModeSetuid | fs.ModeSetgid | fs.ModeSticky); got != want || fi.Mode()&fs.ModeSetuid != 0 {
			// A umask may clear group/other bits; never set them.
			if got&^want != 0 || fi.Mode()&fs.ModeSetuid != 0 {
				t.Errorf("%s: mode %v, want %v", path, fi.Mode(), want)
			}
		}
	}
	// A limit of exactly the content is enough; one byte less is not.
	root2 := t.TempDir()
	r2, _ := os.OpenRoot(root2)
	defer r2.Close()
	if err := extractTar(context.Background(), tar.NewReader(bytes.NewReader(tb)), r2, unpackLimits{maxBytes: 1, maxEntries: 10}); err == nil {
		t.Error("2 bytes of files under a limit of 1 were accepted")
	}
}

// FuzzExtractTar feeds arbitrary bytes to the extractor: it must never
// panic, never write outside its root, and leave only links that resolve
// inside it.
func FuzzExtractTar(f *testing.F) {
	f.Add(tarBytes(f, member{name: "a", body: "x"}, member{name: "l", typ: tar.TypeSymlink, link: "a"}))
	f.Add(tarBytes(f, member{name: "../x", body: "x"}))
	f.Add(tarBytes(f, member{name: "q", typ: tar.TypeSymlink, link: "."}, member{name: "p", typ: tar.TypeSymlink, link: "q/.."}))
	f.Add(tarBytes(f, member{name: "d", typ: tar.TypeSymlink, link: "x/y"}, member{name: "d/z", body: "z"}))
	f.Add(tarBytes(f, member{name: "a/", typ: tar.TypeDir}, member{name: "a/b/c", body: "c"}, member{name: "h", typ: tar.TypeLink, link: "a/b/c"}))
	f.Add([]byte("not a tar"))
	f.Fuzz(func(t *testing.T, data []byte) {
		parent := t.TempDir()
		root := filepath.Join(parent, "root")
		if err := os.Mkdir(root, 0o755); err != nil {
			t.Fatal(err)
		}
		r, err := os.OpenRoot(root)
		if err != nil {
			t.Fatal(err)
		}
		defer r.Close()
		extractTar(context.Background(), tar.NewReader(bytes.NewReader(data)), r, unpackLimits{maxBytes: 64 << 10, maxEntries: 32})
		if ents, _ := os.ReadDir(parent); len(ents) != 1 {
			t.Fatalf("something was written beside the root: %v", ents)
		}
		filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
			if err != nil || d.Type()&fs.ModeSymlink == 0 {
				return nil
			}
			real, err := filepath.EvalSymlinks(path)
			if err != nil {
				return nil // dangling: harmless
			}
			if rel, err := filepath.Rel(root, real); err != nil || rel == ".." || strings.HasPrefix(rel, "../") {
				t.Errorf("symlink %s resolves to %s, outside the root", path, real)
			}
			return nil
		})
	})
}
