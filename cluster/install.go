package cluster

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/airlock-project/airlock/catalog"
	"github.com/airlock-project/airlock/node"
	"github.com/airlock-project/airlock/plan"
	"github.com/airlock-project/airlock/progress"
	"github.com/airlock-project/airlock/repo"
)

// Defaults of InstallOptions.
const (
	DefaultJobTimeout   = time.Hour
	DefaultPollInterval = 500 * time.Millisecond
	DefaultHeartbeat    = 30 * time.Second
	// firstPoll is the first wait for a job; later waits double up to
	// PollInterval.
	firstPoll = 20 * time.Millisecond
)

// Hook points of Install, in the order reached for each step: tests kill a
// real airlock process there to prove that a rerun resumes without
// repeating a finished step.
const (
	// HookJobSubmitted: a node accepted an install job, not yet recorded.
	HookJobSubmitted = "job-submitted"
	// HookStepExecuted: a step took effect on the node, not yet recorded.
	HookStepExecuted = "step-executed"
	// HookStepRecorded: the step is recorded as finished in the repository.
	HookStepRecorded = "step-recorded"
)

// InstallOptions tune Install. The zero value plans every registered node
// with the default strategy and runs without asking.
type InstallOptions struct {
	// Strategy, Nodes and MaxUnavailable select the plan (plan.Options).
	// Resuming an unfinished rollout needs the same Strategy (or none) and
	// Nodes.
	Strategy       string
	Nodes          []string
	MaxUnavailable int
	// SkipSettle ignores settle delays.
	SkipSettle bool
	// DrainTimeout bounds each wait for a drained node's connections;
	// zero means plan.DefaultDrainTimeout. A node with connections still
	// open after it stops the rollout (ErrDrainTimeout), the node left
	// drained and nothing installed on it; a node that cannot count its
	// connections does not stop it. A new rollout saves it in its plan;
	// when a rollout is resumed, a nonzero DrainTimeout replaces the saved
	// one for the waits that remain (step IDs do not change), and zero
	// keeps the saved one.
	DrainTimeout time.Duration
	// JobTimeout bounds each install job on a node; zero means
	// DefaultJobTimeout.
	JobTimeout time.Duration
	// PollInterval is how often a job or the connections are polled;
	// zero means DefaultPollInterval.
	PollInterval time.Duration
	// Heartbeat is how often a step still running says so: every
	// Heartbeat after it started until it ends, one line on Out and one
	// running Event, carrying what the step knows now (the connections
	// open, the install job's state, the settle time left). Zero means
	// DefaultHeartbeat; a negative Heartbeat disables it. Distribute
	// steps have none: Progress reports their uploads.
	Heartbeat time.Duration
	// DryRun prints the steps and changes nothing.
	DryRun bool
	// Abandon closes an unfinished rollout first, so that a fresh plan is
	// made from the nodes' state.
	Abandon bool
	// Confirm, if set, is asked before anything changes, with a question
	// for the operator; an error stops Install before any change.
	Confirm func(question string) error
	// Hook, if set, is called at each Hook* point; an error it returns
	// fails the step. It is never called concurrently, but during a wave
	// the points of different nodes' steps interleave. Only tests set it.
	Hook func(point string) error
	// Out receives one line per finished step, and the heartbeat lines of
	// the steps still running; nil discards them. Each line is written
	// whole with one Write; during a wave the lines of different nodes
	// interleave. No heartbeat line of a step follows its final line.
	Out io.Writer
	// Events, if set, receives one JSON Event per line: the start of the
	// rollout, each step done, the heartbeats of a step still running, a
	// step failed, the finish (for scripts).
	// Each line is written whole with one Write; during a wave the events
	// of different nodes interleave, each node's in the order of its
	// steps.
	Events io.Writer
	// Progress reports the uploads of distribute steps.
	Progress progress.Reporter
	// Distribute tunes distribute steps (StallTimeout, Open).
	Distribute DistributeOptions
	// Client tunes the node clients.
	Client ClientOptions
	// Now is the clock; nil means time.Now. The nodes of a wave and the
	// heartbeats of running steps call it concurrently.
	Now func() time.Time
	// Logger receives diagnostics; nil discards them.
	Logger *slog.Logger
}

