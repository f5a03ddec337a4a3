package fetch

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/airlock-project/airlock/bundle"
	"github.com/airlock-project/airlock/catalog"
	"github.com/airlock-project/airlock/fault"
	"github.com/airlock-project/airlock/keys"
	"github.com/airlock-project/airlock/verify"
)

// assertNoBundle fails if anything of a bundle is at out.
func assertNoBundle(t *testing.T, out string) {
	t.Helper()
	for _, p := range []string{out, out + ".partial", out + ".001", out + ".001.partial", out + ".sha256"} {
		if _, err := os.Lstat(p); err == nil {
			t.Errorf("%s exists after a failed run", p)
		}
	}
}

func TestBundleRoundTrip(t *testing.T) {
	fx := newFixture(t, 300<<10, 1<<20, 70<<10)
	o := fx.bundleOptions("b1.airlock")
	o.JSON = true
	o.Parallel = 2
	var mu sync.Mutex
	var ackSawBundle []bool
	fx.fv.onAck = func(catalog.Digest) {
		_, err := os.Stat(o.Out)
		mu.Lock()
		ackSawBundle = append(ackSawBundle, err == nil)
		mu.Unlock()
	}
	var stdout, stderr bytes.Buffer
	if err := RunBundle(context.Background(), o, &stdout, &stderr); err != nil {
		t.Fatalf("RunBundle: %v\nstderr: %s", err, stderr.String())
	}
	var r BundleReport
	if err := json.Unmarshal(stdout.Bytes(), &r); err != nil {
		t.Fatalf("--json output: %v\n%s", err, stdout.String())
	}
	if r.Bundle != o.Out || !slices.Equal(r.Files, []string{o.Out}) {
		t.Errorf("report names %q %v, want %q", r.Bundle, r.Files, o.Out)
	}
	if len(r.Acknowledged) != 3 || fx.fv.ackCount() != 3 {
		t.Errorf("acknowledged %d (server counted %d), want 3", len(r.Acknowledged), fx.fv.ackCount())
	}
	for i, ok := range ackSawBundle {
		if !ok {
			t.Errorf("ack %d arrived before the bundle was committed", i)
		}
	}
	if len(ackSawBundle) != 3 {
		t.Errorf("server saw %d acks", len(ackSawBundle))
	}
	if p := fx.fv.peak.Load(); p > 2 {
		t.Errorf("%d downloads at once with --parallel 2", p)
	}
	if got, want := fx.fv.served.Load(), fx.totalSize(); got != want || r.Downloaded != want {
		t.Errorf("served %d bytes, report says %d, want %d", got, r.Downloaded, want)
	}
	if _, err := os.Stat(o.Out + CacheSuffix); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("default cache left behind: %v", err)
	}
	if r.Site != fx.site || r.KeyID != fx.key.ID || r.Courier != fx.courier.Fingerprint().String() || !r.Expires.Equal(fx.key.Expires) {
		t.Errorf("report %+v does not match the entitlement", r)
	}
	for i, p := range r.Packages {
		if p.SHA256 != fx.fv.pkgs[i].meta.SHA256 {
			t.Errorf("package %d is %s, want entitlement order", i, p)
		}
	}

	// Stock tar lists the members in order.
	if _, err := exec.LookPath("zstd"); err != nil {
		t.Log("zstd not installed: skipping the tar listing")
	} else if tarPath, err := exec.LookPath("tar"); err != nil {
		t.Log("tar not installed: skipping the tar listing")
	} else {
		out, err := exec.Command(tarPath, "--zstd", "-tf", o.Out).Output()
		if err != nil {
			t.Fatalf("tar --zstd -tf: %v", err)
		}
		want := []string{"manifest.json", "manifest.json.asc", "entitlement.asc"}
		for _, p := range fx.fv.pkgs {
			want = append(want, "packages/"+p.meta.SHA256.String())
		}
		if got := strings.Fields(string(out)); !slices.Equal(got, want) {
			t.Errorf("tar lists %v, want %v", got, want)
		}
	}

	// The restricted side's verification accepts it and gets the exact data.
	trust := keys.NewTrustStore()
	trust.Add(keys.RoleVendor, fx.vendor.Public())
	trust.Add(keys.RoleCourier, fx.courier.Public())
	rc, err := bundle.Open(o.Out)
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	got := map[catalog.Digest][]byte{}
	b, err := verify.VerifyBundle(context.Background(), rc, trust, verify.Policy{Site: fx.site}, func(_ context.Context, p catalog.Package, data io.Reader) error {
		d, err := io.ReadAll(data)
		got[p.SHA256] = d
		return err
	})
	if err != nil {
		t.Fatalf("VerifyBundle: %v", err)
	}
	if b.Manifest.ID != r.ID {
		t.Errorf("bundle id %s, report %s", b.Manifest.ID, r.ID)
	}
	for _, p := range fx.fv.pkgs {
		if !bytes.Equal(got[p.meta.SHA256], p.data) {
			t.Errorf("package %s: data differs", p.meta)
		}
	}

	// inspect with both keys checks the signatures.
	stdout.Reset()
	if err := RunInspect(context.Background(), InspectOptions{Path: o.Out, VendorKey: fx.paths.vendorPub, CourierKey: fx.paths.courierPub, JSON: true}, &stdout, &stderr); err != nil {
		t.Fatalf("inspect: %v", err)
	}
	var ir InspectReport
	if err := json.Unmarshal(stdout.Bytes(), &ir); err != nil {
		t.Fatal(err)
	}
	if !ir.SignaturesChecked || ir.ID != r.ID || len(ir.Packages) != 3 || ir.Size != fx.totalSize() {
		t.Errorf("inspect report %+v", ir)
	}

	// A second run refuses to overwrite the bundle.
	err = RunBundle(context.Background(), o, io.Discard, io.Discard)
	if !errors.Is(err, ErrExists) || fault.Code(err) != fault.ExitUsage {
		t.Errorf("second run into the same --out: %v, want ErrExists (exit 2)", err)
	}
}

