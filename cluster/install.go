package cluster

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strings"
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
	// connections does not stop it.
	DrainTimeout time.Duration
	// JobTimeout bounds each install job on a node; zero means
	// DefaultJobTimeout.
	JobTimeout time.Duration
	// PollInterval is how often a job or the connections are polled;
	// zero means DefaultPollInterval.
	PollInterval time.Duration
	// DryRun prints the steps and changes nothing.
	DryRun bool
	// Abandon closes an unfinished rollout first, so that a fresh plan is
	// made from the nodes' state.
	Abandon bool
	// Confirm, if set, is asked before anything changes, with a question
	// for the operator; an error stops Install before any change.
	Confirm func(question string) error
	// Hook, if set, is called at each Hook* point; an error it returns
	// fails the step. Only tests set it.
	Hook func(point string) error
	// Out receives one line per step; nil discards them.
	Out io.Writer
	// Events, if set, receives one JSON Event per line: the start of the
	// rollout, each step done, a step failed, the finish (for scripts).
	Events io.Writer
	// Progress reports the uploads of distribute steps.
	Progress progress.Reporter
	// Distribute tunes distribute steps (StallTimeout, Open).
	Distribute DistributeOptions
	// Client tunes the node clients.
	Client ClientOptions
	// Now is the clock; nil means time.Now.
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
// pair has exactly one primary). Each finished step is recorded (with its
// audit entry) before the next starts; a resumed rollout never repeats a
// finished step, and finishes a step without acting when the node is
// already in the state it makes. An install job submitted by an
// interrupted run is followed, not submitted again.
//
// It stops at the first failed step with a *StepError naming the rollout,
// the step, the node and its state; the cause's class gives the exit code
// (unreachable: operational; a refusal by the node: policy; a failed
// health gate or a verification by the node: verification). With DryRun it
// prints the steps that would run and changes nothing.
func Install(ctx context.Context, r *repo.Repo, o InstallOptions) (*repo.Rollout, error) {
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
		return resume(ctx, r, all, ro, o)
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
	return execute(ctx, r, all, &started, o)
}

