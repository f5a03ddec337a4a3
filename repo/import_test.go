package repo

import (
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/airlock-project/airlock/bundle"
	"github.com/airlock-project/airlock/catalog"
	"github.com/airlock-project/airlock/fault"
	"github.com/airlock-project/airlock/keys"
	"github.com/airlock-project/airlock/progress"
	"github.com/airlock-project/airlock/repo/repotest"
	"github.com/airlock-project/airlock/verify"
)

func TestImport(t *testing.T) {
	e := newEnv(t)
	key := e.issue(inventory("n1", "base", "3.3.2", "product", "21.1.0"))
	path := e.bundle(key, "base@3.4.0:100000", "product@22.1.0:50000", "license@1.1.0:0")

	r := e.openRO()
	vres, err := r.Verify(context.Background(), path, ImportOptions{})
	r.Close()
	if err != nil {
		t.Fatalf("verify: %v", err)
	}
	res := e.importBundle(path, ImportOptions{})
	if res.Bundle != vres.Bundle || res.KeyID != key || res.Site != testSite || len(res.Packages) != 3 {
		t.Fatalf("result %+v", res)
	}
	if res.Courier != e.world.Courier.Fingerprint() || res.Vendor != e.world.Vendor.Fingerprint() {
		t.Errorf("signers %v %v", res.Courier, res.Vendor)
	}
	fi, _ := os.Stat(path)
	if res.Size != fi.Size() {
		t.Errorf("size %d, file %d", res.Size, fi.Size())
	}
	data, _ := os.ReadFile(path)
	if d, _, _ := catalog.DigestReader(strings.NewReader(string(data))); d != res.SHA256 {
		t.Errorf("sha256 %v, file %v", res.SHA256, d)
	}

	r = e.openRO()
	defer r.Close()
	pkgs, err := r.Packages()
	if err != nil || len(pkgs) != 3 {
		t.Fatalf("packages %v, %v", pkgs, err)
	}
	for _, p := range pkgs {
		if p.Bundle != res.Bundle || !p.Imported.Equal(res.Imported) {
			t.Errorf("package %s: bundle %s imported %v", p.ID(), p.Bundle, p.Imported)
		}
		f, err := r.OpenPackage(p.SHA256)
		if err != nil {
			t.Fatal(err)
		}
		d, n, err := catalog.DigestReader(f)
		f.Close()
		if err != nil || d != p.SHA256 || n != p.Size {
			t.Errorf("blob of %s: %v %d %v", p.ID(), d, n, err)
		}
	}
	keysList, _ := r.Keys()
	if len(keysList) != 1 || keysList[0].State != KeyFulfilled || keysList[0].Bundle != res.Bundle {
		t.Errorf("keys after import: %+v", keysList)
	}
	bundles, _ := r.Bundles()
	if len(bundles) != 1 || bundles[0].ID != res.Bundle || bundles[0].Actor != "tester@host" || len(bundles[0].Packages) != 3 {
		t.Errorf("bundles: %+v", bundles)
	}
	log, _ := r.AuditLog()
	last := log[len(log)-1]
	if last.Action != ActionBundleImport || !strings.Contains(string(last.Details), res.Bundle) {
		t.Errorf("last audit entry %+v", last)
	}
	r.Close()
	if rep := e.mustCheck(); rep.Packages != 3 || rep.Bundles != 1 || rep.Bytes != 150000 {
		t.Errorf("check report %+v", rep)
	}
}

func TestImportDeduplicates(t *testing.T) {
	e := newEnv(t)
	e.importBundle(e.bundle(e.issue(), "base@3.4.0", "product@22.1.0"), ImportOptions{})
	res := e.importBundle(e.bundle(e.issue(), "product@22.1.0", "product@23.1.0"), ImportOptions{})
	if res.Packages[0].New || !res.Packages[1].New {
		t.Errorf("new flags %v %v, want false true", res.Packages[0].New, res.Packages[1].New)
	}
	var blobs int
	r := e.openRO()
	r.Blobs().Walk(func(catalog.Digest, int64, string) error { blobs++; return nil })
	pkgs, _ := r.Packages()
	r.Close()
	if blobs != 3 || len(pkgs) != 3 {
		t.Errorf("%d blobs, %d packages; want 3 and 3", blobs, len(pkgs))
	}
	e.mustCheck()
}

