package server

import (
	"errors"

	"github.com/airlock-project/airlock/fault"
	"github.com/airlock-project/airlock/keys"
)

// Usage-class errors: the command named something that is not there or
// cannot be used that way.
var (
	// ErrNotInitialized: the directory is not a store made by Init.
	ErrNotInitialized = fault.Usage("not an airlock-server directory")
	// ErrDirNotEmpty: Init refuses a directory that already holds files.
	ErrDirNotEmpty = fault.Usage("directory not empty")
	// ErrUnknownSite: no site of that name is registered.
	ErrUnknownSite = fault.Usage("unknown site")
	// ErrUnknownPackage: no package in the catalog matches the reference.
	ErrUnknownPackage = fault.Usage("unknown package")
	// ErrBadRequest: publish or site add metadata that cannot be used.
	ErrBadRequest = fault.Usage("invalid request")
	// ErrPassphraseFile: --passphrase-file is missing, empty or not a
	// regular file. (A passphrase that does not decrypt vendor.key, or
	// none for a protected one, matches keys.ErrPassphrase, also usage.)
	ErrPassphraseFile = keys.ErrPassphraseFile
)

// ErrSiteMismatch: a download key that names one site but is signed by the
// key of another (verification class).
var ErrSiteMismatch = fault.Verification("download key signed by another site")

// Policy-class errors: the request is understood but refused.
var (
	// ErrInUse: another process holds the database and does not answer
	// on the admin socket.
	ErrInUse = fault.Policy("store in use")
	// ErrConflict: publish of a name@version already published with other
	// content or metadata, or of a file already published under another
	// name@version.
	ErrConflict = fault.Policy("conflicts with the catalog")
	// ErrSiteConflict: a site already registered with another key, or a key
	// already registered for another site.
	ErrSiteConflict = fault.Policy("conflicts with a registered site")
	// ErrNotDelivered: reissue of a package the site never acknowledged.
	ErrNotDelivered = fault.Policy("not delivered")
)

// ErrSchema reports a database written by another version of airlock-server
// (operational: upgrade the program, or restore the right database).
var ErrSchema = errors.New("unsupported database schema")

// ErrLocked: signing (Serve, an exchange) with a Server opened without
// unlocking its passphrase-protected vendor key (see Config.Unlock). It is
// operational: the program opened the store the wrong way, and an exchange
// it refuses is the server's fault, not the client's (500).
var ErrLocked = errors.New("vendor key locked")

// keyError is a refusal of package keys (a *keys.VerifyError: a site key
// revoked or expired) told in the server's words, with the vendor's remedy.
// Error is that message; Unwrap returns the keys error, so that errors.Is
// still matches its sentinel and class, and errors.As finds its fields.
type keyError struct {
	msg string
	err error
}

func (e *keyError) Error() string { return e.msg }

// Unwrap returns the keys error.
func (e *keyError) Unwrap() error { return e.err }
