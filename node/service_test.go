package node

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// serviceOpts configures a node with the reference service on a free port.
func serviceOpts() Options { return Options{ServiceListen: "127.0.0.1:0"} }

// waitFor polls cond until it holds, with a deadline.
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within 20s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// dial opens a client connection that the service must accept.
func dial(t testing.TB, addr string) net.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := DialService(ctx, addr)
	if err != nil {
		t.Fatalf("dial %s: %v", addr, err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// refused checks that the service refuses a new connection with why in
// its line, both as DialService and as a raw client sees it.
func refused(t testing.TB, addr, why string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := DialService(ctx, addr)
	if err == nil {
		c.Close()
		t.Fatalf("dial %s: accepted, want refused (%s)", addr, why)
	}
	if !errors.Is(err, ErrRefused) || !strings.Contains(err.Error(), why) {
		t.Fatalf("dial %s: %v, want ErrRefused saying %q", addr, err, why)
	}
	raw, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	raw.SetDeadline(time.Now().Add(10 * time.Second))
	b, err := io.ReadAll(raw) // one line, then the service closes
	if err != nil || !strings.HasPrefix(string(b), "airlock-node n1: ") || !strings.Contains(string(b), why) || !strings.HasSuffix(string(b), "try another node\n") || strings.Count(string(b), "\n") != 1 {
		t.Fatalf("raw refusal %q (%v), want one line saying %q", b, err, why)
	}
}

// echoes checks that c is alive: what it sends comes back.
func echoes(t testing.TB, c net.Conn, msg string) {
	t.Helper()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	defer c.SetDeadline(time.Time{})
	if _, err := io.WriteString(c, msg+"\n"); err != nil {
		t.Fatalf("write on an open client connection: %v", err)
	}
	got := make([]byte, len(msg)+1)
	if _, err := io.ReadFull(c, got); err != nil || string(got) != msg+"\n" {
		t.Fatalf("echo of %q: %q, %v", msg, got, err)
	}
}

// waitConnections polls the API until the node reports n connections.
func (n *testNode) waitConnections(want int) Status {
	n.t.Helper()
	var s Status
	waitFor(n.t, "connections "+itoa(int64(want)), func() bool { s = n.status(); return s.Connections == want })
	return s
}

func TestServiceAcceptsCountsRefusesWhileDrained(t *testing.T) {
	n := newNode(t, serviceOpts())
	s := n.status()
	if s.Service == "" || !strings.HasPrefix(s.Service, "127.0.0.1:") || s.Connections != 0 || s.ConnectionsError != "" {
		t.Fatalf("status %+v: want the service's address and no connections", s)
	}
	waitFor(t, "accepting", func() bool { return n.status().Accepting })

	// The greeting says accepted.
	raw, err := net.Dial("tcp", s.Service)
	if err != nil {
		t.Fatal(err)
	}
	raw.SetDeadline(time.Now().Add(10 * time.Second))
	line, err := bufio.NewReader(raw).ReadString('\n')
	if err != nil || line != "airlock-node n1: ok\n" {
		t.Fatalf("greeting %q, %v", line, err)
	}
	raw.Close()

	var conns []net.Conn
	for range 3 {
		c := dial(t, s.Service)
		echoes(t, c, "hello")
		conns = append(conns, c)
	}
	n.waitConnections(3)

	resp, body := n.do("POST", "/v1/drain", nil)
	wantStatus(t, "drain", resp, body, http.StatusOK, "")
	if s := decode[Status](t, body); !s.Drained || s.Accepting || s.Connections != 3 {
		t.Fatalf("drain answered %+v: want drained, not accepting, 3 connections", s)
	}
	refused(t, s.Service, "drained, try another node")
	for i, c := range conns {
		echoes(t, c, "still here "+itoa(int64(i)))
	}
	if got := n.status().Connections; got != 3 {
		t.Fatalf("connections %d after refusals, want 3: refused ones must not count", got)
	}

	// Clients leaving are counted down.
	conns[0].Close()
	n.waitConnections(2)
	conns[1].(*net.TCPConn).CloseWrite() // half-close: the service ends it too
	if b, err := io.ReadAll(conns[1]); err != nil || len(b) != 0 {
		t.Fatalf("after half-close: %q, %v", b, err)
	}
	n.waitConnections(1)

	resp, body = n.do("POST", "/v1/undrain", nil)
	wantStatus(t, "undrain", resp, body, http.StatusOK, "")
	if s := decode[Status](t, body); s.Drained || !s.Accepting || s.Connections != 1 {
		t.Fatalf("undrain answered %+v", s)
	}
	c := dial(t, s.Service)
	echoes(t, c, "back")
	echoes(t, conns[2], "survivor")
	n.waitConnections(2)
}

func TestServiceKeepsConnectionsAcrossInstall(t *testing.T) {
	n := newNode(t, serviceOpts(), "base=0.9")
	addr := n.status().Service
	c := dial(t, addr)
	n.waitConnections(1)

	resp, body := n.do("POST", "/v1/drain", nil)
	wantStatus(t, "drain", resp, body, http.StatusOK, "")
	for _, v := range []string{"1.0.0", "2.0.0"} {
		d := release(t, "base", v)
		p := pkg(t, "base", v, d)
		n.stage(p, d)
		if j := n.install(p.SHA256); j.State != JobSucceeded {
			t.Fatalf("install %s: %+v", v, j)
		}
		echoes(t, c, "during "+v)
		if got := n.status().Connections; got != 1 {
			t.Fatalf("after installing %s: %d connections, want 1", v, got)
		}
	}
	refused(t, addr, "drained")
	resp, body = n.do("POST", "/v1/undrain", nil)
	wantStatus(t, "undrain", resp, body, http.StatusOK, "")
	echoes(t, c, "after undrain")
	if s := n.status(); s.Connections != 1 || !s.Accepting || s.Installed["base"].String() != "2.0.0" {
		t.Fatalf("status %+v", s)
	}
}

func TestServiceConnectionLimit(t *testing.T) {
	opts := serviceOpts()
	opts.MaxConnections = 2
	n := newNode(t, opts)
	addr := n.status().Service
	c1, c2 := dial(t, addr), dial(t, addr)
	if s := n.waitConnections(2); s.Accepting {
		t.Error("accepting at the connection limit")
	}
	refused(t, addr, "busy, 2 connections open, try another node")
	c1.Close()
	n.waitConnections(1)
	echoes(t, dial(t, addr), "room again")
	echoes(t, c2, "c2")
}

// openAgent opens dir and runs its agent (without HTTP) until stop.
func openAgent(t *testing.T, dir string, opts Options) (a *Agent, stop func()) {
	t.Helper()
	a, err := Open(dir, opts)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { a.Run(ctx); close(done) }()
	var stopped bool
	stop = func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		<-done
		if err := a.Close(); err != nil {
			t.Error(err)
		}
	}
	t.Cleanup(stop)
	return a, stop
}

func TestServiceStateSurvivesRestart(t *testing.T) {
	dir := initNode(t, newVendor(t, "Acme Vendor"))
	ctx := context.Background()
	a, stop := openAgent(t, dir, serviceOpts())
	c := dial(t, a.Status().Service)
	waitFor(t, "one connection", func() bool { return a.Status().Connections == 1 })
	if err := a.SetDrained(ctx, true); err != nil {
		t.Fatal(err)
	}
	if err := a.SetRole(ctx, RoleBackup); err != nil {
		t.Fatal(err)
	}
	stop()
	// Stopping the agent ends its service and its connections.
	c.SetDeadline(time.Now().Add(10 * time.Second))
	if b, err := io.ReadAll(c); err != nil || len(b) != 0 {
		t.Fatalf("a connection outlived the agent: %q, %v", b, err)
	}

	a, _ = openAgent(t, dir, serviceOpts())
	s := a.Status()
	if !s.Drained || s.Role != RoleBackup || s.Accepting || s.Connections != 0 {
		t.Fatalf("after restart: %+v, want drained backup, not accepting", s)
	}
	refused(t, s.Service, "drained")
	if err := a.SetDrained(ctx, false); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "accepting after undrain", func() bool { return a.Status().Accepting })
	echoes(t, dial(t, s.Service), "x")
}

