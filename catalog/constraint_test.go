package catalog

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/airlock-project/airlock/fault"
)

func TestParseConstraintValid(t *testing.T) {
	for _, tc := range []struct {
		in      string
		name    string
		op      Op
		version string
	}{
		{"base >= 3.3.2", "base", OpGE, "3.3.2"},
		{"base>=3.3.2", "base", OpGE, "3.3.2"},
		{"base > 3.3.2", "base", OpGT, "3.3.2"},
		{"base>3.3.2", "base", OpGT, "3.3.2"},
		{"base <= 3.3.2", "base", OpLE, "3.3.2"},
		{"base<=3.3.2", "base", OpLE, "3.3.2"},
		{"base < 3.3.2", "base", OpLT, "3.3.2"},
		{"base<3.3.2", "base", OpLT, "3.3.2"},
		{"base = 3.3.2", "base", OpEQ, "3.3.2"},
		{"base=3.3.2", "base", OpEQ, "3.3.2"},
		{"base != 3.3.2", "base", OpNE, "3.3.2"},
		{"base!=3.3.2", "base", OpNE, "3.3.2"},
		// Space on one side only, several spaces, surrounding spaces.
		{"product >=21.1.0", "product", OpGE, "21.1.0"},
		{"product>= 21.1.0", "product", OpGE, "21.1.0"},
		{"product   <   21", "product", OpLT, "21"},
		{"  hot-fix_1.x != 0  ", "hot-fix_1.x", OpNE, "0"},
	} {
		c, err := ParseConstraint(tc.in)
		if err != nil {
			t.Errorf("ParseConstraint(%q): %v", tc.in, err)
			continue
		}
		if c.Name != tc.name || c.Op != tc.op || c.Version.String() != tc.version {
			t.Errorf("ParseConstraint(%q) = {%q %q %q}, want {%q %q %q}", tc.in, c.Name, c.Op, c.Version, tc.name, tc.op, tc.version)
		}
		want := tc.name + " " + string(tc.op) + " " + tc.version
		if c.String() != want {
			t.Errorf("ParseConstraint(%q).String() = %q, want %q", tc.in, c.String(), want)
		}
		// String round trip.
		c2, err := ParseConstraint(c.String())
		if err != nil {
			t.Errorf("ParseConstraint(%q) (String of %q): %v", c.String(), tc.in, err)
			continue
		}
		if c2.Name != c.Name || c2.Op != c.Op || c2.Version.String() != c.Version.String() || c2.String() != c.String() {
			t.Errorf("round trip of %q: %q became %q", tc.in, c, c2)
		}
	}
}

func TestParseConstraintInvalid(t *testing.T) {
	for _, in := range []string{
		"",
		" ",
		// no operator
		"base", "base 3.3.2", "base ~ 3.3.2", "base ~> 3.3", "base ^3",
		// no or bad name
		">= 1", " >= 1", "Base >= 1", "-base >= 1", "ba se >= 1", "base/x >= 1", "a..b >= 1",
		strings.Repeat("a", 65) + " >= 1",
		// no or bad version
		"base >=", "base >= ", "base >= 1.x", "base >= 01", "base >= v1", "base >= 1 2", "base >= -1",
		// bad operators
		"base >== 1", "=> 1", "base => 1", "base =< 1", "base == 1", "base <> 1", "base ! 1",
		"base =! 1", "base >>= 1", "base !== 1", "base >= 1 >= 2", "base >= 1 < 2",
		// too long
		"base >= " + strings.Repeat("1", 200),
	} {
		c, err := ParseConstraint(in)
		if err == nil {
			t.Errorf("ParseConstraint(%q) = %q, want error", in, c)
			continue
		}
		if !errors.Is(err, ErrConstraint) || !errors.Is(err, fault.ErrVerification) {
			t.Errorf("ParseConstraint(%q) error %v: not ErrConstraint of the verification class", in, err)
		}
	}
}

