// Package fetch is the unrestricted side's client of the vendor's update
// server (airlock-fetch): it makes courier keys, exchanges a download key
// for a vendor-signed entitlement, downloads the entitled packages and
// writes them, with the entitlement, into a courier-signed bundle for the
// restricted side. Each command is one Run function (RunKeygen,
// RunExchange, RunBundle, RunInspect) taking its options, stdout and stderr;
// cmd/airlock-fetch only parses flags.
//
// # Protocol
//
// The client speaks the vendor protocol of server/: POST /v1/exchange with
// the armored download key, GET (with Range to resume) on each download URL
// of the answer, POST URL/ack with {"sha256"} once the package is safe in a
// verified bundle. Nothing the server says is believed unless the vendor
// signed it: the entitlement must verify against the pinned vendor key
// (verify.VerifyEntitlement, including its validity window) and answer the
// download key that was sent (same site, same key id, read from the key's
// payload: the unrestricted side holds no site key, so the key's own
// signature is left to the server). The download list is unsigned: it must
// name exactly the entitled packages with their entitled sizes, on the
// server's own origin. Every downloaded byte is hashed; a body longer than
// the entitled size, a different sha256, a wrong Content-Range or a
// redirect is refused.
//
// # HTTP client
//
// Dial and TLS handshake are bounded (30s each); an idle timeout
// (ClientOptions.IdleTimeout, DefaultIdleTimeout) bounds every wait for
// response headers and every read of a body, so a server that stalls or
// drips bytes slower than that is abandoned, keeping what arrived for the
// next attempt (a retry within the run, or a rerun). Redirects are never
// followed.
// The exchange answer is read up to 8 MiB, error and ack answers up to
// 64 KiB, downloads up to the entitled size plus one byte. https uses the
// system roots plus ClientOptions.CAFile; a proxy is used only if
// ClientOptions.Proxy says so. Text from the server is made printable
// before it reaches a message.
//
// # Exit classes
//
// Errors carry the class of fault (exit code in cmd/):
//
//   - 3, verification: the server's answer cannot be trusted or is not what
//     the protocol allows: a bad or untrusted entitlement signature, an
//     entitlement for another site or key (ErrKeyMismatch), a download that
//     is oversize (ErrOversize), has another digest (ErrDigest), redirects
//     (ErrRedirect) or otherwise breaks the protocol (ErrProtocol); the
//     server not accepting the download key's signature (reasons
//     unknown-site, bad-signature: ErrKeySignature) or finding the key
//     malformed; a malformed key file; a damaged bundle (inspect).
//   - 4, policy: the server refused the download key for its time (reason
//     clock: ErrRefused, with the server's message, which says which clock
//     to check); a package already delivered (ErrDelivered: the vendor must
//     reissue it); an entitlement that has expired or was issued in the
//     future by this host's clock.
//   - 1, operational: the network (refused or broken connections, a server
//     that stalls past the idle timeout: ErrStalled; a rerun resumes), the
//     server's internal errors, local I/O, a missing input file.
//   - 2, usage: missing or invalid options, an output that already exists
//     (ErrExists: nothing is ever overwritten), a wrong passphrase.
//
// Errors about one package are *PackageError and name it (name@version and
// digest prefix); errors about the entitlement name the download key id;
// errors about an input file name its flag and path; a refusal by the
// server names the server, and for the download key its file and site.
// Each says what to do next, once: the server's own advice is passed on
// (made printable), and a bundle run that failed before acknowledging
// says that the packages stay downloadable and, for an operational
// failure, that a rerun resumes.
//
// # The bundle command's guarantees
//
// Downloads go to a cache directory (BundleOptions.Cache, by default the
// bundle path plus CacheSuffix) as DIR/<sha256>.part, renamed to
// DIR/<sha256> once complete and verified. A rerun of the same command
// skips complete files and resumes partial ones with Range (the prefix is
// hashed again, so the digest still covers every byte); data that failed a
// check is deleted. The cache is locked against a second run and is not
// fsynced: a file a power loss damaged is caught by its digest when the
// bundle is written, dropped, and fetched again by the next run.
//
// The bundle is then written in one streaming pass (bundle.Write into
// bundle.CreateFile, atomic: nothing appears under the final names before
// it is complete and synced), read back from the medium and verified as the
// restricted side will (verify.VerifyBundle with the vendor key and the
// courier's own public key, for the key's site). Only then are the
// downloads acknowledged, one by one; a failed acknowledgement leaves a
// complete, usable bundle and is reported (exit 1). Any failure before that
// leaves no bundle, acknowledges nothing, and so leaves every package
// downloadable. After success the cache files of the bundle's packages are
// removed.
//
// Memory does not grow with package size.
package fetch
