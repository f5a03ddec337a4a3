package cluster_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
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

// newest is what every node runs after a rollout of clustertest.Standard.
var newest = map[string]string{"base": "3.4.0", "product": "23.1.0", "license": "1.1.0"}

func installOptions(strategy string, out *bytes.Buffer) cluster.InstallOptions {
	return cluster.InstallOptions{Strategy: strategy, SkipSettle: true, PollInterval: 20 * time.Millisecond, Out: out}
}

// checkNewest fails unless every agent runs the newest versions, serves
// (not drained), and exactly one of them is primary; it returns the
// primary's name.
func checkNewest(t *testing.T, agents []*clustertest.Agent) string {
	t.Helper()
	runsNewest(t, agents)
	var primaries []string
	for _, a := range agents {
		if a.Node().Status().Role == node.RolePrimary {
			primaries = append(primaries, a.Name)
		}
	}
	if len(primaries) != 1 {
		t.Fatalf("primaries %v, want exactly one", primaries)
	}
	return primaries[0]
}

// runsNewest fails unless every agent runs the newest versions and
// serves (is not drained).
func runsNewest(t *testing.T, agents []*clustertest.Agent) {
	t.Helper()
	for _, a := range agents {
		st := a.Node().Status()
		for name, v := range newest {
			if got := st.Installed[name]; got.String() != v {
				t.Errorf("node %s runs %s %s, want %s", a.Name, name, got, v)
			}
		}
		if st.Drained {
			t.Errorf("node %s is still drained", a.Name)
		}
	}
}

// succeededOnce fails unless every agent ran each newest package exactly
// once, successfully, and no job failed.
func succeededOnce(t *testing.T, agents []*clustertest.Agent) {
	t.Helper()
	for _, a := range agents {
		for _, j := range a.Node().Jobs() {
			if j.State != node.JobSucceeded {
				t.Errorf("node %s: job %s of %s@%s is %s (%s)", a.Name, j.ID, j.Package.Name, j.Package.Version, j.State, j.Error)
			}
		}
	}
	installedOnce(t, agents)
}

// installedOnce fails unless every agent has exactly one succeeded job for
// each newest package (failed jobs aside).
func installedOnce(t *testing.T, agents []*clustertest.Agent) {
	t.Helper()
	for _, a := range agents {
		count := map[string]int{}
		for _, j := range a.Node().Jobs() {
			if j.State == node.JobSucceeded {
				count[j.Package.Name+"@"+j.Package.Version.String()]++
			}
		}
		for _, id := range []string{"base@3.4.0", "product@22.1.0", "product@23.1.0", "license@1.1.0"} {
			if count[id] != 1 {
				t.Errorf("node %s installed %s %d times, want once", a.Name, id, count[id])
			}
		}
	}
}

func TestInstallStrategies(t *testing.T) {
	for _, tc := range []struct {
		strategy   string
		distribute bool
		primary    string
	}{
		{"rolling", true, "n1"},
		{"failover-async", true, "n2"},
		{"failover-sync", true, "n1"},
		{"atlas", false, "n2"}, // atlas distributes itself
	} {
		t.Run(tc.strategy, func(t *testing.T) {
			rp := clustertest.NewRepo(t, clustertest.Standard(64<<10)...)
			agents := clustertest.Cluster(t, rp, node.Options{})
			r := rp.Open(t)
			defer r.Close()
			ctx := context.Background()
			if tc.distribute {
				if _, err := cluster.Distribute(ctx, r, cluster.DistributeOptions{}); err != nil {
					t.Fatal(err)
				}
			}
			var out bytes.Buffer
			ro, err := cluster.Install(ctx, r, installOptions(tc.strategy, &out))
			if err != nil {
				t.Fatalf("%v\n%s", err, out.String())
			}
			if p := checkNewest(t, agents); p != tc.primary {
				t.Errorf("primary is %s, want %s", p, tc.primary)
			}
			// The registry follows a failover that the rollout performed.
			registered, err := r.Nodes()
			if err != nil {
				t.Fatal(err)
			}
			for _, n := range registered {
				if (n.Role == "primary") != (n.Name == tc.primary) {
					t.Errorf("node %s is registered as %s after the rollout; the primary is %s", n.Name, n.Role, tc.primary)
				}
			}
			succeededOnce(t, agents)
			if ro.State != repo.RolloutFinished || ro.Next() != len(ro.Steps) {
				t.Errorf("rollout %d is %s at step %d of %d", ro.ID, ro.State, ro.Next()+1, len(ro.Steps))
			}
			for _, s := range ro.Steps {
				if s.State != repo.StepDone {
					t.Errorf("step %d (%s) is %s, want done", s.N, s.Text, s.State)
				}
			}
			if !strings.Contains(out.String(), fmt.Sprintf("rollout %d finished", ro.ID)) {
				t.Errorf("output:\n%s", out.String())
			}
			// Every node now reports the newest versions: nothing left.
			again, err := cluster.Install(ctx, r, installOptions(tc.strategy, &out))
			if err != nil || again != nil {
				t.Errorf("second install: %v, %v; want nothing to do", again, err)
			}
			log, err := r.AuditLog()
			if err != nil {
				t.Fatal(err)
			}
			steps := 0
			for _, e := range log {
				if strings.HasPrefix(e.Action, "rollout.") && e.Action != repo.ActionRolloutStart && e.Action != repo.ActionRolloutFinish {
					steps++
				}
			}
			if steps < len(ro.Steps) {
				t.Errorf("%d step entries audited for %d steps", steps, len(ro.Steps))
			}
		})
	}
}

