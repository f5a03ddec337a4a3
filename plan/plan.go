package plan

import (
	"cmp"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/airlock-project/airlock/catalog"
)

// The strategies Build knows, as spelled on the command line.
const (
	// StrategySingle installs one node: its packages, then a verify step.
	StrategySingle = "single"
	// StrategyRolling takes nodes out of service MaxUnavailable at a time:
	// drain, wait for connections, install, verify, undrain; traffic nodes
	// first, then backup, management, and the primary last.
	StrategyRolling = "rolling"
	// StrategyFailoverSync installs the primary first (the pair is down
	// meanwhile), then the backup, then re-pairs them.
	StrategyFailoverSync = "failover-sync"
	// StrategyFailoverAsync installs the backup first, verifies it,
	// promotes it to primary, installs the old primary and re-pairs it as
	// backup.
	StrategyFailoverAsync = "failover-async"
	// StrategyAtlas distributes to every node, then upgrades the backup
	// with half of every region's traffic nodes, promotes the backup,
	// upgrades the other half and the old primary, and re-pairs.
	StrategyAtlas = "atlas"
)

// strategies lists the strategy names in the order of the documentation.
var strategies = []string{StrategySingle, StrategyRolling, StrategyFailoverSync, StrategyFailoverAsync, StrategyAtlas}

// The node roles. An empty role is taken as RoleTraffic.
const (
	RolePrimary    = "primary"
	RoleBackup     = "backup"
	RoleTraffic    = "traffic"
	RoleManagement = "management"
)

// DefaultDrainTimeout bounds the wait for a drained node's client
// connections to end when Options.DrainTimeout is zero.
const DefaultDrainTimeout = 30 * time.Minute

// ParseStrategy validates a strategy name. The empty string is accepted and
// returned as is: Build then chooses rolling for several nodes and single
// for one. Any other name than the Strategy constants is an ErrStrategy
// (usage class) that lists the valid names.
func ParseStrategy(s string) (string, error) {
	if s == "" || slices.Contains(strategies, s) {
		return s, nil
	}
	if len(s) > 40 {
		s = s[:40] + "…"
	}
	return "", fmt.Errorf("%w %q: want %s", ErrStrategy, s, strings.Join(strategies, ", "))
}

// Node is what Build knows of one node of the cluster.
type Node struct {
	Name string `json:"name"`
	// Role is primary, backup, traffic or management; empty means traffic.
	Role string `json:"role"`
	// Region groups traffic nodes for rolling and atlas; empty is a region
	// of its own.
	Region string `json:"region,omitempty"`
	// Installed maps each component to its installed version.
	Installed map[string]catalog.Version `json:"installed"`
	// Drained reports whether the node is out of its load balancer now.
	Drained bool `json:"drained,omitempty"`
	// Connections is the last known count of client connections, used only
	// in the wording of wait-connections steps.
	Connections int `json:"connections,omitempty"`
}

// Install records a package installed on a node at some time, so that its
// settle delay carries over into a new plan (after an interrupted run, or
// a rollout in several sessions).
type Install struct {
	Node    string          `json:"node"`
	Package catalog.Package `json:"package"`
	At      time.Time       `json:"at"`
}

// Options select and tune a plan. The zero Options plans every node with
// the default strategy, at the current time, respecting settle delays.
type Options struct {
	// Strategy is one of the Strategy constants, or "" for rolling when
	// several nodes are selected and single for one.
	Strategy string
	// Nodes restricts the plan to these nodes (--node); empty means all.
	Nodes []string
	// MaxUnavailable is how many nodes rolling takes out of service at a
	// time (also for the non-pair nodes of failover strategies and the
	// management nodes of atlas); 0 means 1.
	MaxUnavailable int
	// DrainTimeout bounds each wait-connections step; 0 means
	// DefaultDrainTimeout.
	DrainTimeout time.Duration
	// Now is the time the plan starts; zero means time.Now().
	Now time.Time
	// SkipSettle ignores settle delays: no settle steps, no Earliest.
	SkipSettle bool
	// History lists earlier installs; for each node and kind, the latest
	// one (the last listed among equal times) delays the node's next
	// package of that kind by its settle. May be nil.
	History []Install
}

