package plan

import (
	"errors"
	"fmt"
	"maps"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/airlock-project/airlock/catalog"
)

// simple is a two-package catalog: every node installs base 2, product 2.
func simple(t testing.TB) []catalog.Package {
	return []catalog.Package{
		pkg(t, "base@2", catalog.KindBase),
		pkg(t, "product@2", catalog.KindProduct, "base >= 2"),
	}
}

func old() map[string]catalog.Version { return inv("base=1", "product=1") }
func cur() map[string]catalog.Version { return inv("base=2", "product=2") }

// threeNodes: primary n1, backup n2, traffic n3, all in eu.
func threeNodes() []Node {
	return []Node{
		{Name: "n1", Role: RolePrimary, Region: "eu", Installed: old()},
		{Name: "n2", Role: RoleBackup, Region: "eu", Installed: old()},
		{Name: "n3", Role: RoleTraffic, Region: "eu", Installed: old(), Connections: 4},
	}
}

// sixNodes: primary n1 and traffic n3, n4 in eu; backup n2 and traffic n5,
// n6 in us. Listed out of order on purpose.
func sixNodes() []Node {
	return []Node{
		{Name: "n6", Role: RoleTraffic, Region: "us", Installed: old()},
		{Name: "n5", Role: RoleTraffic, Region: "us", Installed: old()},
		{Name: "n4", Role: RoleTraffic, Region: "eu", Installed: old()},
		{Name: "n3", Role: RoleTraffic, Region: "eu", Installed: old()},
		{Name: "n2", Role: RoleBackup, Region: "us", Installed: old()},
		{Name: "n1", Role: RolePrimary, Region: "eu", Installed: old()},
	}
}

// ins is a node's installs and verify step in wave w.
func ins(w int, n string) []string {
	return []string{
		fmt.Sprintf("%d install:%s:base@2", w, n),
		fmt.Sprintf("%d install:%s:product@2", w, n),
		fmt.Sprintf("%d verify:%s", w, n),
	}
}

// roll is one node taken out of service alone in wave w.
func roll(w int, n string) []string {
	return cat(one(w, "drain", n), one(w, "wait-connections", n), ins(w, n), one(w, "undrain", n))
}

func one(w int, kind string, nodes ...string) []string {
	var out []string
	for _, n := range nodes {
		out = append(out, fmt.Sprintf("%d %s:%s", w, kind, n))
	}
	return out
}

func cat(parts ...[]string) []string { return slices.Concat(parts...) }

func shape(p *Plan) []string {
	out := make([]string, len(p.Steps))
	for i, s := range p.Steps {
		out[i] = fmt.Sprintf("%d %s", s.Wave, s.ID)
	}
	return out
}

