// Package server is the vendor's update server: it holds the package
// catalog and the registered sites, exchanges a site's signed download key
// for a vendor-signed entitlement, and serves each entitled package to the
// site once, counting it delivered only when the client acknowledges it
// with its digest.
//
// # The store directory
//
// A store is one directory made by Init (mode 0700):
//
//	vendor.key       the vendor's OpenPGP private key (mode 0600); passphrase-protected
//	                 (as keys.WritePrivateFile encrypts) if init had --passphrase-file
//	vendor.pub.asc   its public half, for sites, couriers and nodes to trust
//	server.db        the bbolt database described below
//	packages/        the package files: a blob.Store, packages/sha256/xx/<sha256>
//	admin.sock       while serve runs: its admin socket (mode 0600)
//
// Exactly one process opens server.db at a time (bbolt's file lock, waited
// for at most Config.LockTimeout). While serve holds it, the admin
// commands (publish, site add, reissue, catalog) reach the running server
// through admin.sock instead: Connect chooses, so that they work without a
// restart and never fail with "database locked". A package file is written
// and synced into packages/ before the transaction that records it commits,
// so the database never names a file that is not there; a crash leaves at
// most temporary files, which Open removes.
//
// # The vendor key and its passphrase
//
// The vendor key signs every entitlement, and nothing else that the server
// makes: only serve (the exchange) signs. So only serve needs the private
// key, and with a passphrase-protected vendor.key only serve needs the
// passphrase (Config.Unlock): from --passphrase-file, or
// AIRLOCK_SERVER_PASSPHRASE_FILE, else asked on the terminal. It reads and
// decrypts vendor.key before it opens the database, so a prompt holds no
// lock, and a missing or wrong passphrase (usage, exit 2) changes nothing
// and listens nowhere. The admin commands (publish, site add and list,
// reissue, catalog) never decrypt it: through admin.sock the running server
// does the work; opening the store directly, Open takes the key's public
// half from vendor.pub.asc, checks its fingerprint against the database,
// and the Server can do all but sign (Serve and the exchange refuse it,
// ErrLocked). An unprotected vendor.key is read whole, as before.
//
// # Database layout (schema version 1)
//
// Every value is the canonical JSON (catalog.EncodeCanonical) of the record
// type named; times are RFC 3339 UTC.
//
//	bucket    key                                  value
//	meta      "schema"                             ASCII decimal schema version, "1"
//	meta      "vendor"                             vendor key fingerprint, 40 hex digits
//	packages  sha256 (32 raw bytes)                packageRecord: catalog.Package + published time
//	sites     site name (ASCII)                    siteRecord: name, key fingerprint, armored public key, added time
//	keys      download key id (26 ASCII bytes)     keyRecord: site, signer, exchanged and expiry times, the
//	                                               exact armored entitlement returned, its downloads (sha256, size)
//	ledger    site name, 0x00, sha256 (32 bytes)   Delivery: site, package id, sha256, acknowledging key id, time
//	reissues  sequence (8 bytes big-endian)        Reissue: the removed Delivery, reissue time
//
// A site name never contains 0x00 (catalog.ValidName), so a cursor Seek to
// "site\x00" lists exactly that site's deliveries. The ledger holds at most
// one entry per site and package: that is the one-time download. Reissue
// moves an entry to reissues, so the package is entitled again. Open refuses
// a database whose schema version it does not know; a change of layout
// comes with a migration and a new version.
//
// # Concurrency
//
// A Server is safe for concurrent use. The answer to a new key and an
// acknowledgement are each computed and recorded inside one bbolt write
// transaction (concurrent ones are batched into one commit with
// bbolt.DB.Batch), and write transactions are serialised: the check that a
// key was already answered and the recording of the answer, or the check
// that a package was already delivered and the recording of the delivery,
// cannot interleave, so the ledger never grants a package twice or loses an
// acknowledgement. A response is sent only after its transaction committed
// (fsynced): an acknowledgement answered 200 survives a crash.
package server