// Plan is the whole procedure that brings the selected nodes to the newest
// versions. Its JSON form (lower-case keys) is what `airlock plan --json`
// prints; every node's packages appear, in install order, before the steps.
type Plan struct {
	// ID identifies the rollout: it depends on the strategy and on every
	// selected node's target versions only, so a plan rebuilt after part
	// of it ran has the same ID, and a new bundle gives a new one.
	ID       string    `json:"id"`
	Strategy string    `json:"strategy"`
	Created  time.Time `json:"created"`
	// Nodes are the selected nodes in the order the steps first install
	// on them, then the nodes that are up to date, by name.
	Nodes []NodePlan `json:"nodes"`
	// Steps are numbered from 1, in order of execution.
	Steps []Step `json:"steps"`
}

// NodePlan is one node's part of a plan.
type NodePlan struct {
	Node   string `json:"node"`
	Role   string `json:"role"`
	Region string `json:"region,omitempty"`
	// UpToDate is true when the node needs no package; it then has no
	// install steps.
	UpToDate bool `json:"up_to_date"`
	// Sequence lists the packages' IDs ("product@22.1.0") in install order.
	Sequence []string `json:"sequence"`
	// Packages are the packages to install, in order (see Sequence).
	Packages []PlannedPackage `json:"packages"`
}

// PlannedPackage is one package of a node's sequence.
type PlannedPackage struct {
	catalog.Package
	// Earliest is set when a settle delay applies: the package is not to
	// be installed before it. It assumes that every earlier step takes no
	// time, so it is a lower bound.
	Earliest time.Time `json:"earliest,omitzero"`
}

// StepKind says what a step does.
type StepKind string

// The step kinds.
const (
	// StepDistribute stages Packages on Node (atlas does it first).
	StepDistribute StepKind = "distribute"
	// StepDrain takes Node out of its load balancer: no new connections.
	StepDrain StepKind = "drain"
	// StepWaitConnections waits until Node's client connections end, for
	// at most Timeout; then the executor goes on.
	StepWaitConnections StepKind = "wait-connections"
	// StepSettle waits until Earliest before Package is installed on Node:
	// the settle delay of the previous package of its kind.
	StepSettle StepKind = "settle"
	// StepInstall installs Package on Node (never before Earliest, unless
	// settle delays are skipped).
	StepInstall StepKind = "install"
	// StepVerify is a health gate: Node answers, its clock is right and it
	// runs the versions in Expect.
	StepVerify StepKind = "verify"
	// StepUndrain puts Node back into its load balancer.
	StepUndrain StepKind = "undrain"
	// StepPromote makes Node the primary and Peer, the old primary, its
	// backup, in one step: the pair never has two primaries or none.
	StepPromote StepKind = "promote"
	// StepPair re-pairs Node as the backup of Peer, the primary, and checks
	// that the pair has exactly one primary.
	StepPair StepKind = "pair"
)

// Step is one action of a plan.
type Step struct {
	// N is the step's number, from 1.
	N int `json:"n"`
	// ID depends only on what the step does, e.g. "drain:n3",
	// "install:n2:product@22.1.0"; it is unique within the plan.
	ID   string   `json:"id"`
	Kind StepKind `json:"kind"`
	// Wave groups steps that may run concurrently (see the package
	// documentation); 0 means the step runs alone.
	Wave int `json:"wave,omitempty"`
	// Node is the node acted on, with its role and region at planning time.
	Node   string `json:"node"`
	Role   string `json:"role,omitempty"`
	Region string `json:"region,omitempty"`
	// Peer is the other node of the pair for promote and pair steps.
	Peer string `json:"peer,omitempty"`
	// Package is set for install and settle steps.
	Package *catalog.Package `json:"package,omitempty"`
	// Packages is set for distribute steps.
	Packages []catalog.Package `json:"packages,omitempty"`
	// Expect is set for verify steps: every component the node must run,
	// at the version it must report.
	Expect map[string]catalog.Version `json:"expect,omitempty"`
	// Earliest is set for settle steps and for install steps that a settle
	// delay holds back (see PlannedPackage.Earliest).
	Earliest time.Time `json:"earliest,omitzero"`
	// Timeout bounds a wait-connections step.
	Timeout catalog.Duration `json:"timeout,omitempty"`
	// Text says what to do in the words of an operator.
	Text string `json:"text"`
}