// TestInstallRefusedByNode: a node whose requirements no longer hold (it
// was restored to an older base behind the rollout's back) refuses the
// install; the rollout stops there naming the node, with exit code 4, and
// resumes at that step, not before, once the node is fixed.
func TestInstallRefusedByNode(t *testing.T) {
	rp := clustertest.NewRepo(t, clustertest.Standard(64<<10)...)
	agents := clustertest.Cluster(t, rp, node.Options{})
	n3 := agents[2]
	r := rp.Open(t)
	defer r.Close()
	ctx := context.Background()
	if _, err := cluster.Distribute(ctx, r, cluster.DistributeOptions{}); err != nil {
		t.Fatal(err)
	}
	setBase := func(v string) {
		n3.Restart(func(st map[string]any) { st["installed"].(map[string]any)["base"] = v })
	}
	var out bytes.Buffer
	o := installOptions("failover-async", &out)
	recorded := 0
	o.Hook = func(point string) error {
		if point == cluster.HookStepRecorded {
			if recorded++; recorded == 1 {
				setBase("3.3.0")
			}
		}
		return nil
	}
	_, err := cluster.Install(ctx, r, o)
	var se *cluster.StepError
	if !errors.As(err, &se) {
		t.Fatalf("error %v, want a *StepError\n%s", err, out.String())
	}
	if se.Step.Node != "n3" || se.Step.Kind != "install" || se.Step.Package.ID() != "base@3.4.0" {
		t.Errorf("stopped at step %+v, want the install of base 3.4.0 on n3", se.Step)
	}
	if fault.Code(err) != fault.ExitPolicy {
		t.Errorf("exit code %d, want %d", fault.Code(err), fault.ExitPolicy)
	}
	for _, want := range []string{"on node n3", "requires-unmet", "node n3 is now drained", "base 3.3.0", "rerun airlock install"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error does not say %q:\n%v", want, err)
		}
	}
	ro, err := r.UnfinishedRollout()
	if err != nil || ro == nil || ro.State != repo.RolloutFailed {
		t.Fatalf("unfinished rollout %+v, %v", ro, err)
	}
	failedAt := se.Step.N
	if ro.Next() != failedAt-1 || ro.Steps[failedAt-1].State != repo.StepFailed || !strings.Contains(ro.Steps[failedAt-1].Error, "requires") {
		t.Errorf("rollout record: next %d, step %+v", ro.Next()+1, ro.Steps[failedAt-1])
	}

	// A rerun without a fix stops at the same step, repeating nothing.
	jobsBefore := len(agents[0].Node().Jobs()) + len(agents[1].Node().Jobs())
	o.Hook = nil
	if _, err := cluster.Install(ctx, r, o); !errors.As(err, &se) || se.Step.N != failedAt {
		t.Fatalf("rerun: %v", err)
	}
	if n := len(agents[0].Node().Jobs()) + len(agents[1].Node().Jobs()); n != jobsBefore {
		t.Errorf("the rerun submitted %d more jobs to n1 and n2", n-jobsBefore)
	}
	// Other options than the rollout's are refused while it is unfinished.
	if _, err := cluster.Install(ctx, r, installOptions("rolling", &out)); !errors.Is(err, cluster.ErrResume) || fault.Code(err) != fault.ExitPolicy {
		t.Errorf("install --strategy rolling during a failover-async rollout: %v", err)
	}

	// Fixed, it resumes at the failed step and finishes.
	setBase("3.3.2")
	out.Reset()
	fin, err := cluster.Install(ctx, r, o)
	if err != nil {
		t.Fatalf("%v\n%s", err, out.String())
	}
	if fin.ID != ro.ID || fin.State != repo.RolloutFinished {
		t.Errorf("resumed rollout %d is %s, want %d finished", fin.ID, fin.State, ro.ID)
	}
	if !strings.Contains(out.String(), fmt.Sprintf("resuming at step %d", failedAt)) {
		t.Errorf("output:\n%s", out.String())
	}
	checkNewest(t, agents)
	succeededOnce(t, agents)
}

// TestInstallResumesSubmittedJob: an install interrupted after the node
// accepted the job but before it was recorded follows the node's state on
// the rerun: no job is submitted twice, no step runs twice.
func TestInstallResumesSubmittedJob(t *testing.T) {
	rp := clustertest.NewRepo(t, clustertest.Standard(64<<10)...)
	agents := clustertest.Cluster(t, rp, node.Options{})
	r := rp.Open(t)
	defer r.Close()
	ctx := context.Background()
	if _, err := cluster.Distribute(ctx, r, cluster.DistributeOptions{}); err != nil {
		t.Fatal(err)
	}
	for _, point := range []string{cluster.HookJobSubmitted, cluster.HookStepExecuted} {
		var out bytes.Buffer
		o := installOptions("rolling", &out)
		o.Nodes = []string{"n3"}
		if point == cluster.HookStepExecuted {
			o.Nodes = []string{"n1", "n2"}
		}
		seen := 0
		o.Hook = func(p string) error {
			if p == point {
				if seen++; seen == 3 {
					return errors.New("injected interruption")
				}
			}
			return nil
		}
		if _, err := cluster.Install(ctx, r, o); err == nil || !strings.Contains(err.Error(), "injected") {
			t.Fatalf("%s: %v", point, err)
		}
		o.Hook = nil
		ro, err := cluster.Install(ctx, r, o)
		if err != nil {
			t.Fatalf("%s: resume: %v\n%s", point, err, out.String())
		}
		for _, s := range ro.Steps {
			if !s.State.Finished() {
				t.Errorf("%s: step %d is %s", point, s.N, s.State)
			}
		}
	}
	checkNewest(t, agents)
	succeededOnce(t, agents)
}

// TestInstallDryRunAndConfirm: a dry run and a declined confirmation change
// nothing.
func TestInstallDryRunAndConfirm(t *testing.T) {
	rp := clustertest.NewRepo(t, clustertest.Standard(4096)...)
	agents := clustertest.Cluster(t, rp, node.Options{})
	r := rp.Open(t)
	defer r.Close()
	ctx := context.Background()
	var out bytes.Buffer
	o := installOptions("failover-async", &out)
	o.DryRun = true
	if ro, err := cluster.Install(ctx, r, o); err != nil || ro != nil {
		t.Fatalf("dry run: %v, %v", ro, err)
	}
	if !strings.Contains(out.String(), "promote n2 to primary") || !strings.Contains(out.String(), "nothing is changed") {
		t.Errorf("dry run output:\n%s", out.String())
	}
	o.DryRun = false
	o.Confirm = func(q string) error { return cluster.ErrDeclined }
	if _, err := cluster.Install(ctx, r, o); !errors.Is(err, cluster.ErrDeclined) {
		t.Fatalf("declined: %v", err)
	}
	if ro, _ := r.UnfinishedRollout(); ro != nil {
		t.Errorf("a declined install recorded rollout %d", ro.ID)
	}
	for _, a := range agents {
		if len(a.Node().Jobs()) != 0 || a.Node().Status().Drained {
			t.Errorf("node %s was changed", a.Name)
		}
	}
}

