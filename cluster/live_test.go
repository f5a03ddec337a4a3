package cluster_test

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/airlock-project/airlock/cluster"
	"github.com/airlock-project/airlock/cluster/clustertest"
	"github.com/airlock-project/airlock/fault"
	"github.com/airlock-project/airlock/node"
	"github.com/airlock-project/airlock/repo"
)

// serviced starts agents with the reference client service.
var serviced = node.Options{ServiceListen: "127.0.0.1:0"}

// sixNodes: primary n1 and traffic n3, n4 in eu; backup n2 and traffic n5,
// n6 in us.
var sixNodes = []clustertest.NodeSpec{
	{Name: "n1", Role: node.RolePrimary, Region: "eu"},
	{Name: "n2", Role: node.RoleBackup, Region: "us"},
	{Name: "n3", Role: node.RoleTraffic, Region: "eu"},
	{Name: "n4", Role: node.RoleTraffic, Region: "eu"},
	{Name: "n5", Role: node.RoleTraffic, Region: "us"},
	{Name: "n6", Role: node.RoleTraffic, Region: "us"},
}

// liveClient is one client of the reference service: it keeps a
// connection open and moves to another accepting node of its region when
// its node is drained, as real clients told to go elsewhere do.
type liveClient struct {
	home  string // the node it first connected to
	node  string // the node it is connected to now, "" between two
	conn  net.Conn
	rd    *bufio.Reader
	moves int
	pings int
}

// prober watches the client services of a cluster during a rollout: every
// round it dials every node at once (recording whether each region had a
// node accepting), echoes on every client's connection (recording any
// connection cut), and moves the clients off the nodes that refused.
type prober struct {
	t       *testing.T
	addr    map[string]string // node -> service address
	region  map[string]string // node -> region
	regions []string
	clients []*liveClient

	mu       sync.Mutex
	rounds   int
	dark     []string // "round N: region R had no node accepting"
	cuts     []string // connections cut under a client
	failures []string // dials that neither connected nor were refused
	refused  map[string]int
}

func newProber(t *testing.T, agents []*clustertest.Agent, specs []clustertest.NodeSpec) *prober {
	t.Helper()
	p := &prober{t: t, addr: map[string]string{}, region: map[string]string{}, refused: map[string]int{}}
	for i, a := range agents {
		st := a.Node().Status()
		if st.Service == "" || !st.Accepting {
			t.Fatalf("node %s: no accepting client service (%+v)", a.Name, st)
		}
		p.addr[a.Name] = st.Service
		p.region[a.Name] = specs[i].Region
		if !slices.Contains(p.regions, specs[i].Region) {
			p.regions = append(p.regions, specs[i].Region)
		}
	}
	slices.Sort(p.regions)
	// One live client per node, connected before the rollout.
	for _, a := range agents {
		c := &liveClient{home: a.Name}
		if err := c.connect(context.Background(), a.Name, p.addr[a.Name]); err != nil {
			t.Fatalf("client of %s: %v", a.Name, err)
		}
		p.clients = append(p.clients, c)
	}
	// Wait until every service counts its client.
	deadline := time.Now().Add(10 * time.Second)
	for _, a := range agents {
		for a.Node().Status().Connections != 1 {
			if time.Now().After(deadline) {
				t.Fatalf("node %s counts %d connections, want 1", a.Name, a.Node().Status().Connections)
			}
			time.Sleep(2 * time.Millisecond)
		}
	}
	return p
}

func (c *liveClient) connect(ctx context.Context, name, addr string) error {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	conn, err := node.DialService(ctx, addr)
	if err != nil {
		return err
	}
	c.node, c.conn, c.rd = name, conn, bufio.NewReader(conn)
	return c.echo()
}

// echo proves that the connection is alive: what is sent comes back.
func (c *liveClient) echo() error {
	c.pings++
	msg := fmt.Sprintf("ping %s %d\n", c.home, c.pings)
	if err := c.conn.SetDeadline(time.Now().Add(5 * time.Second)); err != nil {
		return err
	}
	if _, err := io.WriteString(c.conn, msg); err != nil {
		return err
	}
	got, err := c.rd.ReadString('\n')
	if err != nil {
		return err
	}
	if got != msg {
		return fmt.Errorf("echo %q, want %q", got, msg)
	}
	return nil
}

func (c *liveClient) close() {
	if c.conn != nil {
		c.conn.Close()
	}
	c.node, c.conn, c.rd = "", nil, nil
}