// Build plans the rollout of available to the nodes selected by o.Nodes
// with o's strategy. For each selected node, Sequence gives the packages in
// install order; the strategy orders the nodes and adds the drains, waits,
// verifications, promotions and re-pairing around the installs:
//
//   - single: the one selected node: install, verify.
//   - rolling: waves of at most MaxUnavailable nodes of one role, never
//     every node of a region of the cluster at once (unless the region has
//     one node): drain each, wait for their connections, then per node
//     install, verify, undrain. Traffic nodes first, then backup,
//     management, and the primary last; names in natural order.
//   - failover-sync: install and verify the primary, then the backup, then
//     re-pair; other nodes (traffic, management) follow, rolling. The pair
//     is not drained.
//   - failover-async: install and verify the backup, promote it (the old
//     primary becomes its backup in the same step), install and verify
//     the old primary, re-pair it as backup; other nodes follow, rolling.
//   - atlas: distribute to every node that needs packages; in each region
//     drain half the traffic nodes (rounded down: a region with one
//     traffic node keeps it serving until the second half), wait for
//     their connections; install the backup and the drained half; promote
//     the backup; undrain that half; drain and install the other half;
//     management nodes follow, rolling; install the old primary; re-pair
//     it as backup; undrain everything.
//
// Nodes that need nothing get no steps; when only part of a procedure is
// left (after an interrupted run), only that part is planned: a promotion
// only when the primary needs packages, a re-pairing only when a pair node
// was installed. Nodes drained at planning time are undrained: first if
// they need nothing, otherwise when their installs are done (at the end
// when the strategy would not drain them).
//
// Settle: a package with settle S holds back the next package of the same
// kind on the same node until S after the first was installed (per
// o.History, or per the plan assuming steps take no time but settle
// waits); the plan shows a settle step before such an install.
//
// Errors: an unknown strategy, node or option is of the usage class; a
// strategy that does not fit the selected nodes (ErrMisfit) and an
// inconsistent cluster (ErrCluster) are of the policy class; a node whose
// newest versions cannot be reached gives an *UnreachableError naming the
// node (several nodes: joined with errors.Join). On error there is no plan.
func Build(nodes []Node, available []catalog.Package, o Options) (*Plan, error) {
	strategy, err := ParseStrategy(o.Strategy)
	if err != nil {
		return nil, err
	}
	if o.MaxUnavailable < 0 {
		return nil, fmt.Errorf("%w: --max-unavailable %d: want 1 or more", ErrOptions, o.MaxUnavailable)
	}
	if o.MaxUnavailable == 0 {
		o.MaxUnavailable = 1
	}
	if o.DrainTimeout < 0 {
		return nil, fmt.Errorf("%w: --drain-timeout %s: want a positive duration", ErrOptions, o.DrainTimeout)
	}
	if o.DrainTimeout == 0 {
		o.DrainTimeout = DefaultDrainTimeout
	}
	if o.Now.IsZero() {
		o.Now = time.Now()
	}
	o.Now = o.Now.UTC()

	sel, regionSize, err := selectNodes(nodes, o.Nodes)
	if err != nil {
		return nil, err
	}
	if strategy == "" {
		strategy = StrategySingle
		if len(sel) > 1 {
			strategy = StrategyRolling
		}
	}
	if err := fit(strategy, sel); err != nil {
		return nil, err
	}

	var errs []error
	for _, m := range sel {
		seq, err := Sequence(m.Installed, available)
		var ue *UnreachableError
		if errors.As(err, &ue) {
			ue.Node = m.Name
			errs = append(errs, ue)
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("node %s: %w", m.Name, err)
		}
		m.seq = seq
		m.final = maps.Clone(m.Installed)
		if m.final == nil {
			m.final = map[string]catalog.Version{}
		}
		for _, p := range seq {
			m.final[p.Name] = p.Version
		}
	}
	switch len(errs) {
	case 0:
	case 1:
		return nil, errs[0]
	default:
		return nil, errors.Join(errs...)
	}

	b := &builder{o: o, regionSize: regionSize, drained: map[string]bool{}}
	for _, m := range sel {
		b.drained[m.Name] = m.Drained
	}
	b.undrainIdle(sel)
	switch strategy {
	case StrategySingle:
		b.install(sel[0], 0)
	case StrategyRolling:
		b.rolling(sel)
	case StrategyFailoverSync, StrategyFailoverAsync:
		p, bk, others := pair(sel)
		b.failover(strategy == StrategyFailoverSync, p, bk, others)
	case StrategyAtlas:
		b.atlas(sel)
	}
	b.undrainAll(sel)

	pl := &Plan{ID: planID(strategy, sel), Strategy: strategy, Created: o.Now, Steps: b.finish(sel)}
	pl.Nodes = nodePlans(sel, pl.Steps)
	return pl, nil
}

