// Package bundle reads and writes airlock bundles: the on-media format that
// carries packages from the unrestricted side to the restricted side. It
// makes no trust decisions; verify drives its Reader and decides.
//
// # Format
//
// A bundle is a zstd-compressed tar stream, so `tar --zstd -tvf BUNDLE`
// lists it with stock tools. Its members are regular files (mode 0644, owner
// 0:0 without names, mtime = the manifest's created time), in this order:
//
//  1. manifest.json: the Manifest, canonical JSON (Manifest.Encode);
//  2. manifest.json.asc: the courier's armored detached signature over the
//     exact bytes of manifest.json;
//  3. entitlement.asc: the vendor-signed entitlement, as the server sent it;
//     the manifest lists its sha256;
//  4. packages/<sha256 hex>: one member per package, the raw vendor file,
//     in the order of the manifest's package list;
//
// then the tar end-of-archive marker (two zero blocks), optionally zero
// padding in whole blocks, and the end of the zstd stream. A bundle may be
// cut into volumes NAME.001, NAME.002, … whose concatenation is the bundle,
// with NAME.sha256 listing each volume's sha256 (see CreateFile and Open).
//
// # Writing
//
// Write streams a bundle in one pass: each package is read once, hashed as
// it is compressed, and checked against the manifest; memory does not grow
// with package size. With more than one core the zstd stream is written as
// a sequence of independent 4 MiB frames compressed in parallel and emitted
// in order (RFC 8878 allows any number of frames in a stream; stock zstd and
// tar read it as one): one zstd frame is compressed by one core at a time,
// which on a two-core machine made compression, not the medium, the limit. CreateFile gives a destination that appears under its
// final names only on Commit.
//
// # Reading
//
// The Reader is strict and streaming, and safe on hostile input:
//
//   - NewReader reads only the three header members, within size limits,
//     and returns their raw bytes. Nothing in them is trusted; the caller
//     (verify) checks the signatures and decodes the manifest before going
//     on.
//   - Packages then takes the verified package list and hands each
//     package's data to a callback through a reader whose final Read fails
//     unless the data's sha256 matches. No payload byte counts as verified
//     before that.
//   - Every member must be listed, appear once, in order, as a regular file
//     with the listed size. Unknown, extra, missing, duplicated or reordered
//     members, links, devices, directories and sparse files are errors.
//     Member names are compared, never used as file-system paths.
//   - An incomplete stream is an error, never a shorter bundle: the
//     archive must end with its end-of-archive marker, the zstd stream with
//     a complete frame, and nothing may follow.
//   - Memory is bounded: the zstd window (ReadOptions.MaxWindow, 8 MiB by
//     default), header members (4 MiB, the signature 64 KiB), tar headers
//     (64 KiB), padding (1 MiB). A decompression bomb fails at the first
//     limit it crosses, without being expanded.
//
// Every error about the content of a bundle is of the verification class
// (fault.ErrVerification, exit 3), wraps one of this package's sentinels,
// and names the member or volume concerned and what to do next.
package bundle
