package repo

import (
	"fmt"
	"sort"
	"time"

	"go.etcd.io/bbolt"

	"github.com/airlock-project/airlock/catalog"
	"github.com/airlock-project/airlock/fault"
)

// Audit actions of rollouts and distribution. A step's entry is "rollout."
// followed by the step's kind: rollout.distribute, rollout.drain,
// rollout.wait-connections, rollout.settle, rollout.install,
// rollout.verify, rollout.undrain, rollout.promote, rollout.pair.
const (
	ActionRolloutStart   = "rollout.start"
	ActionRolloutFinish  = "rollout.finish"
	ActionRolloutAbandon = "rollout.abandon"
	ActionDistribute     = "cluster.distribute"
	actionStepPrefix     = "rollout."
)

// Errors of rollouts.
var (
	// ErrRolloutUnfinished: a new rollout was asked for while another is
	// unfinished (policy class): resume it, or abandon it first.
	ErrRolloutUnfinished = fault.Policy("a rollout is unfinished")
	// ErrStepFinished: a finished step was asked to change (policy class):
	// a finished step is never repeated.
	ErrStepFinished = fault.Policy("rollout step already finished")
)

// RolloutState is the state of a rollout.
type RolloutState string

// The states of a rollout. Running and failed rollouts are unfinished: the
// next airlock install resumes them.
const (
	RolloutRunning   RolloutState = "running"
	RolloutFailed    RolloutState = "failed"
	RolloutFinished  RolloutState = "finished"
	RolloutAbandoned RolloutState = "abandoned"
)

// StepState is the state of one step of a rollout.
type StepState string

// The states of a step. Done and skipped steps are finished and never run
// again; a failed step runs again when the rollout resumes.
const (
	// StepPending: not started.
	StepPending StepState = "pending"
	// StepSubmitted: an install job was submitted to the node (Job names
	// it) and its outcome is not known yet.
	StepSubmitted StepState = "submitted"
	// StepDone: carried out and checked.
	StepDone StepState = "done"
	// StepSkipped: not needed, the node was already in the state the step
	// makes (an interrupted run did it, or someone by hand), or a settle
	// wait that --skip-settle waived.
	StepSkipped StepState = "skipped"
	// StepFailed: the last attempt failed (Error says why).
	StepFailed StepState = "failed"
)

// Finished reports whether the step is done or skipped.
func (s StepState) Finished() bool { return s == StepDone || s == StepSkipped }

// RolloutStep is one step of a rollout's plan, with its progress.
type RolloutStep struct {
	// ID identifies the step within its plan, stably across plannings.
	ID string `json:"id"`
	// N is the step's position, from 1.
	N int `json:"n"`
	// Kind is what the step does (plan.StepKind): distribute, drain,
	// wait-connections, settle, install, verify, undrain, promote, pair.
	Kind string `json:"kind"`
	// Node is the node it acts on ("" for a step on no single node).
	Node string `json:"node,omitempty"`
	// Role is the node's role when the rollout was planned.
	Role string `json:"role,omitempty"`
	// Peer is the other node of the failover pair, for promote and pair
	// steps.
	Peer string `json:"peer,omitempty"`
	// Package is the package of an install or settle step.
	Package *catalog.Package `json:"package,omitempty"`
	// Packages are the packages of a distribute step.
	Packages []catalog.Package `json:"packages,omitempty"`
	// Expect lists, for a verify step, every component the node must run
	// at the version it must report.
	Expect map[string]catalog.Version `json:"expect,omitempty"`
	// Earliest is when a settle step ends.
	Earliest time.Time `json:"earliest,omitzero"`
	// Timeout bounds a wait-connections step.
	Timeout time.Duration `json:"timeout,omitempty"`
	// Wave is the step's plan wave (plan.Step.Wave): steps of one nonzero
	// wave on different nodes may run concurrently. Records written
	// before waves were kept have none, and their steps run one at a time.
	Wave int `json:"wave,omitempty"`
	// Text describes the step for people.
	Text string `json:"text"`

	State StepState `json:"state"`
	// Job is the node's install job, once submitted.
	Job string `json:"job,omitempty"`
	// Error says why the last attempt failed.
	Error string `json:"error,omitempty"`
	// Updated is when State last changed.
	Updated time.Time `json:"updated,omitzero"`
}