func TestServiceListenRefused(t *testing.T) {
	dir := initNode(t, newVendor(t, "Acme Vendor"))
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	_, err = Open(dir, Options{ServiceListen: ln.Addr().String()})
	if err == nil || !strings.Contains(err.Error(), "client service") || !strings.Contains(err.Error(), ln.Addr().String()) {
		t.Fatalf("Open on a busy address: %v", err)
	}
	// The failed Open released the directory.
	a, _ := openAgent(t, dir, Options{})
	if s := a.Status(); s.Service != "" || !s.Accepting || s.Connections != 0 {
		t.Errorf("without service: %+v, want no service, accepting as undrained, 0 connections", s)
	}
}

func TestDialServiceRejectsStrangers(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			io.WriteString(c, "SSH-2.0-OpenSSH_9.6\r\n")
			c.Close()
		}
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if c, err := DialService(ctx, ln.Addr().String()); err == nil || errors.Is(err, ErrRefused) || !strings.Contains(err.Error(), "unexpected greeting") {
		if c != nil {
			c.Close()
		}
		t.Fatalf("DialService to a stranger: %v", err)
	}
}

// hookLog is a file the test hooks append to.
func hookLog(t *testing.T) string { return filepath.Join(t.TempDir(), "hooks.log") }

func readLog(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	return string(b)
}

