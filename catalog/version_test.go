package catalog

import (
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/airlock-project/airlock/fault"
)

func TestParseVersionValid(t *testing.T) {
	for _, tc := range []struct {
		in    string
		parts []uint32
	}{
		{"0", []uint32{0}},
		{"1", []uint32{1}},
		{"3.4", []uint32{3, 4}},
		{"3.4.0", []uint32{3, 4, 0}},
		{"0.0.0", []uint32{0, 0, 0}},
		{"10.20.30", []uint32{10, 20, 30}},
		{"21.1.0", []uint32{21, 1, 0}},
		{"4294967295", []uint32{4294967295}},
		{"1.2.3.4.5.6.7.8", []uint32{1, 2, 3, 4, 5, 6, 7, 8}},
		// Exactly maxVersionLen (64) characters.
		{"123456789.123456789.123456789.123456789.123456789.123456789.1234",
			[]uint32{123456789, 123456789, 123456789, 123456789, 123456789, 123456789, 1234}},
	} {
		v, err := ParseVersion(tc.in)
		if err != nil {
			t.Errorf("ParseVersion(%q): %v", tc.in, err)
			continue
		}
		if v.String() != tc.in {
			t.Errorf("ParseVersion(%q).String() = %q", tc.in, v.String())
		}
		if !slices.Equal(v.parts, tc.parts) {
			t.Errorf("ParseVersion(%q) parts = %v, want %v", tc.in, v.parts, tc.parts)
		}
		if v.IsZero() {
			t.Errorf("ParseVersion(%q).IsZero() = true", tc.in)
		}
	}
}

func TestParseVersionInvalid(t *testing.T) {
	for _, in := range []string{
		"",
		// leading zeros
		"01", "00", "1.01", "1.00", "01.1",
		// empty components
		".", "..", "1.", ".1", "1..2", "1.2.",
		// signs
		"+1", "-1", "1.-2", "1.+2", "-0",
		// spaces and other white space
		" 1", "1 ", "1 .2", "1. 2", " ", "1\n", "\t1", "1\x00",
		// overflow (above 2^32-1)
		"4294967296", "99999999999999999999", "1.4294967296",
		// too many parts
		"1.2.3.4.5.6.7.8.9", "0.0.0.0.0.0.0.0.0",
		// too long (65 characters)
		"123456789.123456789.123456789.123456789.123456789.123456789.12345",
		strings.Repeat("1", 1000),
		// not decimal numbers
		"v1", "1a", "1.2b", "a", "1_000", "0x10", "1e3", "1,2", "1-2", "1.2-rc1",
		"\uff11", // FULLWIDTH DIGIT ONE
		"١",      // ARABIC-INDIC DIGIT ONE
	} {
		v, err := ParseVersion(in)
		if err == nil {
			t.Errorf("ParseVersion(%q) = %q, want error", in, v)
			continue
		}
		if !errors.Is(err, ErrVersion) || !errors.Is(err, fault.ErrVerification) {
			t.Errorf("ParseVersion(%q) error %v: not ErrVersion of the verification class", in, err)
		}
		if !v.IsZero() {
			t.Errorf("ParseVersion(%q) returned non-zero %q with an error", in, v)
		}
	}
}

func TestVersionCompare(t *testing.T) {
	for _, tc := range []struct {
		a, b string
		want int
	}{
		{"3.10.0", "3.9.1", 1},
		{"3.4", "3.4.0", 0},
		{"3.4.0.0.0", "3.4", 0},
		{"1.0.1", "1.0", 1},
		{"1.0", "1.0.0.1", -1},
		{"1.2.3", "1.2.3", 0},
		{"0", "0.0.0.0", 0},
		{"2", "10", -1},
		{"9", "10", -1},
		{"1.9", "1.10", -1},
		{"4294967295", "4294967294", 1},
		{"4294967295", "4294967295.0", 0},
		{"21.1.0", "3.3.2", 1},
	} {
		a, b := MustVersion(tc.a), MustVersion(tc.b)
		if got := a.Compare(b); got != tc.want {
			t.Errorf("%s.Compare(%s) = %d, want %d", a, b, got, tc.want)
		}
		if got := b.Compare(a); got != -tc.want {
			t.Errorf("%s.Compare(%s) = %d, want %d", b, a, got, -tc.want)
		}
		if got := a.Less(b); got != (tc.want < 0) {
			t.Errorf("%s.Less(%s) = %v", a, b, got)
		}
		if got := a.key() == b.key(); got != (tc.want == 0) {
			t.Errorf("key(%s) = %q, key(%s) = %q: equality %v, want %v", a, a.key(), b, b.key(), got, tc.want == 0)
		}
	}
}

func TestVersionKeepsSpelling(t *testing.T) {
	a, b := MustVersion("3.4"), MustVersion("3.4.0")
	if a.Compare(b) != 0 {
		t.Fatal("3.4 != 3.4.0")
	}
	if a.String() != "3.4" || b.String() != "3.4.0" {
		t.Errorf("String() = %q, %q; want the spelling parsed", a, b)
	}
}

func TestMustVersionPanics(t *testing.T) {
	defer func() {
		if recover() == nil {
			t.Error("MustVersion(\"01\") did not panic")
		}
	}()
	MustVersion("01")
}

func TestVersionJSON(t *testing.T) {
	type doc struct {
		V Version `json:"v"`
	}
	for _, s := range []string{"0", "3.4", "3.4.0", "21.1.0", "4294967295.1"} {
		b, err := json.Marshal(doc{MustVersion(s)})
		if err != nil {
			t.Fatalf("Marshal %s: %v", s, err)
		}
		if want := `{"v":"` + s + `"}`; string(b) != want {
			t.Errorf("Marshal %s = %s, want %s", s, b, want)
		}
		var d doc
		if err := json.Unmarshal(b, &d); err != nil {
			t.Fatalf("Unmarshal %s: %v", b, err)
		}
		if d.V.String() != s || d.V.Compare(MustVersion(s)) != 0 {
			t.Errorf("round trip of %s gave %q", s, d.V)
		}
	}

	if _, err := json.Marshal(doc{}); !errors.Is(err, ErrVersion) {
		t.Errorf("Marshal of the zero Version: err = %v, want ErrVersion", err)
	}
	for _, in := range []string{`{"v":""}`, `{"v":"01"}`, `{"v":"1..2"}`, `{"v":3}`, `{"v":"3.4 "}`, `{"v":true}`} {
		var d doc
		if err := json.Unmarshal([]byte(in), &d); err == nil {
			t.Errorf("Unmarshal(%s) = %q, want error", in, d.V)
		}
	}
	var v Version
	if err := v.UnmarshalText([]byte("1.2.x")); !errors.Is(err, ErrVersion) {
		t.Errorf("UnmarshalText(1.2.x) = %v, want ErrVersion", err)
	}
	if !v.IsZero() {
		t.Errorf("failed UnmarshalText changed the version to %q", v)
	}
}
