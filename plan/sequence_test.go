package plan

import (
	"crypto/sha256"
	"errors"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"github.com/airlock-project/airlock/catalog"
	"github.com/airlock-project/airlock/fault"
)

// pkg builds a package "name@version kind" with requirements; its digest is
// derived from name and version so that every package is distinct.
func pkg(t testing.TB, id string, kind catalog.Kind, requires ...string) catalog.Package {
	t.Helper()
	name, ver, ok := strings.Cut(id, "@")
	if !ok {
		t.Fatalf("bad id %q", id)
	}
	p := catalog.Package{
		Name:    name,
		Kind:    kind,
		Version: catalog.MustVersion(ver),
		SHA256:  catalog.Digest(sha256.Sum256([]byte(id))),
		Size:    1,
	}
	for _, r := range requires {
		c, err := catalog.ParseConstraint(r)
		if err != nil {
			t.Fatal(err)
		}
		p.Requires = append(p.Requires, c)
	}
	if err := p.Validate(); err != nil {
		t.Fatal(err)
	}
	return p
}

func inv(kv ...string) map[string]catalog.Version {
	m := map[string]catalog.Version{}
	for _, s := range kv {
		k, v, _ := strings.Cut(s, "=")
		m[k] = catalog.MustVersion(v)
	}
	return m
}

func ids(ps []catalog.Package) []string {
	out := make([]string, len(ps))
	for i, p := range ps {
		out[i] = p.ID()
	}
	return out
}

// contractCatalog is the catalog of shared/contract-test.sh.
func contractCatalog(t testing.TB) []catalog.Package {
	return []catalog.Package{
		pkg(t, "base@3.4.0", catalog.KindBase, "base >= 3.3.2"),
		pkg(t, "product@22.1.0", catalog.KindProduct, "base >= 3.4.0", "product >= 21.1.0"),
		pkg(t, "product@23.1.0", catalog.KindProduct, "product >= 22.1.0"),
		pkg(t, "license@1.1.0", catalog.KindLicense, "product >= 23.1.0"),
	}
}

