package verify

import "github.com/airlock-project/airlock/fault"

// Verification-class errors: the input is not what its signers said.
var (
	// ErrCourierMismatch: the manifest names a courier other than its signer.
	ErrCourierMismatch = fault.Verification("manifest courier does not match its signer")
	// ErrEntitlementDigest: entitlement.asc is not the one the manifest names.
	ErrEntitlementDigest = fault.Verification("entitlement does not match the manifest's digest")
	// ErrInconsistent: manifest and entitlement disagree (site, key, packages).
	ErrInconsistent = fault.Verification("manifest and entitlement disagree")
	// ErrKeyMismatch: an entitlement does not answer the download key it is
	// presented with.
	ErrKeyMismatch = fault.Verification("entitlement does not answer this download key")
	// ErrNotEntitled: a verified entitlement does not list the package.
	ErrNotEntitled = fault.Verification("package not listed in the entitlement")
)

// Policy-class errors: the input verified but must not be accepted here, now.
var (
	// ErrWrongSite: the document is for another site.
	ErrWrongSite = fault.Policy("made for another site")
	// ErrExpired: the bundle, entitlement or download key is past its expiry.
	ErrExpired = fault.Policy("expired")
	// ErrNotYetValid: the document was issued in the future: a clock is off.
	ErrNotYetValid = fault.Policy("issued in the future")
)