// TestInstallHealthGate: a node whose clock is off stops the rollout with
// a verification error before the next step.
func TestInstallHealthGate(t *testing.T) {
	rp := clustertest.NewRepo(t, clustertest.Standard(4096)...)
	skewed := func() time.Time { return time.Now().Add(5 * time.Minute) }
	var agents []*clustertest.Agent
	for _, n := range []struct{ name, role string }{{"n1", node.RolePrimary}, {"n2", node.RoleBackup}} {
		o := node.Options{}
		if n.name == "n2" {
			o.Now = skewed
		}
		agents = append(agents, clustertest.StartAgent(t, rp.World, clustertest.AgentOptions{Name: n.name, Role: n.role, Installed: clustertest.Installed, Node: o}))
	}
	clustertest.Register(t, rp, agents...)
	r := rp.Open(t)
	defer r.Close()
	ctx := context.Background()
	if _, err := cluster.Distribute(ctx, r, cluster.DistributeOptions{}); err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	_, err := cluster.Install(ctx, r, installOptions("failover-async", &out))
	if !errors.Is(err, cluster.ErrHealth) || fault.Code(err) != fault.ExitVerification || !strings.Contains(err.Error(), "clock") || !strings.Contains(err.Error(), "n2") {
		t.Fatalf("error %v, want a failed clock gate on n2", err)
	}
}

// TestInstallWaitsForConnections: a drained node's open client connection
// holds the rollout until it closes. (The drain timeout:
// TestInstallDrainTimeout.)
func TestInstallWaitsForConnections(t *testing.T) {
	rp := clustertest.NewRepo(t, clustertest.Standard(4096)...)
	agents := clustertest.Cluster(t, rp, node.Options{ServiceListen: "127.0.0.1:0"})
	n3 := agents[2]
	ctx := context.Background()
	conn, err := node.DialService(ctx, n3.Node().Status().Service)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	deadline := time.Now().Add(10 * time.Second)
	for n3.Node().Status().Connections != 1 {
		if time.Now().After(deadline) {
			t.Fatal("the service does not count the connection")
		}
		time.Sleep(5 * time.Millisecond)
	}
	closed := make(chan struct{})
	go func() {
		defer close(closed)
		for !n3.Node().Status().Drained && time.Now().Before(deadline) {
			time.Sleep(5 * time.Millisecond)
		}
		conn.Close()
	}()
	r := rp.Open(t)
	defer r.Close()
	if _, err := cluster.Distribute(ctx, r, cluster.DistributeOptions{}); err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	o := installOptions("rolling", &out)
	o.Nodes = []string{"n3"}
	o.DrainTimeout = time.Minute
	if _, err := cluster.Install(ctx, r, o); err != nil {
		t.Fatalf("%v\n%s", err, out.String())
	}
	<-closed
	if strings.Contains(out.String(), "still open") {
		t.Errorf("the connection closed on drain, but the output says:\n%s", out.String())
	}
	if st := n3.Node().Status(); st.Drained || st.Installed["license"].String() != "1.1.0" {
		t.Errorf("n3 ends drained %v at %v", st.Drained, st.Installed)
	}
}

// TestInstallInterruptedAtEveryStep interrupts a rollout after each step
// took effect on its node but before it was recorded, one step per run,
// and resumes it each time: every step must be found done on the node by
// the next run (never repeated), and the rollout must finish.
func TestInstallInterruptedAtEveryStep(t *testing.T) {
	for _, strategy := range []string{"rolling", "failover-async", "atlas"} {
		t.Run(strategy, func(t *testing.T) {
			rp := clustertest.NewRepo(t, clustertest.Standard(4096)...)
			agents := clustertest.Cluster(t, rp, node.Options{})
			r := rp.Open(t)
			defer r.Close()
			ctx := context.Background()
			if strategy != "atlas" {
				if _, err := cluster.Distribute(ctx, r, cluster.DistributeOptions{}); err != nil {
					t.Fatal(err)
				}
			}
			var out bytes.Buffer
			o := installOptions(strategy, &out)
			// The first step of a resumed run is the one interrupted before:
			// let it be recorded, interrupt the next.
			executed, failAt := 0, 1
			o.Hook = func(p string) error {
				if p == cluster.HookStepExecuted {
					if executed++; executed == failAt {
						return errors.New("injected interruption")
					}
				}
				return nil
			}
			runs := 0
			for {
				runs++
				executed = 0
				if runs > 1 {
					failAt = 2
				}
				if runs > 40 {
					t.Fatalf("no end after %d runs:\n%s", runs, out.String())
				}
				ro, err := cluster.Install(ctx, r, o)
				if err == nil {
					if ro == nil || ro.State != repo.RolloutFinished {
						t.Fatalf("run %d ended with %+v", runs, ro)
					}
					break
				}
				if !strings.Contains(err.Error(), "injected interruption") {
					t.Fatalf("run %d: %v\n%s", runs, err, out.String())
				}
			}
			checkNewest(t, agents)
			succeededOnce(t, agents)
			ro, err := r.Rollouts()
			if err != nil || len(ro) != 1 {
				t.Fatalf("%d rollouts, %v", len(ro), err)
			}
			// Every step but the last of a run of distribute steps was
			// interrupted once; each run finished the interrupted step and
			// stopped at the next.
			if runs < len(ro[0].Steps)/2 {
				t.Errorf("%d runs for %d steps", runs, len(ro[0].Steps))
			}
		})
	}
}

// TestInstallEvents: --json events describe the rollout in order: start,
// one step event per step with its id, then finish; a step that fails
// emits a failed event naming it, and the rerun emits resume.
func TestInstallEvents(t *testing.T) {
	rp := clustertest.NewRepo(t, clustertest.Standard(64<<10)...)
	clustertest.Cluster(t, rp, node.Options{})
	r := rp.Open(t)
	defer r.Close()
	ctx := context.Background()
	decode := func(b *bytes.Buffer) []cluster.Event {
		t.Helper()
		var evs []cluster.Event
		for _, line := range strings.Split(strings.TrimSpace(b.String()), "\n") {
			var ev cluster.Event
			if err := json.Unmarshal([]byte(line), &ev); err != nil {
				t.Fatalf("event line %q: %v", line, err)
			}
			evs = append(evs, ev)
		}
		return evs
	}

	if _, err := cluster.Distribute(ctx, r, cluster.DistributeOptions{}); err != nil {
		t.Fatal(err)
	}
	// The third step fails once.
	var out, events bytes.Buffer
	o := installOptions("rolling", &out)
	o.Events = &events
	calls := 0
	o.Hook = func(point string) error {
		if point == cluster.HookStepExecuted {
			if calls++; calls == 3 {
				return errors.New("injected failure")
			}
		}
		return nil
	}
	if _, err := cluster.Install(ctx, r, o); err == nil {
		t.Fatal("install with an injected failure succeeded")
	}
	evs := decode(&events)
	if len(evs) != 4 || evs[0].Event != "start" || evs[1].Event != "step" || evs[2].Event != "step" || evs[3].Event != "failed" {
		t.Fatalf("events %+v, want start, step, step, failed", evs)
	}
	if f := evs[3]; f.N != 3 || f.ID == "" || !strings.Contains(f.Error, "injected failure") || f.Rollout != evs[0].Rollout {
		t.Fatalf("failed event %+v", f)
	}

	events.Reset()
	o.Hook = nil
	ro, err := cluster.Install(ctx, r, o)
	if err != nil {
		t.Fatalf("rerun: %v\n%s", err, out.String())
	}
	evs = decode(&events)
	if evs[0].Event != "resume" || evs[0].N != 3 || evs[len(evs)-1].Event != "finish" {
		t.Fatalf("rerun events start with %+v and end with %+v", evs[0], evs[len(evs)-1])
	}
	steps := evs[1 : len(evs)-1]
	if len(steps) != len(ro.Steps)-2 {
		t.Fatalf("%d step events after resuming at step 3 of %d", len(steps), len(ro.Steps))
	}
	for i, ev := range steps {
		if ev.Event != "step" || ev.N != i+3 || ev.ID != ro.Steps[i+2].ID || ev.State == "" {
			t.Fatalf("step event %d: %+v, want step %d (%s)", i, ev, i+3, ro.Steps[i+2].ID)
		}
	}
}

