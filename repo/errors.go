package repo

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/airlock-project/airlock/catalog"
	"github.com/airlock-project/airlock/fault"
)

// Errors about the repository itself.
var (
	// ErrNoRepository: the directory holds no airlock.db (usage class: point
	// --repo or AIRLOCK_REPO at a repository, or run airlock init).
	ErrNoRepository = fault.Usage("no airlock repository")
	// ErrExists: Init found a repository already there (usage class).
	ErrExists = fault.Usage("repository already exists")
	// ErrSchema: the database has a schema this program does not know, or
	// is not an airlock database at all (operational).
	ErrSchema = errors.New("unsupported repository schema")
	// ErrInUse: another process holds the repository's lock (policy class);
	// the error returned is an *InUseError.
	ErrInUse = fault.Policy("repository in use")
)

// Policy-class refusals of a bundle (exit 4).
var (
	// ErrReplay: a bundle with this id was already imported.
	ErrReplay = fault.Policy("bundle already imported")
	// ErrKeyUnknown: the bundle answers a download key this repository
	// never issued.
	ErrKeyUnknown = fault.Policy("download key not issued by this repository")
	// ErrKeyFulfilled: the download key was already answered by a bundle.
	ErrKeyFulfilled = fault.Policy("download key already fulfilled")
	// ErrKeyRevoked: the download key was revoked.
	ErrKeyRevoked = fault.Policy("download key revoked")
	// ErrKeyExpired: the download key is past its expiry.
	ErrKeyExpired = fault.Policy("download key expired")
	// ErrDowngrade: a package is older than a version a node of the
	// download key's inventory runs.
	ErrDowngrade = fault.Policy("package older than the version already present")
	// ErrConflict: a package's name@version or digest is already stored
	// with different metadata.
	ErrConflict = fault.Policy("package conflicts with a stored package")
)

// Errors of the commands that change trust and keys.
var (
	// ErrNotFound: no trusted key or download key has the id given (usage).
	ErrNotFound = fault.Usage("not found")
	// ErrRole: trust add was given a role the repository does not take
	// from a file (site: the repository's own key) (usage).
	ErrRole = fault.Usage("role not accepted here")
	// ErrRoleConflict: the key is already trusted, for another role, or is
	// the site's own key; a key holds one role only (usage class, like
	// keys.ErrTrustConflict).
	ErrRoleConflict = fault.Usage("key already holds another role")
	// ErrKeyClosed: key revoke on a key that is no longer outstanding
	// (policy).
	ErrKeyClosed = fault.Policy("download key is not outstanding")
	// ErrInvalid: an argument is malformed: a site name, a duration, a key
	// id or fingerprint (usage).
	ErrInvalid = fault.Usage("invalid argument")
	// ErrInventory: the inventory file is malformed (verification class).
	ErrInventory = fault.Verification("malformed inventory")
)

// Errors of Check and VerifyAudit (verification class, exit 3).
var (
	// ErrAudit: the audit log's hash chain is broken.
	ErrAudit = fault.Verification("audit log chain broken")
	// ErrCheck: Check found problems; the error lists them.
	ErrCheck = fault.Verification("repository check failed")
)

// InUseError reports that another process holds the repository's lock. It
// matches ErrInUse (policy class).
type InUseError struct {
	// Dir is the repository directory.
	Dir string
	// Holder describes the process holding the lock, from airlock.lock;
	// nil when unknown (a reader, or a process that has not written it yet).
	Holder *Holder
	// Waited is how long Open waited for the lock.
	Waited time.Duration
}

// Error names the repository, the holder and what to do.
func (e *InUseError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "repository %s in use by ", e.Dir)
	if h := e.Holder; h != nil {
		fmt.Fprintf(&b, "pid %d (%s", h.PID, h.Command)
		if h.Host != "" {
			fmt.Fprintf(&b, " on %s", h.Host)
		}
		fmt.Fprintf(&b, ") since %s", h.Since.UTC().Format(time.RFC3339))
	} else {
		b.WriteString("another airlock process (a reader, or one just starting)")
	}
	fmt.Fprintf(&b, " (waited %s): retry when it has finished", e.Waited.Round(time.Millisecond))
	return b.String()
}

// Is reports ErrInUse and its class.
func (e *InUseError) Is(target error) bool { return target == ErrInUse || target == fault.ErrPolicy }

// KeyClosedError reports a bundle that answers a download key that is not
// outstanding. Err is ErrKeyFulfilled, ErrKeyRevoked, ErrKeyExpired or
// ErrKeyUnknown (all policy class).
type KeyClosedError struct {
	// ID is the download key.
	ID catalog.KeyID
	// Err is the reason.
	Err error
	// Bundle names the bundle that fulfilled the key, if it was fulfilled.
	Bundle string
	// When is when the key was fulfilled, revoked or expired.
	When time.Time
}

// Error says why the key cannot be answered and what to do.
func (e *KeyClosedError) Error() string {
	when := e.When.UTC().Format(time.RFC3339)
	switch e.Err {
	case ErrKeyFulfilled:
		return fmt.Sprintf("download key %s was already fulfilled by bundle %s, imported %s: a bundle imports once and a key is answered once; make a new download key (airlock key new) to fetch again", e.ID, e.Bundle, when)
	case ErrKeyRevoked:
		return fmt.Sprintf("download key %s was revoked at %s: nothing answering it is accepted; make a new download key (airlock key new)", e.ID, when)
	case ErrKeyExpired:
		return fmt.Sprintf("download key %s expired at %s: make a new download key (airlock key new) and fetch again", e.ID, when)
	default:
		return fmt.Sprintf("download key %s was not issued by this repository: the bundle answers another site's or another repository's key; import it into the repository that made that key", e.ID)
	}
}

// Unwrap returns Err.
func (e *KeyClosedError) Unwrap() error { return e.Err }

// Problem is one inconsistency found by Check.
type Problem struct {
	// Kind is a short machine-readable category: "missing-blob",
	// "corrupt-blob", "orphan-blob", "temp-file", "stray-file", "audit",
	// "dangling", "site-key", "rotation".
	Kind string `json:"kind"`
	// Subject names what is wrong: a path, a package, a bundle, an entry.
	Subject string `json:"subject"`
	// Detail says what is wrong with it and what to do.
	Detail string `json:"detail"`
}

// String returns "kind: subject: detail".
func (p Problem) String() string { return p.Kind + ": " + p.Subject + ": " + p.Detail }

// CheckError is returned by Check when it found problems; it matches
// ErrCheck (verification class).
type CheckError struct {
	// Dir is the repository.
	Dir string
	// Problems lists every problem found.
	Problems []Problem
}

// Error lists every problem, one per line.
func (e *CheckError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "repository %s: %d problem(s) found:", e.Dir, len(e.Problems))
	for _, p := range e.Problems {
		b.WriteString("\n  ")
		b.WriteString(p.String())
	}
	return b.String()
}

// Unwrap returns ErrCheck.
func (e *CheckError) Unwrap() error { return ErrCheck }
