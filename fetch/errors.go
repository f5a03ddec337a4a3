package fetch

import (
	"errors"
	"fmt"

	"github.com/airlock-project/airlock/catalog"
	"github.com/airlock-project/airlock/fault"
)

// Verification-class errors (exit 3): the server's answer is not what the
// protocol and the vendor's signature allow. Nothing is acknowledged after
// any of them.
var (
	// ErrProtocol marks an answer that breaks the protocol: malformed JSON,
	// a download list that does not match the entitlement, a Content-Range
	// or Content-Length other than the one asked for, a download URL on
	// another origin.
	ErrProtocol = fault.Verification("the server's answer breaks the protocol")
	// ErrRedirect marks a redirect: the protocol has none, and following one
	// would send the request somewhere the operator did not choose.
	ErrRedirect = fault.Verification("the server answered with a redirect")
	// ErrStalled marks a server that sent nothing for longer than the idle
	// timeout (a stall or a slow drip).
	ErrStalled = fault.Verification("the server stopped sending data")
	// ErrOversize marks a body longer than the entitled size, or an answer
	// longer than its limit.
	ErrOversize = fault.Verification("the server sent more bytes than allowed")
	// ErrDigest marks downloaded data whose sha256 is not the entitled one.
	ErrDigest = fault.Verification("sha256 mismatch")
	// ErrKeyMismatch marks an entitlement that does not answer the download
	// key that was presented: another site or another key id.
	ErrKeyMismatch = fault.Verification("the entitlement does not answer this download key")
)

// Policy-class errors (exit 4).
var (
	// ErrRefused marks a download key that the server refused: unknown
	// site, bad site signature, a clock out of the key's window.
	ErrRefused = fault.Policy("the server refused the download key")
	// ErrDelivered marks a package that the site has already acknowledged:
	// only the vendor can make it downloadable again (reissue).
	ErrDelivered = fault.Policy("the package was already delivered")
)

// Usage-class errors (exit 2).
var (
	// ErrExists marks an output (bundle, volume, key file) that already
	// exists: airlock-fetch never overwrites one.
	ErrExists = fault.Usage("output already exists")
	// ErrOptions marks a missing or invalid option.
	ErrOptions = fault.Usage("invalid options")
)

// errKeyRejected classes the server's finding that the download key is
// malformed or too large: the input failed a structural check (exit 3).
var errKeyRejected = fault.Verification("the server found the download key malformed")

// ErrCacheBusy reports a download cache locked by another airlock-fetch
// (operational, exit 1).
var ErrCacheBusy = errors.New("download cache in use by another airlock-fetch")

// ServerError is an error answer of the server ({"error", "reason"}). Its
// class follows the reason (see the package documentation): a refusal of
// the download key is policy (exit 4), a complaint about a malformed key is
// verification (exit 3), anything else is operational (exit 1).
type ServerError struct {
	// Op is what was asked: "exchange", "download", "acknowledge".
	Op string
	// Status is the HTTP status code.
	Status int
	// Reason is the protocol's reason token, or "" if the answer had none.
	Reason string
	// Message is the server's message for the operator, made printable.
	Message string
}

func (e *ServerError) Error() string {
	msg := e.Message
	if msg == "" {
		msg = "no message"
	}
	if e.Reason != "" {
		return fmt.Sprintf("%s: the server answered %d (%s): %s", e.Op, e.Status, e.Reason, msg)
	}
	return fmt.Sprintf("%s: the server answered %d: %s", e.Op, e.Status, msg)
}

// Unwrap returns the sentinel of the error's class, if any.
func (e *ServerError) Unwrap() error {
	switch e.Reason {
	case "unknown-site", "bad-signature", "clock":
		return ErrRefused
	case "delivered":
		return ErrDelivered
	case "malformed", "too-large":
		return errKeyRejected
	case "not-entitled":
		// The server contradicts its own signed entitlement.
		return ErrProtocol
	}
	return nil
}

// PackageError ties an error to the package concerned.
type PackageError struct {
	Package catalog.Package
	Err     error
}

func (e *PackageError) Error() string { return fmt.Sprintf("package %s: %v", e.Package, e.Err) }

// Unwrap returns Err.
func (e *PackageError) Unwrap() error { return e.Err }