// fourTraffic: traffic nodes t1 to t4 in one region. Rolling with
// --max-unavailable 3 takes t1, t2 and t3 out of service in one wave (the
// region keeps t4), then t4.
var fourTraffic = []clustertest.NodeSpec{
	{Name: "t1", Role: node.RoleTraffic, Region: "eu"},
	{Name: "t2", Role: node.RoleTraffic, Region: "eu"},
	{Name: "t3", Role: node.RoleTraffic, Region: "eu"},
	{Name: "t4", Role: node.RoleTraffic, Region: "eu"},
}

// startFourTraffic starts fourTraffic with the packages distributed, each
// agent's changes recorded in the returned log.
func startFourTraffic(t *testing.T) (*clustertest.Repo, map[string]*clustertest.Agent, *clustertest.EventLog) {
	t.Helper()
	rp := clustertest.NewRepo(t, clustertest.Standard(4096)...)
	agents := clustertest.StartNodes(t, rp, node.Options{}, fourTraffic...)
	log := clustertest.NewEventLog()
	byName := map[string]*clustertest.Agent{}
	for _, a := range agents {
		log.Attach(a)
		byName[a.Name] = a
	}
	r := rp.Open(t)
	defer r.Close()
	if _, err := cluster.Distribute(context.Background(), r, cluster.DistributeOptions{}); err != nil {
		t.Fatal(err)
	}
	return rp, byName, log
}

// waveOptions rolls fourTraffic out with t1, t2 and t3 in one wave.
func waveOptions(out io.Writer, events io.Writer) cluster.InstallOptions {
	return cluster.InstallOptions{Strategy: "rolling", MaxUnavailable: 3, SkipSettle: true, PollInterval: 5 * time.Millisecond,
		Out: out, Events: events}
}

// servesNewest fails unless every agent runs the newest versions, each
// installed once, and is not drained.
func servesNewest(t *testing.T, agents map[string]*clustertest.Agent) {
	t.Helper()
	var all []*clustertest.Agent
	for _, a := range agents {
		all = append(all, a)
	}
	runsNewest(t, all)
	succeededOnce(t, all)
}

// decodeEvents decodes --json events, one whole JSON object a line.
func decodeEvents(t *testing.T, b []byte) []cluster.Event {
	t.Helper()
	var evs []cluster.Event
	for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		var ev cluster.Event
		if err := json.Unmarshal([]byte(line), &ev); err != nil {
			t.Fatalf("event line %q: %v", line, err)
		}
		evs = append(evs, ev)
	}
	return evs
}

// syncBuffer is a bytes.Buffer safe for concurrent use that calls
// onLine, if set, with every line written.
type syncBuffer struct {
	mu     sync.Mutex
	buf    bytes.Buffer
	onLine func(line string)
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.onLine != nil {
		for _, line := range strings.SplitAfter(string(p), "\n") {
			if line != "" {
				b.onLine(line)
			}
		}
	}
	return b.buf.Write(p)
}

func (b *syncBuffer) Bytes() []byte {
	b.mu.Lock()
	defer b.mu.Unlock()
	return bytes.Clone(b.buf.Bytes())
}

func (b *syncBuffer) String() string { return string(b.Bytes()) }

// stepLine is a human line of a step.
var stepLine = regexp.MustCompile(`^\[ ?\d+/\d+\] [^\n]+: (done|skipped|failed)( \([^\n]*\))?( in [0-9.]+m?s)?$`)

// checkLines fails unless every line of out is whole: a step's line or
// one of the rollout's own.
func checkLines(t *testing.T, out string) {
	t.Helper()
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		if !stepLine.MatchString(line) && !strings.HasPrefix(line, "rollout ") && !strings.HasPrefix(line, "--drain-timeout ") {
			t.Errorf("output line %q is not whole", line)
		}
	}
}