// run probes in rounds until ctx ends.
func (p *prober) run(ctx context.Context) {
	tick := time.NewTicker(3 * time.Millisecond)
	defer tick.Stop()
	for {
		p.round(ctx)
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// start runs the prober until the returned function is called; that
// function waits for the last round and returns.
func (p *prober) start() (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		p.run(ctx)
	}()
	return func() {
		cancel()
		<-done
	}
}

func (p *prober) round(ctx context.Context) {
	accepting := map[string]bool{}
	var mu sync.Mutex
	var wg sync.WaitGroup
	for name, addr := range p.addr {
		wg.Go(func() {
			dctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			defer cancel()
			conn, err := node.DialService(dctx, addr)
			mu.Lock()
			defer mu.Unlock()
			switch {
			case err == nil:
				conn.Close()
				accepting[name] = true
			case errors.Is(err, node.ErrRefused):
				p.refused[name]++
			case ctx.Err() == nil:
				p.failures = append(p.failures, fmt.Sprintf("dial %s: %v", name, err))
			}
		})
	}
	wg.Wait()
	if ctx.Err() != nil {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.rounds++
	for _, r := range p.regions {
		open := false
		for n, nr := range p.region {
			open = open || (nr == r && accepting[n])
		}
		if !open {
			p.dark = append(p.dark, fmt.Sprintf("round %d: region %s had no node accepting", p.rounds, r))
		}
	}
	for _, c := range p.clients {
		if c.conn != nil {
			if err := c.echo(); err != nil {
				p.cuts = append(p.cuts, fmt.Sprintf("round %d: the connection of client %s to node %s was cut: %v", p.rounds, c.home, c.node, err))
				c.close()
			}
		}
		if c.conn != nil && !accepting[c.node] {
			// Told to go elsewhere: the client leaves its drained node.
			c.close()
			c.moves++
		}
		if c.conn == nil {
			for _, n := range slices.Sorted(func(yield func(string) bool) {
				for n := range p.addr {
					if !yield(n) {
						return
					}
				}
			}) {
				if p.region[n] != p.region[c.home] || !accepting[n] {
					continue
				}
				if c.connect(ctx, n, p.addr[n]) == nil {
					break
				}
				c.close()
			}
		}
	}
}

// check fails the test on a dark region (if perRegion), a cut connection
// or a failed dial, and checks that every client still echoes; the
// clients of the nodes in stay (never drained) must never have moved, the
// others (drained) must have left their node.
func (p *prober) check(perRegion bool, stay ...string) {
	p.t.Helper()
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.rounds < 10 {
		p.t.Errorf("only %d probe rounds during the rollout", p.rounds)
	}
	if perRegion {
		for _, d := range p.dark {
			p.t.Error(d)
		}
	}
	for _, s := range append(p.cuts, p.failures...) {
		p.t.Error(s)
	}
	for _, c := range p.clients {
		if c.conn == nil {
			p.t.Errorf("client %s is connected nowhere", c.home)
			continue
		}
		if err := c.echo(); err != nil {
			p.t.Errorf("client %s on %s after the rollout: %v", c.home, c.node, err)
		}
		if slices.Contains(stay, c.home) && (c.moves != 0 || c.node != c.home) {
			p.t.Errorf("client %s moved %d times (now on %s), but its node was never drained", c.home, c.moves, c.node)
		}
		if !slices.Contains(stay, c.home) && c.moves == 0 {
			p.t.Errorf("client %s never left its node, which the rollout drained", c.home)
		}
	}
}

func (p *prober) closeClients() {
	for _, c := range p.clients {
		c.close()
	}
}

// token names the change of one event: "drain n3", "install n3" (for a
// submitted or finished install), "role n2 primary", "undrain n3".
func token(e clustertest.Event) string {
	switch e.Kind {
	case clustertest.EventInstall, clustertest.EventInstalled:
		return "install " + e.Node
	case clustertest.EventRole:
		return "role " + e.Node + " " + e.Detail
	}
	return e.Kind + " " + e.Node
}

// checkPhases fails unless the events are the phases in order: every
// event of a phase comes after every event of the phase before, and
// within a phase each node's events are in the order listed, while the
// events of different nodes may interleave (the nodes of a wave proceed
// concurrently). A phase lists tokens (see token); the consecutive
// installs of a node, from the first submitted to the last seen done,
// count as one "install" token. A phase whose tokens name one node is
// entirely ordered, so an order across nodes is a sequence of one-node
// phases.
func checkPhases(t *testing.T, events []clustertest.Event, phases [][]string) {
	t.Helper()
	var got []string
	for _, e := range events {
		got = append(got, e.String())
	}
	fail := func(format string, args ...any) {
		t.Helper()
		t.Errorf(format+"\nthe agents saw:\n  %s\nwant phases:\n  %s", append(args, strings.Join(got, "\n  "), phasesString(phases))...)
	}
	nodeOf := func(tok string) string { return strings.Fields(tok)[1] }
	k := 0
	done := map[string]int{} // tokens of each node consumed in phase k
	last := map[string]string{}
	want := func(k int, n string) []string {
		var out []string
		for _, tok := range phases[k] {
			if nodeOf(tok) == n {
				out = append(out, tok)
			}
		}
		return out
	}
	complete := func(k int) bool {
		total := 0
		for _, n := range done {
			total += n
		}
		return total == len(phases[k])
	}
	for _, e := range events {
		tok := token(e)
		if strings.HasPrefix(tok, "install ") && last[e.Node] == tok {
			continue
		}
		for {
			if k == len(phases) {
				fail("event %s after the last phase", e)
				return
			}
			if w := want(k, e.Node); done[e.Node] < len(w) && w[done[e.Node]] == tok {
				done[e.Node]++
				last[e.Node] = tok
				break
			}
			if !complete(k) {
				fail("event %s in phase %d (%s), which is not complete", e, k+1, strings.Join(phases[k], ", "))
				return
			}
			k++
			clear(done)
		}
	}
	if k != len(phases)-1 || !complete(k) {
		fail("the events end in phase %d of %d, complete %v", k+1, len(phases), k < len(phases) && complete(k))
	}
}

func phasesString(phases [][]string) string {
	var out []string
	for i, p := range phases {
		out = append(out, fmt.Sprintf("%d: %s", i+1, strings.Join(p, ", ")))
	}
	return strings.Join(out, "\n  ")
}

// checkInstallEvents fails unless every node's install jobs were
// submitted in the package order, each seen done before the next was
// submitted, none failed.
func checkInstallEvents(t *testing.T, events []clustertest.Event) {
	t.Helper()
	want := []string{"install base@3.4.0", "installed base@3.4.0", "install product@22.1.0", "installed product@22.1.0",
		"install product@23.1.0", "installed product@23.1.0", "install license@1.1.0", "installed license@1.1.0"}
	got := map[string][]string{}
	for _, e := range events {
		if strings.HasPrefix(e.Kind, "install") {
			got[e.Node] = append(got[e.Node], e.Kind+" "+e.Detail)
		}
	}
	for n, g := range got {
		if !slices.Equal(g, want) {
			t.Errorf("node %s: install events %q, want %q", n, g, want)
		}
	}
}

// checkInvariants replays the events from the initial roles and drained
// states: with perRegion, every region keeps an undrained node after every
// event; the pair never has two primaries.
func checkInvariants(t *testing.T, events []clustertest.Event, specs []clustertest.NodeSpec, perRegion bool) {
	t.Helper()
	drained := map[string]bool{}
	role := map[string]string{}
	for _, s := range specs {
		role[s.Name] = s.Role
	}
	for _, e := range events {
		switch e.Kind {
		case clustertest.EventDrain:
			drained[e.Node] = true
		case clustertest.EventUndrain:
			drained[e.Node] = false
		case clustertest.EventRole:
			role[e.Node] = e.Detail
		}
		if perRegion {
			for _, s := range specs {
				open := false
				for _, o := range specs {
					open = open || (o.Region == s.Region && !drained[o.Name])
				}
				if !open {
					t.Errorf("after event %s, region %s has every node drained", e, s.Region)
				}
			}
		}
		primaries := 0
		for _, r := range role {
			if r == node.RolePrimary {
				primaries++
			}
		}
		if primaries > 1 {
			t.Errorf("after event %s, %d primaries", e, primaries)
		}
	}
}

// TestInstallStrategiesLive runs each strategy on six nodes in two
// regions whose reference services have live clients, and checks what the
// agents saw: the drains, installs, undrains and role changes come in the
// strategy's phases, each node's in the strategy's order (the nodes of a
// wave proceed concurrently, so their changes interleave), every phase
// before the next; under rolling and atlas every region has a node
// accepting new connections at every probe round and after every change;
// no client connection is cut by an install or a role change (the clients
// of the failover pair, never drained, keep their first connection
// through the rollout); the pair never has two primaries and ends with
// exactly one.
func TestInstallStrategiesLive(t *testing.T) {
	// rolling: each wave of nodes drained, installed and undrained
	// together, each node in that order; one wave after the other.
	rolling := func(waves ...[]string) [][]string {
		var out [][]string
		for _, w := range waves {
			var p []string
			for _, n := range w {
				p = append(p, "drain "+n, "install "+n, "undrain "+n)
			}
			out = append(out, p)
		}
		return out
	}
	one := func(nodes ...string) [][]string {
		var out [][]string
		for _, n := range nodes {
			out = append(out, []string{n})
		}
		return out
	}
	for _, tc := range []struct {
		strategy       string
		maxUnavailable int
		phases         [][]string
		perRegion      bool
		primary        string
		stay           []string
	}{
		{strategy: "rolling", perRegion: true, primary: "n1",
			// Traffic nodes one at a time, then the backup, the primary last.
			phases: rolling(one("n3", "n4", "n5", "n6", "n2", "n1")...)},
		{strategy: "rolling", maxUnavailable: 2, perRegion: true, primary: "n1",
			// Two traffic nodes at a time (each region keeps one serving).
			phases: rolling([]string{"n3", "n4"}, []string{"n5", "n6"}, []string{"n2"}, []string{"n1"})},
		{strategy: "failover-sync", primary: "n1", stay: []string{"n1", "n2"},
			// The primary first, then the backup (already paired), then the others.
			phases: append([][]string{{"install n1"}, {"install n2"}}, rolling(one("n3", "n4", "n5", "n6")...)...)},
		{strategy: "failover-async", primary: "n2", stay: []string{"n1", "n2"},
			// The backup first, promoted (the old primary steps down first),
			// then the old primary, then the others.
			phases: append([][]string{{"install n2"}, {"role n1 backup"}, {"role n2 primary"}, {"install n1"}}, rolling(one("n3", "n4", "n5", "n6")...)...)},
		{strategy: "atlas", perRegion: true, primary: "n2", stay: []string{"n1", "n2"},
			phases: [][]string{
				// Half the traffic nodes of each region drained, with the backup
				// upgraded while they drain.
				{"drain n3", "drain n5", "install n2", "install n3", "install n5"},
				// Promote the backup; the drained half back in service.
				{"role n1 backup"}, {"role n2 primary"},
				{"undrain n3", "undrain n5"},
				// The rest of the traffic nodes, then the old primary.
				{"drain n4", "drain n6", "install n4", "install n6"},
				{"install n1"},
				{"undrain n4", "undrain n6"},
			}},
	} {
		name := tc.strategy
		if tc.maxUnavailable > 0 {
			name += fmt.Sprintf("-max-unavailable-%d", tc.maxUnavailable)
		}
		t.Run(name, func(t *testing.T) {
			start := time.Now()
			rp := clustertest.NewRepo(t, clustertest.Standard(4096)...)
			agents := clustertest.StartNodes(t, rp, serviced, sixNodes...)
			log := clustertest.NewEventLog()
			for _, a := range agents {
				log.Attach(a)
			}
			r := rp.Open(t)
			defer r.Close()
			ctx := context.Background()
			if tc.strategy != "atlas" {
				if _, err := cluster.Distribute(ctx, r, cluster.DistributeOptions{}); err != nil {
					t.Fatal(err)
				}
			}
			p := newProber(t, agents, sixNodes)
			defer p.closeClients()
			stop := p.start()
			var out bytes.Buffer
			o := installOptions(tc.strategy, &out)
			o.PollInterval = 5 * time.Millisecond
			o.DrainTimeout = 10 * time.Second
			o.MaxUnavailable = tc.maxUnavailable
			_, err := cluster.Install(ctx, r, o)
			stop()
			if err != nil {
				t.Fatalf("%v\n%s", err, out.String())
			}
			events := log.Events()
			checkPhases(t, events, tc.phases)
			checkInstallEvents(t, events)
			checkInvariants(t, events, sixNodes, tc.perRegion)
			p.check(tc.perRegion, tc.stay...)
			if got := checkNewest(t, agents); got != tc.primary {
				t.Errorf("primary is %s, want %s", got, tc.primary)
			}
			succeededOnce(t, agents)
			t.Logf("%d probe rounds, refusals %v, in %s", p.rounds, p.refused, time.Since(start).Round(time.Millisecond))
		})
	}
}

// waitConnections waits until a's service counts n connections.
func waitConnections(t *testing.T, a *clustertest.Agent, n int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for a.Node().Status().Connections != n {
		if time.Now().After(deadline) {
			t.Fatalf("node %s counts %d connections, want %d", a.Name, a.Node().Status().Connections, n)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// untouched fails unless a installed nothing, runs Installed, is not
// drained and its service accepts a new connection.
func untouched(t *testing.T, a *clustertest.Agent) {
	t.Helper()
	st := a.Node().Status()
	if jobs := a.Node().Jobs(); len(jobs) != 0 {
		t.Errorf("node %s has %d install jobs, want none", a.Name, len(jobs))
	}
	for name, v := range clustertest.Installed {
		if st.Installed[name].String() != v {
			t.Errorf("node %s runs %s %s, want %s", a.Name, name, st.Installed[name], v)
		}
	}
	serving(t, a)
}

// serving fails unless a is undrained and its service accepts a new
// connection that echoes.
func serving(t *testing.T, a *clustertest.Agent) {
	t.Helper()
	if st := a.Node().Status(); st.Drained || !st.Accepting {
		t.Errorf("node %s: drained %v, accepting %v", a.Name, st.Drained, st.Accepting)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c := &liveClient{home: a.Name}
	if err := c.connect(ctx, a.Name, a.Node().Status().Service); err != nil {
		t.Errorf("node %s does not serve: %v", a.Name, err)
		return
	}
	c.close()
}

// TestInstallDrainTimeout: a client that never leaves a drained node
// stops the rollout at the drain timeout, naming the node and the open
// connection count (operational, exit 1), with nothing installed on the
// node, which stays drained, as the message says, and the client's
// connection intact; the other nodes are untouched and serve. Once the
// client has left, a rerun resumes and finishes.
func TestInstallDrainTimeout(t *testing.T) {
	agents, r, stubborn := stubbornCluster(t)
	n3 := agents[2]
	ctx := context.Background()
	var out bytes.Buffer
	o := installOptions("rolling", &out)
	o.DrainTimeout = 300 * time.Millisecond
	_, err := cluster.Install(ctx, r, o)
	var se *cluster.StepError
	if !errors.As(err, &se) {
		t.Fatalf("error %v, want a *StepError\n%s", err, out.String())
	}
	if se.Step.Kind != "wait-connections" || se.Step.Node != "n3" {
		t.Errorf("stopped at step %d (%s) on %s, want the wait for n3's connections", se.Step.N, se.Step.Text, se.Step.Node)
	}
	if !errors.Is(err, cluster.ErrDrainTimeout) || fault.Code(err) != fault.ExitOperational {
		t.Errorf("error %v: exit %d, want ErrDrainTimeout, exit %d", err, fault.Code(err), fault.ExitOperational)
	}
	for _, want := range []string{"node n3 still has 1 client connection(s) open 300ms after it was drained",
		"nothing was installed on it and it stays drained", "node n3 is now drained", "rerun airlock install"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error does not say %q:\n%v", want, err)
		}
	}
	st := n3.Node().Status()
	if !st.Drained || st.Accepting || len(n3.Node().Jobs()) != 0 || st.Installed["base"].String() != "3.3.2" {
		t.Errorf("n3: drained %v, accepting %v, %d jobs, %v; want drained, nothing installed", st.Drained, st.Accepting, len(n3.Node().Jobs()), st.Installed)
	}
	if _, err := node.DialService(ctx, st.Service); !errors.Is(err, node.ErrRefused) {
		t.Errorf("dial drained n3: %v, want refused", err)
	}
	if err := stubborn.echo(); err != nil {
		t.Errorf("the client's connection to n3 was cut: %v", err)
	}
	untouched(t, agents[0])
	untouched(t, agents[1])
	ro, err := r.UnfinishedRollout()
	if err != nil || ro == nil || ro.Steps[se.Step.N-1].State != repo.StepFailed {
		t.Fatalf("unfinished rollout %+v, %v", ro, err)
	}

	// The client moves away: the rerun waits for nothing and finishes.
	stubborn.close()
	waitConnections(t, n3, 0)
	out.Reset()
	if _, err := cluster.Install(ctx, r, o); err != nil {
		t.Fatalf("rerun: %v\n%s", err, out.String())
	}
	if !strings.Contains(out.String(), fmt.Sprintf("resuming at step %d", se.Step.N)) {
		t.Errorf("rerun output:\n%s", out.String())
	}
	checkNewest(t, agents)
	succeededOnce(t, agents)
}

// TestInstallNodeFailsMidRollout: a node whose pre-install hook fails
// stops a rolling rollout at its first install, naming the node and the
// hook's message; it keeps its versions (drained, as the message says);
// the node done before it runs the newest versions and serves; the nodes
// not reached yet are untouched and serve. Once the hook is removed, a
// rerun resumes there and finishes.
func TestInstallNodeFailsMidRollout(t *testing.T) {
	rp := clustertest.NewRepo(t, clustertest.Standard(4096)...)
	agents := clustertest.StartNodes(t, rp, serviced, sixNodes...)
	byName := map[string]*clustertest.Agent{}
	for _, a := range agents {
		byName[a.Name] = a
	}
	n4 := byName["n4"]
	hook := filepath.Join(n4.Dir, "hooks", "pre-install")
	if err := os.MkdirAll(filepath.Dir(hook), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(hook, []byte("#!/bin/sh\necho \"disk check failed on $AIRLOCK_NODE\" >&2\nexit 1\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	r := rp.Open(t)
	defer r.Close()
	ctx := context.Background()
	if _, err := cluster.Distribute(ctx, r, cluster.DistributeOptions{}); err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	o := installOptions("rolling", &out)
	_, err := cluster.Install(ctx, r, o)
	var se *cluster.StepError
	if !errors.As(err, &se) {
		t.Fatalf("error %v, want a *StepError\n%s", err, out.String())
	}
	if se.Step.Kind != "install" || se.Step.Node != "n4" || se.Step.Package.ID() != "base@3.4.0" {
		t.Errorf("stopped at step %d (%s), want the install of base 3.4.0 on n4", se.Step.N, se.Step.Text)
	}
	for _, want := range []string{"on node n4", "disk check failed on n4", "node n4 is now drained", "base 3.3.2", "rerun airlock install"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error does not say %q:\n%v", want, err)
		}
	}
	if fault.Code(err) != fault.ExitOperational {
		t.Errorf("exit %d, want %d (a failed hook is operational)", fault.Code(err), fault.ExitOperational)
	}
	if st := n4.Node().Status(); !st.Drained || st.Installed["base"].String() != "3.3.2" || st.Installed["product"].String() != "21.1.0" {
		t.Errorf("n4: drained %v, %v; want drained at the old versions", st.Drained, st.Installed)
	}
	if jobs := n4.Node().Jobs(); len(jobs) != 1 || jobs[0].State != node.JobFailed {
		t.Errorf("n4 jobs %+v, want one failed", jobs)
	}
	// n3, done before, serves the newest versions.
	if st := byName["n3"].Node().Status(); st.Installed["license"].String() != "1.1.0" {
		t.Errorf("n3 runs %v", st.Installed)
	}
	serving(t, byName["n3"])
	for _, n := range []string{"n1", "n2", "n5", "n6"} {
		untouched(t, byName[n])
	}

	// Fixed, the rerun resumes at the failed step and finishes.
	if err := os.Remove(hook); err != nil {
		t.Fatal(err)
	}
	out.Reset()
	ro, err := cluster.Install(ctx, r, o)
	if err != nil {
		t.Fatalf("rerun: %v\n%s", err, out.String())
	}
	if ro.State != repo.RolloutFinished || !strings.Contains(out.String(), fmt.Sprintf("resuming at step %d", se.Step.N)) {
		t.Errorf("rollout %d %s; output:\n%s", ro.ID, ro.State, out.String())
	}
	checkNewest(t, agents)
	installedOnce(t, agents)
}

// stubbornCluster starts clustertest.Cluster with the client service,
// distributes, and connects a client to n3 that stays until closed (the
// test closes it; it is closed at the end otherwise).
func stubbornCluster(t *testing.T) ([]*clustertest.Agent, *repo.Repo, *liveClient) {
	t.Helper()
	rp := clustertest.NewRepo(t, clustertest.Standard(4096)...)
	agents := clustertest.Cluster(t, rp, serviced)
	n3 := agents[2]
	ctx := context.Background()
	stubborn := &liveClient{home: "n3"}
	if err := stubborn.connect(ctx, "n3", n3.Node().Status().Service); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(stubborn.close)
	waitConnections(t, n3, 1)
	r := rp.Open(t)
	t.Cleanup(func() { r.Close() })
	if _, err := cluster.Distribute(ctx, r, cluster.DistributeOptions{}); err != nil {
		t.Fatal(err)
	}
	return agents, r, stubborn
}

// TestInstallHeartbeat: a step held open says so at every heartbeat, in a
// line and a running event, with what it knows live. The stubborn client
// keeps the wait for n3's connections open until it has printed two
// heartbeats counting that connection; then n3's job polls are held until
// its first install has printed two heartbeats naming its job. Each line
// and event names the right step, none follows its step's final line or
// event, and the final lines are the usual ones.
func TestInstallHeartbeat(t *testing.T) {
	agents, r, stubborn := stubbornCluster(t)
	n3 := agents[2]
	polls := clustertest.NewGate(clustertest.IsJobPoll, time.Minute)
	polls.Attach(n3)
	waitBeat := regexp.MustCompile(`\] wait for n3's client connections to end [^\n]*: 1 open, waiting \S+ of at most 1m$`)
	installBeat := regexp.MustCompile(`\] install base 3\.4\.0 on n3 \(reboots\): job [0-9a-f]+ (queued|running) for \S+$`)
	waits, installs := 0, 0
	out := syncBuffer{onLine: func(line string) {
		line = strings.TrimSuffix(line, "\n")
		if waitBeat.MatchString(line) {
			if waits++; waits == 2 {
				stubborn.close() // the client leaves: the wait ends
			}
		}
		if installBeat.MatchString(line) {
			if installs++; installs == 2 {
				polls.Open()
			}
		}
	}}
	var events syncBuffer
	o := cluster.InstallOptions{Strategy: "rolling", SkipSettle: true, PollInterval: 5 * time.Millisecond,
		DrainTimeout: time.Minute, Heartbeat: 2 * time.Millisecond, Out: &out, Events: &events}
	ro, err := cluster.Install(context.Background(), r, o)
	if err != nil {
		t.Fatalf("%v\n%s", err, out.String())
	}
	evs := decodeEvents(t, events.Bytes())
	notes := checkHeartbeats(t, ro.Steps, out.String(), evs)
	job := baseJob(t, n3)
	var wait, install *repo.RolloutStep
	for i, s := range ro.Steps {
		switch {
		case s.Node == "n3" && s.Kind == "wait-connections":
			wait = &ro.Steps[i]
		case s.Node == "n3" && s.Kind == "install" && s.Package.ID() == "base@3.4.0":
			install = &ro.Steps[i]
		}
	}
	if wait == nil || install == nil {
		t.Fatalf("no wait for n3's connections or install of base on it in %+v", ro.Steps)
	}
	count := func(s *repo.RolloutStep, prefix string) int {
		n := 0
		for _, note := range notes[s.N] {
			if strings.HasPrefix(note, prefix) {
				n++
			}
		}
		return n
	}
	if n := count(wait, "1 open, waiting "); n < 2 {
		t.Errorf("wait step %d: heartbeats %q, want two counting the open connection", wait.N, notes[wait.N])
	}
	if n := count(install, "job "+job+" "); n < 2 {
		t.Errorf("install step %d: heartbeats %q, want two naming job %s", install.N, notes[install.N], job)
	}
	for _, note := range notes[install.N] {
		if !strings.HasPrefix(note, "job "+job+" ") && !strings.HasPrefix(note, "running for ") {
			t.Errorf("install step %d: heartbeat %q names no job or another than %s", install.N, note, job)
		}
	}
	// The final lines and step events are those of a run without
	// heartbeats: one per step.
	finals := 0
	for _, line := range strings.Split(out.String(), "\n") {
		if stepLine.MatchString(line) {
			finals++
		}
	}
	steps := 0
	for _, ev := range evs {
		if ev.Event == "step" {
			steps++
		}
	}
	if finals != len(ro.Steps) || steps != len(ro.Steps) {
		t.Errorf("%d final lines and %d step events for %d steps", finals, steps, len(ro.Steps))
	}
	for _, want := range []string{
		fmt.Sprintf("] %s: done", wait.Text),
		fmt.Sprintf("] %s: done (job %s)", install.Text, job),
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output does not say %q:\n%s", want, out.String())
		}
	}
	checkNewest(t, agents)
	succeededOnce(t, agents)
}