func TestStrategies(t *testing.T) {
	mgmt := []Node{
		{Name: "p1", Role: RolePrimary, Region: "eu", Installed: old()},
		{Name: "m1", Role: RoleManagement, Region: "eu", Installed: old()},
		{Name: "t1", Role: "", Region: "eu", Installed: old()},
		{Name: "b1", Role: RoleBackup, Region: "eu", Installed: old()},
	}
	regions := []Node{
		{Name: "a1", Region: "a", Installed: old()}, {Name: "a2", Region: "a", Installed: old()},
		{Name: "b1", Region: "b", Installed: old()},
		{Name: "c1", Region: "c", Installed: old()}, {Name: "c2", Region: "c", Installed: old()}, {Name: "c3", Region: "c", Installed: old()},
	}
	for _, tc := range []struct {
		name  string
		nodes []Node
		o     Options
		want  []string
	}{
		{"single", threeNodes(), Options{Strategy: StrategySingle, Nodes: []string{"n2"}}, ins(0, "n2")},
		{"default for one node is single", threeNodes(), Options{Nodes: []string{"n3"}}, ins(0, "n3")},
		{"rolling 3: traffic, backup, primary last", threeNodes(), Options{Strategy: StrategyRolling},
			cat(roll(1, "n3"), roll(2, "n2"), roll(3, "n1"))},
		{"default for several nodes is rolling", threeNodes(), Options{},
			cat(roll(1, "n3"), roll(2, "n2"), roll(3, "n1"))},
		{"failover-sync 3", threeNodes(), Options{Strategy: StrategyFailoverSync},
			cat(ins(0, "n1"), ins(0, "n2"), one(0, "pair", "n2"), roll(1, "n3"))},
		{"failover-async 3", threeNodes(), Options{Strategy: StrategyFailoverAsync},
			cat(ins(0, "n2"), one(0, "promote", "n2"), ins(0, "n1"), one(0, "pair", "n1"), roll(1, "n3"))},
		{"atlas 3: the only traffic node of eu waits for the second half", threeNodes(), Options{Strategy: StrategyAtlas},
			cat(one(1, "distribute", "n2", "n3", "n1"),
				ins(2, "n2"), one(0, "promote", "n2"),
				one(3, "drain", "n3"), one(3, "wait-connections", "n3"), ins(3, "n3"),
				ins(0, "n1"), one(0, "pair", "n1"),
				one(4, "undrain", "n3"))},
		{"rolling 6", sixNodes(), Options{Strategy: StrategyRolling},
			cat(roll(1, "n3"), roll(2, "n4"), roll(3, "n5"), roll(4, "n6"), roll(5, "n2"), roll(6, "n1"))},
		{"rolling 6, two at a time", sixNodes(), Options{Strategy: StrategyRolling, MaxUnavailable: 2},
			cat(one(1, "drain", "n3", "n4"), one(1, "wait-connections", "n3", "n4"), ins(1, "n3"), one(1, "undrain", "n3"), ins(1, "n4"), one(1, "undrain", "n4"),
				one(2, "drain", "n5", "n6"), one(2, "wait-connections", "n5", "n6"), ins(2, "n5"), one(2, "undrain", "n5"), ins(2, "n6"), one(2, "undrain", "n6"),
				roll(3, "n2"), roll(4, "n1"))},
		{"failover-sync 6", sixNodes(), Options{Strategy: StrategyFailoverSync},
			cat(ins(0, "n1"), ins(0, "n2"), one(0, "pair", "n2"), roll(1, "n3"), roll(2, "n4"), roll(3, "n5"), roll(4, "n6"))},
		{"failover-async 6", sixNodes(), Options{Strategy: StrategyFailoverAsync},
			cat(ins(0, "n2"), one(0, "promote", "n2"), ins(0, "n1"), one(0, "pair", "n1"), roll(1, "n3"), roll(2, "n4"), roll(3, "n5"), roll(4, "n6"))},
		{"atlas 6", sixNodes(), Options{Strategy: StrategyAtlas},
			cat(one(1, "distribute", "n2", "n3", "n5", "n4", "n6", "n1"),
				one(2, "drain", "n3", "n5"), one(2, "wait-connections", "n3", "n5"), ins(2, "n2"), ins(2, "n3"), ins(2, "n5"),
				one(0, "promote", "n2"),
				one(3, "undrain", "n3", "n5"),
				one(4, "drain", "n4", "n6"), one(4, "wait-connections", "n4", "n6"), ins(4, "n4"), ins(4, "n6"),
				ins(0, "n1"), one(0, "pair", "n1"),
				one(5, "undrain", "n4", "n6"))},
		{"rolling: management then primary last", mgmt, Options{},
			cat(roll(1, "t1"), roll(2, "b1"), roll(3, "m1"), roll(4, "p1"))},
		{"failover: traffic then management after the pair", mgmt, Options{Strategy: StrategyFailoverAsync},
			cat(ins(0, "b1"), one(0, "promote", "b1"), ins(0, "p1"), one(0, "pair", "p1"), roll(1, "t1"), roll(2, "m1"))},
		{"atlas: management before the old primary", mgmt, Options{Strategy: StrategyAtlas},
			cat(one(1, "distribute", "b1", "t1", "m1", "p1"), ins(2, "b1"), one(0, "promote", "b1"),
				one(3, "drain", "t1"), one(3, "wait-connections", "t1"), ins(3, "t1"), roll(4, "m1"),
				ins(0, "p1"), one(0, "pair", "p1"), one(5, "undrain", "t1"))},
		{"rolling never drains a whole region", regions, Options{MaxUnavailable: 4},
			cat(one(1, "drain", "a1", "b1", "c1", "c2"), one(1, "wait-connections", "a1", "b1", "c1", "c2"),
				ins(1, "a1"), one(1, "undrain", "a1"), ins(1, "b1"), one(1, "undrain", "b1"),
				ins(1, "c1"), one(1, "undrain", "c1"), ins(1, "c2"), one(1, "undrain", "c2"),
				one(2, "drain", "a2", "c3"), one(2, "wait-connections", "a2", "c3"),
				ins(2, "a2"), one(2, "undrain", "a2"), ins(2, "c3"), one(2, "undrain", "c3"))},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.o.Now = now
			p, err := Build(tc.nodes, simple(t), tc.o)
			if err != nil {
				t.Fatal(err)
			}
			if got := shape(p); !slices.Equal(got, tc.want) {
				t.Errorf("steps\n  %s\nwant\n  %s", strings.Join(got, "\n  "), strings.Join(tc.want, "\n  "))
			}
			checkPlan(t, tc.nodes, simple(t), tc.o, p)
		})
	}
}