// TestInstallWaveConcurrent: the nodes of a wave go through their steps
// concurrently. The install requests of t1, t2 and t3 are held at a
// barrier until all three have sent one, so the rollout finishes only if
// the three nodes are in their install step at once (run one after
// another, the first would wait at the barrier for ever: the barrier
// fails it after a minute). Each node's steps still come in plan order,
// the wave ends before t4's wave starts, every step is reported once, on
// whole lines, and every package is installed once on every node.
func TestInstallWaveConcurrent(t *testing.T) {
	rp, agents, log := startFourTraffic(t)
	barrier := clustertest.NewGate(clustertest.IsInstall, time.Minute, "t1", "t2", "t3")
	for _, a := range agents {
		barrier.Attach(a)
	}
	r := rp.Open(t)
	defer r.Close()
	var out, events syncBuffer
	ro, err := cluster.Install(context.Background(), r, waveOptions(&out, &events))
	if err != nil {
		t.Fatalf("%v\n%s", err, out.String())
	}
	if held := barrier.Held(); len(held) != 3 || slices.Contains(held, "t4") {
		t.Errorf("held at the barrier: %v, want t1, t2 and t3", held)
	}
	checkPhases(t, log.Events(), [][]string{
		{"drain t1", "drain t2", "drain t3", "install t1", "install t2", "install t3", "undrain t1", "undrain t2", "undrain t3"},
		{"drain t4", "install t4", "undrain t4"},
	})
	servesNewest(t, agents)
	checkLines(t, out.String())

	// One step event per step; each node's in step order; t4's after
	// every step of the first wave.
	evs := decodeEvents(t, events.Bytes())
	if evs[0].Event != "start" || evs[len(evs)-1].Event != "finish" {
		t.Fatalf("events start with %+v and end with %+v", evs[0], evs[len(evs)-1])
	}
	seen := map[int]bool{}
	lastN := map[string]int{}
	firstWaveDone := false
	for _, ev := range evs[1 : len(evs)-1] {
		if ev.Event != "step" || seen[ev.N] || ev.ID != ro.Steps[ev.N-1].ID || ev.Node != ro.Steps[ev.N-1].Node {
			t.Fatalf("event %+v: want one step event per step", ev)
		}
		seen[ev.N] = true
		if ev.N < lastN[ev.Node] {
			t.Errorf("node %s: step %d reported after step %d", ev.Node, ev.N, lastN[ev.Node])
		}
		lastN[ev.Node] = ev.N
		if ev.Node == "t4" {
			firstWaveDone = true
		} else if firstWaveDone {
			t.Errorf("step %d of %s reported after t4's wave started", ev.N, ev.Node)
		}
	}
	if len(seen) != len(ro.Steps) {
		t.Errorf("%d step events for %d steps", len(seen), len(ro.Steps))
	}
}

// TestInstallWaveGates: within a wave, the gate before a step of one
// node never observes another node of the wave, which may be mid-step. t2
// is undrained by the agent but its answer is held, so that the rollout
// still expects t2 drained, while t1 and t3 (held until then) verify and
// undrain, each step gated: a gate that looked at t2 would stop the
// rollout ("node t2 is undrained but the rollout left it drained"). Once
// t1 and t3 have asked to be undrained, t2's answer goes, and the
// rollout, whose gates after the wave look at every node, finishes.
func TestInstallWaveGates(t *testing.T) {
	rp, agents, log := startFourTraffic(t)
	answer := clustertest.NewGate(clustertest.IsUndrain, time.Minute)
	answer.AttachAfter(agents["t2"])
	polls := clustertest.NewGate(clustertest.IsJobPoll, time.Minute)
	undrains := clustertest.NewGate(clustertest.IsUndrain, time.Minute, "t1", "t3")
	for _, n := range []string{"t1", "t3"} {
		polls.Attach(agents[n])
		undrains.Attach(agents[n])
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		wait := func(g *clustertest.Gate, n int) bool {
			for len(g.Held()) < n {
				if ctx.Err() != nil {
					return false
				}
				time.Sleep(2 * time.Millisecond)
			}
			return true
		}
		if wait(answer, 1) { // t2 undrained, the rollout not told
			polls.Open()
			if wait(undrains, 2) { // t1 and t3 went through their gates
				answer.Open()
			}
		}
	}()
	r := rp.Open(t)
	defer r.Close()
	var out syncBuffer
	if _, err := cluster.Install(ctx, r, waveOptions(&out, nil)); err != nil {
		t.Fatalf("%v\n%s", err, out.String())
	}
	// t1 and t3 finished their installs and verified while t2 was
	// undrained: their gates ran then.
	var seq []string
	for _, e := range log.Events() {
		switch {
		case e.Node == "t2" && e.Kind == clustertest.EventUndrain:
			seq = append(seq, "t2 undrained")
		case (e.Node == "t1" || e.Node == "t3") && e.Kind == clustertest.EventInstalled && e.Detail == "license@1.1.0":
			seq = append(seq, e.Node+" installed")
		}
	}
	if len(seq) != 3 || seq[0] != "t2 undrained" {
		t.Errorf("events %q, want t2 undrained before t1 and t3 finished installing", seq)
	}
	servesNewest(t, agents)
}

