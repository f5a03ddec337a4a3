package keys

import (
	"fmt"
	"time"

	"github.com/airlock-project/airlock/fault"
)

// The verification sentinels. Every error that VerifyDetached, VerifyMessage
// and ReadPublic return because of their input (rather than an invalid role
// or a failing reader) matches exactly one of them with errors.Is, and all of
// them match fault.ErrVerification (exit 3). Such an error is a *VerifyError
// whose message names the signer or key; the sentinel's own text is only its
// short name.
var (
	// ErrUnknownSigner: the signature names a key that is not in the trust store.
	ErrUnknownSigner = fault.Verification("signer not trusted")
	// ErrWrongRole: the signer is trusted, but for another role.
	ErrWrongRole = fault.Verification("signer trusted for another role")
	// ErrKeyExpired: the signing key has expired at the verification time.
	ErrKeyExpired = fault.Verification("signing key expired")
	// ErrKeyRevoked: the signing key carries a valid revocation.
	ErrKeyRevoked = fault.Verification("signing key revoked")
	// ErrFutureSignature: the signature was made later than now plus the
	// allowed clock skew.
	ErrFutureSignature = fault.Verification("signature made in the future")
	// ErrSignatureExpired: the signature carries an expiry that has passed.
	ErrSignatureExpired = fault.Verification("signature expired")
	// ErrWeakHash: the signature (or a key's self-signature) uses MD5,
	// SHA-1 or RIPEMD-160.
	ErrWeakHash = fault.Verification("weak hash algorithm")
	// ErrWeakAlgorithm: the key or signature uses DSA or ElGamal, or a
	// public-key algorithm or curve that airlock does not accept.
	ErrWeakAlgorithm = fault.Verification("weak public-key algorithm")
	// ErrWeakRSA: an RSA key shorter than MinRSABits.
	ErrWeakRSA = fault.Verification("RSA key too short")
	// ErrSignatureTooLarge: a signature packet larger than MaxSignaturePacket.
	ErrSignatureTooLarge = fault.Verification("signature packet too large")
	// ErrArmorTooLarge: armored input (or a decompressed message) larger
	// than the limit in force.
	ErrArmorTooLarge = fault.Verification("input too large")
	// ErrMalformed: input that is not the expected armor or packet
	// sequence: not exactly one signature, not one key, truncated,
	// unparseable, an unsupported version or type.
	ErrMalformed = fault.Verification("malformed OpenPGP data")
	// ErrBadSignature: a well-formed signature by a trusted, valid key that
	// does not verify against the data.
	ErrBadSignature = fault.Verification("bad signature")
)

// ErrPassphrase reports a private key that is encrypted while no passphrase
// was given, or a passphrase that does not decrypt it. It is of the usage
// class (exit 2): the caller supplied the wrong secret.
var ErrPassphrase = fault.Usage("wrong or missing passphrase")

// ErrPassphraseFile reports a passphrase file that is missing, empty or
// not a regular file (ReadPassphraseFile).
var ErrPassphraseFile = fault.Usage("unusable passphrase file")

// ErrKeyFileExists reports that WritePrivateFile found a file at its path; it
// never overwrites a private key. Usage class (exit 2).
var ErrKeyFileExists = fault.Usage("key file already exists")

// VerifyError is the error returned for input refused by verification or by
// key policy. Kind is one of the sentinels above; errors.Is(err, Kind) holds.
// The other fields are set when known; they are for callers that report the
// refusal in structured form (--json) or in their own words.
//
// Error() says what happened and to what. Where the next step is the same
// for everyone (re-sign with SHA-256, make an Ed25519 key, check the
// clocks, give the .pub.asc file) it says that too. Where it depends on who
// verifies and how that program is told which keys to trust (ErrUnknownSigner,
// ErrKeyRevoked, ErrKeyExpired) the message states the fact only: the caller
// adds its own next step, from these fields (errors.As).
type VerifyError struct {
	Kind    error       // one of the Err* verification sentinels
	Signer  Fingerprint // primary key fingerprint of the signer or of the key judged, if known
	KeyID   uint64      // issuer key ID named by the signature, if any
	UserID  string      // user ID of the signer or key, if known (text from its owner: quote it with fault.Printable)
	Created time.Time   // signature creation time, if parsed

	// Role is the role the signature had to be made for (the one asked of
	// VerifyDetached or VerifyMessage); empty for an error about a key
	// alone (ReadPublic, Validate, signing).
	Role Role
	// TrustedAs is the role the signer is trusted for instead (ErrWrongRole).
	TrustedAs Role
	// Expired is when the key (ErrKeyExpired) or the signature
	// (ErrSignatureExpired) expired.
	Expired time.Time
	// Revocation is the reason the key was revoked, as its owner gave it
	// and made printable, e.g. "compromised: laptop stolen" (ErrKeyRevoked).
	Revocation string
	// WrongKind is set on the ErrMalformed error of ReadPublic given a
	// private key, or of ReadPrivate given a public key. The message then
	// says which kind of file to give.
	WrongKind bool

	msg string
}

// Error returns the message: what happened, to what (see VerifyError).
func (e *VerifyError) Error() string { return e.msg }

// Unwrap returns Kind, so that errors.Is matches the sentinel and its class.
func (e *VerifyError) Unwrap() error { return e.Kind }

// verr builds a VerifyError of kind with a formatted message.
func verr(kind error, format string, args ...any) *VerifyError {
	return &VerifyError{Kind: kind, msg: fmt.Sprintf(format, args...)}
}

func malformed(format string, args ...any) error { return verr(ErrMalformed, format, args...) }

// printable makes untrusted text (user IDs, go-crypto messages quoting
// input) safe to put in an error message: control and non-printing runes
// become '?', and it is cut to a sane length.
func printable(s string) string { return fault.Printable(s, 200) }