// Rollout is an install run across the cluster: its plan, fixed when it
// started, and the progress of every step.
type Rollout struct {
	// ID numbers rollouts from 1, in the order started.
	ID uint64 `json:"id"`
	// Plan identifies the plan it executes (plan.Plan.ID).
	Plan string `json:"plan"`
	// Strategy, Nodes (empty: every registered node), MaxUnavailable and
	// SkipSettle are the options it was planned with; resuming needs the
	// same.
	Strategy       string   `json:"strategy"`
	Nodes          []string `json:"nodes"`
	MaxUnavailable int      `json:"max_unavailable,omitempty"`
	SkipSettle     bool     `json:"skip_settle,omitempty"`

	State    RolloutState `json:"state"`
	Started  time.Time    `json:"started"`
	Finished time.Time    `json:"finished,omitzero"`
	// Actor is who started it.
	Actor string `json:"actor"`
	// Error says why it failed last (State failed).
	Error string        `json:"error,omitempty"`
	Steps []RolloutStep `json:"steps"`
}

// Unfinished reports whether the rollout is running or failed: the next
// install resumes it.
func (ro *Rollout) Unfinished() bool {
	return ro.State == RolloutRunning || ro.State == RolloutFailed
}

// Next returns the index of the first step not finished, or len(Steps).
func (ro *Rollout) Next() int {
	for i, s := range ro.Steps {
		if !s.State.Finished() {
			return i
		}
	}
	return len(ro.Steps)
}

// Step returns the step with id, or nil.
func (ro *Rollout) Step(id string) *RolloutStep {
	for i := range ro.Steps {
		if ro.Steps[i].ID == id {
			return &ro.Steps[i]
		}
	}
	return nil
}

// LastInstall is the last package of one kind installed on a node by a
// rollout: the start of its settle delay.
type LastInstall struct {
	Node    string          `json:"node"`
	Kind    catalog.Kind    `json:"kind"`
	Package catalog.Package `json:"package"`
	Time    time.Time       `json:"time"`
	Rollout uint64          `json:"rollout"`
}

// StartRollout records ro as a new running rollout and audits it: ID,
// State, Started and Actor are set here, every step is pending. It is
// refused with ErrRolloutUnfinished (policy) while another rollout is
// unfinished, and with ErrInvalid if two steps share an ID.
func (r *Repo) StartRollout(ro Rollout) (Rollout, error) {
	seen := map[string]bool{}
	for i := range ro.Steps {
		s := &ro.Steps[i]
		if s.ID == "" || seen[s.ID] {
			return Rollout{}, fmt.Errorf("%w: rollout plan step %d has an empty or repeated id %q", ErrInvalid, i+1, s.ID)
		}
		seen[s.ID] = true
		s.State, s.Job, s.Error, s.Updated = StepPending, "", "", time.Time{}
	}
	now := r.opts.now().UTC()
	err := r.Update(func(tx *Tx) error {
		b, err := tx.CreateBucketIfNotExists(bucketRollouts)
		if err != nil {
			return err
		}
		if cur, err := unfinishedRollout(b); err != nil {
			return err
		} else if cur != nil {
			return fmt.Errorf("%w: rollout %d (strategy %s, started %s) stopped at step %d of %d: resume it with the same airlock install options, or abandon it (airlock install --abandon)",
				ErrRolloutUnfinished, cur.ID, cur.Strategy, stamp(cur.Started), cur.Next()+1, len(cur.Steps))
		}
		if ro.ID, err = b.NextSequence(); err != nil {
			return err
		}
		ro.State, ro.Started, ro.Finished, ro.Actor, ro.Error = RolloutRunning, now, time.Time{}, r.opts.actor(), ""
		if ro.Nodes == nil {
			ro.Nodes = []string{}
		}
		if err := putJSON(b, seqKey(ro.ID), ro); err != nil {
			return err
		}
		_, err = tx.Audit(ActionRolloutStart, struct {
			ID       uint64   `json:"id"`
			Strategy string   `json:"strategy"`
			Nodes    []string `json:"nodes"`
			Steps    int      `json:"steps"`
		}{ro.ID, ro.Strategy, ro.Nodes, len(ro.Steps)})
		return err
	})
	return ro, err
}

