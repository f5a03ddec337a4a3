package cluster_test

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"testing"

	"github.com/airlock-project/airlock/cluster"
	"github.com/airlock-project/airlock/cluster/clustertest"
	"github.com/airlock-project/airlock/node"
)

// TestPlanAndStatusJSON: plan --json lists every node's packages in install
// order before anything else mentions a version, and status --json after
// the rollout shows each node's versions without the packages'
// requirements (which would name the versions they replaced).
func TestPlanAndStatusJSON(t *testing.T) {
	rp := clustertest.NewRepo(t, clustertest.Standard(4096)...)
	agents := clustertest.Cluster(t, rp, node.Options{})
	ctx := context.Background()
	var out, errw bytes.Buffer
	if err := cluster.RunPlan(ctx, cluster.PlanCmd{Options: rp.Options(), Strategy: "failover-async", JSON: true}, &out, &errw); err != nil {
		t.Fatal(err)
	}
	var v any
	if err := json.Unmarshal(out.Bytes(), &v); err != nil {
		t.Fatal(err)
	}
	last := -1
	for _, ver := range []string{"3.4.0", "22.1.0", "23.1.0", "1.1.0"} {
		i := strings.Index(out.String(), ver)
		if i < last {
			t.Errorf("%s first appears at %d, before the version planned ahead of it (%d)", ver, i, last)
		}
		last = i
	}
	out.Reset()
	if err := cluster.RunPlan(ctx, cluster.PlanCmd{Options: rp.Options(), Strategy: "failover-async"}, &out, &errw); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"strategy failover-async", "n2 (backup, eu): base 3.4.0 → product 22.1.0 → product 23.1.0", "promote n2 to primary"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("plan text lacks %q:\n%s", want, out.String())
		}
	}

	r := rp.Open(t)
	if _, err := cluster.Distribute(ctx, r, cluster.DistributeOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := cluster.Install(ctx, r, installOptions("failover-async", &out)); err != nil {
		t.Fatal(err)
	}
	r.Close()
	out.Reset()
	if err := cluster.RunStatus(ctx, cluster.StatusCmd{Options: rp.Options(), JSON: true}, &out, &errw); err != nil {
		t.Fatal(err)
	}
	s := out.String()
	for _, ver := range []string{"23.1.0", "3.4.0", "1.1.0"} {
		if n := strings.Count(s, ver); n < 3 {
			t.Errorf("status mentions %s %d times, want 3 or more", ver, n)
		}
	}
	if strings.Contains(s, "21.1.0") || strings.Contains(s, ">=") {
		t.Errorf("status shows replaced versions or requirements:\n%s", s)
	}
	var st struct{ Nodes []cluster.NodeStatus }
	if err := json.Unmarshal(out.Bytes(), &st); err != nil || len(st.Nodes) != 3 {
		t.Fatalf("%v: %s", err, s)
	}
	for _, n := range st.Nodes {
		if !n.Reachable || n.ClockOffset == "" || n.Drained {
			t.Errorf("node %+v", n)
		}
		// The rollout's own failover moved the registry with it: no warning.
		if n.Name == "n2" && (n.Role != "primary" || len(n.Warnings) != 0) {
			t.Errorf("n2 after failover: %+v", n)
		}
	}

	// A role changed behind airlock's back is warned about.
	var n3 *node.Agent
	for _, a := range agents {
		if a.Node().Name() == "n3" {
			n3 = a.Node()
		}
	}
	if err := n3.SetRole(ctx, "management"); err != nil {
		t.Fatal(err)
	}
	out.Reset()
	if err := cluster.RunStatus(ctx, cluster.StatusCmd{Options: rp.Options(), JSON: true}, &out, &errw); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(out.Bytes(), &st); err != nil {
		t.Fatal(err)
	}
	for _, n := range st.Nodes {
		if n.Name == "n3" && (len(n.Warnings) != 1 || !strings.Contains(n.Warnings[0], "registered as traffic, now management")) {
			t.Errorf("n3 after a role change outside airlock: %+v", n)
		}
	}
}
