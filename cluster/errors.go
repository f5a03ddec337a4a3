package cluster

import (
	"errors"
	"fmt"
	"strings"

	"github.com/airlock-project/airlock/fault"
	"github.com/airlock-project/airlock/repo"
)

// Errors of the cluster client and its operations. The errors returned wrap
// these, or are typed errors matching them, with the node, package and step
// concerned; the exit code follows from their class.
var (
	// ErrUnreachable: a node did not answer (operational, exit 1).
	ErrUnreachable = errors.New("node unreachable")
	// ErrFingerprint: a node presented another certificate than the one
	// pinned (verification class, exit 3); see *FingerprintError.
	ErrFingerprint = fault.Verification("node certificate does not match the pinned fingerprint")
	// ErrRefused: a node refused a request by policy: a downgrade, unmet
	// requirements (policy class, exit 4).
	ErrRefused = fault.Policy("refused by the node")
	// ErrNodeVerification: a node found a package, signature or archive
	// bad (verification class, exit 3).
	ErrNodeVerification = fault.Verification("the node's verification failed")
	// ErrHealth: a health gate failed after a step: wrong version, clock
	// off, drained when it should not be, not exactly one primary
	// (verification class, exit 3).
	ErrHealth = fault.Verification("health check failed")
	// ErrNoNodes: no node is registered, or --node names an unknown one
	// (usage class).
	ErrNoNodes = fault.Usage("no such node")
	// ErrConfirm: install needs confirmation that could not be asked
	// (usage class: pass --yes).
	ErrConfirm = fault.Usage("confirmation required")
	// ErrDeclined: the operator answered no (operational).
	ErrDeclined = errors.New("declined")
	// ErrResume: install was given other options than those of the
	// unfinished rollout it would resume (policy class).
	ErrResume = fault.Policy("an unfinished rollout has other options")
	// ErrDrainTimeout: a drained node still had client connections open
	// when the drain timeout ran out (operational, exit 1).
	ErrDrainTimeout = errors.New("drained node's client connections still open")
	// ErrDistribute: one or more nodes failed during distribute
	// (operational); see *DistributeError.
	ErrDistribute = errors.New("distribute failed")
)

// FingerprintError reports a node whose TLS certificate is not the pinned
// one. It matches ErrFingerprint (verification class).
type FingerprintError struct {
	Node   string
	Got    repo.CertFingerprint
	Pinned repo.CertFingerprint
}

// Error names both fingerprints and says how to pin the new one.
func (e *FingerprintError) Error() string {
	return fmt.Sprintf("node %s presented certificate %s, pinned %s: if the node was re-initialised, re-add it with airlock node add %s --fingerprint %s (and its new --token-file); otherwise something else answers at its address",
		e.Node, e.Got, e.Pinned, e.Node, e.Got)
}

// Is reports ErrFingerprint and its class.
func (e *FingerprintError) Is(target error) bool {
	return target == ErrFingerprint || target == fault.ErrVerification
}

// UnreachableError reports a node that did not answer. It matches
// ErrUnreachable (operational).
type UnreachableError struct {
	Node string
	URL  string
	Err  error
}

// Error names the node, its address and the cause.
func (e *UnreachableError) Error() string {
	return fmt.Sprintf("node %s (%s) unreachable: %v: check that airlock-node serve runs there and the address is right (airlock node list)", e.Node, e.URL, e.Err)
}

// Unwrap returns the cause.
func (e *UnreachableError) Unwrap() error { return e.Err }

// Is reports ErrUnreachable.
func (e *UnreachableError) Is(target error) bool { return target == ErrUnreachable }

// NameError reports an agent that calls itself by another name than the
// node registered at its address (operational: the registry points at the
// wrong node).
type NameError struct {
	Node string
	URL  string
	// Got is the name the agent reports (untrusted: quoted).
	Got string
}

// Error names the node, the address and the name found.
func (e *NameError) Error() string {
	return fmt.Sprintf("node %s: the agent at %s calls itself %q: the registry points at the wrong node; re-add it with the right --url", e.Node, e.URL, fault.Printable(e.Got, 80))
}

// APIError is an error answer of a node's API: {"error", "code"} with its
// HTTP status. Its class follows the code: downgrade, already-installed,
// requires-unmet and refused are policy (ErrRefused); untrusted-signer,
// verification-failed, not-entitled, digest-mismatch and unsafe-archive are
// verification (ErrNodeVerification); anything else is operational.
type APIError struct {
	Node    string
	Op      string
	Status  int
	Code    string
	Message string
}