// TestInstallWaveFailure: when a step of one node of a wave fails (t2's
// pre-install hook refuses), the other nodes of the wave finish the step
// they are in (their install, begun with t2's and held until the failure
// is reported) and start no other; the rollout stops with a *StepError naming t2's step,
// everything finished is recorded, and a rerun resumes at the failed step
// and finishes, installing nothing twice. When two nodes fail, both are
// named, in step order.
func TestInstallWaveFailure(t *testing.T) {
	for _, tc := range []struct {
		name   string
		broken []string
	}{
		{"one node fails", []string{"t2"}},
		{"two nodes fail", []string{"t2", "t3"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rp, agents, log := startFourTraffic(t)
			var hooks []string
			for _, n := range tc.broken {
				hook := filepath.Join(agents[n].Dir, "hooks", "pre-install")
				if err := os.MkdirAll(filepath.Dir(hook), 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(hook, []byte("#!/bin/sh\necho \"disk check failed on $AIRLOCK_NODE\" >&2\nexit 1\n"), 0o755); err != nil {
					t.Fatal(err)
				}
				hooks = append(hooks, hook)
			}
			// Every node of the wave is in its first install before any
			// goes on (barrier); then the healthy nodes are held there
			// until the first failure is reported, so that their step ends
			// after it.
			var healthy []string
			hold := clustertest.NewGate(clustertest.IsInstall, time.Minute)
			barrier := clustertest.NewGate(clustertest.IsInstall, time.Minute, "t1", "t2", "t3")
			for _, n := range []string{"t1", "t2", "t3"} {
				if !slices.Contains(tc.broken, n) {
					hold.Attach(agents[n])
					healthy = append(healthy, n)
				}
				barrier.Attach(agents[n]) // in front of hold
			}
			var out syncBuffer
			events := syncBuffer{onLine: func(line string) {
				if strings.Contains(line, `"event":"failed"`) {
					hold.Open()
				}
			}}
			r := rp.Open(t)
			defer r.Close()
			ctx := context.Background()
			_, err := cluster.Install(ctx, r, waveOptions(&out, &events))
			var se *cluster.StepError
			if !errors.As(err, &se) {
				t.Fatalf("error %v, want a *StepError\n%s", err, out.String())
			}
			if fault.Code(err) != fault.ExitOperational {
				t.Errorf("exit %d, want %d", fault.Code(err), fault.ExitOperational)
			}
			if held := barrier.Held(); len(held) != 3 {
				t.Errorf("nodes in their install at once: %v, want t1, t2 and t3", held)
			}
			var stepErrs []*cluster.StepError
			if j, ok := err.(interface{ Unwrap() []error }); ok {
				for _, e := range j.Unwrap() {
					if errors.As(e, &se) {
						stepErrs = append(stepErrs, se)
					}
				}
			} else {
				stepErrs = []*cluster.StepError{se}
			}
			if len(stepErrs) != len(tc.broken) {
				t.Fatalf("%d step errors, want %d: %v", len(stepErrs), len(tc.broken), err)
			}
			for i, se := range stepErrs {
				n := tc.broken[i]
				if se.Step.Node != n || se.Step.Kind != "install" || se.Step.Package.ID() != "base@3.4.0" {
					t.Errorf("failure %d: step %d (%s), want the install of base 3.4.0 on %s", i+1, se.Step.N, se.Step.Text, n)
				}
				for _, want := range []string{"on node " + n, "disk check failed on " + n, "node " + n + " is now drained"} {
					if !strings.Contains(err.Error(), want) {
						t.Errorf("error does not say %q:\n%v", want, err)
					}
				}
			}
			if !strings.Contains(out.String(), "failed (the other nodes of the wave finish the step they are in)") {
				t.Errorf("output:\n%s", out.String())
			}
			checkLines(t, out.String())

			// After the first failure, only the healthy nodes' installs of
			// base (held) end, and the other failures.
			evs := decodeEvents(t, events.Bytes())
			i := slices.IndexFunc(evs, func(ev cluster.Event) bool { return ev.Event == "failed" })
			var after []string
			for _, ev := range evs[i:] {
				after = append(after, ev.Event+" "+ev.ID)
			}
			var want []string
			for _, n := range tc.broken {
				want = append(want, "failed install:"+n+":base@3.4.0")
			}
			for _, n := range healthy {
				want = append(want, "step install:"+n+":base@3.4.0")
			}
			if !slices.Equal(sorted(after), sorted(want)) {
				t.Errorf("events from the first failure on: %q, want %q", after, want)
			}

			// The record: the failed steps, the finished ones; nothing
			// more. The healthy nodes stay drained after their install.
			ro, err := r.UnfinishedRollout()
			if err != nil || ro == nil || ro.State != repo.RolloutFailed {
				t.Fatalf("unfinished rollout %+v, %v", ro, err)
			}
			for _, s := range ro.Steps {
				want := repo.StepPending
				switch {
				case s.Node == "t4":
				case s.Kind == "drain" || s.Kind == "wait-connections":
					want = repo.StepDone
				case s.Kind == "install" && s.Package.ID() == "base@3.4.0":
					want = repo.StepDone
					if slices.Contains(tc.broken, s.Node) {
						want = repo.StepFailed
					}
				}
				if s.State != want {
					t.Errorf("step %d (%s) is %s, want %s", s.N, s.Text, s.State, want)
				}
			}
			for _, n := range healthy {
				st := agents[n].Node().Status()
				jobs := agents[n].Node().Jobs()
				if !st.Drained || len(jobs) != 1 || jobs[0].State != node.JobSucceeded || st.Installed["base"].String() != "3.4.0" {
					t.Errorf("node %s: drained %v, jobs %+v, %v; want drained with base 3.4.0 installed", n, st.Drained, jobs, st.Installed)
				}
			}
			if st := agents["t4"].Node().Status(); st.Drained || len(agents["t4"].Node().Jobs()) != 0 {
				t.Errorf("t4, of the next wave, was touched")
			}
			for _, e := range log.Events() {
				if e.Node == "t4" {
					t.Errorf("t4, of the next wave, saw %s", e)
				}
			}

			// Fixed, a rerun resumes at the first failed step and finishes.
			for _, h := range hooks {
				if err := os.Remove(h); err != nil {
					t.Fatal(err)
				}
			}
			out.buf.Reset()
			fin, err := cluster.Install(ctx, r, waveOptions(&out, nil))
			if err != nil {
				t.Fatalf("rerun: %v\n%s", err, out.String())
			}
			if fin.State != repo.RolloutFinished || !strings.Contains(out.String(), fmt.Sprintf("resuming at step %d", ro.Next()+1)) {
				t.Errorf("rollout %d %s; output:\n%s", fin.ID, fin.State, out.String())
			}
			var all []*clustertest.Agent
			for _, a := range agents {
				st := a.Node().Status()
				if st.Drained || st.Installed["license"].String() != "1.1.0" {
					t.Errorf("node %s: drained %v, %v", a.Name, st.Drained, st.Installed)
				}
				all = append(all, a)
			}
			installedOnce(t, all)
		})
	}
}

func sorted(s []string) []string {
	s = slices.Clone(s)
	slices.Sort(s)
	return s
}

// TestInstallWaveInterrupted: an interruption (Ctrl-C: the context
// canceled) while the nodes of a wave wait for their install jobs stops
// the rollout with the context's error, each node's job recorded as
// submitted and nothing failed; the rerun follows those jobs rather than
// submit them again, and finishes.
func TestInstallWaveInterrupted(t *testing.T) {
	rp, agents, _ := startFourTraffic(t)
	polls := clustertest.NewGate(clustertest.IsJobPoll, time.Minute)
	for _, n := range []string{"t1", "t2", "t3"} {
		polls.Attach(agents[n])
	}
	r := rp.Open(t)
	defer r.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var out, events syncBuffer
	done := make(chan error, 1)
	go func() {
		_, err := cluster.Install(ctx, r, waveOptions(&out, &events))
		done <- err
	}()
	deadline := time.Now().Add(30 * time.Second)
	for len(polls.Held()) < 3 {
		if time.Now().After(deadline) {
			t.Fatalf("job polls held: %v, want t1, t2 and t3\n%s", polls.Held(), out.String())
		}
		time.Sleep(2 * time.Millisecond)
	}
	cancel()
	err := <-done
	polls.Open()
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("error %v, want context.Canceled", err)
	}
	if strings.Contains(events.String(), `"failed"`) {
		t.Errorf("an interruption reported a failed step:\n%s", events.String())
	}
	ro, err := r.UnfinishedRollout()
	if err != nil || ro == nil {
		t.Fatalf("unfinished rollout %+v, %v", ro, err)
	}
	for _, s := range ro.Steps {
		if s.Node == "t4" || (s.Kind == "install" && s.Package.ID() != "base@3.4.0") || s.Kind == "verify" || s.Kind == "undrain" {
			if s.State != repo.StepPending {
				t.Errorf("step %d (%s) is %s, want pending", s.N, s.Text, s.State)
			}
			continue
		}
		want := repo.StepDone
		if s.Kind == "install" {
			want = repo.StepSubmitted
		}
		if s.State != want || (want == repo.StepSubmitted && s.Job == "") {
			t.Errorf("step %d (%s) is %s (job %q), want %s", s.N, s.Text, s.State, s.Job, want)
		}
	}

	var rerun bytes.Buffer
	if _, err := cluster.Install(context.Background(), r, waveOptions(&rerun, nil)); err != nil {
		t.Fatalf("rerun: %v\n%s", err, rerun.String())
	}
	servesNewest(t, agents)
}