func TestStrategyWords(t *testing.T) {
	nodes := sixNodes()
	p, err := Build(nodes, simple(t), Options{Strategy: StrategyAtlas, Now: now, DrainTimeout: 90 * time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{
		"distribute:n2":       "distribute base 2, product 2 to n2",
		"drain:n3":            "drain n3 (traffic, eu)",
		"wait-connections:n5": "wait for n5's client connections to end (none open now; at most 1h30m)",
		"promote:n2":          "promote n2 to primary (n1 becomes backup)",
		"pair:n1":             "re-pair n1 as backup of n2",
		"verify:n4":           "verify n4 runs base 2, product 2",
		"undrain:n6":          "undrain n6",
	}
	for _, s := range p.Steps {
		if w, ok := want[s.ID]; ok {
			if s.Text != w {
				t.Errorf("%s: %q, want %q", s.ID, s.Text, w)
			}
			delete(want, s.ID)
		}
		if s.Kind == StepWaitConnections && s.Timeout != catalog.Duration(90*time.Minute) {
			t.Errorf("%s: timeout %v", s.ID, s.Timeout)
		}
		if (s.Kind == StepPromote && s.Peer != "n1") || (s.Kind == StepPair && s.Peer != "n2") {
			t.Errorf("%s: peer %q", s.ID, s.Peer)
		}
	}
	if len(want) > 0 {
		t.Errorf("steps missing: %v", want)
	}
}

// TestResume plans from the states an interrupted run leaves: the plan is
// the rest of the full one, with the same IDs and the same plan ID.
func TestResume(t *testing.T) {
	set := func(nodes []Node, name string, f func(*Node)) []Node {
		nodes = slices.Clone(nodes)
		for i := range nodes {
			if nodes[i].Name == name {
				nodes[i].Installed = maps.Clone(nodes[i].Installed)
				f(&nodes[i])
			}
		}
		return nodes
	}
	done := func(n *Node) { n.Installed = cur() }
	baseOnly := func(n *Node) { n.Installed["base"] = catalog.MustVersion("2") }
	drained := func(n *Node) { n.Drained = true }
	promoted := set(set(threeNodes(), "n2", func(n *Node) { n.Installed = cur(); n.Role = RolePrimary }), "n1", func(n *Node) { n.Role = RoleBackup })
	for _, tc := range []struct {
		name     string
		strategy string
		nodes    []Node
		want     []string
	}{
		{"async: backup done", StrategyFailoverAsync, set(threeNodes(), "n2", done),
			cat(one(0, "promote", "n2"), ins(0, "n1"), one(0, "pair", "n1"), roll(1, "n3"))},
		{"async: promoted", StrategyFailoverAsync, promoted,
			cat(ins(0, "n1"), one(0, "pair", "n1"), roll(1, "n3"))},
		{"async: backup half way", StrategyFailoverAsync, set(threeNodes(), "n2", baseOnly),
			cat(ins(0, "n2")[1:], one(0, "promote", "n2"), ins(0, "n1"), one(0, "pair", "n1"), roll(1, "n3"))},
		{"async: only the backup outdated (not a state a run leaves)", StrategyFailoverAsync, set(threeNodes(), "n1", done)[:2],
			cat(ins(0, "n2"), one(0, "pair", "n2"))},
		{"sync: pair done", StrategyFailoverSync, set(set(threeNodes(), "n1", done), "n2", done), roll(1, "n3")},
		{"rolling: left drained when done", StrategyRolling, set(set(threeNodes(), "n3", done), "n3", drained),
			cat(one(1, "undrain", "n3"), roll(2, "n2"), roll(3, "n1"))},
		{"rolling: drained half way", StrategyRolling, set(set(threeNodes(), "n3", baseOnly), "n3", drained),
			cat(one(1, "wait-connections", "n3"), ins(1, "n3")[1:], one(1, "undrain", "n3"), roll(2, "n2"), roll(3, "n1"))},
		{"atlas: after the promotion, the old primary is the backup", StrategyAtlas, set(promoted, "n3", drained),
			cat(one(1, "distribute", "n1", "n3"), ins(2, "n1"), one(3, "wait-connections", "n3"), ins(3, "n3"), one(0, "pair", "n1"), one(4, "undrain", "n3"))},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := Options{Strategy: tc.strategy, Now: now}
			full, err := Build(threeNodes()[:len(tc.nodes)], simple(t), o)
			if err != nil {
				t.Fatal(err)
			}
			p, err := Build(tc.nodes, simple(t), o)
			if err != nil {
				t.Fatal(err)
			}
			if got := shape(p); !slices.Equal(got, tc.want) {
				t.Errorf("steps\n  %s\nwant\n  %s", strings.Join(got, "\n  "), strings.Join(tc.want, "\n  "))
			}
			if p.ID != full.ID {
				t.Errorf("plan ID %s, full plan %s", p.ID, full.ID)
			}
			fullIDs := map[string]bool{}
			for _, s := range full.Steps {
				fullIDs[s.ID] = true
			}
			for _, s := range p.Steps {
				if !fullIDs[s.ID] && !strings.Contains(tc.name, "not a state a run leaves") {
					t.Errorf("step %s is not in the full plan", s.ID)
				}
			}
			checkPlan(t, tc.nodes, simple(t), o, p)
		})
	}
	// Another rollout has another ID.
	a, _ := Build(threeNodes(), simple(t), Options{Now: now})
	b, _ := Build(threeNodes(), simple(t)[:1], Options{Now: now})
	c, _ := Build(threeNodes(), simple(t), Options{Now: now, Strategy: StrategyFailoverSync})
	if a.ID == b.ID || a.ID == c.ID {
		t.Errorf("plan IDs %s %s %s should differ", a.ID, b.ID, c.ID)
	}
}

