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
}

// String returns one sentence, e.g. "product 23.1.0 needs product >=
// 22.2.0; no available package reaches 22.2.0 from 21.1.0".
func (b Blocked) String() string {
	var s strings.Builder
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
	Blocked []Blocked
}

// Error joins the explanations of every blocked component with "; and ".
func (e *UnreachableError) Error() string {
	parts := make([]string, len(e.Blocked))
	for i, b := range e.Blocked {
		parts[i] = b.String()
	}
	return strings.Join(parts, "; and ")
}

// Is reports whether target is ErrUnreachable or its class.
func (e *UnreachableError) Is(target error) bool {
	return target == ErrUnreachable || target == fault.ErrPolicy
}
