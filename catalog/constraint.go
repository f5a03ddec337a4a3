package catalog

import (
	"fmt"
	"strings"
)

// Op is a comparison operator of a Constraint.
type Op string

// The operators a Constraint may use.
const (
	OpGE Op = ">="
	OpGT Op = ">"
	OpLE Op = "<="
	OpLT Op = "<"
	OpEQ Op = "="
	OpNE Op = "!="
)

// ops is ordered so that two-character operators are tried first.
var ops = []Op{OpGE, OpLE, OpNE, OpGT, OpLT, OpEQ}

// valid reports whether o is one of the operators above.
func (o Op) valid() bool {
	switch o {
	case OpGE, OpGT, OpLE, OpLT, OpEQ, OpNE:
		return true
	}
	return false
}

// Constraint is a condition on an installed component, such as
// "base >= 3.3.2": the named component must be installed at a version that
// satisfies the operator. A component that is not installed satisfies no
// constraint.
type Constraint struct {
	Name    string
	Op      Op
	Version Version
}

// ParseConstraint parses "NAME OP VERSION"; spaces around OP are optional.
func ParseConstraint(s string) (Constraint, error) {
	if len(s) > 200 {
		return Constraint{}, fmt.Errorf("%w: %q is too long", ErrConstraint, truncate(s))
	}
	for _, op := range ops {
		i := strings.Index(s, string(op))
		if i < 0 {
			continue
		}
		name := strings.TrimSpace(s[:i])
		vs := strings.TrimSpace(s[i+len(op):])
		if err := ValidName(name); err != nil {
			return Constraint{}, fmt.Errorf("%w: %q: %v", ErrConstraint, s, err)
		}
		v, err := ParseVersion(vs)
		if err != nil {
			return Constraint{}, fmt.Errorf("%w: %q: %v", ErrConstraint, s, err)
		}
		return Constraint{Name: name, Op: op, Version: v}, nil
	}
	return Constraint{}, fmt.Errorf("%w: %q: want NAME OP VERSION, e.g. 'base >= 3.3.2' (OP one of >= > <= < = !=)", ErrConstraint, truncate(s))
}

// String returns the canonical spelling, "base >= 3.3.2".
func (c Constraint) String() string {
	return c.Name + " " + string(c.Op) + " " + c.Version.String()
}

// Allows reports whether version v of c.Name satisfies c.
func (c Constraint) Allows(v Version) bool {
	n := v.Compare(c.Version)
	switch c.Op {
	case OpGE:
		return n >= 0
	case OpGT:
		return n > 0
	case OpLE:
		return n <= 0
	case OpLT:
		return n < 0
	case OpEQ:
		return n == 0
	case OpNE:
		return n != 0
	}
	return false
}

// SatisfiedBy reports whether the installed versions satisfy c. A component
// missing from installed satisfies nothing.
func (c Constraint) SatisfiedBy(installed map[string]Version) bool {
	v, ok := installed[c.Name]
	return ok && c.Allows(v)
}

// MarshalText encodes the canonical spelling; a constraint that
// ParseConstraint could not have produced (bad name, unknown operator, zero
// version) is refused, so that what is encoded can always be decoded.
func (c Constraint) MarshalText() ([]byte, error) {
	if !c.complete() {
		return nil, fmt.Errorf("%w: incomplete constraint %q", ErrConstraint, truncate(c.String()))
	}
	return []byte(c.String()), nil
}

// complete reports whether c has a valid name, operator and version.
func (c Constraint) complete() bool {
	return ValidName(c.Name) == nil && c.Op.valid() && !c.Version.IsZero()
}

// UnmarshalText parses with ParseConstraint.
func (c *Constraint) UnmarshalText(b []byte) error {
	p, err := ParseConstraint(string(b))
	if err != nil {
		return err
	}
	*c = p
	return nil
}

// ValidName checks a component, site or node name: 1 to 64 characters of
// lowercase letters, digits, '-', '_' and '.', starting with a letter or
// digit. Names appear in messages and as directory names on nodes, so
// nothing else is allowed.
func ValidName(s string) error {
	if s == "" || len(s) > 64 {
		return fmt.Errorf("name %q must be 1 to 64 characters", truncate(s))
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		ok := 'a' <= c && c <= 'z' || '0' <= c && c <= '9' || (i > 0 && (c == '-' || c == '_' || c == '.'))
		if !ok {
			return fmt.Errorf("name %q may hold only a-z, 0-9, '-', '_' and '.', and must start with a letter or digit", truncate(s))
		}
	}
	if strings.Contains(s, "..") {
		return fmt.Errorf("name %q must not contain '..'", s)
	}
	return nil
}
