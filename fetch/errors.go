package fetch

import (
	"errors"
	"fmt"

	"github.com/airlock-project/airlock/catalog"
	"github.com/airlock-project/airlock/fault"
	"github.com/airlock-project/airlock/keys"
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
	// ErrOversize marks a body longer than the entitled size, or an answer
	// longer than its limit.
	ErrOversize = fault.Verification("the server sent more bytes than allowed")
	// ErrDigest marks downloaded data whose sha256 is not the entitled one.
	ErrDigest = fault.Verification("sha256 mismatch")
	// ErrKeyMismatch marks an entitlement that does not answer the download
	// key that was presented: another site or another key id.
	ErrKeyMismatch = fault.Verification("the entitlement does not answer this download key")
	// ErrKeySignature marks a download key whose signature the server did
	// not accept (reasons unknown-site, bad-signature): signed by a key not
	// registered for any site there, by another site's key, or altered
	// after signing. Like an untrusted or bad signature anywhere else in
	// airlock, it is a verification failure.
	ErrKeySignature = fault.Verification("the server did not accept the download key's signature")
)

// Policy-class errors (exit 4).
var (
	// ErrRefused marks a download key that the server refused for its
	// time (reason clock): expired, or made later than the server's clock
	// allows.
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

// Operational errors (exit 1): a rerun may succeed.
var (
	// ErrCacheBusy reports a download cache locked by another airlock-fetch.
	ErrCacheBusy = errors.New("download cache in use by another airlock-fetch")
	// ErrStalled marks a server that sent nothing for longer than the idle
	// timeout (a stall or a slow drip). It is the network's failure, not the
	// data's: what arrived is kept, and a rerun resumes.
	ErrStalled = errors.New("the server stopped sending data")
)

// ServerError is an error answer of the server ({"error", "reason"}). Its
// class follows the reason (see the package documentation): a key refused
// for its time or a package already delivered is policy (exit 4); a key
// whose signature the server did not accept, or that it found malformed,
// is verification (exit 3), as is an answer that contradicts the
// entitlement; anything else is operational (exit 1).
type ServerError struct {
	// Op is what was asked: "exchange", "download", "acknowledge".
	Op string
	// Server is the server's base URL, without credentials.
	Server string
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
	at := e.Op
	if e.Server != "" {
		at += " at " + e.Server
	}
	switch e.Reason {
	case "":
		// Not the protocol's error body: a proxy, a web server, a wrong path.
		return fmt.Sprintf("%s: the server answered %d: %s; if this repeats, check that --server is the vendor's airlock update server", at, e.Status, msg)
	case "not-found", "method-not-allowed":
		return fmt.Sprintf("%s: the server answered %d (%s): %s; check --server: it is the update server's base URL the vendor gave", at, e.Status, e.Reason, msg)
	}
	return fmt.Sprintf("%s: the server answered %d (%s): %s", at, e.Status, e.Reason, msg)
}

// Unwrap returns the sentinel of the error's class, if any.
func (e *ServerError) Unwrap() error {
	switch e.Reason {
	case "unknown-site", "bad-signature":
		return ErrKeySignature
	case "clock":
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

// keyError is a refusal of package keys (a *keys.VerifyError about a
// signer) told in airlock-fetch's words, about the keys it was given
// (--vendor-key, --courier-key) rather than a trust store. Error is that
// message; Unwrap returns the keys error, so that errors.Is still matches
// its sentinel and class, and errors.As finds its fields.
type keyError struct {
	msg string
	err error
}

func (e *keyError) Error() string { return e.msg }

// Unwrap returns the keys error.
func (e *keyError) Unwrap() error { return e.err }

// signerName names the signer of a refused signature for a message: its
// fingerprint, else the key ID the signature gives.
func signerName(ve *keys.VerifyError) string {
	switch {
	case !ve.Signer.IsZero():
		return "key " + ve.Signer.String()
	case ve.KeyID != 0:
		return fmt.Sprintf("key ID %016X", ve.KeyID)
	}
	return "another key"
}
