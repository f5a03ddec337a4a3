// Package repo is the restricted side's repository: the download keys it
// issues, the vendor and courier keys it trusts, and the bundles, packages
// and audit log it keeps, in one directory.
//
// # Directory
//
//	REPO/airlock.db              bbolt database (layout below)
//	REPO/airlock.lock            who holds the write lock: pid, command, since (informative only)
//	REPO/blobs/sha256/xx/<hex>   package files, content-addressed (package blob)
//	REPO/site.key                the site's private OpenPGP key, mode 0600; passphrase-protected
//	                             (AES-256, iterated SHA-256 S2K) if init had --passphrase-file
//	REPO/site.pub.asc            its public half, to register at the vendor (airlock-server site add)
//	REPO/site-keys/<FP>.pub.asc  the public half of each replaced site key (airlock key rotate), FP its
//	                             fingerprint, so that the download keys it signed stay verifiable
//	REPO/site-keys/rotating-<FP>/ the new key's site.key and site.pub.asc, only while a rotation to FP
//	                             is under way or was interrupted (see Site key rotation)
//
// The repository exists once airlock.db exists: Init writes the keys first
// and publishes the database last (built under a temporary name, renamed into
// place), so an interrupted init leaves no half-made repository behind.
//
// Only airlock key new uses site.key (IssueKey); airlock key rotate
// replaces it without reading it. ReadSiteKey reads it
// before the database is opened, so that a prompt for its passphrase holds
// no lock; the passphrase comes from --passphrase-file or
// AIRLOCK_PASSPHRASE_FILE, else from the terminal, and without either an
// encrypted site.key is refused (usage, exit 2), as is a wrong passphrase.
//
// # Database layout, schema version 1
//
// Every value is a JSON object (encoding/json, times in RFC 3339 UTC) unless
// said otherwise. Buckets are all top-level:
//
//	meta      "schema"      decimal ASCII schema version, "1"
//	          "site"        the site name (catalog.ValidName)
//	          "site_key"    the site key's fingerprint, 40 uppercase hex digits
//	          "created"     RFC 3339 time of init
//	          "audit_head"  {"seq":N,"hash":"<hex>"}: the last audit entry, so that
//	                        removing entries from the end of the log is detected
//	trust     <fingerprint, 40 uppercase hex>  {"role","user_id","added","armored"}:
//	          a trusted vendor or courier public key (armored bytes as given);
//	          a key holds one role only
//	keys      <download key id, 26 base32>     {"id","site","issued","expires","nodes",
//	          "state","bundle","closed","armored"}: every download key issued.
//	          state is "outstanding", "fulfilled" or "revoked"; "expired" is not
//	          stored but derived (outstanding and past expires). bundle names the
//	          bundle that fulfilled it; armored is the signed key as written
//	bundles   <bundle id, 26 base32>  {"id","key_id","site","courier","created",
//	          "expires","imported","actor","sha256","size","packages",
//	          "manifest","manifest_sig","entitlement"}: every imported bundle,
//	          with the digest and size of its byte stream, the package digests
//	          it delivered, and the exact signed bytes it carried (base64)
//	packages  <sha256, 64 lowercase hex>  {"package","bundle","imported"}: the
//	          vendor-signed metadata (catalog.Package) of every stored package,
//	          the bundle that first delivered it and when; its file is the blob
//	          of the same digest. A digest is stored once
//	audit     <seq, 8-byte big-endian uint64, from 1>  {"seq","time","actor",
//	          "action","details","prev","hash"}: the audit log (see below)
//
// # Cluster buckets (schema 1, optional)
//
// The cluster registry and the rollouts live in three more buckets. They
// are optional within schema 1: the first write that needs one creates it,
// and a missing one reads as empty, so a database made before they existed
// needs no migration and an older airlock, which never looks at them,
// still opens a newer database.
//
//	nodes     <node name>  {"name","url","token","fingerprint","role","region",
//	          "added","seen"}: a registered node agent (airlock node add). token is
//	          its bearer token as read from the token file; fingerprint pins its
//	          TLS certificate ("AB:CD:…", SHA-256 of the DER); seen is what the
//	          node last reported, {"at","clock","role","region","installed",
//	          "staged","drained"}, or absent. Download keys carry the names and
//	          installed versions of these nodes (NodeInventory)
//	rollouts  <id, 8-byte big-endian uint64, from 1>  {"id","plan","strategy",
//	          "nodes","max_unavailable","skip_settle","state","started",
//	          "finished","actor","error","steps"}: every install run with its
//	          plan, fixed when it started. state is "running" or "failed"
//	          (unfinished: the next install resumes it), "finished" or
//	          "abandoned". Each step is {"id","n","kind","node","role","peer",
//	          "package","packages","expect","earliest","timeout","wave","text","state",
//	          "job","error","updated"}, state "pending", "submitted" (job names
//	          the node's install job), "done", "skipped" or "failed". A done or
//	          skipped step never changes again; at most one rollout is unfinished
//	installs  <node name, 0x00, kind>  {"node","kind","package","time","rollout"}:
//	          the last package of each kind a rollout installed on each node,
//	          where its settle delay starts
//
// Every change of these buckets is one transaction with its audit entry,
// but the refresh of a node's seen, which is an observation (RecordSeen).
//
// The schema version is checked on every open: a database of a newer schema
// is refused with ErrSchema (upgrade airlock), an older one would be migrated
// (there is none yet). Any change to this layout bumps SchemaVersion and
// comes with a migration.
//
// # Audit log
//
// The audit bucket is append-only and hash-chained: entry n holds the hash
// of entry n-1 in prev (64 zeros for the first), and its own hash is the
// SHA-256 of "airlock-audit/v1\n" followed by the canonical JSON encoding of
// {seq, time, actor, action, details, prev}. VerifyAudit recomputes every
// hash and link and compares the last one with meta/audit_head, so an
// edited, removed, inserted or reordered entry is detected. Someone who can
// rewrite the database file can rewrite the whole chain; the head hash that
// `airlock audit --verify` prints can be recorded elsewhere to detect that.
//
// Actions recorded: init, trust.add, trust.remove, key.issue, key.revoke,
// bundle.import, site.rotate ({"old_site_key","new_site_key","revoked"},
// after a key.revoke entry for each download key it revoked); node.add, node.remove, node.role, cluster.distribute, rollout.start,
// rollout.KIND for each change of a step's state (rollout.drain,
// rollout.install, rollout.promote, …), rollout.finish, rollout.abandon.
// Refusals are NOT recorded (see below).
//
// # Import, crashes and refusals
//
// Import verifies a bundle with verify.VerifyBundle while streaming every
// package into the blob store as a pending, invisible file (temporary file
// in the blob's directory, hashed while written, fsynced). Only after
// VerifyBundle returned without error (the end of the archive is checked
// last) are the blobs published (rename, fsync of the directory), and then
// all metadata is committed in one bbolt transaction: the packages, the
// bundle, the download key marked fulfilled, the audit entry. The whole
// bundle is imported, or none of it is visible.
//
// A crash before the commit can leave temporary files and published blobs
// that no package references (orphans). They are never visible as packages.
// Every read-write open removes them before doing anything else (Repair);
// Check, which opens read-only, reports them as problems, so `airlock check`
// fails after a crash until any write command or `airlock check --repair`
// has run. ImportOptions.Hook names the points (Hook*) where tests kill a
// real import process to prove this.
//
// A refused import (bad signature, damaged or truncated bundle, wrong site,
// replay, closed or expired key, downgrade, any error) leaves the repository
// byte-for-byte as it was: pending files are discarded, shard directories it
// created are removed, and the database is not written at all. In
// particular no audit entry records the refusal, since writing one would
// change the repository; the refusal is reported on stderr, with its exit
// code, to the operator who tried. The only writes a refused import can make
// are those of the crash recovery above, which repairs an earlier crash.
//
// # Site key rotation
//
// RotateSiteKey (airlock key rotate) replaces the site key when it is lost,
// compromised or due for rotation. It never reads the old site.key, so it
// works without it or its passphrase. Holding the write lock, it:
//
//  1. makes the new key (keys.Generate, as Init) and, if site.pub.asc holds
//     the old key, copies it to site-keys/OLD.pub.asc (missing or
//     damaged, it is not kept; the old fingerprint is in the audit log);
//  2. writes the new site.key (0600, encrypted if a passphrase was given)
//     and site.pub.asc into site-keys/rotating-NEW/, fsynced with their
//     directories;
//  3. commits one transaction: meta/site_key becomes NEW, every outstanding
//     download key is revoked (the old key signed them; the vendor refuses
//     them once it registers the new key) with a key.revoke entry each,
//     and a site.rotate entry names both fingerprints;
//  4. renames the staged site.pub.asc, then site.key, into place (fsync of
//     REPO after each), replacing the old ones, and removes the staging
//     directory.
//
// The commit in step 3 decides. A crash before it leaves the database and
// both key files as they were, and a staging directory of a key the
// database does not name: the next read-write open (any write command, or
// airlock check --repair) removes it. A crash after it leaves a staging
// directory of the key the database names: the next read-write open
// renames what is still staged into place. A staging directory is thus
// never ambiguous. Until that open, Check (read-only) reports the
// directory as a "rotation" problem saying which of the two --repair does,
// and ReadSiteKey refuses to read site.key (airlock key new first opens
// the repository read-write, which finishes or undoes it). Check also
// reports a site.pub.asc, or a site.key readable without passphrase, that
// is not the key meta/site_key names ("site-key": restore it from a
// backup, or rotate). RotateOptions.Hook names the points (HookRotate*)
// where tests kill a real rotation to prove this.
//
// # Concurrency
//
// bbolt locks airlock.db: one process may hold it read-write, or several
// read-only. Open waits at most Options.LockTimeout for the lock and then
// fails with an *InUseError (policy class, exit 4) naming the holder from
// airlock.lock. A *Repo is safe for concurrent use by several goroutines;
// writes are serialised by bbolt.
package repo