func TestBundleSplitAndInspect(t *testing.T) {
	fx := newFixture(t, 400<<10, 200<<10)
	o := fx.bundleOptions("b.airlock")
	o.Split = 128 << 10
	var stdout bytes.Buffer
	if err := RunBundle(context.Background(), o, &stdout, io.Discard); err != nil {
		t.Fatalf("RunBundle: %v", err)
	}
	if _, err := os.Stat(o.Out); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("split bundle also written whole at %s", o.Out)
	}
	vols, _ := filepath.Glob(o.Out + ".0*")
	if len(vols) < 4 {
		t.Fatalf("volumes %v: want at least 4 of 128 KiB for 600 KiB of random data", vols)
	}
	sums, err := os.ReadFile(o.Out + ".sha256")
	if err != nil || !strings.Contains(string(sums), "b.airlock.001") {
		t.Fatalf("b.airlock.sha256: %q, %v", sums, err)
	}
	if !strings.Contains(stdout.String(), o.Out+".001") {
		t.Errorf("summary does not name the first volume:\n%s", stdout.String())
	}
	if fx.fv.ackCount() != 2 {
		t.Errorf("%d acks, want 2", fx.fv.ackCount())
	}

	var out bytes.Buffer
	if err := RunInspect(context.Background(), InspectOptions{Path: o.Out + ".001"}, &out, io.Discard); err != nil {
		t.Fatalf("inspect NAME.001: %v", err)
	}
	for _, want := range []string{"NOT checked", fx.site, string(fx.key.ID), "base@3.4.0", "product@3.5.0"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("inspect output lacks %q:\n%s", want, out.String())
		}
	}

	// Damage the second volume: inspect names it.
	v2 := o.Out + ".002"
	b, _ := os.ReadFile(v2)
	b[len(b)/2] ^= 0xff
	os.WriteFile(v2, b, 0o644)
	err = RunInspect(context.Background(), InspectOptions{Path: o.Out + ".001"}, io.Discard, io.Discard)
	if fault.Code(err) != fault.ExitVerification || !strings.Contains(err.Error(), "b.airlock.002") {
		t.Errorf("inspect of a damaged volume: %v (exit %d), want exit 3 naming b.airlock.002", err, fault.Code(err))
	}
}

func TestInspectGarbageAndMissing(t *testing.T) {
	dir := t.TempDir()
	garbage := filepath.Join(dir, "garbage")
	os.WriteFile(garbage, bytes.Repeat([]byte("not a bundle "), 100), 0o644)
	err := RunInspect(context.Background(), InspectOptions{Path: garbage}, io.Discard, io.Discard)
	if fault.Code(err) != fault.ExitVerification {
		t.Errorf("garbage: %v (exit %d), want exit 3", err, fault.Code(err))
	}
	err = RunInspect(context.Background(), InspectOptions{Path: filepath.Join(dir, "missing")}, io.Discard, io.Discard)
	if fault.Code(err) != fault.ExitOperational || !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing: %v (exit %d), want exit 1", err, fault.Code(err))
	}
	err = RunInspect(context.Background(), InspectOptions{Path: garbage, VendorKey: "v.asc"}, io.Discard, io.Discard)
	if fault.Code(err) != fault.ExitUsage {
		t.Errorf("only --vendor-key: %v, want exit 2", err)
	}
}

