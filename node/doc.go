// Package node is the node agent: the manual install endpoint that runs on
// every appliance. It accepts staged packages over HTTPS, verifies them
// again against its own pinned vendor key, and installs them one at a time,
// atomically, refusing anything whose signature, digest, size or
// requirements do not hold, and any downgrade.
//
// # Node directory
//
// Everything the agent keeps lives in one directory D, created by RunInit:
//
//	D/state.json              name, role, region, installed versions, drained flag,
//	                          job history (bounded); written atomically; authoritative
//	D/token                   the bearer token, 64 hex digits (mode 0600)
//	D/tls/cert.pem, key.pem   the self-signed certificate and its key (0600)
//	D/vendor/<FPR>.asc        pinned vendor public keys (RunTrust); read on every check
//	D/entitlements/<sha>.asc  the vendor-signed entitlement that came with package sha
//	D/staging/<sha>.part      a partial upload; kept across restarts for resumption
//	D/staged/sha256/xx/<sha>  complete, verified packages (content-addressed, read-only)
//	D/releases/<name>/<ver>/  unpacked releases
//	D/releases/<name>/current symlink to the current release ("<ver>", relative)
//	D/hooks/pre-install       optional executables run around every install
//	D/hooks/post-install
//	D/hooks/drain, undrain    optional: tell the site's client service (see below)
//	D/hooks/connections
//	D/hooks/promote, demote
//	D/lock                    held (flock) by the serving agent: one agent per directory
//
// # HTTP API
//
// Every call needs "Authorization: Bearer <token>" (compared in constant
// time); a missing or wrong token gets 401 and is never logged. Bodies and
// answers are JSON; an error answer is {"error": message, "code": code}
// (see APIError for the codes). Digests are 64 lowercase hex digits.
//
//	GET  /v1/status                      Status
//	PUT  /v1/staged/{sha256}/entitlement body: the armored vendor-signed entitlement
//	                                     (at most 4 MiB) -> StagedPackage
//	HEAD /v1/staged/{sha256}             headers X-Airlock-Offset, X-Airlock-Size,
//	                                     X-Airlock-Complete; 404 if nothing is known
//	GET  /v1/staged/{sha256}             StagedPackage
//	PUT  /v1/staged/{sha256}             body: package bytes from X-Airlock-Offset
//	                                     (or Content-Range: bytes N-M/SIZE) -> StagedPackage
//	POST /v1/install                     {"sha256": ...} -> 202 Job (Location: /v1/jobs/{id})
//	GET  /v1/jobs                        [Job], newest first
//	GET  /v1/jobs/{id}                   Job
//	POST /v1/drain, /v1/undrain          -> Status
//	POST /v1/role                        {"role": "primary"|"backup"|"traffic"|"management"} -> Status
//
// Every Status answer (GET /v1/status and the answers of drain, undrain
// and role) runs hooks/connections first, if it exists.
//
// # Staging protocol
//
// A package travels with the entitlement that lists it, so that the node
// learns its metadata (name, version, size, requires) only from the vendor's
// signature. The client first PUTs the entitlement to
// /v1/staged/{sha256}/entitlement; the node verifies the vendor signature
// against its pinned keys (the entitlement's own expiry is deliberately not
// applied: it expires with its download key, days before a maintenance
// window), finds the package by digest, and keeps the armored text. A bad or
// untrusted signature, or an entitlement that does not list the digest, is
// refused at once (403 or 422) and nothing is kept.
//
// The client then PUTs the bytes, in one request or several. Each request
// says where its body starts (X-Airlock-Offset: N, or Content-Range); N must
// equal what the node already holds, which HEAD reports, else 409 with the
// right offset in X-Airlock-Offset. A body may not run past the signed size
// (413; the chunk is dropped). Whatever arrives is kept, so a broken
// connection resumes where it stopped. When the signed size is reached the
// node checks the SHA-256 of the whole file: on a match the file moves
// atomically into the staged store; on a mismatch it is discarded (422) and
// the upload starts again from 0. PUTting an already staged package answers
// at once that it is complete. At most MaxUploads bodies are received at a
// time (503 beyond), one per package (409).
//
// # Install ordering and recovery
//
// POST /v1/install checks at once that the package is staged, its
// entitlement verifies, it is newer than what is installed (or will be,
// once the queued jobs ahead of it have run) and its requires hold on that
// inventory; a refusal is 409/422 and queues nothing. Jobs run one at a time,
// and each checks everything again against the real state before it starts:
//
//  1. unpack into D/releases/<name>/.tmp-<ver>-*, hashing the staged file in
//     the same pass; its size and SHA-256 must match the signature;
//  2. rename the directory to D/releases/<name>/<ver>;
//  3. run hooks/pre-install NAME VERSION RELEASE_DIR in RELEASE_DIR, the
//     absolute path of the new release (a failure aborts);
//  4. switch current: a symlink made under a temporary name, renamed over
//     current;
//  5. run hooks/post-install NAME VERSION RELEASE_DIR (a failure switches
//     current back);
//  6. write state.json with the new installed version and the job's success
//     in one atomic write. This is the commit point;
//  7. remove releases older than the previous one, and the staged packages
//     of the component that are no newer than the installed version (they
//     can never be installed). The job is reported running until this is
//     done, so that a succeeded job means a settled node.
//
// A failure to unpack because the staged file no longer matches its digest
// drops the file, so that it can be uploaded again. Installing a package
// that a job already installed answers 409 already-installed even though
// its staged file is gone.
//
// Any failure before step 6 removes the new release directory and leaves the
// previous release current and the installed version unchanged.
//
// The state file is authoritative. When the agent starts it repairs the
// releases directory deterministically from state.json: temporary entries
// are removed; current is pointed at the installed version's release (or
// removed when that version has no release directory, as for versions
// declared by init); release directories newer than the installed version
// (failed or interrupted installs) are removed; jobs that were queued or
// running are marked failed. An agent killed at any instant therefore comes
// back with either the previous release current and installed (killed
// before step 6) or the new one (after). Hooks must be idempotent: an
// install interrupted after post-install ran is rolled back and is installed
// again by the next POST /v1/install.
//
// # Client connections, draining and roles
//
// The agent drains a node, counts its client connections and changes its
// role either through the site's hooks or, for demonstrations and tests,
// through its own reference client service.
//
// The reference service (Options.ServiceListen, airlock-node serve
// --service-listen ADDR) is a TCP echo service. It starts with Run and
// stops, closing its connections, when Run ends. On every new connection
// it writes one line, the greeting, "airlock-node NAME: WORD\n":
//
//	ok                                 accepted: from then on every byte the
//	                                   client sends is sent back, until the
//	                                   client closes the connection
//	drained, try another node          refused (the node is drained); closed
//	busy, N connections open, try another node
//	                                   refused (Options.MaxConnections); closed
//	shutting down, try another node    refused (the agent is stopping); closed
//
// A client therefore tells an accepted connection from a refused one by the
// first line (DialService does this), and proves that an accepted
// connection is still alive by an echo. Status.Connections counts the
// accepted connections still open; a connection stops counting once the
// client has closed it and the service has noticed. Draining only refuses
// new connections: open ones are never closed by a drain, an undrain, a
// role change or an install, and have no idle limit.
//
// The hooks are optional executables in D/hooks, run in D with the
// agent's environment plus AIRLOCK_HOOK, AIRLOCK_NODE, AIRLOCK_DIR (D as
// an absolute path, whatever --dir was given),
// AIRLOCK_REGION and AIRLOCK_SERVICE (the reference service's address or
// ""), in their own process group, killed after Options.ControlHookTimeout.
// Each is looked up on every use; a missing hook is skipped.
//
//	drain NAME          POST /v1/drain, before the flag is set
//	undrain NAME        POST /v1/undrain, before the flag is cleared
//	connections NAME    every Status answer; prints the number of open
//	                    client connections (a non-negative decimal integer,
//	                    at most 64 bytes with white space)
//	promote NAME OLD NEW    POST /v1/role to primary from another role
//	demote NAME OLD NEW     POST /v1/role from primary to another role
//	                    (also AIRLOCK_ROLE=NEW, AIRLOCK_PREVIOUS_ROLE=OLD)
//
// A drain, undrain or role change whose hook fails, times out or is not
// executable changes nothing: the answer is 500 hook-failed with the tail
// of the hook's output, and the drained flag or role stays as it was. A
// drain or undrain runs its hook on every call, so the hooks must be
// idempotent; a role change to the role the node has runs none. These
// calls run one at a time, and their hooks run to their end or timeout
// even if the client goes away. A failed or nonsensical connections hook
// does not fail the request: Status.Connections is -1 and
// Status.ConnectionsError says why.
//
// The drained flag and the role are kept in state.json and survive a
// restart; the reference service starts refusing if the node was drained.
// The reference service follows the drained flag whether or not drain
// hooks exist; hooks/connections, when present, replaces its count.
//
// # Errors
//
// Every error names the node, and the package, file or hook concerned, and
// says what to do where the node can tell: an API error's text reaches the
// operator inside airlock's messages, and airlock's exit code follows its
// code (see APIError). Refusals for keys the node lacks (untrusted-signer,
// no-vendor-key, unauthorized) state the fact and leave the remedy to the
// client, which knows how it registered the node. Neither an answer nor a
// log line ever holds the bearer token. The commands' errors (RunInit,
// RunTrust, RunServe, RunStatus) carry the class of their exit code: usage
// for flags and directories (ErrNotInitialized, ErrInitialized,
// ErrNoVendorKey), verification for key files that are not acceptable
// vendor keys and for a damaged node directory (ErrState), policy for a
// directory another agent serves (ErrInUse); the rest are operational.
//
// # Archives
//
// A staged package is unpacked according to its first bytes: zstd (28 B5 2F
// FD) holding a tar, or a tar (ustar magic at offset 257); any other file is
// kept as is, as the single file D/releases/<name>/<ver>/<name>. Members
// must be regular files, directories or symlinks with a relative name
// without "..", whose target, resolved through the archive's other links,
// stays inside the release; hard links, devices and fifos are refused, as
// are duplicate members, members under a file or symlink, more than
// MaxEntries members, and more than MaxUnpack bytes in total. Files are
// written 0644, or 0755 if any execute bit was set; setuid bits and owners
// are dropped. Every write goes through an os.Root on the temporary
// directory.
package node
