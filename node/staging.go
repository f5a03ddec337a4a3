package node

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/airlock-project/airlock/atomicfile"
	"github.com/airlock-project/airlock/catalog"
	"github.com/airlock-project/airlock/fault"
	"github.com/airlock-project/airlock/keys"
)

func (a *Agent) entitlementPath(d catalog.Digest) string {
	return filepath.Join(a.dir, "entitlements", d.String()+".asc")
}

func (a *Agent) partPath(d catalog.Digest) string {
	return filepath.Join(a.dir, "staging", d.String()+".part")
}

// partialSize returns how many bytes of d are in its partial upload.
func (a *Agent) partialSize(d catalog.Digest) int64 {
	fi, err := os.Stat(a.partPath(d))
	if err != nil {
		return 0
	}
	return fi.Size()
}

// verifiedPackage reads the entitlement kept for d and verifies it again
// with the vendor keys pinned now. A missing entitlement is ErrNoEntitlement.
func (a *Agent) verifiedPackage(d catalog.Digest) (catalog.Package, error) {
	armored, err := os.ReadFile(a.entitlementPath(d))
	if errors.Is(err, fs.ErrNotExist) {
		return catalog.Package{}, fmt.Errorf("%w: node %s has no entitlement for package %s; PUT it to /v1/staged/%s/entitlement first", ErrNoEntitlement, a.Name(), d.Short(), d)
	}
	if err != nil {
		return catalog.Package{}, fmt.Errorf("node %s: entitlement of package %s: %w", a.Name(), d.Short(), err)
	}
	p, _, err := a.entitled(armored, d)
	return p, err
}

// entitled verifies armored, an entitlement for package d, with the vendor
// keys pinned now (see EntitledPackage). Its errors name the node, and say
// what to do on the node when the node's own keys are the cause.
func (a *Agent) entitled(armored []byte, d catalog.Digest) (catalog.Package, keys.Signature, error) {
	name := a.Name()
	trust, err := loadTrust(a.dir)
	if err != nil {
		return catalog.Package{}, keys.Signature{}, fmt.Errorf("node %s: %w", name, err)
	}
	p, sig, err := EntitledPackage(armored, trust, d, a.opts.now())
	if err == nil {
		return p, sig, nil
	}
	var ve *keys.VerifyError
	if !errors.As(err, &ve) {
		return catalog.Package{}, keys.Signature{}, fmt.Errorf("node %s: %w", name, err)
	}
	// keys states the fact; what to do about it on a node is the node's
	// to say (airlock-node trust).
	signer := "key ID " + fmt.Sprintf("%016X", ve.KeyID)
	if !ve.Signer.IsZero() {
		signer = "key " + ve.Signer.String()
	}
	if ve.UserID != "" {
		signer += " (" + fault.Printable(ve.UserID, 200) + ")"
	}
	var msg string
	switch ve.Kind {
	case keys.ErrUnknownSigner:
		// No advice: the client (airlock) knows how the node is given keys.
		msg = fmt.Sprintf("node %s: entitlement for package %s: %v: it is signed by %s, which is not pinned on node %s",
			name, d.Short(), ve.Kind, signer, name)
	case keys.ErrKeyExpired:
		msg = fmt.Sprintf("node %s: entitlement for package %s: %v: it is signed by vendor %s, which expired at %s: pin the vendor's key with its expiry extended on node %s ('airlock-node trust --dir %s vendor.pub.asc')",
			name, d.Short(), ve.Kind, signer, ve.Expired.UTC().Format(time.RFC3339), name, a.dir)
	case keys.ErrKeyRevoked:
		pinned := filepath.Join(vendorDir(a.dir), ve.Signer.String()+".asc")
		msg = fmt.Sprintf("node %s: entitlement for package %s: %v: it is signed by vendor %s, which has been revoked: remove %s from node %s and pin the vendor's new key ('airlock-node trust --dir %s vendor.pub.asc')",
			name, d.Short(), ve.Kind, signer, pinned, name, a.dir)
	default:
		return catalog.Package{}, keys.Signature{}, fmt.Errorf("node %s: %w", name, err)
	}
	return catalog.Package{}, keys.Signature{}, &keyError{msg: msg, err: err}
}

// stagedInfoLocked describes package p (digest d). Called with a.mu held.
func (a *Agent) stagedInfoLocked(d catalog.Digest, p catalog.Package) StagedPackage {
	s := StagedPackage{SHA256: d, Name: p.Name, Version: p.Version, Size: p.Size}
	if n, err := a.blobs.Stat(d); err == nil && n == p.Size {
		s.Offset, s.Complete = p.Size, true
	} else {
		s.Offset = a.partialSize(d)
	}
	return s
}

