package plan

import (
	"bytes"
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/airlock-project/airlock/catalog"
	"github.com/airlock-project/airlock/fault"
)

var now = time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC)

// settled returns ps with the settle delay d on every package of kind k.
func settled(ps []catalog.Package, k catalog.Kind, d time.Duration) []catalog.Package {
	ps = slices.Clone(ps)
	for i := range ps {
		if ps[i].Kind == k {
			ps[i].Settle = catalog.Duration(d)
		}
	}
	return ps
}

// contractCluster is the cluster of shared/contract-test.sh.
func contractCluster() []Node {
	return []Node{
		{Name: "n1", Role: RolePrimary, Region: "eu", Installed: inv("base=3.3.2", "product=21.1.0")},
		{Name: "n2", Role: RoleBackup, Region: "eu", Installed: inv("base=3.3.2", "product=21.1.0")},
		{Name: "n3", Role: RoleTraffic, Region: "eu", Installed: inv("base=3.3.2", "product=21.1.0"), Connections: 4},
	}
}

func stepTexts(p *Plan) []string {
	out := make([]string, len(p.Steps))
	for i, s := range p.Steps {
		out[i] = s.Text
	}
	return out
}

func nodeSeq(p *Plan, node string) []string {
	for _, n := range p.Nodes {
		if n.Node == node {
			return n.Sequence
		}
	}
	return nil
}