// TestInstallWaveInterruptedMidWave interrupts the first run of a
// rollout whose first wave takes two nodes at once after one of that
// wave's steps took effect (the other node of the wave finishing the step
// it is in), then reruns it: the rollout must finish, every package
// installed once on every node, every node serving. The wave has 16
// steps (2 drains, 2 waits, then for each node 4 installs, a verify, an
// undrain); the points interrupted span them.
// (TestInstallInterruptedAtEveryStep interrupts every step of rollouts
// without concurrent waves.)
func TestInstallWaveInterruptedMidWave(t *testing.T) {
	if testing.Short() {
		t.Skip("a cluster per point")
	}
	specs := fourTraffic[:3] // rolling --max-unavailable 2: t1 and t2, then t3
	for _, at := range []int{1, 3, 5, 9, 14, 16} {
		t.Run(fmt.Sprint(at), func(t *testing.T) {
			rp := clustertest.NewRepo(t, clustertest.Standard(4096)...)
			list := clustertest.StartNodes(t, rp, node.Options{}, specs...)
			agents := map[string]*clustertest.Agent{}
			for _, a := range list {
				agents[a.Name] = a
			}
			r := rp.Open(t)
			defer r.Close()
			ctx := context.Background()
			if _, err := cluster.Distribute(ctx, r, cluster.DistributeOptions{}); err != nil {
				t.Fatal(err)
			}
			var out syncBuffer
			o := waveOptions(&out, nil)
			o.MaxUnavailable = 2
			executed := 0
			o.Hook = func(p string) error {
				if p == cluster.HookStepExecuted {
					if executed++; executed == at {
						return errors.New("injected interruption")
					}
				}
				return nil
			}
			if _, err := cluster.Install(ctx, r, o); err == nil || !strings.Contains(err.Error(), "injected interruption") {
				t.Fatalf("first run: %v\n%s", err, out.String())
			}
			o.Hook = nil
			ro, err := cluster.Install(ctx, r, o)
			if err != nil || ro.State != repo.RolloutFinished {
				t.Fatalf("rerun: %v\n%s", err, out.String())
			}
			servesNewest(t, agents)
		})
	}
}

// TestInstallDrainTimeoutOnResume: a rerun keeps the drain timeout saved
// in the rollout unless --drain-timeout is given again, which then
// applies to the waits that remain; the step and its ID stay the same.
func TestInstallDrainTimeoutOnResume(t *testing.T) {
	agents, r, stubborn := stubbornCluster(t)
	n3 := agents[2]
	ctx := context.Background()
	var out bytes.Buffer
	var failedAt *repo.RolloutStep
	for i, tc := range []struct {
		given, want time.Duration
	}{
		{200 * time.Millisecond, 200 * time.Millisecond}, // planned
		{0, 200 * time.Millisecond},                      // rerun without the flag: the saved one
		{600 * time.Millisecond, 600 * time.Millisecond}, // rerun with it: the new one
		{0, 200 * time.Millisecond},                      // the new one is not saved
	} {
		out.Reset()
		o := installOptions("rolling", &out)
		o.DrainTimeout = tc.given
		_, err := cluster.Install(ctx, r, o)
		var se *cluster.StepError
		if !errors.As(err, &se) || !errors.Is(err, cluster.ErrDrainTimeout) {
			t.Fatalf("run %d: %v, want a drain timeout\n%s", i+1, err, out.String())
		}
		if msg := fmt.Sprintf("open %s after it was drained", tc.want); !strings.Contains(err.Error(), msg) {
			t.Errorf("run %d (--drain-timeout %s): error does not say %q:\n%v", i+1, tc.given, msg, err)
		}
		if failedAt == nil {
			failedAt = &se.Step
		} else if se.Step.ID != failedAt.ID || se.Step.N != failedAt.N {
			t.Errorf("run %d stopped at step %d (%s), want %d (%s)", i+1, se.Step.N, se.Step.ID, failedAt.N, failedAt.ID)
		}
		note := "--drain-timeout 600ms replaces the planned timeout of the waits for the connections of n3"
		if strings.Contains(out.String(), note) != (i == 2) {
			t.Errorf("run %d output:\n%s", i+1, out.String())
		}
	}
	stubborn.close()
	waitConnections(t, n3, 0)
	out.Reset()
	if _, err := cluster.Install(ctx, r, installOptions("rolling", &out)); err != nil {
		t.Fatalf("final run: %v\n%s", err, out.String())
	}
	checkNewest(t, agents)
	succeededOnce(t, agents)
}

// stepLinePrefix begins every line of a step: "[ 3/12] ".
var stepLinePrefix = regexp.MustCompile(`^\[ *(\d+)/\d+\] `)

// checkHeartbeats checks the lines (out) and events (evs) of a rollout
// run with heartbeats, whose steps are steps: every line is whole (a
// step's final line, a heartbeat of a step, or one of the rollout's own);
// each step has at most one final line and step event, and no heartbeat
// line or running event after them; each heartbeat line has its running
// event, with the same note, the same step. It returns the heartbeat
// notes of each step, by step number, in order.
func checkHeartbeats(t *testing.T, steps []repo.RolloutStep, out string, evs []cluster.Event) map[int][]string {
	t.Helper()
	notes := map[int][]string{}
	final := map[int]bool{}
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		m := stepLinePrefix.FindStringSubmatch(line)
		if m == nil {
			if !strings.HasPrefix(line, "rollout ") && !strings.HasPrefix(line, "--drain-timeout ") && !strings.HasPrefix(line, "waiting until ") {
				t.Errorf("output line %q is not whole", line)
			}
			continue
		}
		var n int
		fmt.Sscan(m[1], &n)
		if n < 1 || n > len(steps) {
			t.Errorf("output line %q: no step %d", line, n)
			continue
		}
		s := steps[n-1]
		note, ok := strings.CutPrefix(line[len(m[0]):], s.Text+": ")
		switch {
		case !ok:
			t.Errorf("output line %q is not whole (step %d is %q)", line, n, s.Text)
		case stepLine.MatchString(line):
			if final[n] {
				t.Errorf("step %d has two final lines: %q", n, line)
			}
			final[n] = true
		case final[n]:
			t.Errorf("heartbeat line %q after the final line of step %d", line, n)
		default:
			notes[n] = append(notes[n], note)
		}
	}
	running := map[int][]string{}
	stepped := map[int]bool{}
	for _, ev := range evs {
		if ev.N == 0 {
			continue
		}
		s := steps[ev.N-1]
		switch ev.Event {
		case "step":
			if stepped[ev.N] {
				t.Errorf("two step events for step %d", ev.N)
			}
			stepped[ev.N] = true
		case "running":
			if stepped[ev.N] {
				t.Errorf("running event %+v after the step event of step %d", ev, ev.N)
			}
			if ev.ID != s.ID || ev.Node != s.Node || ev.Kind != s.Kind || ev.Text != s.Text || ev.Note == "" || ev.Seconds <= 0 {
				t.Errorf("running event %+v, want step %d (%s on %s: %s), a note and seconds", ev, ev.N, s.Kind, s.Node, s.ID)
			}
			running[ev.N] = append(running[ev.N], ev.Note)
		}
	}
	for n, want := range notes {
		if !slices.Equal(running[n], want) {
			t.Errorf("step %d: running events with notes %q, heartbeat lines %q", n, running[n], want)
		}
	}
	for n := range running {
		if notes[n] == nil {
			t.Errorf("step %d: running events %q without heartbeat lines", n, running[n])
		}
	}
	return notes
}

