// Package keys holds airlock's OpenPGP keys, their roles, the trust store,
// and signing and verifying under airlock's policy (DESIGN.md, "Keys and
// trust"). It is built on github.com/ProtonMail/go-crypto (openpgp/v2) and
// interoperates with stock GnuPG 2.2: gpg imports every key it writes
// (public, and private when unencrypted), verifies every signature it makes,
// and airlock verifies gpg's Ed25519 and RSA (>= 2048 bits) signatures.
//
// # Keys
//
// Generate makes v4 Ed25519 (EdDSA legacy) signing keys with SHA-256
// self-signatures and no subkeys. ReadPublic and ReadPrivate read exactly one
// key of at most MaxArmoredKey bytes and apply the key policy at read time:
// v4 keys only; no DSA or ElGamal (ErrWeakAlgorithm), no RSA below
// MinRSABits (ErrWeakRSA), anywhere in the certificate; a valid self-signed
// user ID made with SHA-256 or stronger (ErrWeakHash otherwise). Expiry and
// revocation are read, not refused: they are judged at verification time.
// Private keys on disk are mode 0600, written atomically, never overwritten,
// and optionally passphrase-protected (AES-256, iterated SHA-256 S2K, which
// gpg 2.2 reads).
//
// # Roles and trust
//
// A TrustStore maps keys to exactly one Role each (vendor, site, courier); a
// key trusted for one role is never accepted for another (ErrWrongRole).
//
// # Verification
//
// TrustStore.VerifyDetached and TrustStore.VerifyMessage are the only ways to
// check a signature. Neither trusts go-crypto's own policy: the signature
// packet and the signer's key are inspected here, so that every refusal has
// its own sentinel error (see errors.go), all of class fault.ErrVerification
// (exit 3), and a *VerifyError that names the signer and carries the facts
// (role wanted and found, expiry, revocation). What to do about a signer
// that is not trusted, or a key revoked or expired, depends on the program
// that verifies and on how it is told its keys (a repository's trust store,
// a pinned --vendor-key, a node's pinned keys, a vendor's registered sites):
// those messages state the fact, and the caller adds its own next step. The
// rules:
//
//   - input is bounded before it is parsed: Policy.MaxArmored for the armored
//     text (ErrArmorTooLarge), MaxSignaturePacket for a signature packet
//     (ErrSignatureTooLarge); exactly one armored block, exactly one v4
//     signature over a document, nothing else (ErrMalformed);
//   - MD5, SHA-1 and RIPEMD-160 are refused (ErrWeakHash), as are DSA and
//     ElGamal (ErrWeakAlgorithm);
//   - the signer must be in the store (ErrUnknownSigner) with the role asked
//     for (ErrWrongRole);
//   - the signing key must be neither revoked (ErrKeyRevoked) nor expired at
//     Policy.Now (ErrKeyExpired) — even for a signature made while it was
//     valid, a simple rule that does not depend on the claimed signing time;
//   - the signature must verify over the data (ErrBadSignature);
//   - its creation time must be at most Policy.Skew after Policy.Now
//     (ErrFutureSignature), and its own expiry, if any, not passed
//     (ErrSignatureExpired).
//
// Every call into go-crypto on untrusted input runs under recover: a parser
// panic is reported as ErrMalformed, never a crash.
//
// # Concurrency
//
// PublicKey and PrivateKey values are immutable and safe for concurrent use,
// including concurrent signing. TrustStore is safe for concurrent use; its
// verification methods only read it.
package keys