// checkPlan executes p on a model of the cluster and checks what must hold
// of any plan: numbering and unique IDs; every install raises its
// component with its requirements holding, on a drained node when the
// strategy drains it; verify expects what the node runs; settle steps
// precede their install; promote and pair leave exactly one primary;
// rolling never drains every node of a region and atlas keeps a traffic
// node of every region serving; at the end nothing is drained, every node
// runs the newest versions it can reach, in the order of its NodePlan.
func checkPlan(t testing.TB, nodes []Node, avail []catalog.Package, o Options, p *Plan) {
	t.Helper()
	state := map[string]*Node{}
	role := map[string]string{}
	region := map[string]int{}
	anyDrained := false
	for _, n := range nodes {
		c := n
		c.Installed = maps.Clone(n.Installed)
		if c.Installed == nil {
			c.Installed = map[string]catalog.Version{}
		}
		if c.Role == "" {
			c.Role = RoleTraffic
		}
		state[n.Name] = &c
		role[n.Name] = c.Role
		region[n.Region]++
		anyDrained = anyDrained || n.Drained
	}
	selected := map[string]bool{}
	for _, np := range p.Nodes {
		if selected[np.Node] {
			t.Fatalf("node %s listed twice", np.Node)
		}
		selected[np.Node] = true
		if np.UpToDate != (len(np.Sequence) == 0) || len(np.Packages) != len(np.Sequence) {
			t.Errorf("node %s: up to date %v with %d packages", np.Node, np.UpToDate, len(np.Sequence))
		}
		for i, pp := range np.Packages {
			if pp.ID() != np.Sequence[i] {
				t.Errorf("node %s: packages and sequence differ at %d", np.Node, i)
			}
		}
	}
	if len(o.Nodes) == 0 && len(selected) != len(nodes) {
		t.Errorf("%d nodes planned of %d", len(selected), len(nodes))
	}
	pairStrategy := p.Strategy == StrategyFailoverSync || p.Strategy == StrategyFailoverAsync || p.Strategy == StrategyAtlas
	mustDrain := func(n string) bool {
		return p.Strategy == StrategyRolling || (pairStrategy && role[n] != RolePrimary && role[n] != RoleBackup)
	}
	ids := map[string]bool{}
	installed := map[string][]string{}
	for i, s := range p.Steps {
		if s.N != i+1 || s.ID == "" || ids[s.ID] || s.Text == "" {
			t.Fatalf("step %d: N %d, ID %q (dup %v), text %q", i, s.N, s.ID, ids[s.ID], s.Text)
		}
		ids[s.ID] = true
		n := state[s.Node]
		if n == nil || !selected[s.Node] {
			t.Fatalf("step %s on a node not planned", s.ID)
		}
		switch s.Kind {
		case StepInstall:
			pk := *s.Package
			if v, ok := n.Installed[pk.Name]; ok && pk.Version.Compare(v) <= 0 {
				t.Fatalf("%s does not raise %s from %s", s.ID, pk.Name, v)
			}
			for _, c := range pk.Requires {
				if !c.SatisfiedBy(n.Installed) {
					t.Fatalf("%s while %s does not hold", s.ID, c)
				}
			}
			if mustDrain(s.Node) && !n.Drained {
				t.Fatalf("%s on a node in service", s.ID)
			}
			n.Installed[pk.Name] = pk.Version
			installed[s.Node] = append(installed[s.Node], pk.ID())
		case StepSettle:
			if i+1 == len(p.Steps) || p.Steps[i+1].Kind != StepInstall || p.Steps[i+1].Node != s.Node ||
				p.Steps[i+1].Package.ID() != s.Package.ID() || !p.Steps[i+1].Earliest.Equal(s.Earliest) || s.Earliest.IsZero() {
				t.Fatalf("%s is not followed by its install", s.ID)
			}
		case StepVerify:
			if !maps.EqualFunc(s.Expect, n.Installed, func(a, b catalog.Version) bool { return a.Compare(b) == 0 }) {
				t.Fatalf("%s expects %v, node runs %v", s.ID, s.Expect, n.Installed)
			}
		case StepDrain:
			if n.Drained {
				t.Fatalf("%s: already drained", s.ID)
			}
			n.Drained = true
		case StepUndrain:
			if !n.Drained {
				t.Fatalf("%s: not drained", s.ID)
			}
			n.Drained = false
		case StepPromote:
			n.Role, state[s.Peer].Role = RolePrimary, RoleBackup
		case StepPair:
			n.Role, state[s.Peer].Role = RoleBackup, RolePrimary
		case StepWaitConnections, StepDistribute:
		default:
			t.Fatalf("%s: unknown kind", s.ID)
		}
		if s.Kind == StepPromote || s.Kind == StepPair {
			primaries := 0
			for _, n := range state {
				if n.Role == RolePrimary {
					primaries++
				}
			}
			if primaries != 1 {
				t.Fatalf("after %s: %d primaries", s.ID, primaries)
			}
		}
		if anyDrained {
			continue
		}
		drainedIn, trafficIn, servingIn := map[string]int{}, map[string]int{}, map[string]int{}
		for name, n := range state {
			if n.Drained {
				drainedIn[n.Region]++
			}
			if selected[name] && role[name] == RoleTraffic {
				trafficIn[n.Region]++
				if !n.Drained {
					servingIn[n.Region]++
				}
			}
		}
		for r, d := range drainedIn {
			if p.Strategy == StrategyRolling && region[r] > 1 && d == region[r] {
				t.Fatalf("after %s: every node of region %q is drained", s.ID, r)
			}
		}
		for r, c := range trafficIn {
			if p.Strategy == StrategyAtlas && c > 1 && servingIn[r] == 0 {
				t.Fatalf("after %s: no traffic node of region %q serves", s.ID, r)
			}
		}
	}
	primaries, backups := 0, 0
	for name, n := range state {
		if !selected[name] {
			continue
		}
		if n.Drained {
			t.Errorf("%s left drained", name)
		}
		switch n.Role {
		case RolePrimary:
			primaries++
		case RoleBackup:
			backups++
		}
		for _, pk := range avail {
			v, ok := n.Installed[pk.Name]
			if (!ok || pk.Version.Compare(v) > 0) && unmet(pk, n.Installed) < 0 {
				t.Errorf("%s: %s is installable after the plan", name, pk.ID())
			}
		}
		var want []string
		for _, np := range p.Nodes {
			if np.Node == name {
				want = np.Sequence
			}
		}
		if !slices.Equal(installed[name], want) && (len(want) > 0 || len(installed[name]) > 0) {
			t.Errorf("%s installed %v, its plan says %v", name, installed[name], want)
		}
	}
	if pairStrategy && (primaries != 1 || backups != 1) {
		t.Errorf("after the plan: %d primaries, %d backups", primaries, backups)
	}
}

