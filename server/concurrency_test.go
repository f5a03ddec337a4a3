package server

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"sync"
	"testing"

	"github.com/airlock-project/airlock/catalog"
)

// client is an HTTP client for many concurrent requests to one server.
func manyConnClient() *http.Client {
	return &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 128, DisableCompression: true}}
}

// outcome collects what concurrent clients saw.
type outcome struct {
	mu        sync.Mutex
	first     map[catalog.Digest]int // acks answered first=true
	acked     map[catalog.Digest]int // acks answered 200
	entitled  map[catalog.Digest]bool
	ents      map[catalog.KeyID]string // entitlement per key
	failures  []string
	delivered int // downloads answered 410
}

func newOutcome() *outcome {
	return &outcome{first: map[catalog.Digest]int{}, acked: map[catalog.Digest]int{}, entitled: map[catalog.Digest]bool{}, ents: map[catalog.KeyID]string{}}
}

func (o *outcome) fail(format string, args ...any) {
	o.mu.Lock()
	o.failures = append(o.failures, fmt.Sprintf(format, args...))
	o.mu.Unlock()
}

// client exchanges key, downloads every entitled package and acknowledges
// it, as airlock-fetch does.
func (f *fixture) client(c *http.Client, id catalog.KeyID, key []byte, o *outcome) {
	res, err := c.Post(f.http.URL+"/v1/exchange", "application/pgp-signature", bytes.NewReader(key))
	if err != nil {
		o.fail("exchange: %v", err)
		return
	}
	var er ExchangeResponse
	err = json.NewDecoder(res.Body).Decode(&er)
	res.Body.Close()
	if res.StatusCode != 200 || err != nil {
		o.fail("exchange: %d %v", res.StatusCode, err)
		return
	}
	o.mu.Lock()
	if prev, ok := o.ents[id]; ok && prev != er.Entitlement {
		o.failures = append(o.failures, "the same key got two different entitlements")
	}
	o.ents[id] = er.Entitlement
	for _, d := range er.Downloads {
		o.entitled[d.SHA256] = true
	}
	o.mu.Unlock()
	for _, d := range er.Downloads {
		res, err := c.Get(f.http.URL + d.URL)
		if err != nil {
			o.fail("GET: %v", err)
			return
		}
		body, err := io.ReadAll(res.Body)
		res.Body.Close()
		if res.StatusCode == http.StatusGone {
			o.mu.Lock()
			o.delivered++
			o.mu.Unlock()
			continue
		}
		if res.StatusCode != 200 || err != nil || !bytes.Equal(body, f.files[d.SHA256.String()]) {
			o.fail("GET %s: %d %v", d.SHA256.Short(), res.StatusCode, err)
			continue
		}
		res, err = c.Post(f.http.URL+d.URL+"/ack", "application/json", bytes.NewReader(ackBody(d.SHA256.String())))
		if err != nil {
			o.fail("ack: %v", err)
			continue
		}
		var ar AckResponse
		err = json.NewDecoder(res.Body).Decode(&ar)
		res.Body.Close()
		if res.StatusCode != 200 || err != nil || !ar.Acknowledged {
			o.fail("ack %s: %d %v", d.SHA256.Short(), res.StatusCode, err)
			continue
		}
		o.mu.Lock()
		o.acked[d.SHA256]++
		if ar.First {
			o.first[d.SHA256]++
		}
		o.mu.Unlock()
	}
}

// check asserts the ledger invariants: every entitled package delivered
// exactly once, every acknowledged package in the ledger, nothing else.
func (f *fixture) check(t *testing.T, o *outcome) {
	t.Helper()
	for _, msg := range o.failures {
		t.Error(msg)
	}
	dels, err := f.srv.Deliveries(context.Background(), "plant-3")
	if err != nil {
		t.Fatal(err)
	}
	inLedger := map[catalog.Digest]int{}
	for _, d := range dels {
		inLedger[d.SHA256]++
	}
	if len(o.entitled) != len(contractPackages) {
		t.Errorf("%d packages entitled in all, want %d", len(o.entitled), len(contractPackages))
	}
	for d := range o.entitled {
		if inLedger[d] != 1 {
			t.Errorf("package %s is %d times in the ledger, want once", d.Short(), inLedger[d])
		}
		if o.first[d] != 1 {
			t.Errorf("package %s acknowledged first %d times, want once", d.Short(), o.first[d])
		}
	}
	for d := range o.acked {
		if inLedger[d] != 1 {
			t.Errorf("acknowledged package %s lost from the ledger", d.Short())
		}
	}
	if len(dels) != len(o.entitled) {
		t.Errorf("ledger holds %d entries, want %d", len(dels), len(o.entitled))
	}
}

func TestConcurrentOneKey(t *testing.T) {
	f := newFixture(t, 64<<10)
	id, key := downloadKey(t, f.site, keySpec{})
	c := manyConnClient()
	o := newOutcome()
	var wg sync.WaitGroup
	for range 100 {
		wg.Go(func() { f.client(c, id, key, o) })
	}
	wg.Wait()
	f.check(t, o)
	if len(o.ents) != 1 {
		t.Errorf("%d keys", len(o.ents))
	}
}

func TestConcurrentOverlappingKeys(t *testing.T) {
	f := newFixture(t, 64<<10)
	type k struct {
		id  catalog.KeyID
		key []byte
	}
	var ks []k
	for range 5 {
		id, key := downloadKey(t, f.site, keySpec{})
		ks = append(ks, k{id, key})
	}
	c := manyConnClient()
	o := newOutcome()
	var wg sync.WaitGroup
	for i := range 100 {
		wg.Go(func() { f.client(c, ks[i%len(ks)].id, ks[i%len(ks)].key, o) })
	}
	wg.Wait()
	f.check(t, o)
	if len(o.ents) != len(ks) {
		t.Errorf("%d keys answered, want %d", len(o.ents), len(ks))
	}
	// A new key afterwards is entitled to nothing.
	_, key := downloadKey(t, f.site, keySpec{})
	if _, er := f.exchange(t, key); len(er.Downloads) != 0 {
		t.Errorf("new key after delivery entitled to %d packages", len(er.Downloads))
	}
}
