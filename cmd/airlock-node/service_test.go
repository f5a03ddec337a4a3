package main

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/airlock-project/airlock/keys"
	"github.com/airlock-project/airlock/node"
)

// TestServeClientService runs a real agent with --service-listen: it
// prints where the service listens, the service accepts and echoes,
// refuses new connections while drained and keeps the open one, and
// SIGTERM ends the agent cleanly.
func TestServeClientService(t *testing.T) {
	if testing.Short() {
		t.Skip("runs real processes")
	}
	vendor, err := keys.Generate(keys.GenerateOptions{Name: "Acme Vendor", Now: time.Now().Add(-time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(t.TempDir(), "node")
	ctx := context.Background()
	if err := node.RunInit(ctx, node.InitOptions{Dir: dir, Name: "n3", Role: node.RoleTraffic}, io.Discard, io.Discard); err != nil {
		t.Fatal(err)
	}
	pub := filepath.Join(t.TempDir(), "vendor.pub.asc")
	if err := keys.WritePublicFile(pub, vendor.Public()); err != nil {
		t.Fatal(err)
	}
	if err := node.RunTrust(ctx, node.TrustOptions{Dir: dir, KeyFile: pub}, io.Discard, io.Discard); err != nil {
		t.Fatal(err)
	}

	a := startAgentArgs(t, dir, []string{"--service-listen", "127.0.0.1:0", "--max-connections", "5"})
	var st node.Status
	a.call("GET", "/v1/status", nil, http.StatusOK, &st)
	if !strings.HasPrefix(st.Service, "127.0.0.1:") {
		t.Fatalf("status service %q", st.Service)
	}
	select {
	case l := <-a.lines:
		if l != "node n3 client service on "+st.Service {
			t.Errorf("second line %q", l)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("no line about the client service")
	}

	dctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	// The service starts with Run, just after the first line: wait for it.
	deadline := time.Now().Add(20 * time.Second)
	for a.call("GET", "/v1/status", nil, http.StatusOK, &st); !st.Accepting; a.call("GET", "/v1/status", nil, http.StatusOK, &st) {
		if time.Now().After(deadline) {
			t.Fatalf("not accepting within 20s: %+v", st)
		}
		time.Sleep(10 * time.Millisecond)
	}
	c, err := node.DialService(dctx, st.Service)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	echo := func(msg string) {
		t.Helper()
		c.SetDeadline(time.Now().Add(10 * time.Second))
		io.WriteString(c, msg+"\n")
		got := make([]byte, len(msg)+1)
		if _, err := io.ReadFull(c, got); err != nil || string(got) != msg+"\n" {
			t.Fatalf("echo %q: %q, %v", msg, got, err)
		}
	}
	echo("hello")

	a.call("POST", "/v1/drain", nil, http.StatusOK, &st)
	if !st.Drained || st.Accepting || st.Connections != 1 {
		t.Fatalf("drain answered %+v", st)
	}
	if c2, err := node.DialService(dctx, st.Service); !errors.Is(err, node.ErrRefused) || !strings.Contains(err.Error(), "airlock-node n3: drained") {
		if c2 != nil {
			c2.Close()
		}
		t.Fatalf("dial while drained: %v", err)
	}
	echo("still open")

	a.stop()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	if b, err := io.ReadAll(c); err != nil || len(b) != 0 {
		t.Errorf("the connection outlived the agent: %q, %v", b, err)
	}
	if c, err := net.DialTimeout("tcp", st.Service, 5*time.Second); err == nil {
		c.Close()
		t.Error("the client service still listens after the agent stopped")
	}
}
