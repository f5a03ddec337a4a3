package main

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/airlock-project/airlock/cluster"
	"github.com/airlock-project/airlock/cluster/clustertest"
	"github.com/airlock-project/airlock/node"
	"github.com/airlock-project/airlock/repo"
)

// runAirlock runs a real airlock process on the repository rp.
func runAirlock(t *testing.T, rp *clustertest.Repo, env []string, args ...string) result {
	t.Helper()
	cmd := exec.Command("airlock", args...)
	cmd.Env = append(os.Environ(), append([]string{"AIRLOCK_REPO=" + rp.Dir}, env...)...)
	cmd.Stdout, cmd.Stderr = &bytes.Buffer{}, &bytes.Buffer{}
	return wait(t, cmd, cmd.Run())
}

// rollout reads the repository's newest rollout.
func rollout(t *testing.T, rp *clustertest.Repo) repo.Rollout {
	t.Helper()
	o := rp.Options()
	o.ReadOnly = true
	r, err := repo.Open(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	all, err := r.Rollouts()
	if err != nil || len(all) == 0 {
		t.Fatalf("rollouts: %v, %v", all, err)
	}
	return all[len(all)-1]
}

func finished(ro repo.Rollout) int {
	n := 0
	for _, s := range ro.Steps {
		if s.State.Finished() {
			n++
		}
	}
	return n
}

// TestInstallKilledResumes kills a real airlock install with SIGKILL, once
// right after a step was recorded and once right after a step took effect
// on a node but before it was recorded, and checks that each rerun resumes
// where the last stopped: every package is installed once on every node,
// and the rollout ends with every step finished.
func TestInstallKilledResumes(t *testing.T) {
	rp := clustertest.NewRepo(t, clustertest.Standard(32<<10)...)
	agents := clustertest.Cluster(t, rp, node.Options{})
	if res := runAirlock(t, rp, nil, "distribute", "--no-progress"); res.code != 0 {
		t.Fatalf("distribute: exit %d: %s", res.code, res.stderr)
	}
	install := []string{"install", "--strategy", "failover-async", "--skip-settle", "--yes"}

	res := runAirlock(t, rp, []string{envCrash + "=" + cluster.HookStepRecorded + ":5"}, install...)
	if !res.killed {
		t.Fatalf("install was not killed: exit %d\n%s\n%s", res.code, res.stdout, res.stderr)
	}
	ro := rollout(t, rp)
	if !ro.Unfinished() || finished(ro) != 5 || ro.Next() != 5 {
		t.Fatalf("after the kill at the 5th recorded step: rollout %s with %d finished steps, next %d", ro.State, finished(ro), ro.Next()+1)
	}

	// Killed after the 4th step of this run took effect (step 9), before
	// it was recorded.
	res = runAirlock(t, rp, []string{envCrash + "=" + cluster.HookStepExecuted + ":4"}, install...)
	if !res.killed {
		t.Fatalf("second install was not killed: exit %d\n%s\n%s", res.code, res.stdout, res.stderr)
	}
	if !strings.Contains(res.stdout, "resuming at step 6 of 20 (5 finished)") {
		t.Errorf("second run's output:\n%s", res.stdout)
	}
	ro2 := rollout(t, rp)
	if ro2.ID != ro.ID || finished(ro2) != 8 {
		t.Fatalf("after the second kill: rollout %d with %d finished steps, want %d with 8", ro2.ID, finished(ro2), ro.ID)
	}
	for i := range 5 {
		if ro2.Steps[i].Updated != ro.Steps[i].Updated || ro2.Steps[i].State != ro.Steps[i].State {
			t.Errorf("step %d was changed by the rerun: %+v -> %+v", i+1, ro.Steps[i], ro2.Steps[i])
		}
	}

	res = runAirlock(t, rp, nil, install...)
	if res.code != 0 {
		t.Fatalf("final install: exit %d\n%s\n%s", res.code, res.stdout, res.stderr)
	}
	if !strings.Contains(res.stdout, "resuming at step 9 of 20 (8 finished)") || !strings.Contains(res.stdout, "finished") {
		t.Errorf("final run's output:\n%s", res.stdout)
	}
	// Step 9 had taken effect: the rerun found it so and did not install again.
	if !strings.Contains(res.stdout, "[ 9/20] install product 23.1.0 on n1: skipped (node already runs product 23.1.0)") {
		t.Errorf("step 9 was not found done on the node:\n%s", res.stdout)
	}
	final := rollout(t, rp)
	if final.ID != ro.ID || final.State != repo.RolloutFinished || finished(final) != len(final.Steps) {
		t.Errorf("rollout %d is %s with %d of %d steps finished", final.ID, final.State, finished(final), len(final.Steps))
	}
	installedOnce(t, agents)
	if res := runAirlock(t, rp, nil, "audit", "--verify"); res.code != 0 {
		t.Errorf("audit --verify: %s", res.stderr)
	}
}

// installedOnce fails unless every agent ran every install job
// successfully, installed each package of clustertest.Standard exactly
// once, and runs the newest versions.
func installedOnce(t *testing.T, agents []*clustertest.Agent) {
	t.Helper()
	for _, a := range agents {
		count := map[string]int{}
		st := a.Node().Status()
		for _, j := range a.Node().Jobs() {
			if j.State != node.JobSucceeded {
				t.Errorf("node %s: job %s is %s", a.Name, j.ID, j.State)
			}
			count[j.Package.Name+"@"+j.Package.Version.String()]++
		}
		for _, id := range []string{"base@3.4.0", "product@22.1.0", "product@23.1.0", "license@1.1.0"} {
			if count[id] != 1 {
				t.Errorf("node %s installed %s %d times, want once", a.Name, id, count[id])
			}
		}
		if st.Installed["license"].String() != "1.1.0" || st.Installed["product"].String() != "23.1.0" {
			t.Errorf("node %s runs %v", a.Name, st.Installed)
		}
	}
}

// TestInstallKilledMidWaveResumes kills a real airlock install while the
// two nodes of a wave install concurrently (rolling --max-unavailable 2
// over four traffic nodes), at two points, then reruns it: the rollout
// finishes with every package installed once on every node.
func TestInstallKilledMidWaveResumes(t *testing.T) {
	rp := clustertest.NewRepo(t, clustertest.Standard(32<<10)...)
	var specs []clustertest.NodeSpec
	for _, n := range []string{"t1", "t2", "t3", "t4"} {
		specs = append(specs, clustertest.NodeSpec{Name: n, Role: node.RoleTraffic, Region: "eu"})
	}
	agents := clustertest.StartNodes(t, rp, node.Options{}, specs...)
	if res := runAirlock(t, rp, nil, "distribute", "--no-progress"); res.code != 0 {
		t.Fatalf("distribute: exit %d: %s", res.code, res.stderr)
	}
	install := []string{"install", "--strategy", "rolling", "--max-unavailable", "2", "--skip-settle", "--yes"}
	for _, kill := range []string{cluster.HookStepExecuted + ":7", cluster.HookStepRecorded + ":5"} {
		res := runAirlock(t, rp, []string{envCrash + "=" + kill}, install...)
		if !res.killed {
			t.Fatalf("install with %s was not killed: exit %d\n%s\n%s", kill, res.code, res.stdout, res.stderr)
		}
		if ro := rollout(t, rp); !ro.Unfinished() {
			t.Fatalf("after the kill at %s the rollout is %s", kill, ro.State)
		}
	}
	res := runAirlock(t, rp, nil, install...)
	if res.code != 0 {
		t.Fatalf("final install: exit %d\n%s\n%s", res.code, res.stdout, res.stderr)
	}
	final := rollout(t, rp)
	if final.State != repo.RolloutFinished || finished(final) != len(final.Steps) {
		t.Errorf("rollout %d is %s with %d of %d steps finished", final.ID, final.State, finished(final), len(final.Steps))
	}
	waves := map[int]map[string]bool{}
	for _, s := range final.Steps {
		if s.Wave != 0 && s.Node != "" {
			if waves[s.Wave] == nil {
				waves[s.Wave] = map[string]bool{}
			}
			waves[s.Wave][s.Node] = true
		}
	}
	two := false
	for _, ns := range waves {
		two = two || len(ns) == 2
	}
	if !two {
		t.Fatalf("the plan has no wave of two nodes: %v", waves)
	}
	installedOnce(t, agents)
	if res := runAirlock(t, rp, nil, "audit", "--verify"); res.code != 0 {
		t.Errorf("audit --verify: %s", res.stderr)
	}
}