func TestImportVolumes(t *testing.T) {
	e := newEnv(t)
	path := e.bundleSpec(repotest.BundleSpec{KeyID: e.issue(), Split: bundle.MinSplit}, "base@3.4.0:300000")
	res := e.importBundle(path+".001", ImportOptions{})
	if len(res.Packages) != 1 || res.Size < 300000 {
		t.Errorf("result %+v", res)
	}
	e.mustCheck()
}

// TestRefusedBundles imports hostile and unacceptable bundles and checks
// that each is refused with its exit code and leaves the repository exactly
// as it was (every file but *.lock, and every directory).
func TestRefusedBundles(t *testing.T) {
	type setup struct {
		e    *env
		key  catalog.KeyID
		opts ImportOptions
	}
	ctx := context.Background()
	for _, tc := range []struct {
		name string
		code int
		is   error
		// prepare returns the bundle to import; it may change the
		// repository first (those changes are in the "before" snapshot).
		prepare func(s *setup) string
	}{
		{"byte flipped mid-bundle", 3, fault.ErrVerification, func(s *setup) string {
			p := s.e.bundle(s.key, "base@3.4.0:200000", "product@22.1.0:200000")
			fi, _ := os.Stat(p)
			must(t, repotest.FlipByte(p, fi.Size()/2))
			return p
		}},
		{"last byte flipped", 3, fault.ErrVerification, func(s *setup) string {
			p := s.e.bundle(s.key, "base@3.4.0:200000")
			must(t, repotest.FlipByte(p, -1))
			return p
		}},
		{"truncated to two thirds", 3, bundle.ErrTruncated, func(s *setup) string {
			p := s.e.bundle(s.key, "base@3.4.0:200000", "product@22.1.0:200000")
			fi, _ := os.Stat(p)
			must(t, os.Truncate(p, fi.Size()*2/3))
			return p
		}},
		{"truncated before the last package ends", 3, fault.ErrVerification, func(s *setup) string {
			p := s.e.bundle(s.key, "base@3.4.0:2000", "product@22.1.0:200000")
			fi, _ := os.Stat(p)
			must(t, os.Truncate(p, fi.Size()-20))
			return p
		}},
		{"empty file", 3, bundle.ErrTruncated, func(s *setup) string {
			p := filepath.Join(t.TempDir(), "empty")
			must(t, os.WriteFile(p, nil, 0o644))
			return p
		}},
		{"untrusted courier", 3, keys.ErrUnknownSigner, func(s *setup) string {
			mallory, err := keys.Generate(keys.GenerateOptions{Name: "Mallory"})
			must(t, err)
			return s.e.bundleSpec(repotest.BundleSpec{KeyID: s.key, ManifestSigner: mallory}, "base@3.4.0")
		}},
		{"manifest signed by the vendor key", 3, keys.ErrWrongRole, func(s *setup) string {
			return s.e.bundleSpec(repotest.BundleSpec{KeyID: s.key, ManifestSigner: s.e.world.Vendor}, "base@3.4.0")
		}},
		{"entitlement signed by the courier key", 3, keys.ErrWrongRole, func(s *setup) string {
			return s.e.bundleSpec(repotest.BundleSpec{KeyID: s.key, EntitlementSigner: s.e.world.Courier}, "base@3.4.0")
		}},
		{"courier removed from trust", 3, keys.ErrUnknownSigner, func(s *setup) string {
			p := s.e.bundle(s.key, "base@3.4.0")
			r := s.e.open()
			_, err := r.TrustRemove(s.e.world.Courier.Fingerprint())
			r.Close()
			must(t, err)
			return p
		}},
		{"wrong site", 4, verify.ErrWrongSite, func(s *setup) string {
			return s.e.bundleSpec(repotest.BundleSpec{KeyID: s.key, Site: "plant-4"}, "base@3.4.0")
		}},
		{"replay", 4, ErrKeyFulfilled, func(s *setup) string {
			p := s.e.bundle(s.key, "base@3.4.0")
			s.e.importBundle(p, ImportOptions{})
			return p
		}},
		{"second bundle for a fulfilled key", 4, ErrKeyFulfilled, func(s *setup) string {
			s.e.importBundle(s.e.bundle(s.key, "base@3.4.0"), ImportOptions{})
			return s.e.bundle(s.key, "product@22.1.0")
		}},
		{"bundle id already imported", 4, ErrReplay, func(s *setup) string {
			first := s.e.bundle(s.key, "base@3.4.0")
			res := s.e.importBundle(first, ImportOptions{})
			return s.e.bundleSpec(repotest.BundleSpec{KeyID: s.e.issue(), ID: res.Bundle}, "product@22.1.0")
		}},
		{"revoked key", 4, ErrKeyRevoked, func(s *setup) string {
			r := s.e.open()
			_, err := r.RevokeKey(string(s.key))
			r.Close()
			must(t, err)
			return s.e.bundle(s.key, "base@3.4.0")
		}},
		{"expired key", 4, ErrKeyExpired, func(s *setup) string {
			p := s.e.bundleSpec(repotest.BundleSpec{KeyID: s.key, Valid: 30 * 24 * time.Hour}, "base@3.4.0")
			s.e.advance(DefaultKeyExpiry + time.Hour)
			return p
		}},
		{"key not issued here", 4, ErrKeyUnknown, func(s *setup) string {
			id, err := catalog.NewKeyID()
			must(t, err)
			return s.e.bundle(id, "base@3.4.0")
		}},
		{"expired bundle", 4, verify.ErrExpired, func(s *setup) string {
			return s.e.bundleSpec(repotest.BundleSpec{KeyID: s.key, Now: s.e.clock().Add(-2 * time.Hour), Valid: time.Hour}, "base@3.4.0")
		}},
		{"downgrade against a node of the inventory", 4, ErrDowngrade, func(s *setup) string {
			return s.e.bundle(s.e.issue(inventory("n1", "product", "21.1.0")), "base@3.4.0", "product@21.0.5")
		}},
		{"same version, other file", 4, ErrConflict, func(s *setup) string {
			s.e.importBundle(s.e.bundle(s.e.issue(), "base@3.4.0:1000"), ImportOptions{})
			return s.e.bundle(s.key, "base@3.4.0:2000")
		}},
		{"injected failure after a package was ingested", 1, nil, func(s *setup) string {
			s.opts.Hook = failAt(HookIngested)
			return s.e.bundle(s.key, "base@3.4.0", "product@22.1.0")
		}},
		{"injected failure after verification", 1, nil, func(s *setup) string {
			s.opts.Hook = failAt(HookVerified)
			return s.e.bundle(s.key, "base@3.4.0", "product@22.1.0")
		}},
		{"injected failure after publication", 1, nil, func(s *setup) string {
			s.opts.Hook = failAt(HookPublished)
			return s.e.bundle(s.key, "base@3.4.0", "product@22.1.0")
		}},
		{"injected failure in the transaction", 1, nil, func(s *setup) string {
			s.opts.Hook = failAt(HookCommit)
			return s.e.bundle(s.key, "base@3.4.0", "product@22.1.0")
		}},
		{"blob directory replaced by a file", 1, nil, func(s *setup) string {
			p := s.e.bundle(s.key, "base@3.4.0", "product@22.1.0")
			pk, err := (repotest.Pkg{Name: "product", Version: "22.1.0", Size: 4096}).Package()
			must(t, err)
			shard := filepath.Join(s.e.dir, BlobDir, "sha256", pk.SHA256.String()[:2])
			must(t, os.WriteFile(shard, []byte("in the way"), 0o644))
			return p
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := &setup{e: newEnv(t)}
			s.key = s.e.issue()
			path := tc.prepare(s)
			before := s.e.snapshot()
			r := s.e.open()
			_, err := r.Import(ctx, path, s.opts)
			r.Close()
			if tc.is != nil {
				wantClass(t, err, tc.code, tc.is)
			} else {
				wantClass(t, err, tc.code)
			}
			if after := s.e.snapshot(); after != before {
				t.Errorf("repository changed by a refused import:\nbefore:\n%s\nafter:\n%s", before, after)
			}
			if !strings.Contains(err.Error(), path) {
				t.Errorf("error does not name the bundle %s: %v", path, err)
			}
			// Verify refuses it the same way and changes nothing either
			// (operational failures are injected where only Import writes).
			if tc.code != fault.ExitOperational {
				r := s.e.openRO()
				_, verr := r.Verify(ctx, path, ImportOptions{})
				r.Close()
				if fault.Code(verr) != tc.code {
					t.Errorf("verify: %v (exit %d), import exit %d", verr, fault.Code(verr), tc.code)
				}
				if after := s.e.snapshot(); after != before {
					t.Error("repository changed by verify")
				}
			}
		})
	}
}