// cutFirstAttempt makes the first GET of every package send half the body
// and drop the connection.
func cutFirstAttempt(ranges *[]string, mu *sync.Mutex) func(http.ResponseWriter, *http.Request, fakePkg, int) bool {
	return func(w http.ResponseWriter, r *http.Request, p fakePkg, attempt int) bool {
		mu.Lock()
		*ranges = append(*ranges, r.Header.Get("Range"))
		mu.Unlock()
		if attempt > 1 {
			return false
		}
		w.Header().Set("Content-Length", itoa(len(p.data)))
		w.WriteHeader(http.StatusOK)
		w.Write(p.data[:len(p.data)/2])
		http.NewResponseController(w).Flush()
		panic(http.ErrAbortHandler)
	}
}

func TestBundleResumesOnRerun(t *testing.T) {
	const size = 1 << 20
	fx := newFixture(t, size)
	var mu sync.Mutex
	var ranges []string
	fx.fv.download = cutFirstAttempt(&ranges, &mu)
	o := fx.bundleOptions("b.airlock")
	o.Retries = 0

	err := RunBundle(context.Background(), o, io.Discard, io.Discard)
	if fault.Code(err) != fault.ExitOperational || !strings.Contains(err.Error(), "base@3.4.0") {
		t.Fatalf("cut download: %v (exit %d), want exit 1 naming base@3.4.0", err, fault.Code(err))
	}
	if fx.fv.ackCount() != 0 {
		t.Fatal("acknowledged after a failed download")
	}
	assertNoBundle(t, o.Out)
	part := filepath.Join(o.Out+CacheSuffix, fx.fv.pkgs[0].meta.SHA256.String()+partSuffix)
	if fi, err := os.Stat(part); err != nil || fi.Size() == 0 || fi.Size() >= size {
		t.Fatalf("partial download %s: %v %v, want a prefix kept for resuming", part, fi, err)
	}

	if err := RunBundle(context.Background(), o, io.Discard, io.Discard); err != nil {
		t.Fatalf("rerun: %v", err)
	}
	if served := fx.fv.served.Load(); served >= size*11/10 {
		t.Errorf("served %d bytes in all for a %d-byte package: the rerun did not resume", served, size)
	}
	if len(ranges) != 2 || ranges[0] != "" || !strings.HasPrefix(ranges[1], "bytes=") || ranges[1] == "bytes=0-" {
		t.Errorf("Range headers %q, want none then bytes=N-", ranges)
	}
	if fx.fv.ackCount() != 1 {
		t.Errorf("%d acks after the rerun, want 1", fx.fv.ackCount())
	}
}

func TestBundleResumesWithinRun(t *testing.T) {
	const size = 1 << 20
	fx := newFixture(t, size, size/2)
	var mu sync.Mutex
	var ranges []string
	fx.fv.download = cutFirstAttempt(&ranges, &mu)
	o := fx.bundleOptions("b.airlock")
	o.Retries = 1
	if err := RunBundle(context.Background(), o, io.Discard, io.Discard); err != nil {
		t.Fatalf("RunBundle with a retry: %v", err)
	}
	if served, total := fx.fv.served.Load(), fx.totalSize(); served >= total*11/10 {
		t.Errorf("served %d bytes for %d: retries did not resume", served, total)
	}
}

func TestBundleRecoversFromCorruptCache(t *testing.T) {
	fx := newFixture(t, 100<<10)
	o := fx.bundleOptions("b.airlock")
	p := fx.fv.pkgs[0]
	cache := o.Out + CacheSuffix
	os.MkdirAll(cache, 0o700)
	bad := bytes.Repeat([]byte{'x'}, len(p.data))
	os.WriteFile(filepath.Join(cache, p.meta.SHA256.String()), bad, 0o600)

	err := RunBundle(context.Background(), o, io.Discard, io.Discard)
	if fault.Code(err) != fault.ExitVerification || !strings.Contains(err.Error(), p.meta.ID()) {
		t.Fatalf("corrupt cache: %v, want exit 3 naming %s", err, p.meta.ID())
	}
	assertNoBundle(t, o.Out)
	if fx.fv.ackCount() != 0 {
		t.Fatal("acknowledged a bundle that failed")
	}
	if err := RunBundle(context.Background(), o, io.Discard, io.Discard); err != nil {
		t.Fatalf("rerun after the bad cache file was dropped: %v", err)
	}
	if fx.fv.ackCount() != 1 {
		t.Errorf("%d acks, want 1", fx.fv.ackCount())
	}
}

