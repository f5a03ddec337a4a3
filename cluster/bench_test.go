package cluster_test

import (
	"context"
	"testing"

	"github.com/airlock-project/airlock/cluster"
	"github.com/airlock-project/airlock/cluster/clustertest"
	"github.com/airlock-project/airlock/node"
)

// BenchmarkDistribute sends 64 MiB of packages (four of 16 MiB) to three
// in-process agents over loopback TLS; the throughput counts the bytes
// sent to all nodes together. Every iteration starts with fresh agents.
func BenchmarkDistribute(b *testing.B) {
	rp := clustertest.NewRepo(b, clustertest.Standard(16<<20)...)
	var total int64
	for _, p := range rp.Packages {
		total += p.Size
	}
	b.SetBytes(3 * total)
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		b.StopTimer()
		// Fresh agents, registered under the same names.
		clustertest.Cluster(b, rp, node.Options{})
		r := rp.Open(b)
		b.StartTimer()
		rep, err := cluster.Distribute(context.Background(), r, cluster.DistributeOptions{})
		b.StopTimer()
		r.Close()
		if err != nil {
			b.Fatal(err)
		}
		if rep.Sent != 3*total || rep.Read != total {
			b.Fatalf("sent %d, read %d; want %d and %d", rep.Sent, rep.Read, 3*total, total)
		}
		b.StartTimer()
	}
}