func TestSequence(t *testing.T) {
	B, P, L, H := catalog.KindBase, catalog.KindProduct, catalog.KindLicense, catalog.KindHotfix
	for _, tc := range []struct {
		name      string
		installed map[string]catalog.Version
		available []catalog.Package
		want      []string
		// unreachable, if set, are the expected explanations, in order.
		unreachable []string
	}{
		{
			name:      "contract scenario: base, every product step, then the new license",
			installed: inv("base=3.3.2", "product=21.1.0"),
			available: contractCatalog(t),
			want:      []string{"base@3.4.0", "product@22.1.0", "product@23.1.0", "license@1.1.0"},
		},
		{
			name:      "already up to date",
			installed: inv("base=3.4.0", "product=23.1.0", "license=1.1.0"),
			available: contractCatalog(t),
			want:      nil,
		},
		{
			name:      "newer than anything available",
			installed: inv("base=9", "product=99", "license=2"),
			available: contractCatalog(t),
			want:      nil,
		},
		{
			name:      "partly done: only what is missing",
			installed: inv("base=3.4.0", "product=22.1.0"),
			available: contractCatalog(t),
			want:      []string{"product@23.1.0", "license@1.1.0"},
		},
		{
			name:      "empty inventory gets only what needs nothing",
			installed: nil,
			available: append(contractCatalog(t), pkg(t, "tools@1.0", H)),
			want:      []string{"tools@1.0"},
		},
		{
			name:      "nothing available",
			installed: inv("base=1"),
			available: nil,
			want:      nil,
		},
		{
			name:      "intermediate skipped when the newest is allowed directly",
			installed: inv("product=21.1.0"),
			available: []catalog.Package{
				pkg(t, "product@22.1.0", P, "product >= 21.0"),
				pkg(t, "product@22.2.0", P, "product >= 21.0"),
				pkg(t, "product@23.1.0", P, "product >= 21.1.0"),
			},
			want: []string{"product@23.1.0"},
		},
		{
			name:      "chain: each step requires the previous one",
			installed: inv("product=1"),
			available: []catalog.Package{
				pkg(t, "product@4", P, "product >= 3"),
				pkg(t, "product@2", P, "product >= 1"),
				pkg(t, "product@3", P, "product >= 2"),
			},
			want: []string{"product@2", "product@3", "product@4"},
		},
		{
			name:      "chain takes the longest allowed jump at each step",
			installed: inv("product=1"),
			available: []catalog.Package{
				pkg(t, "product@2", P, "product >= 1"),
				pkg(t, "product@3", P, "product >= 1"),
				pkg(t, "product@4", P, "product >= 2"),
				pkg(t, "product@5", P, "product >= 4"),
			},
			want: []string{"product@3", "product@4", "product@5"},
		},
		{
			name:      "prerequisite across components: base first even when listed last",
			installed: inv("base=1", "product=1"),
			available: []catalog.Package{
				pkg(t, "product@2", P, "base >= 2"),
				pkg(t, "base@2", B),
			},
			want: []string{"base@2", "product@2"},
		},
		{
			name:      "a base update needed only after a product step",
			installed: inv("base=1", "product=1"),
			available: []catalog.Package{
				pkg(t, "base@2", B, "product >= 2"),
				pkg(t, "product@2", P),
				pkg(t, "product@3", P, "base >= 2"),
			},
			want: []string{"product@2", "base@2", "product@3"},
		},
		{
			name:      "kind rank orders independent packages; names break ties",
			installed: inv("base=1", "product=1", "license=1", "hotfix=1", "agent=1"),
			available: []catalog.Package{
				pkg(t, "hotfix@2", H),
				pkg(t, "license@2", L),
				pkg(t, "product@2", P),
				pkg(t, "base@2", B),
				pkg(t, "agent@2", P),
			},
			want: []string{"base@2", "agent@2", "product@2", "license@2", "hotfix@2"},
		},
		{
			name:      "new component gated by requires is not included when they fail",
			installed: inv("product=21.1.0"),
			available: []catalog.Package{pkg(t, "license@1.1.0", L, "product >= 23.1.0")},
			want:      nil,
		},
		{
			name:      "new component required by a package on the path",
			installed: inv("product=1"),
			available: []catalog.Package{
				pkg(t, "product@2", P, "agent >= 1"),
				pkg(t, "agent@1", H),
				pkg(t, "agent@2", H, "product >= 2"),
			},
			want: []string{"agent@1", "product@2", "agent@2"},
		},
		{
			name:      "versions compare numerically",
			installed: inv("base=3.9"),
			available: []catalog.Package{
				pkg(t, "base@3.10", B),
				pkg(t, "base@3.8", B),
			},
			want: []string{"base@3.10"},
		},
		{
			name:      "equal version in another spelling is not newer",
			installed: inv("base=3.4"),
			available: []catalog.Package{pkg(t, "base@3.4.0", B)},
			want:      nil,
		},
		{
			name:      "unreachable: a missing intermediate version",
			installed: inv("product=21.1.0"),
			available: []catalog.Package{pkg(t, "product@23.1.0", P, "product >= 22.2.0")},
			want:      nil,
			unreachable: []string{
				"product 23.1.0 needs product >= 22.2.0; no available package reaches 22.2.0 from 21.1.0",
			},
		},
		{
			name:      "unreachable after partial progress; the reachable part is returned",
			installed: inv("base=1", "product=1"),
			available: []catalog.Package{
				pkg(t, "base@2", B),
				pkg(t, "product@2", P),
				pkg(t, "product@3", P, "base >= 5"),
			},
			want: []string{"base@2", "product@2"},
			unreachable: []string{
				"product 3 needs base >= 5; no available package reaches 5 from 2",
			},
		},
		{
			name:      "unreachable through a blocked intermediate",
			installed: inv("base=1", "product=1"),
			available: []catalog.Package{
				pkg(t, "product@2", P, "base >= 9"),
				pkg(t, "product@3", P, "product >= 2"),
			},
			want: nil,
			unreachable: []string{
				"product 3 cannot be reached: product 2 needs base >= 9; no available package reaches 9 from 1",
			},
		},
		{
			name:      "unreachable: prerequisite component not installed",
			installed: inv("product=1"),
			available: []catalog.Package{pkg(t, "product@2", P, "base >= 3")},
			want:      nil,
			unreachable: []string{
				"product 2 needs base >= 3; no available package reaches 3 (base is not installed)",
			},
		},
		{
			name:      "unreachable: an upper bound that only a downgrade would meet",
			installed: inv("base=5", "product=1"),
			available: []catalog.Package{pkg(t, "product@2", P, "base < 4")},
			want:      nil,
			unreachable: []string{
				"product 2 needs base < 4; no available package satisfies it from 5",
			},
		},
		{
			name:      "cycle of requirements does not loop and is named",
			installed: inv("alpha=1", "beta=1"),
			available: []catalog.Package{
				pkg(t, "alpha@2", P, "beta >= 2"),
				pkg(t, "beta@2", P, "alpha >= 2"),
			},
			want: nil,
			unreachable: []string{
				"alpha 2 needs beta >= 2, beta 2 needs alpha >= 2: their requirements form a cycle",
				"beta 2 needs alpha >= 2, alpha 2 needs beta >= 2: their requirements form a cycle",
			},
		},
		{
			name:      "self requirement that can never hold",
			installed: inv("product=1"),
			available: []catalog.Package{pkg(t, "product@2", P, "product >= 2")},
			want:      nil,
			unreachable: []string{
				"product 2 needs product >= 2; no available package reaches 2 from 1",
			},
		},
		{
			name:      "several components unreachable, ordered by kind",
			installed: inv("base=1", "product=1"),
			available: []catalog.Package{
				pkg(t, "product@3", P, "product >= 2"),
				pkg(t, "base@3", B, "base >= 2"),
			},
			want: nil,
			unreachable: []string{
				"base 3 needs base >= 2; no available package reaches 2 from 1",
				"product 3 needs product >= 2; no available package reaches 2 from 1",
			},
		},
		{
			name:      "an unreachable newest version does not hide a reachable older one",
			installed: inv("product=1"),
			available: []catalog.Package{
				pkg(t, "product@2", P),
				pkg(t, "product@3", P, "product = 2.5"),
			},
			want: []string{"product@2"},
			unreachable: []string{
				"product 3 needs product = 2.5; no available package reaches 2.5 from 2",
			},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var before map[string]catalog.Version
			if tc.installed != nil {
				before = inv()
				for k, v := range tc.installed {
					before[k] = v
				}
			}
			avail := slices.Clone(tc.available)
			got, err := Sequence(tc.installed, tc.available)
			if !slices.Equal(ids(got), tc.want) {
				t.Errorf("sequence = %v, want %v", ids(got), tc.want)
			}
			if len(tc.unreachable) == 0 {
				if err != nil {
					t.Fatalf("unexpected error: %v", err)
				}
			} else {
				var ue *UnreachableError
				if !errors.As(err, &ue) {
					t.Fatalf("error = %v, want *UnreachableError", err)
				}
				if !errors.Is(err, ErrUnreachable) || !errors.Is(err, fault.ErrPolicy) || fault.Code(err) != fault.ExitPolicy {
					t.Errorf("error %v is not ErrUnreachable of the policy class", err)
				}
				var msgs []string
				for _, b := range ue.Blocked {
					msgs = append(msgs, b.String())
				}
				if !slices.Equal(msgs, tc.unreachable) {
					t.Errorf("unreachable =\n  %s\nwant\n  %s", strings.Join(msgs, "\n  "), strings.Join(tc.unreachable, "\n  "))
				}
				if err.Error() != strings.Join(tc.unreachable, "; and ") {
					t.Errorf("Error() = %q", err.Error())
				}
			}
			// Arguments untouched.
			for k, v := range before {
				if tc.installed[k].String() != v.String() {
					t.Errorf("installed[%s] changed to %s", k, tc.installed[k])
				}
			}
			if len(before) != len(tc.installed) {
				t.Errorf("installed changed size: %v", tc.installed)
			}
			if !slices.EqualFunc(avail, tc.available, func(a, b catalog.Package) bool { return a.SHA256 == b.SHA256 }) {
				t.Error("available was reordered")
			}
		})
	}
}

