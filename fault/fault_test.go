package fault

import (
	"errors"
	"fmt"
	"testing"
)

func TestCode(t *testing.T) {
	errTamper := Verification("digest mismatch")
	errReplay := Policy("bundle already imported")
	errFlag := Usage("missing --out")
	for _, tc := range []struct {
		err  error
		want int
	}{
		{nil, ExitOK},
		{errors.New("disk full"), ExitOperational},
		{errFlag, ExitUsage},
		{fmt.Errorf("import b.airlock: %w", errTamper), ExitVerification},
		{fmt.Errorf("import b.airlock: %w", errReplay), ExitPolicy},
		// Policy wins over verification when both are wrapped.
		{fmt.Errorf("%w: %w", errTamper, errReplay), ExitPolicy},
	} {
		if got := Code(tc.err); got != tc.want {
			t.Errorf("Code(%v) = %d, want %d", tc.err, got, tc.want)
		}
	}
	if !errors.Is(errTamper, ErrVerification) || errors.Is(errTamper, ErrPolicy) {
		t.Error("Verification sentinel has the wrong class")
	}
	if errors.Is(errTamper, Verification("digest mismatch")) {
		t.Error("distinct sentinels with the same text must not match")
	}
}

func TestPrintable(t *testing.T) {
	for _, tc := range []struct {
		in   string
		max  int
		want string
	}{
		{"Jane Courier <jane@example.org>", 100, "Jane Courier <jane@example.org>"},
		{"evil\x1b[2J\nname\x00", 100, "evil?[2J?name?"},
		{"ünïcödé ✓", 100, "ünïcödé ✓"},
		{"abcdefghij", 5, "abcde…"},
		{"abcde", 5, "abcde"},
	} {
		if got := Printable(tc.in, tc.max); got != tc.want {
			t.Errorf("Printable(%q, %d) = %q, want %q", tc.in, tc.max, got, tc.want)
		}
	}
}
