package catalog

import "github.com/airlock-project/airlock/fault"

// Errors reported by the parsers and decoders of this package. All of them
// are of the verification class: they describe malformed input.
var (
	ErrDigest     = fault.Verification("malformed sha256 digest")
	ErrVersion    = fault.Verification("malformed version")
	ErrConstraint = fault.Verification("malformed constraint")
	ErrPackage    = fault.Verification("invalid package metadata")
	ErrDocument   = fault.Verification("malformed document")
	ErrFormat     = fault.Verification("unsupported document format")
	ErrTooLarge   = fault.Verification("document too large")
)