// TestSequenceInvariants checks, on random catalogs, what must hold of any
// answer: each step raises its component, its requirements hold when it is
// installed, the result is the same for any order of the catalog, and no
// newer installable package is left behind.
func TestSequenceInvariants(t *testing.T) {
	kinds := []catalog.Kind{catalog.KindBase, catalog.KindProduct, catalog.KindLicense, catalog.KindHotfix}
	names := []string{"base", "product", "license", "hotfix"}
	ops := []string{">=", ">", "=", "<", "!="}
	rng := rand.New(rand.NewPCG(1, 2))
	for iter := 0; iter < 2000; iter++ {
		var avail []catalog.Package
		seen := map[string]bool{}
		for n := rng.IntN(12); n > 0; n-- {
			c := rng.IntN(len(names))
			id := names[c] + "@" + string(rune('1'+rng.IntN(6)))
			if seen[id] {
				continue
			}
			seen[id] = true
			var req []string
			for r := rng.IntN(3); r > 0; r-- {
				req = append(req, names[rng.IntN(len(names))]+" "+ops[rng.IntN(len(ops))]+" "+string(rune('1'+rng.IntN(6))))
			}
			avail = append(avail, pkg(t, id, kinds[c], req...))
		}
		installed := inv()
		for _, n := range names {
			if rng.IntN(3) > 0 {
				installed[n] = catalog.MustVersion(string(rune('1' + rng.IntN(4))))
			}
		}

		seq, err := Sequence(installed, avail)
		shuffled := slices.Clone(avail)
		rng.Shuffle(len(shuffled), func(i, j int) { shuffled[i], shuffled[j] = shuffled[j], shuffled[i] })
		seq2, err2 := Sequence(installed, shuffled)
		if !slices.Equal(ids(seq), ids(seq2)) || (err == nil) != (err2 == nil) || (err != nil && err.Error() != err2.Error()) {
			t.Fatalf("order of the catalog changed the answer: %v / %v vs %v / %v", ids(seq), err, ids(seq2), err2)
		}

		sim := inv()
		for k, v := range installed {
			sim[k] = v
		}
		for _, p := range seq {
			if v, ok := sim[p.Name]; ok && p.Version.Compare(v) <= 0 {
				t.Fatalf("step %s does not raise %s from %s", p.ID(), p.Name, v)
			}
			for _, c := range p.Requires {
				if !c.SatisfiedBy(sim) {
					t.Fatalf("step %s installed while %s does not hold (%v)", p.ID(), c, sim)
				}
			}
			sim[p.Name] = p.Version
		}
		for _, p := range avail {
			v, ok := sim[p.Name]
			if (!ok || p.Version.Compare(v) > 0) && unmet(p, sim) < 0 {
				t.Fatalf("installable %s left out of %v", p.ID(), ids(seq))
			}
		}
		var ue *UnreachableError
		if err != nil && !errors.As(err, &ue) {
			t.Fatalf("error of another type: %v", err)
		}
		// Every component the node ends with is at its newest version
		// unless the error names it.
		named := map[string]bool{}
		if ue != nil {
			for _, b := range ue.Blocked {
				named[b.Package.Name] = true
			}
		}
		for _, p := range avail {
			if v, ok := sim[p.Name]; ok && p.Version.Compare(v) > 0 && !named[p.Name] {
				t.Fatalf("%s is newer than the final %s %s but not reported", p.ID(), p.Name, v)
			}
		}
	}
}