// member is a selected node while a plan is built.
type member struct {
	Node
	seq   []catalog.Package
	final map[string]catalog.Version
	// planned holds the Earliest of each package of seq, by ID.
	planned map[string]time.Time
}

func (m *member) outdated() bool { return len(m.seq) > 0 }

// selectNodes validates the cluster, applies the --node filter and returns
// the selected nodes in natural order of names, with the size of every
// region of the whole cluster.
func selectNodes(nodes []Node, names []string) ([]*member, map[string]int, error) {
	all := map[string]*member{}
	regionSize := map[string]int{}
	for _, n := range nodes {
		if n.Name == "" {
			return nil, nil, fmt.Errorf("%w: a node has no name", ErrCluster)
		}
		if all[n.Name] != nil {
			return nil, nil, fmt.Errorf("%w: two nodes are named %s", ErrCluster, n.Name)
		}
		switch n.Role {
		case "":
			n.Role = RoleTraffic
		case RolePrimary, RoleBackup, RoleTraffic, RoleManagement:
		default:
			return nil, nil, fmt.Errorf("%w: node %s has role %q: want primary, backup, traffic or management", ErrCluster, n.Name, n.Role)
		}
		all[n.Name] = &member{Node: n}
		regionSize[n.Region]++
	}
	if len(all) == 0 {
		return nil, nil, fmt.Errorf("%w: the cluster has no node: add nodes with 'airlock node add'", ErrNoNode)
	}
	var sel []*member
	if len(names) == 0 {
		sel = slices.Collect(maps.Values(all))
	} else {
		for _, name := range names {
			m := all[name]
			if m == nil {
				known := slices.SortedFunc(maps.Keys(all), compareNames)
				return nil, nil, fmt.Errorf("%w: --node %s: the cluster has %s", ErrNoNode, name, strings.Join(known, ", "))
			}
			if !slices.Contains(sel, m) {
				sel = append(sel, m)
			}
		}
	}
	slices.SortFunc(sel, func(a, b *member) int { return compareNames(a.Name, b.Name) })
	return sel, regionSize, nil
}

// fit refuses a strategy that does not fit the selected nodes.
func fit(strategy string, sel []*member) error {
	switch strategy {
	case StrategySingle:
		if len(sel) != 1 {
			return fmt.Errorf("%w: single installs one node and %d are selected (%s): choose one with --node, or use --strategy rolling",
				ErrMisfit, len(sel), joinNames(sel))
		}
	case StrategyFailoverSync, StrategyFailoverAsync, StrategyAtlas:
		var prim, back []*member
		for _, m := range sel {
			switch m.Role {
			case RolePrimary:
				prim = append(prim, m)
			case RoleBackup:
				back = append(back, m)
			}
		}
		if len(prim) != 1 || len(back) != 1 {
			return fmt.Errorf("%w: %s needs exactly one primary and one backup among the selected nodes, and they have primary: %s; backup: %s: give the nodes those roles (airlock-node init --role), select the pair with --node, or choose another --strategy",
				ErrMisfit, strategy, joinNames(prim), joinNames(back))
		}
		if strategy != StrategyAtlas {
			return nil
		}
		traffic := map[string]int{}
		var regions []string
		for _, m := range sel {
			if !slices.Contains(regions, m.Region) {
				regions = append(regions, m.Region)
			}
			if m.Role == RoleTraffic {
				traffic[m.Region]++
			}
		}
		slices.Sort(regions)
		for _, r := range regions {
			if traffic[r] == 0 {
				var in []*member
				for _, m := range sel {
					if m.Region == r {
						in = append(in, m)
					}
				}
				return fmt.Errorf("%w: atlas needs a traffic node in every region, and %s has none (%s): add one, or choose another --strategy",
					ErrMisfit, regionName(r), joinRoles(in))
			}
		}
	}
	return nil
}

