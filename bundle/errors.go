package bundle

import (
	"fmt"

	"github.com/airlock-project/airlock/fault"
)

// Errors reported by this package. All but ErrSizeSyntax are of the
// verification class (exit 3): they describe a bundle, or a package source,
// that is not what it claims to be. Test with errors.Is; the errors actually
// returned wrap these with the member, volume or package concerned.
var (
	// ErrManifest marks a manifest that is malformed or inconsistent.
	ErrManifest = fault.Verification("invalid bundle manifest")
	// ErrTruncated marks a bundle that ends early: inside a zstd frame,
	// inside a member, or before the tar end-of-archive marker.
	ErrTruncated = fault.Verification("bundle truncated")
	// ErrMember marks an unexpected member: unknown, extra, missing,
	// duplicated or out of order, not a regular file, with an unsafe name or
	// a malformed header.
	ErrMember = fault.Verification("unexpected bundle member")
	// ErrSize marks a member or package whose size differs from the one
	// listed, or exceeds a limit.
	ErrSize = fault.Verification("size mismatch")
	// ErrDigest marks a member, package or entitlement whose sha256 differs
	// from the one listed.
	ErrDigest = fault.Verification("sha256 mismatch")
	// ErrTrailing marks data after the end of the bundle: after the tar
	// end-of-archive marker and its zero padding, or after the last zstd
	// frame.
	ErrTrailing = fault.Verification("trailing data after the bundle")
	// ErrCompression marks a zstd stream that cannot be decoded within the
	// limits: corrupt data, a checksum mismatch, a window over the limit.
	ErrCompression = fault.Verification("bundle decompression failed")
	// ErrVolume marks a volume of a split bundle that is missing or whose
	// sha256 differs from the one listed in NAME.sha256.
	ErrVolume = fault.Verification("bundle volume missing or damaged")

	// ErrSizeSyntax marks a malformed size argument (usage class, exit 2).
	ErrSizeSyntax = fault.Usage("invalid size")
)

// adviceFetch is the next step for every error about the contents of a bundle.
const adviceFetch = "the bundle is damaged or was tampered with: copy it again from the medium, or re-run airlock-fetch bundle"

// MemberError reports damage found while reading a bundle, tied to the tar
// member concerned when there is one. Err wraps one of the sentinels above
// (ErrTruncated, ErrMember, ErrSize, ErrDigest, ErrTrailing, ErrCompression),
// so errors.Is sees both the sentinel and its class.
type MemberError struct {
	// Member is the name of the member concerned, as found in the bundle
	// (shortened to 80 bytes; Error quotes it), or "" when the damage is not
	// inside a member, such as a corrupt zstd frame or trailing data.
	Member string
	// Offset is the offset in the uncompressed tar stream where the damage
	// was found.
	Offset int64
	// Err describes the damage.
	Err error
}

// Error names the member, the offset and the damage, and says what to do.
func (e *MemberError) Error() string {
	if e.Member == "" {
		return fmt.Sprintf("bundle, at tar offset %d: %v: %s", e.Offset, e.Err, adviceFetch)
	}
	return fmt.Sprintf("bundle member %q, at tar offset %d: %v: %s", e.Member, e.Offset, e.Err, adviceFetch)
}

// Unwrap returns Err.
func (e *MemberError) Unwrap() error { return e.Err }

// VolumeError reports a volume of a split bundle that is missing or damaged.
// Err wraps ErrVolume, and also the error that revealed the damage when there
// was one.
type VolumeError struct {
	// Volume is the path of the volume file (or of NAME.sha256).
	Volume string
	// Err describes what is wrong with it.
	Err error
}

// Error names the volume and the damage, and says what to do.
func (e *VolumeError) Error() string {
	return fmt.Sprintf("bundle volume %s: %v: copy it again from the medium, or re-run airlock-fetch bundle", e.Volume, e.Err)
}

// Unwrap returns Err.
func (e *VolumeError) Unwrap() error { return e.Err }

// ArgError reports a bundle path that names no bundle to read: a directory,
// a later volume of a split bundle, or a missing file whose first volume
// exists. It is of the usage class (exit 2): the caller was given the wrong
// path, and Problem says which one to give instead.
type ArgError struct {
	// Path is the path given.
	Path string
	// Problem says what is wrong with Path and what to pass instead.
	Problem string
}

// Error names the path and the problem.
func (e *ArgError) Error() string { return "bundle " + e.Path + ": " + e.Problem }

// Is reports the usage class.
func (e *ArgError) Is(target error) bool { return target == fault.ErrUsage }