// randomCase builds a random small catalog and cluster from seed.
func randomCase(t testing.TB, seed uint64) ([]Node, []catalog.Package, Options) {
	rng := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	kinds := []catalog.Kind{catalog.KindBase, catalog.KindProduct, catalog.KindLicense, catalog.KindHotfix}
	names := []string{"base", "product", "license", "hotfix"}
	ops := []string{">=", ">", "=", "<", "!="}
	var avail []catalog.Package
	seen := map[string]bool{}
	for n := rng.IntN(10); n > 0; n-- {
		c := rng.IntN(len(names))
		id := names[c] + "@" + fmt.Sprint(1+rng.IntN(6))
		if seen[id] {
			continue
		}
		seen[id] = true
		var req []string
		for r := rng.IntN(3); r > 0; r-- {
			op := ">="
			if rng.IntN(4) == 0 {
				op = ops[rng.IntN(len(ops))]
			}
			req = append(req, fmt.Sprintf("%s %s %d", names[rng.IntN(len(names))], op, 1+rng.IntN(5)))
		}
		p := pkg(t, id, kinds[c], req...)
		if rng.IntN(3) == 0 {
			p.Settle = catalog.Duration(time.Duration(1+rng.IntN(48)) * time.Hour)
		}
		avail = append(avail, p)
	}
	// Mostly a pair and traffic nodes in two regions, so that every
	// strategy often fits; sometimes anything.
	roles := []string{RolePrimary, RoleBackup, RoleTraffic, RoleManagement, ""}
	regions := []string{"eu", "us", ""}
	nodes := make([]Node, 1+rng.IntN(7))
	for i := range nodes {
		n := &nodes[i]
		n.Name = fmt.Sprintf("n%d", i+1)
		n.Role = roles[rng.IntN(len(roles))]
		n.Region = regions[rng.IntN(len(regions))]
		if rng.IntN(12) > 0 {
			switch {
			case i < 2:
				n.Role = []string{RolePrimary, RoleBackup}[i]
			case rng.IntN(5) > 0:
				n.Role = RoleTraffic
			default:
				n.Role = RoleManagement
			}
			n.Region = regions[i%2]
		}
		n.Installed = map[string]catalog.Version{}
		for _, c := range names {
			if rng.IntN(3) > 0 {
				n.Installed[c] = catalog.MustVersion(fmt.Sprint(1 + rng.IntN(4)))
			}
		}
		n.Drained = rng.IntN(8) == 0
		n.Connections = rng.IntN(3)
	}
	o := Options{Now: now, MaxUnavailable: rng.IntN(4), SkipSettle: rng.IntN(4) == 0}
	o.Strategy = []string{"", StrategySingle, StrategyRolling, StrategyFailoverSync, StrategyFailoverAsync, StrategyAtlas}[rng.IntN(6)]
	if rng.IntN(8) == 0 {
		o.Nodes = []string{nodes[rng.IntN(len(nodes))].Name}
	}
	return nodes, avail, o
}