// pair returns the primary and the backup among sel, which fit has
// checked, and the other nodes.
func pair(sel []*member) (p, b *member, others []*member) {
	for _, m := range sel {
		switch m.Role {
		case RolePrimary:
			p = m
		case RoleBackup:
			b = m
		default:
			others = append(others, m)
		}
	}
	return p, b, others
}

// builder accumulates the steps of a plan.
type builder struct {
	o          Options
	regionSize map[string]int
	steps      []Step
	// drained is each selected node's drained state after the steps so far.
	drained map[string]bool
	wave    int
}

func (b *builder) newWave() int {
	b.wave++
	return b.wave
}

func (b *builder) add(kind StepKind, m *member, wave int) *Step {
	b.steps = append(b.steps, Step{Kind: kind, Wave: wave, Node: m.Name, Role: m.Role, Region: m.Region})
	return &b.steps[len(b.steps)-1]
}

// drain drains each of ms (unless it already is), then waits for their
// client connections to end.
func (b *builder) drain(ms []*member, wave int) {
	for _, m := range ms {
		if !b.drained[m.Name] {
			s := b.add(StepDrain, m, wave)
			s.ID = "drain:" + m.Name
			s.Text = "drain " + m.Name + " (" + roleRegion(m.Role, m.Region) + ")"
			b.drained[m.Name] = true
		}
	}
	for _, m := range ms {
		s := b.add(StepWaitConnections, m, wave)
		s.ID = "wait-connections:" + m.Name
		s.Timeout = catalog.Duration(b.o.DrainTimeout)
		open := "none open now"
		if m.Connections > 0 {
			open = fmt.Sprintf("%d open now", m.Connections)
		}
		s.Text = fmt.Sprintf("wait for %s's client connections to end (%s; at most %s)", m.Name, open, FormatDuration(b.o.DrainTimeout))
	}
}

// undrain undrains m if it is drained.
func (b *builder) undrain(m *member, wave int) {
	if !b.drained[m.Name] {
		return
	}
	s := b.add(StepUndrain, m, wave)
	s.ID = "undrain:" + m.Name
	s.Text = "undrain " + m.Name
	b.drained[m.Name] = false
}

// install adds m's installs and a verify step; nothing when m is up to date.
func (b *builder) install(m *member, wave int) {
	if !m.outdated() {
		return
	}
	for _, p := range m.seq {
		s := b.add(StepInstall, m, wave)
		s.ID = "install:" + m.Name + ":" + p.ID()
		s.Package = &p
		s.Text = "install " + p.Name + " " + p.Version.String() + " on " + m.Name
		if p.Reboot {
			s.Text += " (reboots)"
		}
	}
	s := b.add(StepVerify, m, wave)
	s.ID = "verify:" + m.Name
	s.Expect = maps.Clone(m.final)
	s.Text = "verify " + m.Name + " runs " + changed(m.seq)
}

// changed lists the final version of every component seq raises, in kind
// order: "base 3.4.0, product 23.1.0".
func changed(seq []catalog.Package) string {
	last := map[string]catalog.Package{}
	for _, p := range seq {
		last[p.Name] = p
	}
	ps := slices.SortedFunc(maps.Values(last), func(a, b catalog.Package) int {
		return cmp.Or(cmp.Compare(rank(a), rank(b)), cmp.Compare(a.Name, b.Name))
	})
	parts := make([]string, len(ps))
	for i, p := range ps {
		parts[i] = p.Name + " " + p.Version.String()
	}
	return strings.Join(parts, ", ")
}

func (b *builder) promote(m, old *member) {
	s := b.add(StepPromote, m, 0)
	s.ID = "promote:" + m.Name
	s.Peer = old.Name
	s.Text = "promote " + m.Name + " to primary (" + old.Name + " becomes backup)"
}

