package plan

import (
	"cmp"
	"maps"
	"slices"

	"github.com/airlock-project/airlock/catalog"
)

// Sequence returns the order in which a node with the installed versions
// installs packages from available to reach the newest available version
// of every component it has installed, and of every component that a
// package on the way requires.
//
// It simulates the installation: at each step it considers the packages
// newer than what the simulated node has (or of a component it lacks)
// whose requirements all hold, picks among them the lowest kind rank (base,
// product, license, hotfix; ties by component name), and for that
// component the newest version whose requirements hold, so that an
// intermediate version is installed only when a requirement demands it. It
// stops when nothing newer is installable.
//
// A component the node does not have is included only when the
// requirements of one of its packages hold on the way (a license that
// requires product >= 23.1.0 comes after product 23.1.0). If newer versions
// of a component the node has (or gains) remain out of reach, Sequence
// returns the sequence it could build together with an *UnreachableError
// that explains, for each such component, which requirement of which
// package no available package can meet.
//
// Sequence neither modifies its arguments nor keeps them. The result is
// deterministic for equal inputs whatever the order of available; it
// always terminates, cycles of requirements included, because every step
// strictly raises one component's version.
func Sequence(installed map[string]catalog.Version, available []catalog.Package) ([]catalog.Package, error) {
	sim := maps.Clone(installed)
	if sim == nil {
		sim = map[string]catalog.Version{}
	}
	pkgs := slices.Clone(available)
	// Name, then newest first, then digest: with strict comparisons below,
	// the first package that wins a tie is always the same one.
	slices.SortFunc(pkgs, func(a, b catalog.Package) int {
		return cmp.Or(cmp.Compare(a.Name, b.Name), b.Version.Compare(a.Version), slices.Compare(a.SHA256[:], b.SHA256[:]))
	})

	var seq []catalog.Package
	for {
		best := -1
		for i, p := range pkgs {
			if !newer(sim, p) || unmet(p, sim) >= 0 {
				continue
			}
			if best < 0 || before(p, pkgs[best]) {
				best = i
			}
		}
		if best < 0 {
			break
		}
		p := pkgs[best]
		seq = append(seq, p)
		sim[p.Name] = p.Version
	}

	var blocked []Blocked
	for i, p := range pkgs {
		if i > 0 && pkgs[i-1].Name == p.Name {
			continue // p is not the newest of its component
		}
		if _, has := sim[p.Name]; has && newer(sim, p) {
			blocked = append(blocked, explain(p, sim, pkgs))
		}
	}
	if len(blocked) > 0 {
		slices.SortFunc(blocked, func(a, b Blocked) int {
			return cmp.Or(cmp.Compare(rank(a.Package), rank(b.Package)), cmp.Compare(a.Package.Name, b.Package.Name))
		})
		return seq, &UnreachableError{Blocked: blocked}
	}
	return seq, nil
}

// before reports whether p is preferred over q as the next install: lower
// kind rank, then component name, then the newer version.
func before(p, q catalog.Package) bool {
	if r := cmp.Compare(rank(p), rank(q)); r != 0 {
		return r < 0
	}
	if p.Name != q.Name {
		return p.Name < q.Name
	}
	return p.Version.Compare(q.Version) > 0
}

// rank is the kind's install rank; an unknown kind goes last.
func rank(p catalog.Package) int {
	if r := p.Kind.Rank(); r >= 0 {
		return r
	}
	return 4
}

// newer reports whether installing p would raise (or add) its component.
func newer(sim map[string]catalog.Version, p catalog.Package) bool {
	v, ok := sim[p.Name]
	return !ok || p.Version.Compare(v) > 0
}

// unmet returns the index of p's first requirement that sim does not
// satisfy, or -1 when they all hold.
func unmet(p catalog.Package, sim map[string]catalog.Version) int {
	for i, c := range p.Requires {
		if !c.SatisfiedBy(sim) {
			return i
		}
	}
	return -1
}

// explain follows the unmet requirements from target, which is newer than
// sim but not installable, down to one that no available package can meet
// (or back to a package already on the path: a cycle). pkgs is sorted by
// name, newest first.
func explain(target catalog.Package, sim map[string]catalog.Version, pkgs []catalog.Package) Blocked {
	seen := map[string]bool{}
	cur := target
	var chain []Need
	for {
		seen[cur.ID()] = true
		i := unmet(cur, sim)
		if i < 0 {
			// Sequence installs every newer package whose requirements
			// hold, so this cannot happen; name the package rather than
			// invent a requirement.
			return Blocked{Package: target, Blocker: cur, Needs: catalog.Constraint{Name: cur.Name, Op: catalog.OpEQ, Version: cur.Version}, Have: sim[cur.Name]}
		}
		c := cur.Requires[i]
		chain = append(chain, Need{Package: cur, Needs: c})
		b := Blocked{Package: target, Blocker: cur, Needs: c, Have: sim[c.Name], Chain: chain}
		// The nearest step that would meet c: the oldest newer package of
		// c.Name that c allows (older than cur when c is on cur's own
		// component: cur cannot be its own prerequisite).
		next, ok := catalog.Package{}, false
		for _, q := range pkgs {
			if q.Name == c.Name && newer(sim, q) && c.Allows(q.Version) && (q.Name != cur.Name || q.Version.Less(cur.Version)) {
				next, ok = q, true
			}
		}
		if !ok {
			return b
		}
		if seen[next.ID()] {
			b.Cycle = true
			return b
		}
		cur = next
	}
}