func failAt(point string) func(string) error {
	return func(p string) error {
		if p == point {
			return errors.New("injected failure at " + p)
		}
		return nil
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func TestRefusalMessages(t *testing.T) {
	e := newEnv(t)
	key := e.issue()
	p := e.bundle(key, "base@3.4.0")
	res := e.importBundle(p, ImportOptions{})
	older := e.bundle(e.issue(inventory("n1", "base", "3.4.0")), "base@3.3.0")
	r := e.open()
	defer r.Close()
	_, err := r.Import(context.Background(), p, ImportOptions{})
	for _, want := range []string{string(key), res.Bundle, "airlock key new"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("replay message %q lacks %q", err, want)
		}
	}
	_, err = r.Import(context.Background(), older, ImportOptions{})
	for _, want := range []string{"base@3.3.0", "base@3.4.0", "--allow-downgrade"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("downgrade message %q lacks %q", err, want)
		}
	}
}

// TestImportIntermediateVersion: a version older than one the repository
// stores, but not older than any node runs, is an intermediate step of the
// install order (21.1.0 -> 22.2.0 -> 23.1.0), not a downgrade.
func TestImportIntermediateVersion(t *testing.T) {
	e := newEnv(t)
	e.importBundle(e.bundle(e.issue(), "product@23.1.0"), ImportOptions{})
	res := e.importBundle(e.bundle(e.issue(inventory("n1", "product", "21.1.0")), "product@22.2.0"), ImportOptions{})
	if len(res.Packages) != 1 || !res.Packages[0].New {
		t.Errorf("result %+v", res)
	}
	e.mustCheck()
}