func (b *builder) pair(backup, primary *member) {
	s := b.add(StepPair, backup, 0)
	s.ID = "pair:" + backup.Name
	s.Peer = primary.Name
	s.Text = "re-pair " + backup.Name + " as backup of " + primary.Name
}

// undrainIdle undrains, first, the drained nodes that need nothing: an
// interrupted run left them out of service.
func (b *builder) undrainIdle(sel []*member) {
	var idle []*member
	for _, m := range sel {
		if m.Drained && !m.outdated() {
			idle = append(idle, m)
		}
	}
	if len(idle) > 0 {
		w := b.newWave()
		for _, m := range idle {
			b.undrain(m, w)
		}
	}
}

// undrainAll undrains, last, every node still drained, in the order the
// plan drained them.
func (b *builder) undrainAll(sel []*member) {
	var left []*member
	for _, m := range sel {
		if b.drained[m.Name] {
			left = append(left, m)
		}
	}
	order := map[string]int{}
	for i, s := range b.steps {
		if s.Kind == StepDrain {
			order[s.Node] = i + 1
		}
	}
	slices.SortStableFunc(left, func(x, y *member) int { return cmp.Compare(order[x.Name], order[y.Name]) })
	if len(left) > 0 {
		w := b.newWave()
		for _, m := range left {
			b.undrain(m, w)
		}
	}
}

// roleClass orders roles for rolling: the primary last.
func roleClass(role string) int {
	switch role {
	case RoleTraffic:
		return 0
	case RoleBackup:
		return 1
	case RoleManagement:
		return 2
	}
	return 3
}

// rolling takes the outdated nodes of ms out of service in waves.
func (b *builder) rolling(ms []*member) {
	var todo []*member
	for _, m := range ms {
		if m.outdated() {
			todo = append(todo, m)
		}
	}
	slices.SortStableFunc(todo, func(x, y *member) int {
		return cmp.Or(cmp.Compare(roleClass(x.Role), roleClass(y.Role)), compareNames(x.Name, y.Name))
	})
	for len(todo) > 0 {
		class := roleClass(todo[0].Role)
		var wave, rest []*member
		inRegion := map[string]int{}
		for _, m := range todo {
			limit := max(1, b.regionSize[m.Region]-1)
			if roleClass(m.Role) != class || len(wave) == b.o.MaxUnavailable || inRegion[m.Region] == limit {
				rest = append(rest, m)
				continue
			}
			wave = append(wave, m)
			inRegion[m.Region]++
		}
		w := b.newWave()
		b.drain(wave, w)
		for _, m := range wave {
			b.install(m, w)
			b.undrain(m, w)
		}
		todo = rest
	}
}

// failover plans the pair p (primary), bk (backup), then the others.
func (b *builder) failover(sync bool, p, bk *member, others []*member) {
	if sync {
		b.install(p, 0)
		b.install(bk, 0)
		if p.outdated() || bk.outdated() {
			b.pair(bk, p)
		}
	} else {
		b.install(bk, 0)
		switch {
		case p.outdated():
			b.promote(bk, p)
			b.install(p, 0)
			b.pair(p, bk)
		case bk.outdated():
			b.pair(bk, p)
		}
	}
	b.rolling(others)
}