// unfinishedRollout returns the newest unfinished rollout in b, or nil.
func unfinishedRollout(b *bbolt.Bucket) (*Rollout, error) {
	c := b.Cursor()
	for k, v := c.Last(); k != nil; k, v = c.Prev() {
		var ro Rollout
		if err := decodeRecord(bucketRollouts, k, v, &ro); err != nil {
			return nil, err
		}
		if ro.Unfinished() {
			return &ro, nil
		}
	}
	return nil, nil
}

// UnfinishedRollout returns the rollout that the next install resumes,
// or nil if there is none.
func (r *Repo) UnfinishedRollout() (*Rollout, error) {
	var out *Rollout
	err := r.View(func(tx *Tx) error {
		b := tx.Bucket(bucketRollouts)
		if b == nil {
			return nil
		}
		var err error
		out, err = unfinishedRollout(b)
		return err
	})
	return out, err
}

// GetRollout returns rollout id, or an error matching ErrNotFound.
func (r *Repo) GetRollout(id uint64) (Rollout, error) {
	var ro Rollout
	err := r.View(func(tx *Tx) (err error) {
		ro, err = loadRollout(tx, id)
		return err
	})
	return ro, err
}

// loadRollout reads rollout id in tx, or returns an error matching
// ErrNotFound.
func loadRollout(tx *Tx, id uint64) (Rollout, error) {
	var ro Rollout
	var v []byte
	if b := tx.Bucket(bucketRollouts); b != nil {
		v = b.Get(seqKey(id))
	}
	if v == nil {
		return ro, fmt.Errorf("%w: no rollout %d", ErrNotFound, id)
	}
	return ro, decodeRecord(bucketRollouts, seqKey(id), v, &ro)
}

// Rollouts returns every rollout, oldest first.
func (r *Repo) Rollouts() ([]Rollout, error) {
	out := []Rollout{}
	err := r.View(func(tx *Tx) error {
		b := tx.Bucket(bucketRollouts)
		if b == nil {
			return nil
		}
		return b.ForEach(func(k, v []byte) error {
			var ro Rollout
			if err := decodeRecord(bucketRollouts, k, v, &ro); err != nil {
				return err
			}
			out = append(out, ro)
			return nil
		})
	})
	return out, err
}

// StepUpdate is a change of one step's state (see UpdateStep).
type StepUpdate struct {
	// State is the new state.
	State StepState
	// Job names the node's install job (StepSubmitted); kept if empty.
	Job string
	// Error says why the step failed (StepFailed).
	Error string
	// Seen, if set, records what the nodes reported, in the same
	// transaction (see RecordSeen).
	Seen map[string]NodeSeen
}

// UpdateStep records the new state of step stepID of rollout id, in one
// transaction with its audit entry ("rollout.KIND"). A failed step marks
// the rollout failed; any other update marks it running again. An install
// step done records the node's last install of that kind (LastInstalls).
// A step already finished is never changed again (ErrStepFinished), nor is
// a rollout that is not unfinished.
func (r *Repo) UpdateStep(id uint64, stepID string, u StepUpdate) (Rollout, error) {
	var ro Rollout
	now := r.opts.now().UTC()
	err := r.Update(func(tx *Tx) error {
		var err error
		if ro, err = loadRollout(tx, id); err != nil {
			return err
		}
		if !ro.Unfinished() {
			return fmt.Errorf("%w: rollout %d is %s", ErrStepFinished, id, ro.State)
		}
		s := ro.Step(stepID)
		if s == nil {
			return fmt.Errorf("%w: rollout %d has no step %q", ErrNotFound, id, stepID)
		}
		if s.State.Finished() {
			return fmt.Errorf("%w: rollout %d step %d (%s) is %s since %s", ErrStepFinished, id, s.N, s.Text, s.State, stamp(s.Updated))
		}
		s.State, s.Updated = u.State, now
		if u.Job != "" {
			s.Job = u.Job
		}
		s.Error = u.Error
		if u.State == StepFailed {
			ro.State, ro.Error = RolloutFailed, fmt.Sprintf("step %d (%s): %s", s.N, s.Text, u.Error)
		} else {
			ro.State, ro.Error = RolloutRunning, ""
		}
		if err := putJSON(tx.Bucket(bucketRollouts), seqKey(id), ro); err != nil {
			return err
		}
		if s.Kind == "install" && s.State == StepDone && s.Package != nil && s.Node != "" {
			ib, err := tx.CreateBucketIfNotExists(bucketInstalls)
			if err != nil {
				return err
			}
			li := LastInstall{Node: s.Node, Kind: s.Package.Kind, Package: *s.Package, Time: now, Rollout: id}
			if err := putJSON(ib, installKey(s.Node, s.Package.Kind), li); err != nil {
				return err
			}
		}
		if err := recordSeen(tx.Tx, u.Seen); err != nil {
			return err
		}
		details := struct {
			Rollout uint64    `json:"rollout"`
			Step    string    `json:"step"`
			N       int       `json:"n"`
			Node    string    `json:"node,omitempty"`
			Package string    `json:"package,omitempty"`
			Role    string    `json:"role,omitempty"`
			State   StepState `json:"state"`
			Job     string    `json:"job,omitempty"`
			Error   string    `json:"error,omitempty"`
		}{id, s.ID, s.N, s.Node, "", s.Role, s.State, s.Job, s.Error}
		if s.Package != nil {
			details.Package = s.Package.ID()
		}
		_, err = tx.Audit(actionStepPrefix+s.Kind, details)
		return err
	})
	return ro, err
}

