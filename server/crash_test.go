package server

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/airlock-project/airlock/atomicfile"
	"github.com/airlock-project/airlock/catalog"
)

// childEnv makes the test binary run as a server process (see TestMain).
const childEnv = "AIRLOCK_SERVER_TEST_CHILD_DIR"

func TestMain(m *testing.M) {
	if dir := os.Getenv(childEnv); dir != "" {
		os.Exit(childServe(dir))
	}
	os.Exit(m.Run())
}

// childServe serves the store in dir until SIGTERM, writing its base URL
// to dir/../url once it accepts connections.
func childServe(dir string) int {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM)
	defer stop()
	s, err := Open(Config{Dir: dir})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer s.Close()
	err = s.Serve(ctx, ServeOptions{Listen: "127.0.0.1:0", Ready: func(base string) {
		if err := atomicfile.WriteFile(filepath.Join(dir, "..", "url"), []byte(base), 0o644); err != nil {
			panic(err)
		}
	}})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return 0
}

// startChild runs a server process on dir and returns it with its URL.
func startChild(t *testing.T, dir string) (*exec.Cmd, string) {
	t.Helper()
	urlFile := filepath.Join(dir, "..", "url")
	os.Remove(urlFile)
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), childEnv+"="+dir)
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	deadline := time.Now().Add(20 * time.Second)
	for {
		if b, err := os.ReadFile(urlFile); err == nil {
			return cmd, string(b)
		}
		if time.Now().After(deadline) {
			t.Fatal("the child server did not become ready")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestCrashDuringAcks kills a real server process with SIGKILL while
// acknowledgements are in flight, and checks that every acknowledgement
// answered 200 survived, and that retried acknowledgements are idempotent.
func TestCrashDuringAcks(t *testing.T) {
	if testing.Short() {
		t.Skip("starts server processes")
	}
	const n = 60
	dir := filepath.Join(t.TempDir(), "v")
	if _, err := Init(dir, "", time.Now().Add(-time.Hour)); err != nil {
		t.Fatal(err)
	}
	site := newKey(t, "plant-3")
	func() {
		s, err := Open(Config{Dir: dir})
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		f := &fixture{t: t, srv: s, files: map[string][]byte{}, pkgs: map[string]catalog.Package{}}
		for i := range n {
			f.publish(fmt.Sprintf("hotfix-%d@1", i), catalog.KindHotfix, 100)
		}
		if _, err := s.AddSite(context.Background(), "plant-3", site.Public().Armored()); err != nil {
			t.Fatal(err)
		}
	}()

	cmd, base := startChild(t, dir)
	c := manyConnClient()
	_, key := downloadKey(t, site, keySpec{nodes: []catalog.NodeInventory{{Name: "n1"}}})
	ent, downloads := exchangeAt(t, c, base, key)
	if len(downloads) != n {
		t.Fatalf("%d downloads, want %d", len(downloads), n)
	}

	// Acknowledge from 8 workers; kill the server after the 20th success.
	var (
		mu     sync.Mutex
		ok     = map[catalog.Digest]bool{}
		killed = make(chan struct{})
		once   sync.Once
	)
	work := make(chan Download)
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for d := range work {
				if _, err := ackAt(c, base, d); err != nil {
					continue // the server is gone
				}
				mu.Lock()
				ok[d.SHA256] = true
				if len(ok) == 20 {
					once.Do(func() {
						cmd.Process.Signal(syscall.SIGKILL)
						close(killed)
					})
				}
				mu.Unlock()
			}
		})
	}
	for _, d := range downloads {
		work <- d
	}
	close(work)
	wg.Wait()
	select {
	case <-killed:
	default:
		t.Fatal("all acknowledgements finished before the kill")
	}
	cmd.Wait()
	if len(ok) == n {
		t.Fatal("no acknowledgement was interrupted by the kill")
	}

	// The database reopens; every acknowledgement answered 200 is there.
	s, err := Open(Config{Dir: dir})
	if err != nil {
		t.Fatalf("reopen after SIGKILL: %v", err)
	}
	dels, err := s.Deliveries(context.Background(), "plant-3")
	s.Close()
	if err != nil {
		t.Fatal(err)
	}
	inLedger := map[catalog.Digest]bool{}
	for _, d := range dels {
		if inLedger[d.SHA256] {
			t.Errorf("%s twice in the ledger", d.Package)
		}
		inLedger[d.SHA256] = true
	}
	for d := range ok {
		if !inLedger[d] {
			t.Errorf("acknowledgement of %s answered 200 but lost in the crash", d.Short())
		}
	}
	t.Logf("%d acknowledgements answered before the kill, %d in the ledger", len(ok), len(dels))

	// Restarted: the same key gets the same entitlement; retried
	// acknowledgements are idempotent, the rest are recorded now.
	cmd, base = startChild(t, dir)
	ent2, _ := exchangeAt(t, c, base, key)
	if ent2 != ent {
		t.Error("the entitlement changed across the crash")
	}
	for _, d := range downloads {
		first, err := ackAt(c, base, d)
		if err != nil {
			t.Fatal(err)
		}
		if first == inLedger[d.SHA256] {
			t.Errorf("retried ack of %s: first=%v, but in the ledger before: %v", d.SHA256.Short(), first, inLedger[d.SHA256])
		}
	}
	// SIGTERM: a graceful stop, exit status 0.
	cmd.Process.Signal(syscall.SIGTERM)
	if err := cmd.Wait(); err != nil {
		t.Errorf("server stopped by SIGTERM: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, AdminSocket)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("admin socket left behind: %v", err)
	}
	s, err = Open(Config{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if dels, _ := s.Deliveries(context.Background(), "plant-3"); len(dels) != n {
		t.Errorf("ledger holds %d entries, want %d", len(dels), n)
	}
}

func exchangeAt(t *testing.T, c *http.Client, base string, key []byte) (string, []Download) {
	t.Helper()
	res, err := c.Post(base+"/v1/exchange", "application/pgp-signature", bytes.NewReader(key))
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	var er ExchangeResponse
	if err := json.NewDecoder(res.Body).Decode(&er); err != nil || res.StatusCode != 200 {
		t.Fatalf("exchange: %d %v", res.StatusCode, err)
	}
	return er.Entitlement, er.Downloads
}

func ackAt(c *http.Client, base string, d Download) (bool, error) {
	res, err := c.Post(base+d.URL+"/ack", "application/json", bytes.NewReader(ackBody(d.SHA256.String())))
	if err != nil {
		return false, err
	}
	defer res.Body.Close()
	var ar AckResponse
	if err := json.NewDecoder(res.Body).Decode(&ar); err != nil {
		return false, err
	}
	if res.StatusCode != 200 {
		return false, fmt.Errorf("ack: %s", res.Status)
	}
	return ar.First, nil
}