func TestDrainHooks(t *testing.T) {
	n := newNode(t, serviceOpts())
	log := hookLog(t)
	addr := n.status().Service

	// A failing drain hook changes nothing.
	writeHook(t, n.dir, HookDrain, "echo load balancer said no >&2\nexit 1\n")
	resp, body := n.do("POST", "/v1/drain", nil)
	e := wantStatus(t, "failing drain", resp, body, http.StatusInternalServerError, "hook-failed")
	if !strings.Contains(e.Error, "load balancer said no") || !strings.Contains(e.Error, "stays undrained") {
		t.Errorf("error %q: want the hook's output and the unchanged state", e.Error)
	}
	if s := n.status(); s.Drained || !s.Accepting {
		t.Fatalf("after a failed drain hook: %+v", s)
	}
	if st, _ := loadState(n.dir); st.Drained {
		t.Fatal("a failed drain hook persisted drained")
	}
	echoes(t, dial(t, addr), "still accepting")

	// A working hook runs with the node's name, then the flag is set.
	writeHook(t, n.dir, HookDrain, `echo "$AIRLOCK_HOOK $1 $AIRLOCK_NODE $AIRLOCK_REGION $AIRLOCK_SERVICE $(pwd)" >>`+log+"\n")
	writeHook(t, n.dir, HookUndrain, "echo undrain blocked >&2\nexit 2\n")
	resp, body = n.do("POST", "/v1/drain", nil)
	wantStatus(t, "drain", resp, body, http.StatusOK, "")
	if got, want := readLog(t, log), "drain n1 n1 eu "+addr+" "+n.dir+"\n"; got != want {
		t.Errorf("drain hook ran as %q, want %q", got, want)
	}
	refused(t, addr, "drained")

	// A failing undrain hook leaves the node drained.
	resp, body = n.do("POST", "/v1/undrain", nil)
	e = wantStatus(t, "failing undrain", resp, body, http.StatusInternalServerError, "hook-failed")
	if !strings.Contains(e.Error, "undrain blocked") || !strings.Contains(e.Error, "stays drained") {
		t.Errorf("error %q", e.Error)
	}
	if s := n.status(); !s.Drained || s.Accepting {
		t.Fatalf("after a failed undrain hook: %+v", s)
	}
	refused(t, addr, "drained")

	// Draining again runs the hook again.
	resp, body = n.do("POST", "/v1/drain", nil)
	wantStatus(t, "drain again", resp, body, http.StatusOK, "")
	if got := strings.Count(readLog(t, log), "drain n1"); got != 2 {
		t.Errorf("drain hook ran %d times, want 2", got)
	}
	os.Remove(filepath.Join(n.dir, "hooks", HookUndrain))
	resp, body = n.do("POST", "/v1/undrain", nil)
	wantStatus(t, "undrain without hook", resp, body, http.StatusOK, "")
	echoes(t, dial(t, addr), "accepting again")
}

