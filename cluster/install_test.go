package cluster_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
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
	var primaries []string
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
		if st.Role == node.RolePrimary {
			primaries = append(primaries, a.Name)
		}
	}
	if len(primaries) != 1 {
		t.Fatalf("primaries %v, want exactly one", primaries)
	}
	return primaries[0]
}

// succeededOnce fails unless every agent ran each newest package exactly
// once, successfully, and no job failed.
func succeededOnce(t *testing.T, agents []*clustertest.Agent) {
	t.Helper()
	for _, a := range agents {
		count := map[string]int{}
		for _, j := range a.Node().Jobs() {
			if j.State != node.JobSucceeded {
				t.Errorf("node %s: job %s of %s@%s is %s (%s)", a.Name, j.ID, j.Package.Name, j.Package.Version, j.State, j.Error)
			}
			count[j.Package.Name+"@"+j.Package.Version.String()]++
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