// checkRandom plans a random case, checks the plan, runs a random prefix
// of it, plans again from there and checks that the new plan is the rest
// of the first: the same plan ID, no step that the first did not have.
func checkRandom(t *testing.T, seed uint64) {
	nodes, avail, o := randomCase(t, seed)
	p, err := Build(nodes, avail, o)
	// Drop the packages that some node cannot reach, so that most cases
	// get a plan; each error must be one that Sequence confirms.
	for tries := 0; err != nil && errors.Is(err, ErrUnreachable) && tries < 20; tries++ {
		var drop []string
		all := []error{err}
		if j, ok := err.(interface{ Unwrap() []error }); ok {
			all = j.Unwrap()
		}
		for _, e := range all {
			ue := e.(*UnreachableError)
			i := slices.IndexFunc(nodes, func(n Node) bool { return n.Name == ue.Node })
			if _, serr := Sequence(nodes[i].Installed, avail); serr == nil || serr.Error() != strings.TrimPrefix(ue.Error(), "node "+ue.Node+": ") {
				t.Fatalf("seed %d: %v, but Sequence says %v", seed, ue, serr)
			}
			for _, b := range ue.Blocked {
				drop = append(drop, b.Package.ID())
			}
		}
		avail = slices.DeleteFunc(slices.Clone(avail), func(p catalog.Package) bool { return slices.Contains(drop, p.ID()) })
		p, err = Build(nodes, avail, o)
	}
	if err != nil {
		if !errors.Is(err, ErrMisfit) {
			t.Fatalf("seed %d: unexpected error %v", seed, err)
		}
		return
	}
	checkPlan(t, nodes, avail, o, p)

	rng := rand.New(rand.NewPCG(seed, 7))
	k := rng.IntN(len(p.Steps) + 1)
	after := slices.Clone(nodes)
	at := map[string]int{}
	for i := range after {
		after[i].Installed = maps.Clone(after[i].Installed)
		at[after[i].Name] = i
	}
	var hist []Install
	for _, s := range p.Steps[:k] {
		n := &after[at[s.Node]]
		switch s.Kind {
		case StepInstall:
			n.Installed[s.Package.Name] = s.Package.Version
			hist = append(hist, Install{Node: s.Node, Package: *s.Package, At: now})
		case StepDrain:
			n.Drained = true
		case StepUndrain:
			n.Drained = false
		case StepPromote:
			n.Role, after[at[s.Peer]].Role = RolePrimary, RoleBackup
		case StepPair:
			n.Role, after[at[s.Peer]].Role = RoleBackup, RolePrimary
		}
	}
	o.History = hist
	q, err := Build(after, avail, o)
	if err != nil {
		t.Fatalf("seed %d: replanning after %d steps: %v", seed, k, err)
	}
	if q.ID != p.ID {
		t.Errorf("seed %d: plan ID changed after %d steps", seed, k)
	}
	for _, s := range q.Steps {
		if !slices.ContainsFunc(p.Steps, func(x Step) bool { return x.ID == s.ID }) {
			t.Fatalf("seed %d: after %d steps, the new plan has %s, which the first did not:\nfirst: %v\nnew:   %v", seed, k, s.ID, shape(p), shape(q))
		}
	}
	checkPlan(t, after, avail, o, q)
}

func TestBuildProperties(t *testing.T) {
	n := 3000
	if testing.Short() {
		n = 300
	}
	for seed := range uint64(n) {
		checkRandom(t, seed)
		if t.Failed() {
			t.Fatalf("seed %d", seed)
		}
	}
}

func FuzzBuild(f *testing.F) {
	for _, s := range []uint64{0, 1, 42, 1 << 40} {
		f.Add(s)
	}
	f.Fuzz(checkRandom)
}
