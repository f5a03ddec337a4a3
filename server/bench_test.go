package server

import (
	"bytes"
	"io"
	"net/http"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/airlock-project/airlock/catalog"
)

// BenchmarkExchange measures exchanges by 50 concurrent clients on
// loopback and reports the latency percentiles: "new" answers a fresh key
// each time (plan, sign, one committed write), "repeat" the same key again
// (one read).
func BenchmarkExchange(b *testing.B) {
	const clients = 50
	f := newFixture(b, 1024)
	c := manyConnClient()
	for _, mode := range []string{"new", "repeat"} {
		b.Run(mode, func(b *testing.B) {
			bodies := make([][]byte, b.N)
			_, same := downloadKey(b, f.site, keySpec{})
			for i := range bodies {
				if mode == "new" {
					_, bodies[i] = downloadKey(b, f.site, keySpec{})
				} else {
					bodies[i] = same
				}
			}
			lat := make([]time.Duration, b.N)
			work := make(chan int)
			var wg sync.WaitGroup
			b.ResetTimer()
			for range clients {
				wg.Go(func() {
					for i := range work {
						start := time.Now()
						res, err := c.Post(f.http.URL+"/v1/exchange", "application/pgp-signature", bytes.NewReader(bodies[i]))
						if err != nil {
							b.Error(err)
							continue
						}
						io.Copy(io.Discard, res.Body)
						res.Body.Close()
						if res.StatusCode != http.StatusOK {
							b.Errorf("exchange: %s", res.Status)
						}
						lat[i] = time.Since(start)
					}
				})
			}
			for i := range b.N {
				work <- i
			}
			close(work)
			wg.Wait()
			b.StopTimer()
			slices.Sort(lat)
			b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, "p50-ms")
			b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds())/1000, "p99-ms")
		})
	}
}

// BenchmarkDownload measures the throughput of one package download on
// loopback (MB/s from b.SetBytes).
func BenchmarkDownload(b *testing.B) {
	const size = 64 << 20
	f := newFixture(b, 16)
	p := f.publish("hotfix@1", catalog.KindHotfix, size)
	_, key := downloadKey(b, f.site, keySpec{nodes: []catalog.NodeInventory{{Name: "n1"}}})
	_, er := f.exchange(b, key)
	var url string
	for _, d := range er.Downloads {
		if d.SHA256 == p.SHA256 {
			url = f.http.URL + d.URL
		}
	}
	// A client that reads in large blocks, as airlock-fetch does.
	c := &http.Client{Transport: &http.Transport{ReadBufferSize: 1 << 20, DisableCompression: true}}
	buf := make([]byte, 1<<20)
	b.SetBytes(size)
	b.ResetTimer()
	for range b.N {
		res, err := c.Get(url)
		if err != nil {
			b.Fatal(err)
		}
		n, err := io.CopyBuffer(writerOnly{io.Discard}, res.Body, buf)
		res.Body.Close()
		if err != nil || n != size {
			b.Fatalf("read %d bytes: %v", n, err)
		}
	}
}