// Error names the node, the call and the node's own message.
func (e *APIError) Error() string {
	msg := e.Message
	switch {
	case e.Code == "unauthorized":
		// The node's own message is for API clients; say what to do here.
		msg = "the node refused the registered token"
	case msg == "":
		msg = fmt.Sprintf("HTTP status %d", e.Status)
	}
	// The node may name itself too; say it once.
	msg = strings.TrimPrefix(msg, "node "+e.Node+": ")
	s := fmt.Sprintf("node %s: %s: %s", e.Node, e.Op, msg)
	if e.Code != "" {
		s += " (" + e.Code + ")"
	}
	switch e.Code {
	case "unauthorized":
		s += ": re-add the node with its token file (airlock node add " + e.Node + " --token-file DIR/token …)"
	case "digest-mismatch":
		s += ": if it happens again, the repository's copy may be damaged: run airlock check"
	case "untrusted-signer", "no-vendor-key":
		s += ": the node does not trust the vendor key that signed the entitlement; pin it there with airlock-node trust --dir DIR vendor.pub.asc"
	}
	return s
}

// Is reports the error's class (see APIError).
func (e *APIError) Is(target error) bool {
	switch e.Code {
	case "downgrade", "already-installed", "requires-unmet", "refused":
		return target == ErrRefused || target == fault.ErrPolicy
	case "untrusted-signer", "verification-failed", "not-entitled", "digest-mismatch", "unsafe-archive":
		return target == ErrNodeVerification || target == fault.ErrVerification
	}
	return false
}

// NodeResult is the outcome of distribute for one node.
type NodeResult struct {
	// Node is the node's name.
	Node string `json:"node"`
	// Sent lists the packages uploaded (name@version), Already those the
	// node had staged or installed before.
	Sent    []string `json:"sent"`
	Already []string `json:"already"`
	// Bytes is how many bytes were sent to it.
	Bytes int64 `json:"bytes"`
	// Warning notes what will not be staged (packages that no sequence
	// reaches from the node's versions).
	Warning string `json:"warning,omitempty"`
	// Err is why the node failed, nil if it did not.
	Err error `json:"-"`
	// Error is Err's message, for JSON.
	Error string `json:"error,omitempty"`
}

// DistributeError reports the nodes that distribute could not finish; the
// others completed. It matches ErrDistribute and, when every failure is of
// one class (a pinned certificate mismatch, say), that class.
type DistributeError struct {
	Failed []NodeResult
}

// Error names each failed node and says that a rerun resumes.
func (e *DistributeError) Error() string {
	var b strings.Builder
	names := make([]string, len(e.Failed))
	for i, f := range e.Failed {
		names[i] = f.Node
	}
	fmt.Fprintf(&b, "distribute failed on %d node(s) (%s); the other nodes completed; rerun airlock distribute to resume where each upload stopped:", len(e.Failed), strings.Join(names, ", "))
	for _, f := range e.Failed {
		fmt.Fprintf(&b, "\n  %s: %v", f.Node, f.Err)
	}
	return b.String()
}

// Is reports ErrDistribute.
func (e *DistributeError) Is(target error) bool { return target == ErrDistribute }

// Unwrap returns the nodes' errors, so that their classes show through.
func (e *DistributeError) Unwrap() []error {
	out := make([]error, 0, len(e.Failed))
	for _, f := range e.Failed {
		out = append(out, f.Err)
	}
	return out
}

// StepError reports the step at which a rollout stopped, with the node's
// state as last seen and what to do. It wraps the cause, whose class gives
// the exit code.
type StepError struct {
	// Rollout is the rollout's ID.
	Rollout uint64
	// Step is the step that failed.
	Step repo.RolloutStep
	// Total is the number of steps.
	Total int
	// State describes the node as last seen ("drained, base 3.4.0,
	// product 22.1.0, role backup"), or "" if it could not be asked.
	State string
	// Err is the cause.
	Err error
}

// Error says which step of which rollout failed on which node, why, the
// node's state and how to go on.
func (e *StepError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "rollout %d stopped at step %d of %d (%s)", e.Rollout, e.Step.N, e.Total, e.Step.Text)
	if e.Step.Node != "" {
		fmt.Fprintf(&b, " on node %s", e.Step.Node)
	}
	fmt.Fprintf(&b, ": %v", e.Err)
	if e.State != "" {
		fmt.Fprintf(&b, "; node %s is now %s", e.Step.Node, e.State)
	}
	b.WriteString("; the steps before it are recorded as done: fix the cause and rerun airlock install to resume at this step, or abandon the rollout with airlock install --abandon")
	return b.String()
}

// Unwrap returns the cause.
func (e *StepError) Unwrap() error { return e.Err }