// atlas plans the atlas procedure (see Build).
func (b *builder) atlas(sel []*member) {
	start := len(b.steps)
	p, bk, others := pair(sel)
	var mgmt []*member
	byRegion := map[string][]*member{}
	for _, m := range others {
		if m.Role == RoleTraffic {
			byRegion[m.Region] = append(byRegion[m.Region], m)
		} else {
			mgmt = append(mgmt, m)
		}
	}
	var first, second []*member
	for _, r := range slices.Sorted(maps.Keys(byRegion)) {
		traffic := byRegion[r]
		var out []*member
		for _, m := range traffic {
			if m.outdated() {
				out = append(out, m)
			}
		}
		h := min(len(traffic)/2, len(out))
		first = append(first, out[:h]...)
		second = append(second, out[h:]...)
	}

	if bk.outdated() || len(first) > 0 {
		w := b.newWave()
		b.drain(first, w)
		b.install(bk, w)
		for _, m := range first {
			b.install(m, w)
		}
	}
	if p.outdated() {
		b.promote(bk, p)
	}
	if len(first) > 0 {
		w := b.newWave()
		for _, m := range first {
			b.undrain(m, w)
		}
	}
	if len(second) > 0 {
		w := b.newWave()
		b.drain(second, w)
		for _, m := range second {
			b.install(m, w)
		}
	}
	b.rolling(mgmt)
	switch {
	case p.outdated():
		b.install(p, 0)
		b.pair(p, bk)
	case bk.outdated():
		b.pair(bk, p)
	}

	// Distribute first, to the nodes in the order they install (finish
	// renumbers the waves in order of appearance).
	var dist []Step
	w := b.newWave()
	for _, m := range installOrder(sel, b.steps) {
		if !m.outdated() {
			continue
		}
		dist = append(dist, Step{Kind: StepDistribute, Wave: w, Node: m.Name, Role: m.Role, Region: m.Region,
			ID: "distribute:" + m.Name, Packages: slices.Clone(m.seq),
			Text: "distribute " + list(m.seq) + " to " + m.Name})
	}
	b.steps = slices.Insert(b.steps, start, dist...)
}

// list names packages: "base 3.4.0, product 22.1.0".
func list(ps []catalog.Package) string {
	parts := make([]string, len(ps))
	for i, p := range ps {
		parts[i] = p.Name + " " + p.Version.String()
	}
	return strings.Join(parts, ", ")
}

// installOrder returns sel in the order steps first install on each node,
// then the others in their order in sel.
func installOrder(sel []*member, steps []Step) []*member {
	first := map[string]int{}
	for i, s := range steps {
		if _, ok := first[s.Node]; !ok && s.Kind == StepInstall {
			first[s.Node] = i + 1
		}
	}
	out := slices.Clone(sel)
	slices.SortStableFunc(out, func(x, y *member) int {
		fx, fy := first[x.Name], first[y.Name]
		switch {
		case fx == 0 && fy == 0:
			return 0
		case fx == 0:
			return 1
		case fy == 0:
			return -1
		}
		return cmp.Compare(fx, fy)
	})
	return out
}

type lastInstall struct {
	at  time.Time
	pkg catalog.Package
}

// finish renumbers the waves in order of appearance, inserts settle steps
// and sets Earliest (simulating time: steps take none but settle waits,
// the nodes of a wave proceed concurrently), records each package's
// Earliest on its member, and numbers the steps.
func (b *builder) finish(sel []*member) []Step {
	byName := map[string]*member{}
	for _, m := range sel {
		m.planned = map[string]time.Time{}
		byName[m.Name] = m
	}
	last := map[string]map[catalog.Kind]lastInstall{}
	for _, h := range b.o.History {
		if byName[h.Node] == nil {
			continue
		}
		if last[h.Node] == nil {
			last[h.Node] = map[catalog.Kind]lastInstall{}
		}
		if l, ok := last[h.Node][h.Package.Kind]; !ok || !h.At.Before(l.at) {
			last[h.Node][h.Package.Kind] = lastInstall{at: h.At, pkg: h.Package}
		}
	}

	renum := map[int]int{}
	now, cur := b.o.Now, 0
	waveClock := map[string]time.Time{}
	flush := func() {
		for _, c := range waveClock {
			if c.After(now) {
				now = c
			}
		}
		clear(waveClock)
	}
	out := make([]Step, 0, len(b.steps))
	for _, s := range b.steps {
		if s.Wave != 0 {
			if _, ok := renum[s.Wave]; !ok {
				renum[s.Wave] = len(renum) + 1
			}
			s.Wave = renum[s.Wave]
		}
		if s.Wave == 0 || s.Wave != cur {
			flush()
			cur = s.Wave
		}
		clock := now
		if c, ok := waveClock[s.Node]; ok && s.Wave != 0 {
			clock = c
		}
		if s.Kind == StepInstall {
			p := *s.Package
			if l, ok := last[s.Node][p.Kind]; ok && l.pkg.Settle > 0 && !b.o.SkipSettle {
				settle := time.Duration(l.pkg.Settle)
				bound := l.at.Add(settle).UTC()
				if bound.After(b.o.Now) {
					s.Earliest = bound
					byName[s.Node].planned[p.ID()] = bound
					next := p
					out = append(out, Step{Kind: StepSettle, Wave: s.Wave, Node: s.Node, Role: s.Role, Region: s.Region,
						ID: "settle:" + s.Node + ":" + p.ID(), Package: &next, Earliest: bound,
						Text: fmt.Sprintf("wait until %s before installing %s %s on %s (settle %s after %s %s)",
							fmtTime(bound), p.Name, p.Version, s.Node, FormatDuration(settle), l.pkg.Name, l.pkg.Version)})
				}
				if bound.After(clock) {
					clock = bound
				}
			}
			if last[s.Node] == nil {
				last[s.Node] = map[catalog.Kind]lastInstall{}
			}
			last[s.Node][p.Kind] = lastInstall{at: clock, pkg: p}
		}
		if s.Wave != 0 {
			waveClock[s.Node] = clock
		} else {
			now = clock
		}
		out = append(out, s)
	}
	for i := range out {
		out[i].N = i + 1
	}
	return out
}