func TestDrainHookTimeoutAndNotExecutable(t *testing.T) {
	n := newNode(t, Options{ControlHookTimeout: 300 * time.Millisecond})
	writeHook(t, n.dir, HookDrain, "sleep 30\n")
	start := time.Now()
	resp, body := n.do("POST", "/v1/drain", nil)
	e := wantStatus(t, "slow drain", resp, body, http.StatusInternalServerError, "hook-failed")
	if !strings.Contains(e.Error, "timed out") || time.Since(start) > 15*time.Second {
		t.Errorf("error %q after %s", e.Error, time.Since(start))
	}
	if n.status().Drained {
		t.Fatal("a timed-out drain hook drained the node")
	}
	os.Chmod(filepath.Join(n.dir, "hooks", HookDrain), 0o644)
	resp, body = n.do("POST", "/v1/drain", nil)
	e = wantStatus(t, "drain with a non-executable hook", resp, body, http.StatusInternalServerError, "hook-failed")
	if !strings.Contains(e.Error, "not an executable") || n.status().Drained {
		t.Errorf("error %q, drained %v", e.Error, n.status().Drained)
	}
}

func TestConnectionsHook(t *testing.T) {
	n := newNode(t, Options{ServiceListen: "127.0.0.1:0", ControlHookTimeout: 300 * time.Millisecond})
	c := dial(t, n.status().Service)
	n.waitConnections(1) // no hook: the service's count
	log := hookLog(t)
	for _, tc := range []struct {
		name, script string
		want         int
		says         string
	}{
		{"count", `echo "$1 $AIRLOCK_HOOK" >>` + log + "\necho 7\n", 7, ""},
		{"white space", "printf '  42 \\n\\n'\n", 42, ""},
		{"zero", "echo 0\n", 0, ""},
		{"not a number", "echo lots\n", -1, `printed "lots"`},
		{"negative", "echo -3\n", -1, `printed "-3"`},
		{"two numbers", "echo 1 2\n", -1, `printed "1 2"`},
		{"empty", "true\n", -1, `printed ""`},
		{"too long", "head -c 100000 /dev/zero | tr '\\0' 1\n", -1, "more than 64 bytes"},
		{"fails", "echo cannot reach the proxy >&2\nexit 4\n", -1, "cannot reach the proxy"},
		{"times out", "sleep 30\n", -1, "timed out"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			writeHook(t, n.dir, HookConnections, tc.script)
			s := n.status()
			if s.Connections != tc.want || (tc.says == "") != (s.ConnectionsError == "") || !strings.Contains(s.ConnectionsError, tc.says) {
				t.Fatalf("connections %d, error %q; want %d and %q", s.Connections, s.ConnectionsError, tc.want, tc.says)
			}
			if tc.says != "" && !strings.Contains(s.ConnectionsError, "hooks/connections") {
				t.Errorf("error %q does not name the hook", s.ConnectionsError)
			}
		})
	}
	if got := readLog(t, log); got != "n1 connections\n" {
		t.Errorf("connections hook ran as %q", got)
	}
	// The drain answer counts with the hook too.
	writeHook(t, n.dir, HookConnections, "echo 5\n")
	resp, body := n.do("POST", "/v1/drain", nil)
	wantStatus(t, "drain", resp, body, http.StatusOK, "")
	if s := decode[Status](t, body); s.Connections != 5 || !s.Drained {
		t.Errorf("drain answered %+v", s)
	}
	// Without the hook, the service's count again.
	os.Remove(filepath.Join(n.dir, "hooks", HookConnections))
	if s := n.status(); s.Connections != 1 || s.ConnectionsError != "" {
		t.Errorf("after removing the hook: %d, %q", s.Connections, s.ConnectionsError)
	}
	echoes(t, c, "untouched")
}

