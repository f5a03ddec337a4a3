package plan

import (
	"fmt"
	"strings"

	"github.com/airlock-project/airlock/catalog"
	"github.com/airlock-project/airlock/fault"
)

// ErrUnreachable is the policy-class sentinel that every *UnreachableError
// matches with errors.Is: newer packages exist that no install sequence can
// reach from the node's installed versions.
var ErrUnreachable = fault.Policy("newer packages cannot be reached")

// Blocked explains why one component cannot reach its newest available
// version: Package (the newest version of the component) is out of reach
// because Blocker (Package itself, or a package it transitively needs)
// requires Needs, which no available package can satisfy starting from Have.
type Blocked struct {
	// Package is the newest available version of the component.
	Package catalog.Package
	// Blocker is the package whose requirement cannot be met.
	Blocker catalog.Package
	// Needs is the requirement of Blocker that cannot be met.
	Needs catalog.Constraint
	// Have is the version of Needs.Name the node would have at that point;
	// the zero Version means the component is not installed.
	Have catalog.Version
	// Cycle is set when the requirements lead back to a package already on
	// the path: the packages require each other.
	Cycle bool
	// Chain is the path of requirements followed from Package to Blocker,
	// one link per package: Package needs something that the next link's
	// package provides, and so on. Its last link is Blocker and Needs.
	Chain []Need
}

// Need is one link of a chain of requirements: Package requires Needs.
type Need struct {
	Package catalog.Package
	Needs   catalog.Constraint
}

// String returns "product 22 needs license >= 1".
func (n Need) String() string {
	return n.Package.Name + " " + n.Package.Version.String() + " needs " + n.Needs.String()
}

// String returns one sentence, e.g. "product 23.1.0 needs product >=
// 22.2.0; no available package reaches 22.2.0 from 21.1.0", or for a cycle
// the whole chain: "product 22 needs license >= 1, license 1 needs product
// >= 22: their requirements form a cycle".
func (b Blocked) String() string {
	var s strings.Builder
	if b.Cycle && len(b.Chain) > 0 {
		for i, n := range b.Chain {
			if i > 0 {
				s.WriteString(", ")
			}
			s.WriteString(n.String())
		}
		s.WriteString(": their requirements form a cycle")
		return s.String()
	}
	if b.Blocker.ID() != b.Package.ID() {
		fmt.Fprintf(&s, "%s %s cannot be reached: ", b.Package.Name, b.Package.Version)
	}
	fmt.Fprintf(&s, "%s %s needs %s; ", b.Blocker.Name, b.Blocker.Version, b.Needs)
	from := "from " + b.Have.String()
	if b.Have.IsZero() {
		from = "(" + b.Needs.Name + " is not installed)"
	}
	switch {
	case b.Cycle:
		fmt.Fprintf(&s, "the packages that could satisfy it need %s %s first: their requirements form a cycle", b.Blocker.Name, b.Blocker.Version)
	case b.Needs.Op == catalog.OpGE || b.Needs.Op == catalog.OpGT || b.Needs.Op == catalog.OpEQ:
		fmt.Fprintf(&s, "no available package reaches %s %s", b.Needs.Version, from)
	default:
		fmt.Fprintf(&s, "no available package satisfies it %s", from)
	}
	return s.String()
}

// UnreachableError lists every component whose newest available version
// cannot be reached. It matches ErrUnreachable and fault.ErrPolicy.
type UnreachableError struct {
	// Node names the node concerned; Sequence leaves it empty, Build sets it.
	Node    string
	Blocked []Blocked
}

// Error joins the explanations of every blocked component with "; and ",
// after "node NAME: " when Node is set.
func (e *UnreachableError) Error() string {
	parts := make([]string, len(e.Blocked))
	for i, b := range e.Blocked {
		parts[i] = b.String()
	}
	msg := strings.Join(parts, "; and ")
	if e.Node != "" {
		msg = "node " + e.Node + ": " + msg
	}
	return msg
}

// Is reports whether target is ErrUnreachable or its class.
func (e *UnreachableError) Is(target error) bool {
	return target == ErrUnreachable || target == fault.ErrPolicy
}

// Errors of Build and ParseStrategy. Each is returned wrapped with the
// strategy, node or option concerned and what to do next.
var (
	// ErrStrategy: the strategy name is not one of Strategies (usage class).
	ErrStrategy = fault.Usage("unknown strategy")
	// ErrNoNode: a node named in Options.Nodes is not in the cluster, or
	// the cluster has no node (usage class).
	ErrNoNode = fault.Usage("no such node")
	// ErrOptions: an option is out of range (usage class).
	ErrOptions = fault.Usage("invalid plan options")
	// ErrCluster: the cluster description is inconsistent: two nodes with
	// one name, a role that is not primary, backup, traffic or management
	// (policy class).
	ErrCluster = fault.Policy("invalid cluster description")
	// ErrMisfit: the strategy does not fit the selected nodes, e.g.
	// failover without exactly one primary and one backup (policy class).
	ErrMisfit = fault.Policy("strategy does not fit the cluster")
)
