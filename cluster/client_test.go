package cluster_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/airlock-project/airlock/cluster"
	"github.com/airlock-project/airlock/cluster/clustertest"
	"github.com/airlock-project/airlock/fault"
	"github.com/airlock-project/airlock/node"
	"github.com/airlock-project/airlock/repo"
)

// TestWrongFingerprint: a node presenting another certificate than the
// pinned one is refused with a message that names both and says what to do.
func TestWrongFingerprint(t *testing.T) {
	rp := clustertest.NewRepo(t, clustertest.Standard(4096)...)
	a := clustertest.StartAgent(t, rp.World, clustertest.AgentOptions{Name: "n2", Role: node.RoleBackup, Installed: clustertest.Installed})
	other := clustertest.StartAgent(t, rp.World, clustertest.AgentOptions{Name: "n9", Installed: clustertest.Installed})
	n := a.RepoNode(node.RoleBackup, "")
	n.Fingerprint = other.Fingerprint
	c, err := cluster.NewClient(n, cluster.ClientOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_, err = c.Status(context.Background())
	var fe *cluster.FingerprintError
	if !errors.As(err, &fe) || fe.Got != a.Fingerprint || fe.Pinned != other.Fingerprint {
		t.Fatalf("Status error %v, want a *FingerprintError", err)
	}
	if fault.Code(err) != fault.ExitVerification {
		t.Errorf("exit code %d, want %d", fault.Code(err), fault.ExitVerification)
	}
	want := "node n2 presented certificate " + a.Fingerprint.String() + ", pinned " + other.Fingerprint.String() +
		": if the node was re-initialised, re-add it with airlock node add n2 --fingerprint " + a.Fingerprint.String()
	if !strings.Contains(err.Error(), want) {
		t.Errorf("message\n%s\ndoes not contain\n%s", err, want)
	}

	// node add refuses it and registers nothing.
	var out, errw bytes.Buffer
	err = cluster.RunNodeAdd(context.Background(), cluster.NodeAddCmd{Options: rp.Options(), Name: "n2", URL: a.URL,
		TokenFile: a.TokenFile, Fingerprint: other.Fingerprint.String()}, &out, &errw)
	if fault.Code(err) != fault.ExitVerification || !strings.Contains(err.Error(), "nothing was added") {
		t.Errorf("node add with the wrong fingerprint: %v (exit %d)", err, fault.Code(err))
	}
	r := rp.Open(t)
	nodes, err := r.Nodes()
	r.Close()
	if err != nil || len(nodes) != 0 {
		t.Errorf("nodes after a refused add: %v, %v", nodes, err)
	}

	// status of a node registered with the wrong fingerprint exits 3.
	r = rp.Open(t)
	if _, err := r.AddNode(n); err != nil {
		t.Fatal(err)
	}
	r.Close()
	out.Reset()
	err = cluster.RunStatus(context.Background(), cluster.StatusCmd{Options: rp.Options(), JSON: true}, &out, &errw)
	if fault.Code(err) != fault.ExitVerification {
		t.Errorf("status: %v (exit %d), want exit 3", err, fault.Code(err))
	}
	var st struct{ Nodes []cluster.NodeStatus }
	if err := json.Unmarshal(out.Bytes(), &st); err != nil || len(st.Nodes) != 1 || st.Nodes[0].Reachable || !strings.Contains(st.Nodes[0].Error, "presented certificate") {
		t.Errorf("status JSON %s (%v)", out.String(), err)
	}
}

// TestNodeAdd: node add checks the node, takes its role and region, keeps
// the token out of every listing, and refuses a wrong token, a wrong name
// and a role that disagrees with the node's.
func TestNodeAdd(t *testing.T) {
	rp := clustertest.NewRepo(t, clustertest.Standard(4096)...)
	a := clustertest.StartAgent(t, rp.World, clustertest.AgentOptions{Name: "n1", Role: node.RolePrimary, Region: "eu", Installed: clustertest.Installed})
	ctx := context.Background()
	add := func(name, tokenFile, role string) error {
		var out, errw bytes.Buffer
		return cluster.RunNodeAdd(ctx, cluster.NodeAddCmd{Options: rp.Options(), Name: name, URL: a.URL + "/",
			TokenFile: tokenFile, Fingerprint: strings.ToLower(strings.ReplaceAll(a.Fingerprint.String(), ":", "")), Role: role}, &out, &errw)
	}
	bad := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(bad, []byte(strings.Repeat("ab", 32)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := add("n1", bad, ""); err == nil || !strings.Contains(err.Error(), "token") || !strings.Contains(err.Error(), "unauthorized") {
		t.Errorf("wrong token: %v", err)
	}
	if err := add("n7", a.TokenFile, ""); fault.Code(err) != fault.ExitUsage || !strings.Contains(err.Error(), `calls itself "n1"`) {
		t.Errorf("wrong name: %v", err)
	}
	if err := add("n1", a.TokenFile, "backup"); fault.Code(err) != fault.ExitUsage || !strings.Contains(err.Error(), "reports role primary") {
		t.Errorf("wrong role: %v", err)
	}
	if err := add("n1", a.TokenFile, ""); err != nil {
		t.Fatal(err)
	}
	r := rp.Open(t)
	nodes, err := r.Nodes()
	if err != nil {
		t.Fatal(err)
	}
	inv, err := r.NodeInventory()
	r.Close()
	if err != nil {
		t.Fatal(err)
	}
	if len(nodes) != 1 || nodes[0].Role != "primary" || nodes[0].Region != "eu" || nodes[0].URL != a.URL || nodes[0].Token != a.Token || nodes[0].Seen == nil {
		t.Fatalf("registered %+v", nodes)
	}
	if len(inv) != 1 || inv[0].Name != "n1" || inv[0].Installed["product"].String() != "21.1.0" {
		t.Errorf("inventory %+v", inv)
	}
	var out bytes.Buffer
	if err := cluster.RunNodeList(ctx, cluster.NodeListCmd{Options: rp.Options(), JSON: true}, &out, &out); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(out.String(), a.Token) || !strings.Contains(out.String(), a.Fingerprint.String()) {
		t.Errorf("node list --json leaks the token or lacks the fingerprint:\n%s", out.String())
	}
	if err := cluster.RunNodeRemove(ctx, cluster.NodeRemoveCmd{Options: rp.Options(), Name: "n1"}, &out, &out); err != nil {
		t.Fatal(err)
	}
	if err := cluster.RunNodeRemove(ctx, cluster.NodeRemoveCmd{Options: rp.Options(), Name: "n1"}, &out, &out); !errors.Is(err, repo.ErrNotFound) {
		t.Errorf("second remove: %v", err)
	}
}