func (o *InstallOptions) defaults() {
	if o.DrainTimeout <= 0 {
		o.DrainTimeout = plan.DefaultDrainTimeout
	}
	if o.JobTimeout <= 0 {
		o.JobTimeout = DefaultJobTimeout
	}
	if o.PollInterval <= 0 {
		o.PollInterval = DefaultPollInterval
	}
	if o.Heartbeat == 0 {
		o.Heartbeat = DefaultHeartbeat
	}
	if o.Out == nil {
		o.Out = io.Discard
	}
	if o.Progress == nil {
		o.Progress = progress.Discard
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	o.Distribute.Client, o.Distribute.Progress, o.Distribute.Now, o.Distribute.Logger = o.Client, o.Progress, o.Now, o.Logger
}

// Install brings the cluster to the newest versions in the repository. It
// resumes the unfinished rollout if there is one (the same options are
// required: ErrResume), else plans one from the nodes' live state
// (plan.Build; nothing to do returns a nil rollout) and records it. Then
// it executes the steps in order, checking the health gates before each
// (every node touched so far answers, its clock is within MaxClockSkew, it
// is drained exactly when the steps so far leave it drained, the failover
// pair has exactly one primary). The steps of a wave of the plan that act
// on several nodes run concurrently, one goroutine per node, each node's
// steps in order, and the wave ends before the next step starts (see the
// package documentation for the gates of a wave). Each finished step is
// recorded (with its audit entry) before the next step of its node
// starts; a resumed rollout never repeats a finished step, and finishes a
// step without acting when the node is already in the state it makes. An
// install job submitted by an interrupted run is followed, not submitted
// again.
//
// It stops at the first failed step with a *StepError naming the rollout,
// the step, the node and its state; the cause's class gives the exit code
// (unreachable: operational; a refusal by the node: policy; a failed
// health gate or a verification by the node: verification). When a step
// of a wave fails, the wave's other nodes finish the step they are in
// (their waits for connections or settle delays are cut short, not
// failed) and start no other; several failed steps are joined
// (errors.Join) in step order. With DryRun it prints the steps that would
// run and changes nothing.
func Install(ctx context.Context, r *repo.Repo, o InstallOptions) (*repo.Rollout, error) {
	drainTimeout := max(o.DrainTimeout, 0) // as given: it replaces a resumed rollout's
	o.defaults()
	all, err := r.Nodes()
	if err != nil {
		return nil, err
	}
	ro, err := r.UnfinishedRollout()
	if err != nil {
		return nil, err
	}
	if ro != nil && o.Abandon {
		if o.DryRun {
			fmt.Fprintf(o.Out, "would abandon rollout %d (stopped at step %d of %d)\n", ro.ID, ro.Next()+1, len(ro.Steps))
		} else {
			if _, err := r.FinishRollout(ro.ID, repo.RolloutAbandoned); err != nil {
				return nil, err
			}
			fmt.Fprintf(o.Out, "abandoned rollout %d at step %d of %d; planning afresh from the nodes' state\n", ro.ID, ro.Next()+1, len(ro.Steps))
		}
		ro = nil
	}
	if ro != nil {
		if err := compatible(ro, o); err != nil {
			return nil, err
		}
		return resume(ctx, r, all, ro, o, drainTimeout)
	}

	nodes, err := selectNodes(all, o.Nodes)
	if err != nil {
		return nil, err
	}
	pl, err := buildPlan(ctx, r, nodes, o.Client, plan.Options{Strategy: o.Strategy, Nodes: o.Nodes,
		MaxUnavailable: o.MaxUnavailable, DrainTimeout: o.DrainTimeout, Now: o.Now(), SkipSettle: o.SkipSettle}, o.Now)
	if err != nil {
		return nil, err
	}
	if len(pl.Steps) == 0 {
		fmt.Fprintf(o.Out, "nothing to install: every selected node runs the newest versions in the repository\n")
		return nil, nil
	}
	steps := rolloutSteps(pl.Steps)
	if o.DryRun {
		fmt.Fprintf(o.Out, "dry run: %s rollout of %d step(s); nothing is changed\n", pl.Strategy, len(steps))
		writeSteps(o.Out, steps)
		return nil, nil
	}
	if o.Confirm != nil {
		fmt.Fprintf(o.Out, "%s rollout of %d step(s):\n", pl.Strategy, len(steps))
		writeSteps(o.Out, steps)
		if err := o.Confirm(fmt.Sprintf("run these %d steps on the nodes?", len(steps))); err != nil {
			return nil, err
		}
	}
	started, err := r.StartRollout(repo.Rollout{Plan: pl.ID, Strategy: pl.Strategy, Nodes: slices.Clone(o.Nodes),
		MaxUnavailable: o.MaxUnavailable, SkipSettle: o.SkipSettle, Steps: steps})
	if err != nil {
		return nil, err
	}
	fmt.Fprintf(o.Out, "rollout %d: %s, %d step(s)\n", started.ID, started.Strategy, len(started.Steps))
	emit(o, Event{Event: "start", Rollout: started.ID, Strategy: started.Strategy, Steps: len(started.Steps)})
	return execute(ctx, r, all, &started, o, 0)
}

// compatible refuses to resume ro with other options than its own.
func compatible(ro *repo.Rollout, o InstallOptions) error {
	which := func(ns []string) string {
		if len(ns) == 0 {
			return "no --node"
		}
		return "--node " + strings.Join(ns, " --node ")
	}
	a, b := slices.Clone(ro.Nodes), slices.Clone(o.Nodes)
	slices.Sort(a)
	slices.Sort(b)
	if (o.Strategy != "" && o.Strategy != ro.Strategy) || !slices.Equal(slices.Compact(a), slices.Compact(b)) {
		return fmt.Errorf("%w: rollout %d (--strategy %s, %s, started %s) is unfinished at step %d of %d: rerun airlock install --strategy %s with %s to resume it, or pass --abandon to plan afresh",
			ErrResume, ro.ID, ro.Strategy, which(ro.Nodes), ro.Started.UTC().Format(time.RFC3339), ro.Next()+1, len(ro.Steps), ro.Strategy, which(ro.Nodes))
	}
	return nil
}

// resume continues the unfinished rollout ro. A nonzero drainTimeout
// replaces the timeout saved in its unfinished wait-connections steps.
func resume(ctx context.Context, r *repo.Repo, all []repo.Node, ro *repo.Rollout, o InstallOptions, drainTimeout time.Duration) (*repo.Rollout, error) {
	next := ro.Next()
	var longer []string
	for _, s := range ro.Steps {
		if drainTimeout > 0 && s.Kind == string(plan.StepWaitConnections) && !s.State.Finished() && s.Timeout != drainTimeout {
			longer = append(longer, s.Node)
		}
	}
	drainNote := func() {
		if len(longer) > 0 {
			fmt.Fprintf(o.Out, "--drain-timeout %s replaces the planned timeout of the waits for the connections of %s\n", drainTimeout, strings.Join(longer, ", "))
		}
	}
	if o.DryRun {
		fmt.Fprintf(o.Out, "dry run: rollout %d (%s) would resume at step %d of %d; nothing is changed\n", ro.ID, ro.Strategy, next+1, len(ro.Steps))
		writeSteps(o.Out, ro.Steps)
		drainNote()
		return nil, nil
	}
	if o.Confirm != nil {
		fmt.Fprintf(o.Out, "rollout %d (%s) stopped at step %d of %d:\n", ro.ID, ro.Strategy, next+1, len(ro.Steps))
		writeSteps(o.Out, ro.Steps)
		drainNote()
		if err := o.Confirm(fmt.Sprintf("resume at step %d?", next+1)); err != nil {
			return nil, err
		}
	}
	fmt.Fprintf(o.Out, "rollout %d: resuming at step %d of %d (%d finished)\n", ro.ID, next+1, len(ro.Steps), next)
	if o.Confirm == nil {
		drainNote()
	}
	emit(o, Event{Event: "resume", Rollout: ro.ID, Strategy: ro.Strategy, Steps: len(ro.Steps), N: next + 1})
	return execute(ctx, r, all, ro, o, drainTimeout)
}

// buildPlan asks the nodes for their state and plans with o.
func buildPlan(ctx context.Context, r *repo.Repo, nodes []repo.Node, co ClientOptions, o plan.Options, now func() time.Time) (*plan.Plan, error) {
	stored, err := r.Packages()
	if err != nil {
		return nil, err
	}
	available := make([]catalog.Package, len(stored))
	for i, p := range stored {
		available[i] = p.Package
	}
	last, err := r.LastInstalls()
	if err != nil {
		return nil, err
	}
	for _, li := range last {
		o.History = append(o.History, plan.Install{Node: li.Node, Package: li.Package, At: li.Time})
	}
	cs, err := clients(nodes, co)
	if err != nil {
		return nil, err
	}
	defer closeClients(cs)
	obs := observeAll(ctx, cs, now)
	pn := make([]plan.Node, len(nodes))
	var errs []error
	for i, ob := range obs {
		if ob.Err != nil {
			errs = append(errs, ob.Err)
			continue
		}
		st := ob.Status
		pn[i] = plan.Node{Name: nodes[i].Name, Role: st.Role, Region: st.Region, Installed: st.Installed,
			Drained: st.Drained, Connections: st.Connections}
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if len(errs) > 0 {
		return nil, fmt.Errorf("a plan needs the state of every node: %w", errors.Join(errs...))
	}
	return plan.Build(pn, available, o)
}

// rolloutSteps converts a plan's steps into a rollout's.
func rolloutSteps(ps []plan.Step) []repo.RolloutStep {
	out := make([]repo.RolloutStep, len(ps))
	for i, s := range ps {
		out[i] = repo.RolloutStep{ID: s.ID, N: s.N, Kind: string(s.Kind), Node: s.Node, Role: s.Role, Peer: s.Peer,
			Package: s.Package, Packages: s.Packages, Expect: s.Expect, Earliest: s.Earliest,
			Timeout: time.Duration(s.Timeout), Wave: s.Wave, Text: s.Text, State: repo.StepPending}
	}
	return out
}

// writeSteps prints steps, one a line, with their state when not pending.
func writeSteps(w io.Writer, steps []repo.RolloutStep) {
	width := len(fmt.Sprint(len(steps)))
	for _, s := range steps {
		state := ""
		if s.State != "" && s.State != repo.StepPending {
			state = " [" + string(s.State) + "]"
		}
		fmt.Fprintf(w, "  %*d. %s%s\n", width, s.N, s.Text, state)
	}
}

// executor runs the steps of one rollout. During a wave several goroutines
// use it, one per node: each acts only on its own node, and mu, roMu,
// hookMu and the locked writers serialize what they share.
type executor struct {
	r  *repo.Repo
	o  InstallOptions
	cs map[string]*Client
	// out is o.Out; o.Events is locked the same way.
	out io.Writer
	// id, total and skipSettle are the rollout's, read without roMu.
	id         uint64
	total      int
	skipSettle bool
	// drainTimeout, if nonzero, replaces the timeout saved in
	// wait-connections steps.
	drainTimeout time.Duration
	// pair lists the nodes planned as primary or backup.
	pair []string

	// roMu orders the writes of the rollout's record with the copies of
	// it in ro: ro is the latest record.
	roMu sync.Mutex
	ro   *repo.Rollout

	mu sync.Mutex
	// drained is the drained state the finished steps leave each node in;
	// a node without an entry was not touched yet.
	drained map[string]bool
	// last is what each node reported last.
	last map[string]observed

	hookMu sync.Mutex
}

// lockedWriter makes each Write whole among the writers sharing mu.
type lockedWriter struct {
	mu *sync.Mutex
	w  io.Writer
}

func (l lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

// execute runs the unfinished steps of ro, those of a nonzero wave on
// different nodes concurrently; a nonzero drainTimeout replaces the saved
// timeout of wait-connections steps.
func execute(ctx context.Context, r *repo.Repo, all []repo.Node, ro *repo.Rollout, o InstallOptions, drainTimeout time.Duration) (*repo.Rollout, error) {
	var outMu sync.Mutex
	o.Out = lockedWriter{&outMu, o.Out}
	if o.Events != nil {
		o.Events = lockedWriter{&outMu, o.Events}
	}
	e := &executor{r: r, o: o, ro: ro, cs: map[string]*Client{}, out: o.Out, id: ro.ID, total: len(ro.Steps), skipSettle: ro.SkipSettle,
		drainTimeout: drainTimeout, drained: map[string]bool{}, last: map[string]observed{}}
	byName := map[string]repo.Node{}
	for _, n := range all {
		byName[n.Name] = n
	}
	for _, s := range ro.Steps {
		for _, name := range []string{s.Node, s.Peer} {
			if name == "" || e.cs[name] != nil {
				continue
			}
			n, ok := byName[name]
			if !ok {
				return nil, fmt.Errorf("%w: rollout %d acts on node %s, which is no longer registered: re-add it (airlock node add), or abandon the rollout (airlock install --abandon)", ErrNoNodes, ro.ID, name)
			}
			c, err := NewClient(n, o.Client)
			if err != nil {
				return nil, fmt.Errorf("node %s is registered with an invalid entry (%w): re-add it with airlock node add", name, err)
			}
			defer c.Close()
			e.cs[name] = c
		}
		if (s.Role == plan.RolePrimary || s.Role == plan.RoleBackup) && !slices.Contains(e.pair, s.Node) {
			e.pair = append(e.pair, s.Node)
		}
		if s.Peer != "" && !slices.Contains(e.pair, s.Peer) {
			e.pair = append(e.pair, s.Peer)
		}
		if s.State.Finished() {
			e.touch(s)
		}
	}
	// The executor's own copy: e.ro changes with every record.
	steps := slices.Clone(ro.Steps)
	for i := 0; i < len(steps); {
		s := steps[i]
		if s.State.Finished() {
			i++
			continue
		}
		if err := ctx.Err(); err != nil {
			return e.ro, err
		}
		if s.Kind == string(plan.StepDistribute) {
			if err := e.gate(ctx, fullGate(&s)); err != nil {
				return e.ro, e.failed(s, fmt.Errorf("health gate before the step: %w", err))
			}
			// Consecutive distribute steps share one read of each package.
			j := i + 1
			for j < len(steps) && steps[j].Kind == s.Kind && !steps[j].State.Finished() {
				j++
			}
			if err := e.distribute(ctx, steps[i:j]); err != nil {
				return e.ro, err
			}
			i = j
			continue
		}
		j := i + 1
		if w := s.Wave; w != 0 {
			for j < len(steps) && steps[j].Wave == w {
				j++
			}
		}
		if nodes := concurrentNodes(steps[i:j]); len(nodes) > 1 {
			if err := e.wave(ctx, steps[i:j], nodes); err != nil {
				return e.ro, err
			}
			i = j
			continue
		}
		for _, s := range steps[i:j] {
			if s.State.Finished() {
				continue
			}
			if err := ctx.Err(); err != nil {
				return e.ro, err
			}
			if f := e.step(ctx, ctx, s, fullGate(&s)); f != nil {
				if f.asIs {
					return e.ro, f.err
				}
				return e.ro, e.failed(f.s, f.err)
			}
		}
		i = j
	}
	if err := e.gate(ctx, fullGate(nil)); err != nil {
		return e.ro, fmt.Errorf("rollout %d: every step is done but the final health gate failed: %w; check the nodes (airlock status)", e.id, err)
	}
	fin, err := e.r.FinishRollout(e.id, repo.RolloutFinished)
	if err != nil {
		return e.ro, err
	}
	*e.ro = fin
	fmt.Fprintf(e.out, "rollout %d finished: %d step(s)\n", e.id, e.total)
	emit(e.o, Event{Event: "finish", Rollout: e.id, Strategy: fin.Strategy, Steps: e.total})
	return e.ro, nil
}

// concurrentNodes returns the nodes that the unfinished steps of a wave
// act on, in order of their first step, when they may run concurrently:
// none of them acts on two nodes (promote, pair) or on none. Otherwise, or
// when only one node is left, the wave runs one step at a time and it
// returns nil.
func concurrentNodes(wave []repo.RolloutStep) []string {
	var nodes []string
	for _, s := range wave {
		if s.State.Finished() {
			continue
		}
		switch plan.StepKind(s.Kind) {
		case plan.StepPromote, plan.StepPair, plan.StepDistribute:
			return nil
		}
		if s.Node == "" || s.Peer != "" {
			return nil
		}
		if !slices.Contains(nodes, s.Node) {
			nodes = append(nodes, s.Node)
		}
	}
	if len(nodes) < 2 {
		return nil
	}
	return nodes
}

// stop is why a step stopped the rollout: the step's own failure, to be
// recorded with failed, or, with asIs, an error to return as it is (the
// step's record could not be written).
type stop struct {
	s    repo.RolloutStep
	err  error
	asIs bool
}

// step checks the gates of sc, carries out s, records it and reports it.
// ctx ends the step; wctx, derived from ctx, ends only its waits (for
// connections, for a settle delay), and once it has ended, s does not
// start. It returns nil when s is recorded.
func (e *executor) step(ctx, wctx context.Context, s repo.RolloutStep, sc gateScope) *stop {
	if err := e.gate(ctx, sc); err != nil {
		return &stop{s: s, err: fmt.Errorf("health gate before the step: %w", err)}
	}
	if err := wctx.Err(); err != nil {
		// Interrupted, or another node of the wave failed during the gate:
		// do not start.
		return &stop{s: s, err: err}
	}
	start := e.o.Now()
	lv, stopBeats := e.heartbeat(s, start)
	defer stopBeats()
	runCtx := ctx
	if k := plan.StepKind(s.Kind); k == plan.StepWaitConnections || k == plan.StepSettle {
		runCtx = wctx
	}
	res, err := e.run(runCtx, &s, lv)
	if err != nil {
		return &stop{s: s, err: err}
	}
	if err := e.hook(HookStepExecuted); err != nil {
		return &stop{s: s, err: err}
	}
	if err := e.record(s, res); err != nil {
		return &stop{s: s, err: err, asIs: true}
	}
	if err := e.hook(HookStepRecorded); err != nil {
		return &stop{s: s, err: err}
	}
	e.followRoles(s)
	e.touch(s)
	stopBeats()
	e.report(s, res, e.o.Now().Sub(start))
	return nil
}

// liveStatus is what a running step knows now, for its heartbeat: the
// step's code sets it as it learns (a poll's answer), the heartbeat reads
// it. Until it is set, the step is "running for D". It is safe for
// concurrent use.
type liveStatus struct {
	mu       sync.Mutex
	describe func(now time.Time) string
}

// set makes describe the step's live status: given the time of a
// heartbeat, it returns the note to print. describe runs in the
// heartbeat's goroutine: it must read only values it holds as copies.
func (l *liveStatus) set(describe func(now time.Time) string) {
	l.mu.Lock()
	l.describe = describe
	l.mu.Unlock()
}

// note is the live status at now of a step started at start.
func (l *liveStatus) note(now, start time.Time) string {
	l.mu.Lock()
	describe := l.describe
	l.mu.Unlock()
	if describe == nil {
		return "running for " + short(now.Sub(start))
	}
	return describe(now)
}

// short writes d for a heartbeat as the plans write durations (30m,
// 1h30m, 1m30s, not 30m0s), rounded to the second (to the millisecond
// below a second: a test's heartbeat); a negative d is 0s.
func short(d time.Duration) string {
	if d >= time.Second {
		return plan.FormatDuration(d.Round(time.Second))
	}
	return max(d.Round(time.Millisecond), 0).String()
}

// heartbeat starts the heartbeat of step s, started at start: every
// o.Heartbeat until stop is called, it prints the line of the step's live
// status and emits its running event. stop returns once the heartbeat has
// ended, so that no line of s follows the step's final one; it may be
// called more than once. With a negative o.Heartbeat, nothing is started.
func (e *executor) heartbeat(s repo.RolloutStep, start time.Time) (lv *liveStatus, stop func()) {
	lv = &liveStatus{}
	if e.o.Heartbeat < 0 {
		return lv, func() {}
	}
	quit, done := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		t := time.NewTicker(e.o.Heartbeat)
		defer t.Stop()
		for {
			select {
			case <-quit:
				return
			case <-t.C:
				now := e.o.Now()
				note := lv.note(now, start)
				fmt.Fprintln(e.out, e.prefix(s)+note)
				emit(e.o, Event{Event: "running", Rollout: e.id, Steps: e.total, N: s.N, ID: s.ID, Kind: s.Kind, Node: s.Node,
					Text: s.Text, Note: note, Seconds: now.Sub(start).Seconds()})
			}
		}
	}()
	return lv, sync.OnceFunc(func() {
		close(quit)
		<-done
	})
}

// wave runs the unfinished steps of a wave of the plan, one goroutine per
// node of nodes, each node's steps in order. The full health gate runs
// before the wave (and, before the next step, after it); within it, each
// node's steps are gated on that node and on the nodes outside the wave
// (see gateScope). When a step fails, the other nodes finish the step
// they are in, their waits cut short (the step stays pending), and start
// no other; the failures are recorded when the wave has ended, so that
// the rollout's record ends failed, and returned joined in step order.
func (e *executor) wave(ctx context.Context, wave []repo.RolloutStep, nodes []string) error {
	// Before the wave, the state each node's first step sets is not
	// checked (see gate).
	pre := gateScope{exempt: map[string]bool{}}
	var first *repo.RolloutStep
	seen := map[string]bool{}
	for i := range wave {
		s := &wave[i]
		if s.State.Finished() || seen[s.Node] {
			continue
		}
		seen[s.Node] = true
		if first == nil {
			first = s
		}
		k := plan.StepKind(s.Kind)
		pre.exempt[s.Node] = k == plan.StepDrain || k == plan.StepUndrain
	}
	if err := e.gate(ctx, pre); err != nil {
		return e.failed(*first, fmt.Errorf("health gate before the step: %w", err))
	}

	busy := map[string]bool{}
	for _, n := range nodes {
		busy[n] = true
	}
	wctx, cutWaits := context.WithCancel(ctx)
	defer cutWaits()
	var (
		stopped  atomic.Bool
		wg       sync.WaitGroup
		failures = make([]*stop, len(nodes))
	)
	for i, n := range nodes {
		wg.Go(func() {
			for _, s := range wave {
				if s.Node != n || s.State.Finished() {
					continue
				}
				if stopped.Load() || ctx.Err() != nil {
					return
				}
				k := plan.StepKind(s.Kind)
				sc := gateScope{node: n, busy: busy, exempt: map[string]bool{n: k == plan.StepDrain || k == plan.StepUndrain}}
				f := e.step(ctx, wctx, s, sc)
				if f == nil {
					continue
				}
				if ctx.Err() == nil && wctx.Err() != nil && errors.Is(f.err, context.Canceled) {
					return // a wait cut short because another node failed
				}
				stopped.Store(true)
				cutWaits()
				if !f.asIs {
					f.err = e.stepError(f.s, f.err)
					var se *StepError
					if errors.As(f.err, &se) {
						// Now, not after the wave: the other nodes may take
						// long to finish their steps.
						e.report(f.s, result{state: repo.StepFailed, note: "the other nodes of the wave finish the step they are in"}, 0)
						e.emitFailed(se)
					}
				}
				failures[i] = f
				return
			}
		})
	}
	wg.Wait()

	slices.SortFunc(failures, func(a, b *stop) int {
		switch {
		case a == nil && b == nil:
			return 0
		case a == nil:
			return 1
		case b == nil:
			return -1
		}
		return a.s.N - b.s.N
	})
	var errs []error
	canceled := false
	for _, f := range failures {
		if f == nil {
			continue
		}
		var se *StepError
		switch {
		case !f.asIs && errors.As(f.err, &se):
			e.recordFailed(se)
			errs = append(errs, se)
		case errors.Is(f.err, context.Canceled):
			canceled = true
		default:
			errs = append(errs, f.err)
		}
	}
	// Every step of the wave is finished unless a step failed or the
	// rollout was interrupted: never go on to the next step then.
	if err := ctx.Err(); err != nil && (canceled || len(errs) == 0) {
		errs = append(errs, err)
	} else if canceled {
		errs = append(errs, context.Canceled)
	}
	if len(errs) == 1 {
		return errs[0]
	}
	return errors.Join(errs...)
}

// followRoles moves the registry's roles with a promote or re-pair step
// that this rollout performed, so that status does not warn about it. The
// registry is the operator's record, not a gate (plans use the roles the
// nodes report), so a failure to update it is logged, not fatal.
func (e *executor) followRoles(s repo.RolloutStep) {
	var roles map[string]string
	switch plan.StepKind(s.Kind) {
	case plan.StepPromote:
		roles = map[string]string{s.Node: plan.RolePrimary}
		if s.Peer != "" {
			roles[s.Peer] = plan.RoleBackup
		}
	case plan.StepPair:
		roles = map[string]string{s.Node: plan.RoleBackup}
		if s.Peer != "" {
			roles[s.Peer] = plan.RolePrimary
		}
	default:
		return
	}
	if err := e.r.SetRoles(roles); err != nil {
		e.o.Logger.Error("record the new roles in the node registry", "rollout", e.id, "step", s.ID, "err", err)
	}
}

// result is the outcome of one step.
type result struct {
	state repo.StepState
	note  string
	seen  *observed
}

// hook calls o.Hook, one call at a time.
func (e *executor) hook(point string) error {
	if e.o.Hook == nil {
		return nil
	}
	e.hookMu.Lock()
	defer e.hookMu.Unlock()
	return e.o.Hook(point)
}

// touch updates the expected drained state after finished step s.
func (e *executor) touch(s repo.RolloutStep) {
	if s.Node == "" {
		return
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	d, ok := e.drained[s.Node]
	switch plan.StepKind(s.Kind) {
	case plan.StepDrain:
		d, ok = true, true
	case plan.StepUndrain:
		d, ok = false, true
	}
	if ok {
		e.drained[s.Node] = d
	} else if last, known := e.last[s.Node]; known {
		e.drained[s.Node] = last.Status.Drained
	}
}

// update writes u to step id of the rollout's record.
func (e *executor) update(id string, u repo.StepUpdate) error {
	e.roMu.Lock()
	defer e.roMu.Unlock()
	ro, err := e.r.UpdateStep(e.id, id, u)
	if err != nil {
		return err
	}
	*e.ro = ro
	return nil
}

// record persists the finished step s.
func (e *executor) record(s repo.RolloutStep, res result) error {
	u := repo.StepUpdate{State: res.state}
	if res.seen != nil {
		u.Seen = map[string]repo.NodeSeen{s.Node: seenOf(*res.seen)}
	}
	if err := e.update(s.ID, u); err != nil {
		return fmt.Errorf("rollout %d step %d (%s) took effect but could not be recorded: %w; rerun airlock install: it finds the node in that state and goes on", e.id, s.N, s.Text, err)
	}
	return nil
}

// failed records the failure of step s, emits its event and returns the
// *StepError (the cause itself if the rollout was interrupted).
func (e *executor) failed(s repo.RolloutStep, cause error) error {
	err := e.stepError(s, cause)
	var se *StepError
	if errors.As(err, &se) {
		e.recordFailed(se)
		e.emitFailed(se)
	}
	return err
}

// stepError returns the *StepError of step s failed with cause, with the
// node's state now; an interruption (context.Canceled) is returned as it
// is.
func (e *executor) stepError(s repo.RolloutStep, cause error) error {
	if errors.Is(cause, context.Canceled) {
		return cause
	}
	se := &StepError{Rollout: e.id, Step: s, Total: e.total, Err: cause}
	if c := e.cs[s.Node]; c != nil {
		// The node's state now, for the operator; a short bound, since it
		// may be the node that failed.
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		ob := observe(ctx, c, e.o.Now)
		cancel()
		if ob.Err == nil {
			se.State = describe(ob.Status)
		}
	}
	return se
}

// recordFailed records se's step as failed; a failure to record it is
// logged (the step stays unfinished either way).
func (e *executor) recordFailed(se *StepError) {
	if err := e.update(se.Step.ID, repo.StepUpdate{State: repo.StepFailed, Error: se.Err.Error()}); err != nil {
		e.o.Logger.Error("record failed step", "rollout", e.id, "step", se.Step.ID, "err", err)
	}
}

func (e *executor) emitFailed(se *StepError) {
	s := se.Step
	emit(e.o, Event{Event: "failed", Rollout: e.id, Steps: e.total, N: s.N, ID: s.ID, Kind: s.Kind, Node: s.Node,
		Text: s.Text, State: se.State, Error: se.Error()})
}

// report prints the line of a finished (or, in a wave, failed) step and,
// for a finished one, emits its event.
func (e *executor) report(s repo.RolloutStep, res result, took time.Duration) {
	line := e.prefix(s) + string(res.state)
	if res.note != "" {
		line += " (" + res.note + ")"
	}
	if took >= 100*time.Millisecond {
		line += fmt.Sprintf(" in %s", took.Round(100*time.Millisecond))
	}
	fmt.Fprintln(e.out, line)
	if res.state == repo.StepFailed {
		return
	}
	emit(e.o, Event{Event: "step", Rollout: e.id, Steps: e.total, N: s.N, ID: s.ID, Kind: s.Kind, Node: s.Node,
		Text: s.Text, State: string(res.state), Note: res.note, Seconds: took.Seconds()})
}

// prefix begins the lines of step s: "[ 3/12] drain n3: ".
func (e *executor) prefix(s repo.RolloutStep) string {
	width := len(fmt.Sprint(e.total))
	return fmt.Sprintf("[%*d/%d] %s: ", width, s.N, e.total, s.Text)
}

// Event is one line of 'airlock install --json': what happened to the
// rollout, in order. Fields that do not apply to an event are omitted.
type Event struct {
	// Event is start, resume, step (a step finished), running (a step
	// still running, every InstallOptions.Heartbeat: Note is its live
	// status, Seconds how long it has run), failed or finish.
	Event    string  `json:"event"`
	Rollout  uint64  `json:"rollout"`
	Strategy string  `json:"strategy,omitempty"`
	Steps    int     `json:"steps,omitempty"`
	N        int     `json:"n,omitempty"`
	ID       string  `json:"id,omitempty"`
	Kind     string  `json:"kind,omitempty"`
	Node     string  `json:"node,omitempty"`
	Text     string  `json:"text,omitempty"`
	State    string  `json:"state,omitempty"`
	Note     string  `json:"note,omitempty"`
	Error    string  `json:"error,omitempty"`
	Seconds  float64 `json:"seconds,omitempty"`
}

// emit writes ev as one JSON line to o.Events, if set.
func emit(o InstallOptions, ev Event) {
	if o.Events == nil {
		return
	}
	b, err := json.Marshal(ev)
	if err != nil {
		return
	}
	o.Events.Write(append(b, '\n'))
}

// gateScope says which nodes a health gate observes and what it does not
// check.
type gateScope struct {
	// exempt lists the nodes whose drained state is not checked: the step
	// about to run sets it (a drain or undrain). An interrupted run may
	// have set it already without recording it; the step checks it when
	// it runs.
	exempt map[string]bool
	// ownsRoles leaves out the failover pair's one-primary rule: the step
	// about to run (promote, pair) sets the roles.
	ownsRoles bool
	// busy, during a wave, lists the wave's nodes: the gate observes node,
	// whose goroutine it runs in, and the nodes outside the wave, never a
	// node that another goroutine is acting on (an install may be
	// rebooting it). The pair rule is then checked only when no other
	// node of the wave belongs to the pair.
	busy map[string]bool
	node string
}

// fullGate is the scope of the gate before step next (nil: after the last
// step): every node touched so far and the failover pair, but the state
// that next itself sets.
func fullGate(next *repo.RolloutStep) gateScope {
	sc := gateScope{}
	if next == nil {
		return sc
	}
	switch plan.StepKind(next.Kind) {
	case plan.StepDrain, plan.StepUndrain:
		sc.exempt = map[string]bool{next.Node: true}
	case plan.StepPromote, plan.StepPair:
		sc.ownsRoles = true
	}
	return sc
}

// gate checks the health gates in scope sc: each node touched so far and
// each node of the failover pair answers, its clock is within
// MaxClockSkew, a touched node is drained exactly when the finished steps
// leave it drained, and the pair has exactly one primary.
func (e *executor) gate(ctx context.Context, sc gateScope) error {
	e.mu.Lock()
	want := maps.Clone(e.drained)
	e.mu.Unlock()
	var names []string
	for _, n := range slices.Sorted(maps.Keys(want)) {
		if !sc.busy[n] || n == sc.node {
			names = append(names, n)
		}
	}
	pairSeen := true
	for _, n := range e.pair {
		switch {
		case sc.busy[n] && n != sc.node:
			pairSeen = false
		case !slices.Contains(names, n):
			names = append(names, n)
		}
	}
	if len(names) == 0 {
		return nil
	}
	cs := make([]*Client, len(names))
	for i, n := range names {
		cs[i] = e.cs[n]
	}
	var problems []string
	primaries := []string{}
	for i, ob := range observeAll(ctx, cs, e.o.Now) {
		n := names[i]
		if ob.Err != nil {
			return ob.Err
		}
		e.mu.Lock()
		e.last[n] = ob
		e.mu.Unlock()
		if ob.Offset > MaxClockSkew || ob.Offset < -MaxClockSkew {
			problems = append(problems, fmt.Sprintf("node %s's clock is %s off this host's (at most %s): fix its time (NTP) first", n, ob.Offset.Round(time.Second), MaxClockSkew))
		}
		if d, ok := want[n]; ok && ob.Status.Drained != d && !sc.exempt[n] {
			problems = append(problems, fmt.Sprintf("node %s is %s but the rollout left it %s", n, drainWord(ob.Status.Drained), drainWord(d)))
		}
		if slices.Contains(e.pair, n) && ob.Status.Role == node.RolePrimary {
			primaries = append(primaries, n)
		}
	}
	if len(e.pair) > 1 && pairSeen && len(primaries) != 1 && !sc.ownsRoles {
		problems = append(problems, fmt.Sprintf("the failover pair %s has %d primaries (%s), not exactly one", strings.Join(e.pair, "/"), len(primaries), strings.Join(primaries, ", ")))
	}
	if len(problems) > 0 {
		return fmt.Errorf("%w: %s", ErrHealth, strings.Join(problems, "; "))
	}
	return nil
}

func drainWord(d bool) string {
	if d {
		return "drained"
	}
	return "undrained"
}

// run carries out step s on its node; the long steps keep lv up to date.
func (e *executor) run(ctx context.Context, s *repo.RolloutStep, lv *liveStatus) (result, error) {
	c := e.cs[s.Node]
	if c == nil && s.Node != "" {
		return result{}, fmt.Errorf("no client for node %s", s.Node)
	}
	switch plan.StepKind(s.Kind) {
	case plan.StepDrain:
		return e.setDrained(ctx, c, true)
	case plan.StepUndrain:
		return e.setDrained(ctx, c, false)
	case plan.StepWaitConnections:
		return e.waitConnections(ctx, c, s, lv)
	case plan.StepSettle:
		return e.settle(ctx, s, lv)
	case plan.StepInstall:
		return e.install(ctx, c, s, lv)
	case plan.StepVerify:
		return e.verify(ctx, c, s)
	case plan.StepPromote:
		return e.promote(ctx, c, s)
	case plan.StepPair:
		return e.repair(ctx, c, s)
	}
	return result{}, fmt.Errorf("step kind %q is unknown to this airlock: upgrade airlock, or abandon the rollout (airlock install --abandon)", s.Kind)
}

func (e *executor) status(ctx context.Context, c *Client) (observed, error) {
	ob := observe(ctx, c, e.o.Now)
	if ob.Err != nil {
		return ob, ob.Err
	}
	e.mu.Lock()
	e.last[c.Node()] = ob
	e.mu.Unlock()
	return ob, nil
}

func (e *executor) setDrained(ctx context.Context, c *Client, drained bool) (result, error) {
	ob, err := e.status(ctx, c)
	if err != nil {
		return result{}, err
	}
	if ob.Status.Drained == drained {
		return result{state: repo.StepSkipped, note: "already " + drainWord(drained), seen: &ob}, nil
	}
	call := c.Undrain
	if drained {
		call = c.Drain
	}
	st, err := call(ctx)
	if err != nil {
		return result{}, err
	}
	if st.Drained != drained {
		return result{}, fmt.Errorf("%w: node %s answered but reports %s", ErrHealth, c.Node(), drainWord(st.Drained))
	}
	ob.Status = st
	return result{state: repo.StepDone, seen: &ob}, nil
}

func (e *executor) waitConnections(ctx context.Context, c *Client, s *repo.RolloutStep, lv *liveStatus) (result, error) {
	limit := cmp.Or(e.drainTimeout, s.Timeout, e.o.DrainTimeout)
	begun := e.o.Now()
	deadline := begun.Add(limit)
	for {
		ob, err := e.status(ctx, c)
		if err != nil {
			return result{}, err
		}
		if ob.Status.Connections == 0 {
			return result{state: repo.StepDone, seen: &ob}, nil
		}
		open, why := ob.Status.Connections, ob.Status.ConnectionsError
		lv.set(func(now time.Time) string {
			waited := short(now.Sub(begun))
			if open < 0 {
				return fmt.Sprintf("the node cannot count its connections (%s), waiting %s of at most %s", why, waited, short(limit))
			}
			return fmt.Sprintf("%d open, waiting %s of at most %s", open, waited, short(limit))
		})
		if !e.o.Now().Before(deadline) {
			if ob.Status.Connections < 0 {
				note := fmt.Sprintf("the node could not count its connections for %s (%s); going on", limit, ob.Status.ConnectionsError)
				return result{state: repo.StepDone, seen: &ob, note: note}, nil
			}
			// Installing now could cut the clients that stayed: stop, with
			// the node drained and nothing installed on it.
			return result{}, fmt.Errorf("%w: node %s still has %d client connection(s) open %s after it was drained; nothing was installed on it and it stays drained: once its clients have moved to other nodes, rerun airlock install (it waits for them again)",
				ErrDrainTimeout, c.Node(), ob.Status.Connections, limit)
		}
		if err := sleep(ctx, e.o.PollInterval); err != nil {
			return result{}, err
		}
	}
}

func (e *executor) settle(ctx context.Context, s *repo.RolloutStep, lv *liveStatus) (result, error) {
	if e.o.SkipSettle || e.skipSettle {
		return result{state: repo.StepSkipped, note: "--skip-settle"}, nil
	}
	until := s.Earliest
	if s.Package != nil {
		last, err := e.r.LastInstalls()
		if err != nil {
			return result{}, err
		}
		for _, li := range last {
			if li.Node == s.Node && li.Kind == s.Package.Kind {
				until = li.Time.Add(time.Duration(li.Package.Settle))
			}
		}
	}
	wait := until.Sub(e.o.Now())
	if wait <= 0 {
		return result{state: repo.StepDone, note: "settle time already over"}, nil
	}
	fmt.Fprintf(e.out, "waiting until %s (%s) for %s; interrupting is safe, rerun airlock install to go on, or pass --skip-settle\n",
		until.UTC().Format(time.RFC3339), wait.Round(time.Second), s.Text)
	lv.set(func(now time.Time) string {
		return fmt.Sprintf("%s left, until %s", short(until.Sub(now)), until.UTC().Format(time.RFC3339))
	})
	if err := sleep(ctx, wait); err != nil {
		return result{}, err
	}
	return result{state: repo.StepDone}, nil
}

func (e *executor) install(ctx context.Context, c *Client, s *repo.RolloutStep, lv *liveStatus) (result, error) {
	p := s.Package
	if p == nil {
		return result{}, fmt.Errorf("install step %s has no package: the rollout record is damaged: abandon it (airlock install --abandon) and plan again", s.ID)
	}
	ob, err := e.status(ctx, c)
	if err != nil {
		return result{}, err
	}
	if v, ok := ob.Status.Installed[p.Name]; ok && v.Compare(p.Version) >= 0 {
		return result{state: repo.StepSkipped, note: fmt.Sprintf("node already runs %s %s", p.Name, v), seen: &ob}, nil
	}
	var j node.Job
	if s.Job != "" {
		// An earlier run submitted it: follow that job rather than submit
		// again.
		j, err = c.Job(ctx, s.Job)
		var ae *APIError
		if errors.As(err, &ae) && ae.Code == "not-found" {
			s.Job, err = "", nil
		} else if err != nil {
			return result{}, err
		} else if j.State == node.JobFailed {
			s.Job = ""
		}
	}
	if s.Job == "" {
		j, err = c.Install(ctx, p.SHA256)
		var ae *APIError
		if errors.As(err, &ae) && ae.Code == "already-installed" {
			return result{state: repo.StepSkipped, note: "node already runs it", seen: &ob}, nil
		}
		if errors.As(err, &ae) && ae.Code == "not-staged" {
			return result{}, fmt.Errorf("%w: stage it first with airlock distribute", err)
		}
		if err != nil {
			return result{}, err
		}
		if err := e.hook(HookJobSubmitted); err != nil {
			return result{}, err
		}
		if err := e.update(s.ID, repo.StepUpdate{State: repo.StepSubmitted, Job: j.ID}); err != nil {
			return result{}, fmt.Errorf("node %s accepted install job %s but it could not be recorded: %w", c.Node(), j.ID, err)
		}
		s.Job = j.ID
	}
	deadline := e.o.Now().Add(e.o.JobTimeout)
	// Most installs take a moment: poll soon, then less and less often.
	wait := min(firstPoll, e.o.PollInterval)
	for j.State == node.JobQueued || j.State == node.JobRunning {
		lv.set(jobStatus(j, ob.Offset))
		if !e.o.Now().Before(deadline) {
			return result{}, fmt.Errorf("install job %s of %s on node %s is still %s after %s: check the node, then rerun airlock install (it follows the same job)",
				j.ID, p.ID(), c.Node(), j.State, e.o.JobTimeout)
		}
		if err := sleep(ctx, wait); err != nil {
			return result{}, err
		}
		wait = min(2*wait, e.o.PollInterval)
		if j, err = c.Job(ctx, s.Job); err != nil {
			return result{}, err
		}
	}
	if j.State != node.JobSucceeded {
		return result{}, &APIError{Node: c.Node(), Op: fmt.Sprintf("install job %s of %s", j.ID, p.ID()), Code: j.Code, Message: j.Error}
	}
	ob, err = e.status(ctx, c)
	if err != nil {
		return result{}, err
	}
	if v := ob.Status.Installed[p.Name]; v.Compare(p.Version) != 0 {
		return result{}, fmt.Errorf("%w: install job %s succeeded but node %s reports %s %s, not %s", ErrHealth, j.ID, c.Node(), p.Name, v, p.Version)
	}
	return result{state: repo.StepDone, note: "job " + j.ID, seen: &ob}, nil
}

// jobStatus describes install job j, as last polled, for the heartbeat:
// its state and for how long it has been in it, by the node's times
// brought to this host's clock (offset: the node's clock less this
// host's).
func jobStatus(j node.Job, offset time.Duration) func(now time.Time) string {
	id, state, since := j.ID, j.State, j.Created
	if state == node.JobRunning && !j.Started.IsZero() {
		since = j.Started
	}
	return func(now time.Time) string {
		if since.IsZero() {
			return fmt.Sprintf("job %s %s", id, state)
		}
		return fmt.Sprintf("job %s %s for %s", id, state, short(now.Sub(since.Add(-offset))))
	}
}

func (e *executor) verify(ctx context.Context, c *Client, s *repo.RolloutStep) (result, error) {
	ob, err := e.status(ctx, c)
	if err != nil {
		return result{}, err
	}
	var wrong []string
	for _, name := range slices.Sorted(func(yield func(string) bool) {
		for k := range s.Expect {
			if !yield(k) {
				return
			}
		}
	}) {
		want := s.Expect[name]
		if got, ok := ob.Status.Installed[name]; !ok || got.Compare(want) != 0 {
			have := "nothing"
			if ok {
				have = got.String()
			}
			wrong = append(wrong, fmt.Sprintf("%s %s (expected %s)", name, have, want))
		}
	}
	if len(wrong) > 0 {
		return result{}, fmt.Errorf("%w: node %s runs %s", ErrHealth, c.Node(), strings.Join(wrong, ", "))
	}
	if ob.Offset > MaxClockSkew || ob.Offset < -MaxClockSkew {
		return result{}, fmt.Errorf("%w: node %s's clock is %s off this host's (at most %s)", ErrHealth, c.Node(), ob.Offset.Round(time.Second), MaxClockSkew)
	}
	return result{state: repo.StepDone, seen: &ob}, nil
}

// promote makes s.Node the primary and s.Peer its backup: the old primary
// steps down first, so that the pair never has two primaries.
func (e *executor) promote(ctx context.Context, c *Client, s *repo.RolloutStep) (result, error) {
	peer := e.cs[s.Peer]
	if peer == nil {
		return result{}, fmt.Errorf("promote step %s names no peer: the rollout record is damaged: abandon it (airlock install --abandon) and plan again", s.ID)
	}
	ob, err := e.status(ctx, c)
	if err != nil {
		return result{}, err
	}
	pob, err := e.status(ctx, peer)
	if err != nil {
		return result{}, err
	}
	if ob.Status.Role == node.RolePrimary && pob.Status.Role == node.RoleBackup {
		return result{state: repo.StepSkipped, note: "already promoted", seen: &ob}, nil
	}
	if pob.Status.Role != node.RoleBackup {
		if _, err := peer.SetRole(ctx, node.RoleBackup); err != nil {
			return result{}, err
		}
	}
	if ob.Status.Role != node.RolePrimary {
		st, err := c.SetRole(ctx, node.RolePrimary)
		if err != nil {
			return result{}, err
		}
		ob.Status = st
	}
	if ob.Status.Role != node.RolePrimary {
		return result{}, fmt.Errorf("%w: node %s reports role %s after promotion", ErrHealth, c.Node(), ob.Status.Role)
	}
	return result{state: repo.StepDone, note: s.Peer + " is backup", seen: &ob}, nil
}

// repair re-pairs s.Node as the backup of s.Peer, which must be primary.
func (e *executor) repair(ctx context.Context, c *Client, s *repo.RolloutStep) (result, error) {
	peer := e.cs[s.Peer]
	if peer == nil {
		return result{}, fmt.Errorf("pair step %s names no peer: the rollout record is damaged: abandon it (airlock install --abandon) and plan again", s.ID)
	}
	pob, err := e.status(ctx, peer)
	if err != nil {
		return result{}, err
	}
	if pob.Status.Role != node.RolePrimary {
		return result{}, fmt.Errorf("%w: node %s should be the primary of the pair but reports role %s", ErrHealth, s.Peer, pob.Status.Role)
	}
	ob, err := e.status(ctx, c)
	if err != nil {
		return result{}, err
	}
	if ob.Status.Role == node.RoleBackup {
		return result{state: repo.StepDone, note: "backup of " + s.Peer, seen: &ob}, nil
	}
	st, err := c.SetRole(ctx, node.RoleBackup)
	if err != nil {
		return result{}, err
	}
	ob.Status = st
	if st.Role != node.RoleBackup {
		return result{}, fmt.Errorf("%w: node %s reports role %s after re-pairing", ErrHealth, c.Node(), st.Role)
	}
	return result{state: repo.StepDone, note: "backup of " + s.Peer, seen: &ob}, nil
}

// distribute runs consecutive distribute steps as one fan-out and records
// each.
func (e *executor) distribute(ctx context.Context, steps []repo.RolloutStep) error {
	var targets []*target
	var cs []*Client
	for _, s := range steps {
		cs = append(cs, e.cs[s.Node])
	}
	obs := observeAll(ctx, cs, e.o.Now)
	for i, s := range steps {
		t := &target{client: cs[i], res: &NodeResult{Node: s.Node, Sent: []string{}, Already: []string{}}}
		targets = append(targets, t)
		if obs[i].Err != nil {
			t.fail(obs[i].Err)
			continue
		}
		t.seen = seenOf(obs[i])
		var pending []catalog.Package
		for _, p := range s.Packages {
			if v, ok := obs[i].Status.Installed[p.Name]; !ok || v.Compare(p.Version) < 0 {
				pending = append(pending, p)
			}
		}
		t.need, t.res.Already = neededBy(obs[i].Status, pending)
	}
	do := e.o.Distribute
	do.defaults(e.r)
	start := e.o.Now()
	if err := fanOutAll(ctx, e.r, targets, &do, &DistributeReport{}); err != nil {
		return err
	}
	for i, s := range steps {
		t := targets[i]
		if t.failed {
			return e.failed(s, t.res.Err)
		}
		if err := e.hook(HookStepExecuted); err != nil {
			return e.failed(s, err)
		}
		res := result{state: repo.StepDone, note: fmt.Sprintf("%d sent, %d already there", len(t.res.Sent), len(t.res.Already))}
		ob := obs[i]
		res.seen = &ob
		if err := e.record(s, res); err != nil {
			return err
		}
		if err := e.hook(HookStepRecorded); err != nil {
			return e.failed(s, err)
		}
		e.report(s, res, e.o.Now().Sub(start))
	}
	return nil
}

// sleep waits d or until ctx ends.
func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
