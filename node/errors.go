package node

import (
	"errors"

	"github.com/airlock-project/airlock/fault"
	"github.com/airlock-project/airlock/verify"
)

// Errors of the node agent. Test with errors.Is; the errors actually
// returned wrap these with the node, package or member concerned. The HTTP
// status and the code of an API error are derived from them in one place
// (statusOf).
var (
	// ErrUnauthorized: missing or wrong bearer token (401).
	ErrUnauthorized = errors.New("missing or wrong bearer token")
	// ErrBadRequest: a malformed request: bad digest, bad JSON, bad
	// offset header (400).
	ErrBadRequest = fault.Usage("bad request")
	// ErrNotFound: no such job, or nothing known about a package (404).
	ErrNotFound = errors.New("not found")

	// ErrNoVendorKey: the node trusts no vendor key yet (usage class: run
	// airlock-node trust).
	ErrNoVendorKey = fault.Usage("no vendor key trusted")
	// ErrInitialized: init was asked to overwrite an existing node (usage
	// class).
	ErrInitialized = fault.Usage("node directory already initialised")
	// ErrNotInitialized: the directory holds no node.
	ErrNotInitialized = fault.Usage("not a node directory")
	// ErrState: a file of the node directory itself (state.json, the TLS
	// certificate and key, the token) is damaged, or state.json has a
	// format this airlock-node does not know (verification class, exit 3).
	// The error names the file and says how to recover; nothing is changed.
	ErrState = fault.Verification("unreadable node state")
	// ErrInUse: another agent serves the directory (policy class, like a
	// repository in use).
	ErrInUse = fault.Policy("node directory in use")

	// ErrNotEntitled: a verified entitlement does not list the package
	// (verification class, 422).
	ErrNotEntitled = verify.ErrNotEntitled
	// ErrDigest: package data whose SHA-256 or size differs from the signed
	// metadata (verification class, 422).
	ErrDigest = fault.Verification("package digest mismatch")
	// ErrArchive: a package whose archive is malformed or unsafe to unpack
	// (verification class).
	ErrArchive = fault.Verification("unsafe or malformed package archive")

	// ErrNoEntitlement: data was sent for a package whose entitlement was
	// not uploaded first (409).
	ErrNoEntitlement = errors.New("no entitlement for this package")
	// ErrOffset: an upload chunk that does not start where the staged data
	// ends (409; X-Airlock-Offset says where it must start).
	ErrOffset = errors.New("upload offset mismatch")
	// ErrUploadBusy: another upload of the same package is in progress (409).
	ErrUploadBusy = errors.New("upload of this package already in progress")
	// ErrTooLarge: a body larger than allowed (413).
	ErrTooLarge = errors.New("request body too large")
	// ErrBusy: too many uploads or queued installs; retry later (503).
	ErrBusy = errors.New("node busy")
	// ErrNotStaged: install of a package that is not completely staged (409).
	ErrNotStaged = errors.New("package not staged")

	// ErrDowngrade: the package is older than what the node has installed
	// (policy class, 409).
	ErrDowngrade = fault.Policy("downgrade refused")
	// ErrAlreadyInstalled: the package's version is the one installed
	// (policy class, 409).
	ErrAlreadyInstalled = fault.Policy("version already installed")
	// ErrRequires: the package's requires do not hold on the node (policy
	// class, 409).
	ErrRequires = fault.Policy("package requirements not met")
	// ErrHook: a hook (install, drain, undrain, connections, promote,
	// demote) failed, timed out, is not executable, or printed nonsense.
	ErrHook = errors.New("hook failed")
	// ErrRefused: the reference client service refused a connection
	// (DialService): the node is drained, stopping or at its limit.
	ErrRefused = errors.New("client connection refused")
	// ErrInterrupted: an install job did not finish because the agent
	// stopped; the previous release is current.
	ErrInterrupted = errors.New("install interrupted")
)

// keyError is a refusal of package keys (a *keys.VerifyError: a vendor key
// or signer that is not pinned, revoked or expired) told in the node's own
// words, with the remedy on the node (airlock-node trust) rather than
// another program's. Error is that message; Unwrap returns the keys error,
// so that errors.Is still matches its sentinel and class, and errors.As
// finds its fields.
type keyError struct {
	msg string
	err error
}

func (e *keyError) Error() string { return e.msg }

// Unwrap returns the keys error.
func (e *keyError) Unwrap() error { return e.err }
