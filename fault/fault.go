// Package fault defines the classes of failure that airlock reports, so that
// the exit code of every program is derived in one place (cmd/) from the
// class of the error, never chosen deep inside a feature package.
//
// A package that reports a kind of failure declares it once, in its own
// errors.go, with one of the constructors below (or a typed error whose Is
// method reports its class). cmd/ then asks errors.Is(err, fault.ErrPolicy)
// and so on. Errors of no class are operational failures (exit 1).
package fault

import (
	"errors"
	"strings"
	"unicode"
)

// The class sentinels. Test with errors.Is; never return them bare.
var (
	// ErrUsage marks a mistake in how a command was called (exit 2).
	ErrUsage = errors.New("usage error")
	// ErrVerification marks input that failed a cryptographic or structural
	// check: a bad or untrusted signature, a digest or size mismatch,
	// malformed or truncated data (exit 3).
	ErrVerification = errors.New("verification failed")
	// ErrPolicy marks input that verified but is refused by policy: a
	// replay, an expired or closed key, a downgrade, an ordering violation,
	// a repository in use (exit 4).
	ErrPolicy = errors.New("refused by policy")
)

// Exit codes, as documented in DESIGN.md.
const (
	ExitOK           = 0
	ExitOperational  = 1
	ExitUsage        = 2
	ExitVerification = 3
	ExitPolicy       = 4
)

// Code maps an error to the exit code of its class. A nil error is 0.
func Code(err error) int {
	switch {
	case err == nil:
		return ExitOK
	case errors.Is(err, ErrUsage):
		return ExitUsage
	case errors.Is(err, ErrPolicy):
		return ExitPolicy
	case errors.Is(err, ErrVerification):
		return ExitVerification
	default:
		return ExitOperational
	}
}

// classed is a sentinel error that belongs to a class.
type classed struct {
	msg   string
	class error
}

func (e *classed) Error() string        { return e.msg }
func (e *classed) Is(target error) bool { return target == e.class }

// Verification returns a new sentinel error of the verification class.
// Each call returns a distinct error, so it is meant for package-level vars.
func Verification(msg string) error { return &classed{msg, ErrVerification} }

// Policy returns a new sentinel error of the policy class.
func Policy(msg string) error { return &classed{msg, ErrPolicy} }

// Usage returns a new sentinel error of the usage class.
func Usage(msg string) error { return &classed{msg, ErrUsage} }

// Printable makes untrusted text (a user ID, a server's message, a
// library's error quoting its input) safe to put in a message for people:
// control and other non-printing runes become '?', and it is cut to max
// runes followed by "…". Messages quote such text only through it.
func Printable(s string, max int) string {
	var b strings.Builder
	n := 0
	for _, r := range s {
		if n == max {
			b.WriteString("…")
			break
		}
		if unicode.IsPrint(r) {
			b.WriteRune(r)
		} else {
			b.WriteByte('?')
		}
		n++
	}
	return b.String()
}