// TestBuildSequences covers the per-node sequences as Build reports them.
func TestBuildSequences(t *testing.T) {
	B, P, L := catalog.KindBase, catalog.KindProduct, catalog.KindLicense
	for _, tc := range []struct {
		name      string
		installed map[string]catalog.Version
		available []catalog.Package
		want      []string
		err       string // exact message of the error, if any
	}{
		{
			name:      "chain of intermediate versions",
			installed: inv("product=1"),
			available: []catalog.Package{
				pkg(t, "product@4", P, "product >= 3"),
				pkg(t, "product@3", P, "product >= 2"),
				pkg(t, "product@2", P, "product >= 1"),
			},
			want: []string{"product@2", "product@3", "product@4"},
		},
		{
			name:      "prerequisites across components",
			installed: inv("base=3.3.2", "product=21.1.0"),
			available: contractCatalog(t),
			want:      []string{"base@3.4.0", "product@22.1.0", "product@23.1.0", "license@1.1.0"},
		},
		{
			name:      "base needed in the middle of a product chain",
			installed: inv("base=1", "product=1"),
			available: []catalog.Package{
				pkg(t, "product@2", P),
				pkg(t, "base@2", B, "product >= 2"),
				pkg(t, "product@3", P, "base >= 2", "product >= 2"),
				pkg(t, "license@2", L, "product >= 3"),
			},
			want: []string{"product@2", "base@2", "product@3", "license@2"},
		},
		{
			name:      "already up to date",
			installed: inv("base=3.4.0", "product=23.1.0", "license=1.1.0"),
			available: contractCatalog(t),
			want:      []string{},
		},
		{
			name:      "missing intermediate version reported exactly",
			installed: inv("base=3.4.0", "product=21.1.0"),
			available: []catalog.Package{pkg(t, "product@23.1.0", P, "product >= 22.2.0")},
			err:       "node n1: product 23.1.0 needs product >= 22.2.0; no available package reaches 22.2.0 from 21.1.0",
		},
		{
			name:      "cycle of requirements across components",
			installed: inv("product=21", "license=0.9"),
			available: []catalog.Package{
				pkg(t, "product@22", P, "license >= 1"),
				pkg(t, "license@1", L, "product >= 22"),
			},
			err: "node n1: product 22 needs license >= 1, license 1 needs product >= 22: their requirements form a cycle; and " +
				"license 1 needs product >= 22, product 22 needs license >= 1: their requirements form a cycle",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			nodes := []Node{{Name: "n1", Installed: tc.installed}}
			p, err := Build(nodes, tc.available, Options{Now: now})
			if tc.err != "" {
				var ue *UnreachableError
				if p != nil || !errors.As(err, &ue) || ue.Node != "n1" {
					t.Fatalf("Build = %v, %v; want no plan and an *UnreachableError for n1", p, err)
				}
				if err.Error() != tc.err {
					t.Errorf("error\n  %s\nwant\n  %s", err, tc.err)
				}
				if fault.Code(err) != fault.ExitPolicy || !errors.Is(err, ErrUnreachable) {
					t.Errorf("error %v: exit %d, want 4 and ErrUnreachable", err, fault.Code(err))
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := nodeSeq(p, "n1"); !slices.Equal(got, tc.want) {
				t.Errorf("sequence %v, want %v", got, tc.want)
			}
			if up := len(tc.want) == 0; p.Nodes[0].UpToDate != up || (up && len(p.Steps) != 0) {
				t.Errorf("UpToDate = %v with %d steps, want %v", p.Nodes[0].UpToDate, len(p.Steps), up)
			}
			checkPlan(t, nodes, tc.available, Options{Now: now}, p)
		})
	}
}

func TestBuildUnreachableOnSeveralNodes(t *testing.T) {
	avail := []catalog.Package{pkg(t, "product@23.1.0", catalog.KindProduct, "product >= 22.2.0")}
	nodes := []Node{
		{Name: "n1", Installed: inv("product=21.1.0")},
		{Name: "n2", Installed: inv("product=23.1.0")},
		{Name: "n3", Installed: inv("product=20")},
	}
	_, err := Build(nodes, avail, Options{Now: now})
	want := "node n1: product 23.1.0 needs product >= 22.2.0; no available package reaches 22.2.0 from 21.1.0\n" +
		"node n3: product 23.1.0 needs product >= 22.2.0; no available package reaches 22.2.0 from 20"
	if err == nil || err.Error() != want || fault.Code(err) != fault.ExitPolicy {
		t.Fatalf("error = %v, want\n%s", err, want)
	}
	// The filter leaves the unreachable nodes out.
	p, err := Build(nodes, avail, Options{Now: now, Nodes: []string{"n2"}})
	if err != nil || len(p.Nodes) != 1 || !p.Nodes[0].UpToDate || len(p.Steps) != 0 {
		t.Fatalf("n2 alone: %+v, %v", p, err)
	}
}

func TestNodeFilter(t *testing.T) {
	avail := contractCatalog(t)
	nodes := contractCluster()
	p, err := Build(nodes, avail, Options{Now: now, Nodes: []string{"n3"}})
	if err != nil {
		t.Fatal(err)
	}
	if p.Strategy != StrategySingle || len(p.Nodes) != 1 || p.Nodes[0].Node != "n3" {
		t.Fatalf("--node n3: strategy %s, nodes %+v", p.Strategy, p.Nodes)
	}
	for _, s := range p.Steps {
		if s.Node != "n3" {
			t.Errorf("step %q touches another node", s.Text)
		}
	}
	p, err = Build(nodes, avail, Options{Now: now, Nodes: []string{"n3", "n1", "n3"}})
	if err != nil || p.Strategy != StrategyRolling || len(p.Nodes) != 2 {
		t.Fatalf("--node n3 --node n1: %v, %+v", err, p)
	}
	if got := []string{p.Nodes[0].Node, p.Nodes[1].Node}; !slices.Equal(got, []string{"n3", "n1"}) {
		t.Errorf("rolling order %v, want traffic n3 before primary n1", got)
	}
	_, err = Build(nodes, avail, Options{Now: now, Nodes: []string{"n9"}})
	if !errors.Is(err, ErrNoNode) || fault.Code(err) != fault.ExitUsage || !strings.Contains(err.Error(), "--node n9: the cluster has n1, n2, n3") {
		t.Errorf("unknown node: %v", err)
	}
}

func TestSettle(t *testing.T) {
	P, B := catalog.KindProduct, catalog.KindBase
	chain := settled([]catalog.Package{
		pkg(t, "product@2", P),
		pkg(t, "product@3", P, "product >= 2"),
		pkg(t, "product@4", P, "product >= 3"),
	}, P, 24*time.Hour)
	lone := func(installed string) []Node {
		return []Node{{Name: "n1", Role: RoleTraffic, Installed: inv(installed)}}
	}
	earliest := func(p *Plan) []time.Time {
		var out []time.Time
		for _, pp := range p.Nodes[0].Packages {
			out = append(out, pp.Earliest)
		}
		return out
	}
	t.Run("chain waits 24h between product updates", func(t *testing.T) {
		p, err := Build(lone("product=1"), chain, Options{Now: now})
		if err != nil {
			t.Fatal(err)
		}
		want := []time.Time{{}, now.Add(24 * time.Hour), now.Add(48 * time.Hour)}
		if got := earliest(p); !slices.Equal(got, want) {
			t.Errorf("earliest %v, want %v", got, want)
		}
		wantText := []string{
			"install product 2 on n1",
			"wait until 2026-11-23 10:00 UTC before installing product 3 on n1 (settle 24h after product 2)",
			"install product 3 on n1",
			"wait until 2026-11-24 10:00 UTC before installing product 4 on n1 (settle 24h after product 3)",
			"install product 4 on n1",
			"verify n1 runs product 4",
		}
		if got := stepTexts(p); !slices.Equal(got, wantText) {
			t.Errorf("steps\n  %s\nwant\n  %s", strings.Join(got, "\n  "), strings.Join(wantText, "\n  "))
		}
		if s := p.Steps[1]; s.Kind != StepSettle || !s.Earliest.Equal(now.Add(24*time.Hour)) || s.ID != "settle:n1:product@3" || s.Package.ID() != "product@3" {
			t.Errorf("settle step %+v", s)
		}
		if s := p.Steps[2]; !s.Earliest.Equal(now.Add(24 * time.Hour)) {
			t.Errorf("install step earliest %v", s.Earliest)
		}
	})
	t.Run("skip settle", func(t *testing.T) {
		p, err := Build(lone("product=1"), chain, Options{Now: now, SkipSettle: true})
		if err != nil {
			t.Fatal(err)
		}
		if got := earliest(p); !slices.Equal(got, make([]time.Time, 3)) || len(p.Steps) != 4 {
			t.Errorf("earliest %v, %d steps", got, len(p.Steps))
		}
	})
	t.Run("history carries a settle over", func(t *testing.T) {
		hist := []Install{
			{Node: "n1", Package: chain[0], At: now.Add(-30 * time.Hour)}, // older, ignored
			{Node: "n1", Package: chain[1], At: now.Add(-2 * time.Hour)},
			{Node: "n9", Package: chain[1], At: now}, // another node
		}
		p, err := Build(lone("product=3"), chain, Options{Now: now, History: hist})
		if err != nil {
			t.Fatal(err)
		}
		if got := earliest(p); !slices.Equal(got, []time.Time{now.Add(22 * time.Hour)}) {
			t.Errorf("earliest %v, want now+22h", got)
		}
		if p.Steps[0].Text != "wait until 2026-11-23 08:00 UTC before installing product 4 on n1 (settle 24h after product 3)" {
			t.Errorf("first step %q", p.Steps[0].Text)
		}
	})
	t.Run("elapsed settle", func(t *testing.T) {
		hist := []Install{{Node: "n1", Package: chain[1], At: now.Add(-25 * time.Hour)}}
		p, err := Build(lone("product=3"), chain, Options{Now: now, History: hist})
		if err != nil {
			t.Fatal(err)
		}
		if got := stepTexts(p); !slices.Equal(got, []string{"install product 4 on n1", "verify n1 runs product 4"}) {
			t.Errorf("steps %v", got)
		}
	})
	t.Run("settle holds back only the same kind; times round up to the minute", func(t *testing.T) {
		avail := []catalog.Package{
			pkg(t, "base@2", B), pkg(t, "base@3", B, "base >= 2"),
			pkg(t, "product@2", P, "base >= 3"),
		}
		avail = settled(avail, B, 90*time.Minute)
		at := now.Add(30 * time.Second)
		p, err := Build(lone("base=1"), avail, Options{Now: at})
		if err != nil {
			t.Fatal(err)
		}
		want := []string{
			"install base 2 on n1",
			"wait until 2026-11-22 11:31 UTC before installing base 3 on n1 (settle 1h30m after base 2)",
			"install base 3 on n1",
			"install product 2 on n1",
			"verify n1 runs base 3, product 2",
		}
		got := stepTexts(p)
		if !slices.Equal(got, want) {
			t.Errorf("steps\n  %s\nwant\n  %s", strings.Join(got, "\n  "), strings.Join(want, "\n  "))
		}
		if e := p.Nodes[0].Packages[2].Earliest; !e.IsZero() {
			t.Errorf("product earliest %v, want none", e)
		}
	})
	t.Run("nodes of a wave settle concurrently, the next wave starts after", func(t *testing.T) {
		nodes := []Node{
			{Name: "a", Region: "x", Installed: inv("product=1")},
			{Name: "b", Region: "y", Installed: inv("product=1")},
			{Name: "c", Region: "z", Installed: inv("product=1")},
		}
		p, err := Build(nodes, chain[:2], Options{Now: now, MaxUnavailable: 2})
		if err != nil {
			t.Fatal(err)
		}
		want := map[string]time.Time{"a": now.Add(24 * time.Hour), "b": now.Add(24 * time.Hour), "c": now.Add(48 * time.Hour)}
		for _, n := range p.Nodes {
			if got := n.Packages[1].Earliest; !got.Equal(want[n.Node]) {
				t.Errorf("%s: product 3 not before %v, want %v", n.Node, got, want[n.Node])
			}
		}
	})
}

func TestParseStrategy(t *testing.T) {
	for _, s := range []string{"", "single", "rolling", "failover-sync", "failover-async", "atlas"} {
		if got, err := ParseStrategy(s); err != nil || got != s {
			t.Errorf("ParseStrategy(%q) = %q, %v", s, got, err)
		}
	}
	_, err := ParseStrategy("blue-green")
	if !errors.Is(err, ErrStrategy) || fault.Code(err) != fault.ExitUsage ||
		err.Error() != `unknown strategy "blue-green": want single, rolling, failover-sync, failover-async, atlas` {
		t.Errorf("ParseStrategy(blue-green) = %v", err)
	}
	if _, err := Build(contractCluster(), nil, Options{Strategy: "Rolling"}); fault.Code(err) != fault.ExitUsage {
		t.Errorf("Build with a bad strategy: %v", err)
	}
}

func TestRefusals(t *testing.T) {
	avail := contractCatalog(t)
	six := sixNodes()
	for _, tc := range []struct {
		name  string
		nodes []Node
		o     Options
		is    error
		code  int
		words string
	}{
		{"single on three nodes", contractCluster(), Options{Strategy: StrategySingle}, ErrMisfit, fault.ExitPolicy,
			"single installs one node and 3 are selected (n1, n2, n3): choose one with --node, or use --strategy rolling"},
		{"failover without a pair", contractCluster(), Options{Strategy: StrategyFailoverAsync, Nodes: []string{"n3"}}, ErrMisfit, fault.ExitPolicy,
			"failover-async needs exactly one primary and one backup among the selected nodes, and they have primary: none; backup: none"},
		{"failover with two primaries", withRole(contractCluster(), "n3", RolePrimary), Options{Strategy: StrategyFailoverSync}, ErrMisfit, fault.ExitPolicy,
			"failover-sync needs exactly one primary and one backup among the selected nodes, and they have primary: n1, n3; backup: n2"},
		{"atlas without a pair", withRole(six, "n2", RoleTraffic), Options{Strategy: StrategyAtlas}, ErrMisfit, fault.ExitPolicy,
			"atlas needs exactly one primary and one backup"},
		{"atlas with a region without traffic node", withRegion(contractCluster(), "n2", "us"), Options{Strategy: StrategyAtlas}, ErrMisfit, fault.ExitPolicy,
			"atlas needs a traffic node in every region, and region us has none (n2 backup): add one, or choose another --strategy"},
		{"atlas with a management node alone in its region", append(contractCluster(), Node{Name: "m1", Role: RoleManagement, Region: "hq"}), Options{Strategy: StrategyAtlas}, ErrMisfit, fault.ExitPolicy,
			"region hq has none (m1 management)"},
		{"negative max-unavailable", contractCluster(), Options{MaxUnavailable: -1}, ErrOptions, fault.ExitUsage, "--max-unavailable -1"},
		{"negative drain timeout", contractCluster(), Options{DrainTimeout: -time.Second}, ErrOptions, fault.ExitUsage, "--drain-timeout -1s"},
		{"no nodes", nil, Options{}, ErrNoNode, fault.ExitUsage, "the cluster has no node"},
		{"two nodes with one name", append(contractCluster(), Node{Name: "n1"}), Options{}, ErrCluster, fault.ExitPolicy, "two nodes are named n1"},
		{"unknown role", withRole(contractCluster(), "n3", "arbiter"), Options{}, ErrCluster, fault.ExitPolicy, `node n3 has role "arbiter"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.o.Now = now
			p, err := Build(tc.nodes, avail, tc.o)
			if p != nil || !errors.Is(err, tc.is) || fault.Code(err) != tc.code || !strings.Contains(err.Error(), tc.words) {
				t.Fatalf("Build = %v, %v (exit %d); want %v, exit %d, with %q", p, err, fault.Code(err), tc.is, tc.code, tc.words)
			}
		})
	}
}

func withRole(nodes []Node, name, role string) []Node {
	nodes = slices.Clone(nodes)
	for i := range nodes {
		if nodes[i].Name == name {
			nodes[i].Role = role
		}
	}
	return nodes
}

func withRegion(nodes []Node, name, region string) []Node {
	nodes = slices.Clone(nodes)
	for i := range nodes {
		if nodes[i].Name == name {
			nodes[i].Region = region
		}
	}
	return nodes
}

// TestFailoverAsyncText pins the operator's view of the contract scenario.
func TestFailoverAsyncText(t *testing.T) {
	avail := settled(contractCatalog(t), catalog.KindProduct, 24*time.Hour)
	avail[0].Reboot = true
	p, err := Build(contractCluster(), avail, Options{Strategy: StrategyFailoverAsync, Now: now})
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if err := p.WriteText(&buf); err != nil {
		t.Fatal(err)
	}
	want := `Plan ` + p.ID + `: strategy failover-async, made 2026-11-22 10:00 UTC

Nodes, in install order:
  n2 (backup, eu): base 3.4.0, product 22.1.0, product 23.1.0 (not before 2026-11-23 10:00 UTC), license 1.1.0
  n1 (primary, eu): base 3.4.0, product 22.1.0, product 23.1.0 (not before 2026-11-24 10:00 UTC), license 1.1.0
  n3 (traffic, eu): base 3.4.0, product 22.1.0, product 23.1.0 (not before 2026-11-25 10:00 UTC), license 1.1.0

Steps:
   1. install base 3.4.0 on n2 (reboots)
   2. install product 22.1.0 on n2
   3. wait until 2026-11-23 10:00 UTC before installing product 23.1.0 on n2 (settle 24h after product 22.1.0)
   4. install product 23.1.0 on n2
   5. install license 1.1.0 on n2
   6. verify n2 runs base 3.4.0, product 23.1.0, license 1.1.0
   7. promote n2 to primary (n1 becomes backup)
   8. install base 3.4.0 on n1 (reboots)
   9. install product 22.1.0 on n1
  10. wait until 2026-11-24 10:00 UTC before installing product 23.1.0 on n1 (settle 24h after product 22.1.0)
  11. install product 23.1.0 on n1
  12. install license 1.1.0 on n1
  13. verify n1 runs base 3.4.0, product 23.1.0, license 1.1.0
  14. re-pair n1 as backup of n2
  15. drain n3 (traffic, eu)
  16. wait for n3's client connections to end (4 open now; at most 30m)
  17. install base 3.4.0 on n3 (reboots)
  18. install product 22.1.0 on n3
  19. wait until 2026-11-25 10:00 UTC before installing product 23.1.0 on n3 (settle 24h after product 22.1.0)
  20. install product 23.1.0 on n3
  21. install license 1.1.0 on n3
  22. verify n3 runs base 3.4.0, product 23.1.0, license 1.1.0
  23. undrain n3
`
	if buf.String() != want {
		t.Errorf("WriteText:\n%s\nwant:\n%s", buf.String(), want)
	}
	checkPlan(t, contractCluster(), avail, Options{Strategy: StrategyFailoverAsync, Now: now}, p)

	// Everything up to date.
	done := contractCluster()
	for i := range done {
		done[i].Installed = inv("base=3.4.0", "product=23.1.0", "license=1.1.0")
	}
	p, err = Build(done, avail, Options{Strategy: StrategyFailoverAsync, Now: now})
	if err != nil {
		t.Fatal(err)
	}
	buf.Reset()
	if err := p.WriteText(&buf); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(buf.String(), "  n1 (primary, eu): up to date\n") || !strings.HasSuffix(buf.String(), "Steps: none, every node is up to date.\n") {
		t.Errorf("up to date:\n%s", buf.String())
	}
}

// TestJSON checks that a plan marshals with lower-case keys, lists the
// packages in install order before anything else mentions their versions
// (shared/contract-test.sh relies on it) and decodes back.
func TestJSON(t *testing.T) {
	avail := settled(contractCatalog(t), catalog.KindProduct, 24*time.Hour)
	p, err := Build(contractCluster(), avail, Options{Strategy: StrategyFailoverAsync, Now: now})
	if err != nil {
		t.Fatal(err)
	}
	b, err := json.Marshal(p)
	if err != nil {
		t.Fatal(err)
	}
	s := string(b)
	last := -1
	for _, v := range []string{"3.4.0", "22.1.0", "23.1.0", "1.1.0"} {
		i := strings.Index(s, v)
		if i <= last {
			t.Fatalf("%s first at %d, after the previous version (%d): %.400s", v, i, last, s)
		}
		last = i
	}
	var generic any
	if err := json.Unmarshal(b, &generic); err != nil {
		t.Fatal(err)
	}
	var walk func(v any)
	walk = func(v any) {
		switch v := v.(type) {
		case map[string]any:
			for k, x := range v {
				if k != strings.ToLower(k) && k != "sha256" {
					t.Errorf("key %q is not lower case", k)
				}
				walk(x)
			}
		case []any:
			for _, x := range v {
				walk(x)
			}
		}
	}
	walk(generic)
	for _, k := range []string{`"id":"install:n2:product@23.1.0"`, `"earliest":"2026-11-23T10:00:00Z"`, `"kind":"promote"`, `"peer":"n1"`, `"timeout":"30m0s"`, `"expect":{"base":"3.4.0","license":"1.1.0","product":"23.1.0"}`} {
		if !strings.Contains(s, k) {
			t.Errorf("JSON lacks %s", k)
		}
	}
	var back Plan
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	if back.ID != p.ID || len(back.Steps) != len(p.Steps) || back.Steps[3].Package.ID() != "product@23.1.0" ||
		!back.Nodes[0].Packages[2].Earliest.Equal(now.Add(24*time.Hour)) || !back.Nodes[0].Packages[2].Equal(p.Nodes[0].Packages[2].Package) {
		t.Errorf("round trip lost data: %+v", back)
	}
}

func TestCompareNames(t *testing.T) {
	names := []string{"n10", "n2", "n1", "b", "a10b", "a9b", "n01", ""}
	slices.SortFunc(names, compareNames)
	if want := []string{"", "a9b", "a10b", "b", "n01", "n1", "n2", "n10"}; !slices.Equal(names, want) {
		t.Errorf("sorted %q, want %q", names, want)
	}
}