func TestConstraintAllows(t *testing.T) {
	// Candidates relative to 3.3.2: below, equal (two spellings), above.
	below, eq, eq0, above := MustVersion("3.3.1"), MustVersion("3.3.2"), MustVersion("3.3.2.0"), MustVersion("3.10.0")
	for _, tc := range []struct {
		op                  Op
		below, equal, above bool
	}{
		{OpGE, false, true, true},
		{OpGT, false, false, true},
		{OpLE, true, true, false},
		{OpLT, true, false, false},
		{OpEQ, false, true, false},
		{OpNE, true, false, true},
		{Op("~"), false, false, false}, // unknown operators allow nothing
		{Op(""), false, false, false},
	} {
		c := Constraint{Name: "base", Op: tc.op, Version: MustVersion("3.3.2")}
		for _, v := range []struct {
			v    Version
			want bool
		}{{below, tc.below}, {eq, tc.equal}, {eq0, tc.equal}, {above, tc.above}} {
			if got := c.Allows(v.v); got != v.want {
				t.Errorf("%q.Allows(%s) = %v, want %v", c, v.v, got, v.want)
			}
		}
	}
}

func TestConstraintSatisfiedBy(t *testing.T) {
	installed := map[string]Version{"base": MustVersion("3.4.0"), "product": MustVersion("21.1")}
	for _, tc := range []struct {
		c    string
		want bool
	}{
		{"base >= 3.3.2", true},
		{"base >= 3.4", true},
		{"base > 3.4", false},
		{"base < 3.10", true},
		{"product = 21.1.0", true},
		{"product != 21.1.0", false},
		// A missing component satisfies nothing, not even != or <.
		{"license >= 0", false},
		{"license != 1", false},
		{"license < 99", false},
	} {
		c, err := ParseConstraint(tc.c)
		if err != nil {
			t.Fatal(err)
		}
		if got := c.SatisfiedBy(installed); got != tc.want {
			t.Errorf("%q.SatisfiedBy(%v) = %v, want %v", tc.c, installed, got, tc.want)
		}
		if c.SatisfiedBy(nil) {
			t.Errorf("%q.SatisfiedBy(nil) = true", tc.c)
		}
	}
}

func TestConstraintJSON(t *testing.T) {
	type doc struct {
		C []Constraint `json:"c"`
	}
	in := doc{[]Constraint{
		{Name: "base", Op: OpGE, Version: MustVersion("3.3.2")},
		{Name: "product", Op: OpNE, Version: MustVersion("21")},
	}}
	b, err := EncodeCanonical(in)
	if err != nil {
		t.Fatal(err)
	}
	if want := `{"c":["base >= 3.3.2","product != 21"]}` + "\n"; string(b) != want {
		t.Errorf("Marshal = %s, want %s", b, want)
	}
	var out doc
	if err := json.Unmarshal(b, &out); err != nil {
		t.Fatal(err)
	}
	if len(out.C) != 2 || out.C[0].String() != "base >= 3.3.2" || out.C[1].String() != "product != 21" {
		t.Errorf("round trip gave %v", out.C)
	}
	var c Constraint
	if err := json.Unmarshal([]byte(`"base >== 1"`), &c); !errors.Is(err, ErrConstraint) {
		t.Errorf("Unmarshal of a bad constraint: err = %v, want ErrConstraint", err)
	}

	// What MarshalText writes must parse back: incomplete constraints are refused.
	for _, c := range []Constraint{
		{},
		{Name: "base", Op: OpGE},
		{Name: "", Op: OpGE, Version: MustVersion("1")},
		{Name: "Base", Op: OpGE, Version: MustVersion("1")},
		{Name: "base", Op: "", Version: MustVersion("1")},
		{Name: "base", Op: "~", Version: MustVersion("1")},
		{Name: "base", Op: "==", Version: MustVersion("1")},
	} {
		if b, err := c.MarshalText(); !errors.Is(err, ErrConstraint) {
			t.Errorf("MarshalText(%#v) = %q, %v; want ErrConstraint", c, b, err)
		}
	}
}

func TestValidName(t *testing.T) {
	for _, s := range []string{
		"a", "0", "base", "node-a", "plant_3", "v1.2", "0abc", "a.b-c_d", "a-", "a.",
		strings.Repeat("z", 64),
	} {
		if err := ValidName(s); err != nil {
			t.Errorf("ValidName(%q) = %v, want nil", s, err)
		}
	}
	for _, s := range []string{
		"", strings.Repeat("z", 65),
		"-a", "_a", ".a", ".", "..", "a..b", "a/b", "../a", `a\b`,
		"A", "Base", "a b", " a", "a\n", "a\x00", "é", "a:b", "a*", "ä",
	} {
		if err := ValidName(s); err == nil {
			t.Errorf("ValidName(%q) = nil, want error", s)
		}
	}
}