// begin marks d as having a request in progress, or refuses with
// ErrUploadBusy; the caller calls the returned function when done.
func (a *Agent) begin(d catalog.Digest) (func(), error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.uploading[d] {
		return nil, fmt.Errorf("%w: node %s is already receiving package %s; wait for that request to end, then HEAD for the offset", ErrUploadBusy, a.st.Name, d.Short())
	}
	a.uploading[d] = true
	return func() {
		a.mu.Lock()
		delete(a.uploading, d)
		a.mu.Unlock()
	}, nil
}

// PutEntitlement verifies the armored entitlement (at most
// catalog.MaxDocumentSize bytes) for package d (see EntitledPackage) and,
// if it holds, keeps it as the source of d's metadata, replacing any
// earlier one. On error nothing is kept or changed.
func (a *Agent) PutEntitlement(d catalog.Digest, armored []byte) (StagedPackage, error) {
	if len(armored) > catalog.MaxDocumentSize {
		return StagedPackage{}, fmt.Errorf("%w: entitlement of %d bytes, limit %d", ErrTooLarge, len(armored), catalog.MaxDocumentSize)
	}
	done, err := a.begin(d)
	if err != nil {
		return StagedPackage{}, err
	}
	defer done()
	p, sig, err := a.entitled(armored, d)
	if err != nil {
		return StagedPackage{}, err
	}
	if err := atomicfile.WriteFile(a.entitlementPath(d), armored, 0o644); err != nil {
		return StagedPackage{}, fmt.Errorf("node %s: keep entitlement of %s: %w", a.Name(), p, err)
	}
	if a.partialSize(d) > p.Size {
		if err := os.Remove(a.partPath(d)); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return StagedPackage{}, fmt.Errorf("node %s: drop the partial upload of %s: %w", a.Name(), p, err)
		}
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	a.staged[d] = p
	a.log.Info("entitlement accepted", "package", p.String(), "vendor", sig.Signer.String())
	return a.stagedInfoLocked(d, p), nil
}