// FinishRollout closes rollout id as finished (every step must be
// finished) or abandoned, and audits it. Abandoning leaves the nodes as
// they are; the next install plans afresh from their state.
func (r *Repo) FinishRollout(id uint64, state RolloutState) (Rollout, error) {
	if state != RolloutFinished && state != RolloutAbandoned {
		return Rollout{}, fmt.Errorf("%w: a rollout closes as finished or abandoned, not %q", ErrInvalid, state)
	}
	var ro Rollout
	now := r.opts.now().UTC()
	err := r.Update(func(tx *Tx) error {
		var err error
		if ro, err = loadRollout(tx, id); err != nil {
			return err
		}
		if !ro.Unfinished() {
			return fmt.Errorf("%w: rollout %d is already %s", ErrStepFinished, id, ro.State)
		}
		if state == RolloutFinished {
			if i := ro.Next(); i < len(ro.Steps) {
				return fmt.Errorf("rollout %d cannot finish: step %d (%s) is %s", id, ro.Steps[i].N, ro.Steps[i].Text, ro.Steps[i].State)
			}
		}
		ro.State, ro.Finished = state, now
		if err := putJSON(tx.Bucket(bucketRollouts), seqKey(id), ro); err != nil {
			return err
		}
		action := ActionRolloutFinish
		if state == RolloutAbandoned {
			action = ActionRolloutAbandon
		}
		_, err = tx.Audit(action, struct {
			ID    uint64 `json:"id"`
			Steps int    `json:"steps"`
			Done  int    `json:"done"`
		}{id, len(ro.Steps), ro.Next()})
		return err
	})
	return ro, err
}

func installKey(node string, kind catalog.Kind) []byte {
	return []byte(node + "\x00" + string(kind))
}

// LastInstalls returns, for every node and kind, the last package of that
// kind a rollout installed there, sorted by node and kind.
func (r *Repo) LastInstalls() ([]LastInstall, error) {
	out := []LastInstall{}
	err := r.View(func(tx *Tx) error {
		b := tx.Bucket(bucketInstalls)
		if b == nil {
			return nil
		}
		return b.ForEach(func(k, v []byte) error {
			var li LastInstall
			if err := decodeRecord(bucketInstalls, k, v, &li); err != nil {
				return err
			}
			out = append(out, li)
			return nil
		})
	})
	sort.Slice(out, func(i, j int) bool {
		if out[i].Node != out[j].Node {
			return out[i].Node < out[j].Node
		}
		return out[i].Kind < out[j].Kind
	})
	return out, err
}

// DistributeResult is what one node got from a distribute run, for the
// audit log.
type DistributeResult struct {
	Node string `json:"node"`
	// Staged lists the packages sent and verified by the node.
	Staged []string `json:"staged"`
	// Error says why the node failed ("" if it did not).
	Error string `json:"error,omitempty"`
}

// RecordDistribute audits a distribute run with its per-node results and
// records what the nodes reported, in one transaction.
func (r *Repo) RecordDistribute(results []DistributeResult, seen map[string]NodeSeen) error {
	return r.Update(func(tx *Tx) error {
		if err := recordSeen(tx.Tx, seen); err != nil {
			return err
		}
		_, err := tx.Audit(ActionDistribute, struct {
			Nodes []DistributeResult `json:"nodes"`
		}{results})
		return err
	})
}
