package repo

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/airlock-project/airlock/catalog"
	"github.com/airlock-project/airlock/keys"
	"github.com/airlock-project/airlock/repo/repotest"
)

// BenchmarkImport imports a generated bundle of AIRLOCK_BENCH_MB MiB
// (default 64) of incompressible packages into a fresh repository per
// iteration; the bytes per second are those of the packages.
func BenchmarkImport(b *testing.B) {
	mb := 64
	if s := os.Getenv("AIRLOCK_BENCH_MB"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 {
			b.Fatalf("AIRLOCK_BENCH_MB=%q: want a positive number of MiB", s)
		}
		mb = n
	}
	ctx := context.Background()
	world, err := repotest.NewWorld(b.TempDir())
	if err != nil {
		b.Fatal(err)
	}
	id, err := catalog.NewKeyID()
	if err != nil {
		b.Fatal(err)
	}
	// Four packages sharing the size, as a base, a product and two hotfixes.
	total := int64(mb) << 20
	spec := repotest.BundleSpec{Site: testSite, KeyID: id}
	for i, name := range []string{"base", "product", "hotfix-a", "hotfix-b"} {
		spec.Packages = append(spec.Packages, repotest.Pkg{Name: name, Version: fmt.Sprintf("1.%d", i), Size: total / 4})
	}
	path := filepath.Join(b.TempDir(), "bench.airlock")
	if _, err := world.WriteBundle(ctx, path, spec); err != nil {
		b.Fatal(err)
	}
	b.SetBytes(total)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		opts := Options{Dir: filepath.Join(b.TempDir(), "repo"), Actor: "bench@host"}
		if _, err := Init(ctx, opts, testSite); err != nil {
			b.Fatal(err)
		}
		r, err := Open(ctx, opts)
		if err != nil {
			b.Fatal(err)
		}
		if _, _, err := r.TrustAdd(keys.RoleVendor, world.Vendor.Public()); err != nil {
			b.Fatal(err)
		}
		if _, _, err := r.TrustAdd(keys.RoleCourier, world.Courier.Public()); err != nil {
			b.Fatal(err)
		}
		// The bundle answers a fixed key id: record it as issued here.
		now := time.Now().UTC()
		if err := r.Update(func(tx *Tx) error {
			return putJSON(tx.Bucket(bucketKeys), []byte(id), keyRecord{ID: id, Site: testSite, Issued: now,
				Expires: now.Add(time.Hour), State: KeyOutstanding, Nodes: []catalog.NodeInventory{}})
		}); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
		if _, err := r.Import(ctx, path, ImportOptions{}); err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		r.Close()
		os.RemoveAll(opts.Dir)
		b.StartTimer()
	}
}