// StagedInfo describes package d, verifying its entitlement again; a
// package the node knows nothing about is ErrNotFound.
func (a *Agent) StagedInfo(d catalog.Digest) (StagedPackage, error) {
	p, err := a.verifiedPackage(d)
	if errors.Is(err, ErrNoEntitlement) {
		return StagedPackage{}, fmt.Errorf("%w: node %s knows no package %s", ErrNotFound, a.Name(), d.Short())
	}
	if err != nil {
		return StagedPackage{}, err
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.stagedInfoLocked(d, p), nil
}

// Chunk says where an upload body belongs.
type Chunk struct {
	// Offset is where the body starts in the package file.
	Offset int64
	// Length is the body's length, or -1 if unknown (chunked encoding).
	Length int64
	// Total is the package size the client expects, or -1.
	Total int64
}

// PutData appends body to the partial upload of package d, whose
// entitlement must have been put first (ErrNoEntitlement). c.Offset must
// equal the bytes already staged: otherwise the answer is ErrOffset, with
// the right offset in the returned StagedPackage. A body that would run past
// the signed size is refused whole (ErrTooLarge). Whatever of the body
// arrives is kept and synced, even if the request breaks, so that the client
// resumes from there. When the signed size is reached the file's SHA-256 is
// checked: on a match it moves atomically into the staged store (Complete);
// on a mismatch it is discarded and the error matches ErrDigest. A package
// already staged completely is answered at once, without reading body.
// At most Options.MaxUploads bodies are received at a time (ErrBusy).
func (a *Agent) PutData(ctx context.Context, d catalog.Digest, c Chunk, body io.Reader) (StagedPackage, error) {
	done, err := a.begin(d)
	if err != nil {
		return StagedPackage{}, err
	}
	defer done()
	p, err := a.verifiedPackage(d)
	if err != nil {
		return StagedPackage{}, err
	}
	name := a.Name()
	if c.Total >= 0 && c.Total != p.Size {
		return StagedPackage{}, fmt.Errorf("%w: node %s: Content-Range gives package %s a size of %d, the vendor signed %d", ErrBadRequest, name, p, c.Total, p.Size)
	}
	info := func() StagedPackage {
		a.mu.Lock()
		defer a.mu.Unlock()
		a.staged[d] = p
		return a.stagedInfoLocked(d, p)
	}
	if n, err := a.blobs.Stat(d); err == nil && n == p.Size {
		return info(), nil
	}

	select {
	case a.slots <- struct{}{}:
		defer func() { <-a.slots }()
	default:
		return StagedPackage{}, fmt.Errorf("%w: node %s is receiving %d uploads already; retry later", ErrBusy, name, cap(a.slots))
	}

	fail := func(err error) (StagedPackage, error) {
		return StagedPackage{}, fmt.Errorf("node %s: stage %s: %w", name, p, err)
	}
	cur := a.partialSize(d)
	if cur > p.Size {
		if err := os.Remove(a.partPath(d)); err != nil {
			return fail(err)
		}
		cur = 0
	}
	if c.Offset != cur {
		return StagedPackage{SHA256: d, Name: p.Name, Version: p.Version, Size: p.Size, Offset: cur},
			fmt.Errorf("%w: node %s holds %d bytes of package %s, so the upload must continue at offset %d, not %d", ErrOffset, name, cur, p, cur, c.Offset)
	}
	remaining := p.Size - cur
	if c.Length > remaining {
		return StagedPackage{}, fmt.Errorf("%w: node %s: %d bytes sent at offset %d of package %s, which has %d bytes in all; the chunk was refused", ErrTooLarge, name, c.Length, c.Offset, p, p.Size)
	}

	f, err := os.OpenFile(a.partPath(d), os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return fail(err)
	}
	defer f.Close()
	h := sha256.New()
	if cur > 0 {
		// Resuming: the digest covers the whole file, so hash what is there.
		if _, err := io.Copy(h, io.NewSectionReader(f, 0, cur)); err != nil {
			return fail(err)
		}
	}
	if _, err := f.Seek(cur, io.SeekStart); err != nil {
		return fail(err)
	}
	n, copyErr := io.Copy(io.MultiWriter(f, h), ctxReader{ctx, io.LimitReader(body, remaining)})
	if copyErr == nil && n == remaining {
		var probe [1]byte
		if m, _ := io.ReadFull(body, probe[:]); m > 0 {
			if err := f.Truncate(cur); err != nil {
				return fail(err)
			}
			return StagedPackage{}, fmt.Errorf("%w: node %s: the body runs past the %d bytes of package %s; the chunk was dropped", ErrTooLarge, name, p.Size, p)
		}
	}
	if err := f.Sync(); err != nil {
		return fail(err)
	}
	if copyErr != nil {
		return StagedPackage{}, fmt.Errorf("node %s: upload of %s broke at offset %d (kept; resume there): %w", name, p, cur+n, copyErr)
	}
	if cur+n < p.Size {
		return info(), nil
	}

	got := catalog.SumOf(h)
	if got != p.SHA256 {
		f.Close()
		if err := os.Remove(a.partPath(d)); err != nil {
			return fail(err)
		}
		return StagedPackage{}, fmt.Errorf("%w: node %s: the %d bytes uploaded for package %s hash to %s, the vendor signed %s; they were discarded: upload the package again from offset 0",
			ErrDigest, name, p.Size, p, got.Short(), p.SHA256.Short())
	}
	if err := f.Chmod(0o444); err != nil {
		return fail(err)
	}
	if err := f.Close(); err != nil {
		return fail(err)
	}
	dst := a.blobs.Path(d)
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return fail(err)
	}
	if err := os.Rename(a.partPath(d), dst); err != nil {
		return fail(err)
	}
	if err := atomicfile.SyncDir(filepath.Dir(dst)); err != nil {
		return fail(err)
	}
	a.log.Info("package staged", "package", p.String())
	return info(), nil
}

// stagedNotNewer returns the staged packages of component name whose
// version is v or older: once v is installed they can never be installed.
func (a *Agent) stagedNotNewer(name string, v catalog.Version) []catalog.Digest {
	a.mu.Lock()
	defer a.mu.Unlock()
	var out []catalog.Digest
	for d, p := range a.staged {
		if p.Name == name && p.Version.Compare(v) <= 0 && !a.uploading[d] {
			out = append(out, d)
		}
	}
	return out
}

// removeStaged forgets package d: its staged file, partial upload and
// entitlement. Called once d can no longer be installed.
func (a *Agent) removeStaged(d catalog.Digest) error {
	if err := a.blobs.Remove(d); err != nil {
		return err
	}
	for _, f := range []string{a.partPath(d), a.entitlementPath(d)} {
		if err := os.Remove(f); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return err
		}
	}
	a.mu.Lock()
	delete(a.staged, d)
	a.mu.Unlock()
	return nil
}