func TestAllowDowngrade(t *testing.T) {
	e := newEnv(t)
	e.importBundle(e.bundle(e.issue(), "base@3.4.0"), ImportOptions{})
	res := e.importBundle(e.bundle(e.issue(inventory("n1", "base", "3.4.0")), "base@3.3.0"), ImportOptions{AllowDowngrade: true})
	if len(res.Packages) != 1 || !res.Packages[0].New {
		t.Errorf("result %+v", res)
	}
	e.mustCheck()
}

// TestImportRestoresMissingBlob: a stored package whose blob was lost is
// stored again by a bundle that carries it.
func TestImportRestoresMissingBlob(t *testing.T) {
	e := newEnv(t)
	res := e.importBundle(e.bundle(e.issue(), "base@3.4.0"), ImportOptions{})
	r := e.open()
	must(t, r.Blobs().Remove(res.Packages[0].SHA256))
	r.Close()
	res2 := e.importBundle(e.bundle(e.issue(), "base@3.4.0", "product@22.1.0"), ImportOptions{})
	if res2.Packages[0].New {
		t.Error("a stored package was counted as new")
	}
	e.mustCheck()
}

func TestImportProgress(t *testing.T) {
	e := newEnv(t)
	p := e.bundle(e.issue(), "base@3.4.0:100000")
	rep := &countingReporter{}
	e.importBundle(p, ImportOptions{Progress: rep})
	fi, _ := os.Stat(p)
	if rep.total != fi.Size() || rep.done != fi.Size() || !rep.ended || !rep.waited {
		t.Errorf("progress: total %d done %d ended %v waited %v; file %d", rep.total, rep.done, rep.ended, rep.waited, fi.Size())
	}
}

type countingReporter struct {
	total, done   int64
	ended, waited bool
}

func (c *countingReporter) Start(_ string, total int64) progress.Task {
	c.total = total
	return c
}
func (c *countingReporter) Wait()              { c.waited = true }
func (c *countingReporter) Add(n int64)        { c.done += n }
func (c *countingReporter) SetCurrent(n int64) { c.done = n }
func (c *countingReporter) Done(error)         { c.ended = true }

// The import must not hold the whole bundle in memory; a reader that is
// not a file (a pipe) works too.
func TestImportFromPipe(t *testing.T) {
	e := newEnv(t)
	p := e.bundle(e.issue(), "base@3.4.0:100000")
	pr, pw, err := os.Pipe()
	must(t, err)
	go func() {
		f, _ := os.Open(p)
		io.Copy(pw, f)
		f.Close()
		pw.Close()
	}()
	defer pr.Close()
	path := "/dev/fd/" + strconv.Itoa(int(pr.Fd()))
	if _, err := os.Stat(path); err != nil {
		t.Skip("no /dev/fd")
	}
	e.importBundle(path, ImportOptions{})
	e.mustCheck()
}
