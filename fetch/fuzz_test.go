package fetch

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"testing"

	"github.com/airlock-project/airlock/catalog"
)

// FuzzExchangeAnswer feeds arbitrary exchange answers to the decoder and
// the matching of the download list against a fixed entitlement: no panic,
// and whatever is accepted names exactly the entitled packages, with their
// sizes, on the server's origin.
func FuzzExchangeAnswer(f *testing.F) {
	d1 := catalog.Digest(sha256.Sum256([]byte("one")))
	d2 := catalog.Digest(sha256.Sum256([]byte("two")))
	ps := []catalog.Package{{Name: "base", SHA256: d1, Size: 3}, {Name: "product", SHA256: d2, Size: 3}}
	good := fmt.Sprintf(`{"entitlement":"x","downloads":[{"sha256":"%s","size":3,"url":"/v1/downloads/k/%s"},{"sha256":"%s","size":3,"url":"/v1/downloads/k/%s"}]}`, d1, d1, d2, d2)
	f.Add([]byte(good))
	f.Add([]byte(`{"entitlement":"x","downloads":[]}`))
	f.Add([]byte(`{"entitlement":"x"}`))
	f.Add([]byte(strings.Replace(good, "/v1/", "http://evil.example/v1/", 1)))
	f.Add([]byte(strings.Replace(good, `"size":3`, `"size":-1`, 1)))
	f.Add([]byte(`{"entitlement":"x","downloads":[{"sha256":"zz","size":3,"url":"/"}]}`))
	f.Add([]byte(`[]`))
	c, err := newClient("https://updates.example/base", ClientOptions{})
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		a, err := decodeExchangeAnswer(b)
		if err != nil {
			if !errors.Is(err, ErrProtocol) {
				t.Fatalf("decode error of the wrong class: %v", err)
			}
			return
		}
		items, err := matchDownloads(c, ps, a.Downloads)
		if err != nil {
			return
		}
		if len(items) != len(ps) {
			t.Fatalf("%d items for %d packages", len(items), len(ps))
		}
		for i, it := range items {
			if it.pkg.SHA256 != ps[i].SHA256 {
				t.Fatalf("item %d is %s", i, it.pkg)
			}
			u, err := url.Parse(it.url)
			if err != nil || u.Scheme != "https" || u.Host != "updates.example" || u.RawQuery != "" {
				t.Fatalf("accepted URL %q", it.url)
			}
		}
	})
}

// FuzzContentRange checks that checkContentRange accepts only the one
// range asked for.
func FuzzContentRange(f *testing.F) {
	f.Add("bytes 100-999/1000", int64(100), int64(1000))
	f.Add("bytes 0-0/1", int64(0), int64(1))
	f.Add("bytes -1--1/0", int64(-1), int64(0))
	f.Add("bytes 100-999/*", int64(100), int64(1000))
	f.Fuzz(func(t *testing.T, v string, from, size int64) {
		if checkContentRange(v, from, size) != nil {
			return
		}
		var a, b, n int64
		if _, err := fmt.Sscanf(v, "bytes %d-%d/%d", &a, &b, &n); err != nil || a != from || b != size-1 || n != size {
			t.Fatalf("accepted %q for bytes %d-%d/%d", v, from, size-1, size)
		}
	})
}
