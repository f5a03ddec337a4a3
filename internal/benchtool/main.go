// Command benchtool measures airlock's bundle pipeline on real files, for
// scripts/bench.sh to compare with the shell pipeline an administrator would
// otherwise run. It is not installed; it prints one JSON line per run:
//
//	benchtool write -out B -keys DIR FILE...   # sign and write a bundle of FILEs
//	benchtool verify -keys DIR B               # verify it fully, discarding payloads
//	benchtool import -keys DIR -blobs DIR B    # verify into a blob store
//
// The JSON line has bytes (payload), seconds, mbps and maxrss_kib (the
// process's own peak resident set, from getrusage).
package main

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime/pprof"
	"syscall"
	"time"

	"github.com/airlock-project/airlock/blob"
	"github.com/airlock-project/airlock/bundle"
	"github.com/airlock-project/airlock/catalog"
	"github.com/airlock-project/airlock/keys"
	"github.com/airlock-project/airlock/verify"
)

func main() {
	if err := run(context.Background(), os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "benchtool:", err)
		os.Exit(1)
	}
}

type result struct {
	Op      string  `json:"op"`
	Bytes   int64   `json:"bytes"`
	Seconds float64 `json:"seconds"`
	MBps    float64 `json:"mbps"`
	MaxRSS  int64   `json:"maxrss_kib"`
}

func run(ctx context.Context, args []string) error {
	if len(args) == 0 {
		return fmt.Errorf("usage: benchtool write|verify|import ...")
	}
	fs := flag.NewFlagSet(args[0], flag.ContinueOnError)
	out := fs.String("out", "", "bundle to write")
	keyDir := fs.String("keys", "", "directory for the vendor and courier keys (created by write)")
	blobs := fs.String("blobs", "", "blob store for import")
	level := fs.Int("level", 3, "zstd level")
	conc := fs.Int("concurrency", 0, "zstd encoder goroutines (0: default)")
	cpuprofile := fs.String("cpuprofile", "", "write a CPU profile to this file")
	if err := fs.Parse(args[1:]); err != nil {
		return err
	}
	if *cpuprofile != "" {
		f, err := os.Create(*cpuprofile)
		if err != nil {
			return err
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return err
		}
		defer pprof.StopCPUProfile()
	}
	start := time.Now()
	var n int64
	var err error
	switch args[0] {
	case "write":
		n, err = write(ctx, *out, *keyDir, bundle.WriteOptions{Level: *level, Concurrency: *conc}, fs.Args(), &start)
	case "verify", "import":
		n, err = read(ctx, *keyDir, *blobs, fs.Args())
	default:
		return fmt.Errorf("unknown operation %q", args[0])
	}
	if err != nil {
		return err
	}
	el := time.Since(start).Seconds()
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return json.NewEncoder(os.Stdout).Encode(result{args[0], n, el, float64(n) / el / 1e6, ru.Maxrss})
}

// write makes fresh vendor and courier keys in keyDir, signs an entitlement
// for the files (hashing each once to learn its digest, as the vendor does at
// publish time), and writes the bundle; only the bundle write is timed.
func write(ctx context.Context, out, keyDir string, opts bundle.WriteOptions, files []string, start *time.Time) (int64, error) {
	vendor, err := keys.Generate(keys.GenerateOptions{Name: "Bench Vendor"})
	if err != nil {
		return 0, err
	}
	courier, err := keys.Generate(keys.GenerateOptions{Name: "Bench Courier"})
	if err != nil {
		return 0, err
	}
	if err := os.MkdirAll(keyDir, 0o700); err != nil {
		return 0, err
	}
	for name, k := range map[string]*keys.PrivateKey{"vendor": vendor, "courier": courier} {
		if err := keys.WritePublicFile(filepath.Join(keyDir, name+".pub.asc"), k.Public()); err != nil {
			return 0, err
		}
	}
	id, err := catalog.NewKeyID()
	if err != nil {
		return 0, err
	}
	now := time.Now().UTC()
	ent := catalog.Entitlement{Format: catalog.EntitlementFormat, Site: "bench", KeyID: id, Issued: now, Expires: now.Add(72 * time.Hour)}
	paths := map[catalog.Digest]string{}
	var total int64
	for i, f := range files {
		fh, err := os.Open(f)
		if err != nil {
			return 0, err
		}
		d, size, err := catalog.DigestReader(fh)
		fh.Close()
		if err != nil {
			return 0, err
		}
		paths[d] = f
		total += size
		ent.Packages = append(ent.Packages, catalog.Package{
			Name: "bench", Kind: catalog.KindProduct, Version: catalog.MustVersion(fmt.Sprintf("1.0.%d", i)),
			SHA256: d, Size: size,
		})
	}
	payload, err := ent.Encode()
	if err != nil {
		return 0, err
	}
	var armored bytesBuffer
	if err := vendor.SignMessage(&armored, payload); err != nil {
		return 0, err
	}
	bid, err := bundle.NewBundleID()
	if err != nil {
		return 0, err
	}
	m := bundle.Manifest{
		Format: bundle.ManifestFormat, ID: bid, Created: now, Expires: ent.Expires, Site: ent.Site, KeyID: id,
		Courier: courier.Fingerprint().String(), Entitlement: catalog.Digest(sha256.Sum256(armored.b)), Packages: ent.Packages,
	}
	// What follows is what airlock-fetch does once the packages are
	// downloaded: the digests above came from the vendor (the entitlement),
	// so only the bundle write is timed.
	*start = time.Now()
	dst, err := bundle.CreateFile(out, 0)
	if err != nil {
		return 0, err
	}
	open := func(p catalog.Package) (io.ReadCloser, error) { return os.Open(paths[p.SHA256]) }
	if err := bundle.Write(ctx, dst, m, courier, armored.b, open, opts); err != nil {
		dst.Abort()
		return 0, err
	}
	return total, dst.Commit()
}

func read(ctx context.Context, keyDir, blobDir string, args []string) (int64, error) {
	if len(args) != 1 {
		return 0, fmt.Errorf("want one bundle")
	}
	trust := keys.NewTrustStore()
	for name, role := range map[string]keys.Role{"vendor": keys.RoleVendor, "courier": keys.RoleCourier} {
		k, err := keys.ReadPublicFile(filepath.Join(keyDir, name+".pub.asc"))
		if err != nil {
			return 0, err
		}
		if err := trust.Add(role, k); err != nil {
			return 0, err
		}
	}
	f, err := bundle.Open(args[0])
	if err != nil {
		return 0, err
	}
	defer f.Close()
	var sink verify.Sink
	var pending []*blob.Pending
	if blobDir != "" {
		store, err := blob.Open(blobDir)
		if err != nil {
			return 0, err
		}
		sink = func(ctx context.Context, p catalog.Package, data io.Reader) error {
			pd, err := store.IngestVerified(ctx, data, p.SHA256, p.Size)
			if err != nil {
				return err
			}
			pending = append(pending, pd)
			return nil
		}
	}
	b, err := verify.VerifyBundle(ctx, f, trust, verify.Policy{}, sink)
	if err != nil {
		for _, p := range pending {
			p.Abort()
		}
		return 0, err
	}
	for _, p := range pending {
		if err := p.Commit(); err != nil {
			return 0, err
		}
	}
	var n int64
	for _, p := range b.Manifest.Packages {
		n += p.Size
	}
	return n, nil
}

type bytesBuffer struct{ b []byte }

func (w *bytesBuffer) Write(p []byte) (int, error) { w.b = append(w.b, p...); return len(p), nil }