// compatible refuses to resume ro with other options than its own.
func compatible(ro *repo.Rollout, o InstallOptions) error {
	which := func(ns []string) string {
		if len(ns) == 0 {
			return "every node"
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

// resume continues the unfinished rollout ro.
func resume(ctx context.Context, r *repo.Repo, all []repo.Node, ro *repo.Rollout, o InstallOptions) (*repo.Rollout, error) {
	next := ro.Next()
	if o.DryRun {
		fmt.Fprintf(o.Out, "dry run: rollout %d (%s) would resume at step %d of %d; nothing is changed\n", ro.ID, ro.Strategy, next+1, len(ro.Steps))
		writeSteps(o.Out, ro.Steps)
		return nil, nil
	}
	if o.Confirm != nil {
		fmt.Fprintf(o.Out, "rollout %d (%s) stopped at step %d of %d:\n", ro.ID, ro.Strategy, next+1, len(ro.Steps))
		writeSteps(o.Out, ro.Steps)
		if err := o.Confirm(fmt.Sprintf("resume at step %d?", next+1)); err != nil {
			return nil, err
		}
	}
	fmt.Fprintf(o.Out, "rollout %d: resuming at step %d of %d (%d finished)\n", ro.ID, next+1, len(ro.Steps), next)
	emit(o, Event{Event: "resume", Rollout: ro.ID, Strategy: ro.Strategy, Steps: len(ro.Steps), N: next + 1})
	return execute(ctx, r, all, ro, o)
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
			Timeout: time.Duration(s.Timeout), Text: s.Text, State: repo.StepPending}
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

// executor runs the steps of one rollout.
type executor struct {
	r   *repo.Repo
	o   InstallOptions
	ro  *repo.Rollout
	cs  map[string]*Client
	out io.Writer
	// drained is the drained state the finished steps leave each node in;
	// a node without an entry was not touched yet.
	drained map[string]bool
	// pair lists the nodes planned as primary or backup.
	pair []string
	// last is what each node reported last.
	last map[string]observed
}

// execute runs the unfinished steps of ro.
func execute(ctx context.Context, r *repo.Repo, all []repo.Node, ro *repo.Rollout, o InstallOptions) (*repo.Rollout, error) {
	e := &executor{r: r, o: o, ro: ro, cs: map[string]*Client{}, out: o.Out, drained: map[string]bool{}, last: map[string]observed{}}
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
	for i := 0; i < len(ro.Steps); i++ {
		s := ro.Steps[i]
		if s.State.Finished() {
			continue
		}
		if err := ctx.Err(); err != nil {
			return ro, err
		}
		if err := e.gate(ctx, &s); err != nil {
			return ro, e.failed(s, fmt.Errorf("health gate before the step: %w", err))
		}
		if s.Kind == string(plan.StepDistribute) {
			// Consecutive distribute steps share one read of each package.
			j := i
			for j+1 < len(ro.Steps) && ro.Steps[j+1].Kind == s.Kind && !ro.Steps[j+1].State.Finished() {
				j++
			}
			if err := e.distribute(ctx, ro.Steps[i:j+1]); err != nil {
				return ro, err
			}
			i = j
			continue
		}
		start := o.Now()
		res, err := e.run(ctx, &s)
		if err != nil {
			return ro, e.failed(s, err)
		}
		if err := e.hook(HookStepExecuted); err != nil {
			return ro, e.failed(s, err)
		}
		if err := e.record(s, res); err != nil {
			return ro, err
		}
		if err := e.hook(HookStepRecorded); err != nil {
			return ro, e.failed(s, err)
		}
		e.followRoles(s)
		e.touch(s)
		e.report(s, res, o.Now().Sub(start))
	}
	if err := e.gate(ctx, nil); err != nil {
		return ro, fmt.Errorf("rollout %d: every step is done but the final health gate failed: %w; check the nodes (airlock status)", ro.ID, err)
	}
	fin, err := e.r.FinishRollout(ro.ID, repo.RolloutFinished)
	if err != nil {
		return ro, err
	}
	*ro = fin
	fmt.Fprintf(e.out, "rollout %d finished: %d step(s)\n", ro.ID, len(ro.Steps))
	emit(e.o, Event{Event: "finish", Rollout: ro.ID, Strategy: ro.Strategy, Steps: len(ro.Steps)})
	return ro, nil
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
		e.o.Logger.Error("record the new roles in the node registry", "rollout", e.ro.ID, "step", s.ID, "err", err)
	}
}

// result is the outcome of one step.
type result struct {
	state repo.StepState
	note  string
	seen  *observed
}

func (e *executor) hook(point string) error {
	if e.o.Hook == nil {
		return nil
	}
	return e.o.Hook(point)
}

// touch updates the expected drained state after finished step s.
func (e *executor) touch(s repo.RolloutStep) {
	if s.Node == "" {
		return
	}
	d, ok := e.drained[s.Node]
	switch plan.StepKind(s.Kind) {
	case plan.StepDrain:
		d, ok = true, true
	case plan.StepUndrain:
		d, ok = false, true
	}
	if ok {
		e.drained[s.Node] = d
	} else if _, known := e.last[s.Node]; known {
		e.drained[s.Node] = e.last[s.Node].Status.Drained
	}
}

// record persists the finished step s.
func (e *executor) record(s repo.RolloutStep, res result) error {
	u := repo.StepUpdate{State: res.state}
	if res.seen != nil {
		u.Seen = map[string]repo.NodeSeen{s.Node: seenOf(*res.seen)}
	}
	ro, err := e.r.UpdateStep(e.ro.ID, s.ID, u)
	if err != nil {
		return fmt.Errorf("rollout %d step %d (%s) took effect but could not be recorded: %w; rerun airlock install: it finds the node in that state and goes on", e.ro.ID, s.N, s.Text, err)
	}
	*e.ro = ro
	return nil
}

// failed records the failure of step s and returns the *StepError.
func (e *executor) failed(s repo.RolloutStep, cause error) error {
	se := &StepError{Rollout: e.ro.ID, Step: s, Total: len(e.ro.Steps), Err: cause}
	if errors.Is(cause, context.Canceled) {
		return cause
	}
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
	if ro, err := e.r.UpdateStep(e.ro.ID, s.ID, repo.StepUpdate{State: repo.StepFailed, Error: cause.Error()}); err == nil {
		*e.ro = ro
	} else {
		e.o.Logger.Error("record failed step", "rollout", e.ro.ID, "step", s.ID, "err", err)
	}
	emit(e.o, Event{Event: "failed", Rollout: e.ro.ID, Steps: len(e.ro.Steps), N: s.N, ID: s.ID, Kind: s.Kind, Node: s.Node,
		Text: s.Text, State: se.State, Error: se.Error()})
	return se
}

// report prints the line of a finished step.
func (e *executor) report(s repo.RolloutStep, res result, took time.Duration) {
	width := len(fmt.Sprint(len(e.ro.Steps)))
	line := fmt.Sprintf("[%*d/%d] %s: %s", width, s.N, len(e.ro.Steps), s.Text, res.state)
	if res.note != "" {
		line += " (" + res.note + ")"
	}
	if took >= 100*time.Millisecond {
		line += fmt.Sprintf(" in %s", took.Round(100*time.Millisecond))
	}
	fmt.Fprintln(e.out, line)
	emit(e.o, Event{Event: "step", Rollout: e.ro.ID, Steps: len(e.ro.Steps), N: s.N, ID: s.ID, Kind: s.Kind, Node: s.Node,
		Text: s.Text, State: string(res.state), Note: res.note, Seconds: took.Seconds()})
}

// Event is one line of 'airlock install --json': what happened to the
// rollout, in order. Fields that do not apply to an event are omitted.
type Event struct {
	// Event is start, resume, step, failed or finish.
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

// gate checks the health gates of the nodes touched so far and of the
// failover pair before step next (nil: after the last step). The state
// that next itself sets is not checked: an interrupted run may have set
// it already (a drain, undrain, promote or pair that took effect but was
// not recorded), and next checks it when it runs.
func (e *executor) gate(ctx context.Context, next *repo.RolloutStep) error {
	var kind plan.StepKind
	if next != nil {
		kind = plan.StepKind(next.Kind)
	}
	ownsDrain := func(n string) bool {
		return (kind == plan.StepDrain || kind == plan.StepUndrain) && next.Node == n
	}
	ownsRoles := kind == plan.StepPromote || kind == plan.StepPair
	names := slices.Sorted(func(yield func(string) bool) {
		for n := range e.drained {
			if !yield(n) {
				return
			}
		}
	})
	for _, n := range e.pair {
		if !slices.Contains(names, n) {
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
		e.last[n] = ob
		if ob.Offset > MaxClockSkew || ob.Offset < -MaxClockSkew {
			problems = append(problems, fmt.Sprintf("node %s's clock is %s off this host's (at most %s): fix its time (NTP) first", n, ob.Offset.Round(time.Second), MaxClockSkew))
		}
		if want, ok := e.drained[n]; ok && ob.Status.Drained != want && !ownsDrain(n) {
			problems = append(problems, fmt.Sprintf("node %s is %s but the rollout left it %s", n, drainWord(ob.Status.Drained), drainWord(want)))
		}
		if slices.Contains(e.pair, n) && ob.Status.Role == node.RolePrimary {
			primaries = append(primaries, n)
		}
	}
	if len(e.pair) > 1 && len(primaries) != 1 && !ownsRoles {
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

// run carries out step s on its node.
func (e *executor) run(ctx context.Context, s *repo.RolloutStep) (result, error) {
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
		return e.waitConnections(ctx, c, s)
	case plan.StepSettle:
		return e.settle(ctx, s)
	case plan.StepInstall:
		return e.install(ctx, c, s)
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
	e.last[c.Node()] = ob
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

func (e *executor) waitConnections(ctx context.Context, c *Client, s *repo.RolloutStep) (result, error) {
	limit := s.Timeout
	if limit <= 0 {
		limit = e.o.DrainTimeout
	}
	deadline := e.o.Now().Add(limit)
	for {
		ob, err := e.status(ctx, c)
		if err != nil {
			return result{}, err
		}
		if ob.Status.Connections == 0 {
			return result{state: repo.StepDone, seen: &ob}, nil
		}
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

func (e *executor) settle(ctx context.Context, s *repo.RolloutStep) (result, error) {
	if e.o.SkipSettle || e.ro.SkipSettle {
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
	if err := sleep(ctx, wait); err != nil {
		return result{}, err
	}
	return result{state: repo.StepDone}, nil
}

func (e *executor) install(ctx context.Context, c *Client, s *repo.RolloutStep) (result, error) {
	p := s.Package
	if p == nil {
		return result{}, fmt.Errorf("install step %s has no package", s.ID)
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
		ro, err := e.r.UpdateStep(e.ro.ID, s.ID, repo.StepUpdate{State: repo.StepSubmitted, Job: j.ID})
		if err != nil {
			return result{}, fmt.Errorf("node %s accepted install job %s but it could not be recorded: %w", c.Node(), j.ID, err)
		}
		*e.ro = ro
		s.Job = j.ID
	}
	deadline := e.o.Now().Add(e.o.JobTimeout)
	// Most installs take a moment: poll soon, then less and less often.
	wait := min(firstPoll, e.o.PollInterval)
	for j.State == node.JobQueued || j.State == node.JobRunning {
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
		return result{}, fmt.Errorf("promote step %s names no peer", s.ID)
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
		return result{}, fmt.Errorf("pair step %s names no peer", s.ID)
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