// nodePlans summarizes sel in install order.
func nodePlans(sel []*member, steps []Step) []NodePlan {
	out := make([]NodePlan, 0, len(sel))
	for _, m := range installOrder(sel, steps) {
		np := NodePlan{Node: m.Name, Role: m.Role, Region: m.Region, UpToDate: !m.outdated(),
			Sequence: make([]string, 0, len(m.seq)), Packages: make([]PlannedPackage, 0, len(m.seq))}
		for _, p := range m.seq {
			np.Sequence = append(np.Sequence, p.ID())
			np.Packages = append(np.Packages, PlannedPackage{Package: p, Earliest: m.planned[p.ID()]})
		}
		out = append(out, np)
	}
	return out
}

// planID digests the strategy and every selected node's target versions.
func planID(strategy string, sel []*member) string {
	h := sha256.New()
	fmt.Fprintf(h, "airlock-plan/v1\n%s\n", strategy)
	for _, m := range sel {
		fmt.Fprintf(h, "%s", m.Name)
		for _, k := range slices.Sorted(maps.Keys(m.final)) {
			fmt.Fprintf(h, " %s=%s", k, m.final[k])
		}
		fmt.Fprintln(h)
	}
	return hex.EncodeToString(h.Sum(nil)[:8])
}

// compareNames orders names naturally: runs of digits compare as numbers,
// so n2 comes before n10.
func compareNames(a, b string) int {
	x, y := a, b
	for x != "" && y != "" {
		if isDigit(x[0]) && isDigit(y[0]) {
			i, j := digits(x), digits(y)
			nx, ny := strings.TrimLeft(x[:i], "0"), strings.TrimLeft(y[:j], "0")
			if c := cmp.Or(cmp.Compare(len(nx), len(ny)), strings.Compare(nx, ny)); c != 0 {
				return c
			}
			x, y = x[i:], y[j:]
			continue
		}
		if x[0] != y[0] {
			return cmp.Compare(x[0], y[0])
		}
		x, y = x[1:], y[1:]
	}
	return cmp.Or(cmp.Compare(len(x), len(y)), strings.Compare(a, b))
}

func isDigit(c byte) bool { return '0' <= c && c <= '9' }

func digits(s string) int {
	i := 0
	for i < len(s) && isDigit(s[i]) {
		i++
	}
	return i
}

// joinNames lists names for a message: "n1, n2", or "none".
func joinNames(ms []*member) string {
	if len(ms) == 0 {
		return "none"
	}
	names := make([]string, len(ms))
	for i, m := range ms {
		names[i] = m.Name
	}
	return strings.Join(names, ", ")
}

// joinRoles lists nodes with their roles: "n1 primary, n2 backup".
func joinRoles(ms []*member) string {
	parts := make([]string, len(ms))
	for i, m := range ms {
		parts[i] = m.Name + " " + m.Role
	}
	return strings.Join(parts, ", ")
}

func regionName(r string) string {
	if r == "" {
		return "the nodes without a region"
	}
	return "region " + r
}

// roleRegion is "traffic, eu", or "traffic" without a region.
func roleRegion(role, region string) string {
	if region == "" {
		return role
	}
	return role + ", " + region
}