func TestConnectionsHookBeforeFirstCount(t *testing.T) {
	v := newVendor(t, "Acme Vendor")
	dir := initNode(t, v)
	writeHook(t, dir, HookConnections, "echo 3\n")
	a, _ := openAgent(t, dir, Options{})
	if s := a.Status(); s.Connections != -1 || s.ConnectionsError != "not counted yet" {
		t.Errorf("before a count: %d, %q", s.Connections, s.ConnectionsError)
	}
	if err := a.RefreshConnections(context.Background()); err != nil {
		t.Fatal(err)
	}
	if s := a.Status(); s.Connections != 3 || s.ConnectionsError != "" {
		t.Errorf("after a count: %d, %q", s.Connections, s.ConnectionsError)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	writeHook(t, dir, HookConnections, "echo 9\n")
	if err := a.RefreshConnections(ctx); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled count: %v", err)
	}
	if s := a.Status(); s.Connections != 3 {
		t.Errorf("a cancelled count was recorded: %d", s.Connections)
	}
}

func TestRoleHooks(t *testing.T) {
	n := newNode(t, Options{}) // starts primary
	log := hookLog(t)
	for _, h := range []string{HookPromote, HookDemote} {
		writeHook(t, n.dir, h, `echo "$AIRLOCK_HOOK $1 $2 $3 $AIRLOCK_PREVIOUS_ROLE $AIRLOCK_ROLE" >>`+log+"\n")
	}
	setRole := func(role string) Status {
		t.Helper()
		resp, body := n.do("POST", "/v1/role", strings.NewReader(`{"role":"`+role+`"}`))
		wantStatus(t, "role "+role, resp, body, http.StatusOK, "")
		s := decode[Status](t, body)
		if s.Role != role {
			t.Fatalf("role answer %q, want %q", s.Role, role)
		}
		return s
	}
	setRole(RoleBackup)
	setRole(RoleTraffic)
	setRole(RolePrimary)
	setRole(RolePrimary)
	setRole(RoleManagement)
	want := "demote n1 primary backup primary backup\n" +
		"promote n1 traffic primary traffic primary\n" +
		"demote n1 primary management primary management\n"
	if got := readLog(t, log); got != want {
		t.Errorf("role hooks ran as\n%s\nwant\n%s", got, want)
	}

	// A failing promote leaves the role.
	writeHook(t, n.dir, HookPromote, "echo peer still primary >&2\nexit 1\n")
	resp, body := n.do("POST", "/v1/role", strings.NewReader(`{"role":"primary"}`))
	e := wantStatus(t, "failing promote", resp, body, http.StatusInternalServerError, "hook-failed")
	if !strings.Contains(e.Error, "peer still primary") || !strings.Contains(e.Error, "stays management") {
		t.Errorf("error %q", e.Error)
	}
	if st, _ := loadState(n.dir); st.Role != RoleManagement || n.status().Role != RoleManagement {
		t.Fatalf("a failed promote changed the role: %q", st.Role)
	}
}

func TestRolePersistedAcrossRestart(t *testing.T) {
	dir := initNode(t, newVendor(t, "Acme Vendor"))
	a, stop := openAgent(t, dir, Options{})
	if err := a.SetRole(context.Background(), RoleTraffic); err != nil {
		t.Fatal(err)
	}
	stop()
	a, _ = openAgent(t, dir, Options{})
	if got := a.Status().Role; got != RoleTraffic {
		t.Fatalf("role after restart %q, want traffic", got)
	}
}