// jobBeat is the heartbeat note of an install step following its job.
var jobBeat = regexp.MustCompile(`^job ([0-9a-f]+) (queued|running) for \d`)

// baseJob returns the id of a's one install job of base 3.4.0.
func baseJob(t *testing.T, a *clustertest.Agent) string {
	t.Helper()
	var ids []string
	for _, j := range a.Node().Jobs() {
		if j.Package.Name == "base" && j.Package.Version.String() == "3.4.0" {
			ids = append(ids, j.ID)
		}
	}
	if len(ids) != 1 {
		t.Fatalf("node %s has %d install jobs of base 3.4.0, want one", a.Name, len(ids))
	}
	return ids[0]
}

// TestInstallWaveHeartbeat: every step of a wave still running has its
// own heartbeat. The job polls of t1, t2 and t3 are held until each of
// their installs has printed two heartbeats naming its job, so the
// rollout goes on only if the three steps, in flight at once, each beat;
// each line and event names the job the node runs, and no heartbeat
// follows its step's final line or event.
func TestInstallWaveHeartbeat(t *testing.T) {
	rp, agents, _ := startFourTraffic(t)
	polls := clustertest.NewGate(clustertest.IsJobPoll, time.Minute)
	wave := []string{"t1", "t2", "t3"}
	for _, n := range wave {
		polls.Attach(agents[n])
	}
	beats := map[string]int{}
	out := syncBuffer{onLine: func(line string) {
		for _, n := range wave {
			if strings.Contains(line, "] install base 3.4.0 on "+n) && strings.Contains(line, ": job ") {
				beats[n]++
			}
		}
		for _, n := range wave {
			if beats[n] < 2 {
				return
			}
		}
		polls.Open()
	}}
	var events syncBuffer
	r := rp.Open(t)
	defer r.Close()
	o := waveOptions(&out, &events)
	o.Heartbeat = 2 * time.Millisecond
	ro, err := cluster.Install(context.Background(), r, o)
	if err != nil {
		t.Fatalf("%v\n%s", err, out.String())
	}
	notes := checkHeartbeats(t, ro.Steps, out.String(), decodeEvents(t, events.Bytes()))
	for _, s := range ro.Steps {
		if s.Kind != "install" || s.Package.ID() != "base@3.4.0" || !slices.Contains(wave, s.Node) {
			continue
		}
		job := baseJob(t, agents[s.Node])
		n := 0
		for _, note := range notes[s.N] {
			m := jobBeat.FindStringSubmatch(note)
			if m == nil {
				continue
			}
			n++
			if m[1] != job {
				t.Errorf("step %d (%s): heartbeat %q, want job %s", s.N, s.Text, note, job)
			}
		}
		if n < 2 {
			t.Errorf("step %d (%s): heartbeats %q, want two naming the job", s.N, s.Text, notes[s.N])
		}
	}
	servesNewest(t, agents)
}

// TestInstallSettleHeartbeat: a settle delay's heartbeat says how long is
// left until when, the time the step's first line gave; an interruption
// ends it with the step.
func TestInstallSettleHeartbeat(t *testing.T) {
	rp := clustertest.NewRepo(t, clustertest.Standard(4096)...)
	clustertest.Cluster(t, rp, node.Options{})
	r := rp.Open(t)
	defer r.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if _, err := cluster.Distribute(ctx, r, cluster.DistributeOptions{}); err != nil {
		t.Fatal(err)
	}
	settleBeat := regexp.MustCompile(`\] wait until [^\n]*: \d+h\S* left, until \S+$`)
	beats := 0
	out := syncBuffer{onLine: func(line string) {
		if settleBeat.MatchString(strings.TrimSpace(line)) {
			if beats++; beats == 2 {
				cancel()
			}
		}
	}}
	var events syncBuffer
	o := cluster.InstallOptions{Strategy: "single", Nodes: []string{"n3"}, PollInterval: 5 * time.Millisecond,
		Heartbeat: 2 * time.Millisecond, Out: &out, Events: &events}
	if _, err := cluster.Install(ctx, r, o); !errors.Is(err, context.Canceled) {
		t.Fatalf("error %v, want the interruption\n%s", err, out.String())
	}
	ro, err := r.UnfinishedRollout()
	if err != nil || ro == nil {
		t.Fatalf("unfinished rollout %+v, %v", ro, err)
	}
	notes := checkHeartbeats(t, ro.Steps, out.String(), decodeEvents(t, events.Bytes()))
	var settle *repo.RolloutStep
	for i, s := range ro.Steps {
		if s.Kind == "settle" {
			settle = &ro.Steps[i]
			break
		}
	}
	if settle == nil || len(notes[settle.N]) < 2 {
		t.Fatalf("settle step %+v: heartbeats %v\n%s", settle, notes, out.String())
	}
	until := regexp.MustCompile(`waiting until (\S+) `).FindStringSubmatch(out.String())
	for _, note := range notes[settle.N] {
		if until == nil || !strings.HasSuffix(note, " left, until "+until[1]) {
			t.Errorf("settle heartbeat %q, want the time left until the time of %q", note, until)
		}
	}
}
