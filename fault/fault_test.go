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