func TestBundleAckFailureKeepsBundle(t *testing.T) {
	fx := newFixture(t, 10<<10)
	fx.fv.onAck = func(catalog.Digest) { panic(http.ErrAbortHandler) }
	o := fx.bundleOptions("b.airlock")
	err := RunBundle(context.Background(), o, io.Discard, io.Discard)
	if fault.Code(err) != fault.ExitOperational || !strings.Contains(err.Error(), "complete and verified") || !strings.Contains(err.Error(), "base@3.4.0") {
		t.Fatalf("failed ack: %v, want exit 1 saying the bundle is usable and naming base@3.4.0", err)
	}
	if _, err := os.Stat(o.Out); err != nil {
		t.Errorf("bundle removed after a failed acknowledgement: %v", err)
	}
}

func TestCacheLock(t *testing.T) {
	dir := t.TempDir()
	c1, err := openCache(dir)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := openCache(dir); !errors.Is(err, ErrCacheBusy) {
		t.Errorf("second openCache: %v, want ErrCacheBusy", err)
	}
	c1.close()
	c2, err := openCache(dir)
	if err != nil {
		t.Fatalf("after release: %v", err)
	}
	c2.close()
}

func itoa(n int) string { return strconv.Itoa(n) }

func TestBundleServerIgnoringRange(t *testing.T) {
	const size = 256 << 10
	fx := newFixture(t, size)
	fx.fv.download = func(w http.ResponseWriter, r *http.Request, p fakePkg, attempt int) bool {
		w.Header().Set("Content-Length", itoa(len(p.data)))
		if attempt == 1 {
			w.Write(p.data[:len(p.data)/2])
			http.NewResponseController(w).Flush()
			panic(http.ErrAbortHandler)
		}
		w.Write(p.data) // 200 with the whole file, whatever the Range said
		return true
	}
	o := fx.bundleOptions("b.airlock")
	o.Retries = 1
	if err := RunBundle(context.Background(), o, io.Discard, io.Discard); err != nil {
		t.Fatalf("RunBundle: %v", err)
	}
	if fx.fv.ackCount() != 1 {
		t.Errorf("%d acks, want 1", fx.fv.ackCount())
	}
}

func TestBundleDownloadRefusals(t *testing.T) {
	for _, tc := range []struct {
		name    string
		status  int
		reason  string
		retries int
		code    int
		gets    int
	}{
		{"delivered", http.StatusGone, "delivered", 3, fault.ExitPolicy, 1},
		{"not entitled", http.StatusNotFound, "not-entitled", 3, fault.ExitVerification, 1},
		{"internal error, retried", http.StatusInternalServerError, "internal", 2, fault.ExitOperational, 3},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fx := newFixture(t, 10<<10)
			fx.fv.download = func(w http.ResponseWriter, r *http.Request, p fakePkg, attempt int) bool {
				protoError(w, tc.status, tc.reason, "the server says no ("+tc.reason+")")
				return true
			}
			o := fx.bundleOptions("b.airlock")
			o.Retries = tc.retries
			err := RunBundle(context.Background(), o, io.Discard, io.Discard)
			if fault.Code(err) != tc.code || !strings.Contains(err.Error(), "base@3.4.0") || !strings.Contains(err.Error(), "the server says no") {
				t.Errorf("%v (exit %d), want exit %d naming the package with the server's message", err, fault.Code(err), tc.code)
			}
			fx.fv.mu.Lock()
			n := fx.fv.attempts[fx.fv.pkgs[0].meta.SHA256]
			fx.fv.mu.Unlock()
			if n != tc.gets {
				t.Errorf("%d GETs, want %d", n, tc.gets)
			}
			if fx.fv.ackCount() != 0 {
				t.Error("acknowledged after a refusal")
			}
			assertNoBundle(t, o.Out)
		})
	}
}
