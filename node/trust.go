package node

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/airlock-project/airlock/atomicfile"
	"github.com/airlock-project/airlock/catalog"
	"github.com/airlock-project/airlock/fault"
	"github.com/airlock-project/airlock/keys"
	"github.com/airlock-project/airlock/verify"
)

// TrustOptions are the parameters of RunTrust.
type TrustOptions struct {
	// Dir is the node directory.
	Dir string
	// KeyFile is the vendor's armored public key.
	KeyFile string
	// Now is the clock against which the key's expiry is judged; nil
	// means time.Now.
	Now func() time.Time
}

func vendorDir(dir string) string { return filepath.Join(dir, "vendor") }

// RunTrust pins a vendor public key: the key file is read under the key
// policy of package keys (a malformed, weak or secret key is an error of the
// verification class) and stored as D/vendor/<FINGERPRINT>.asc. A key that
// is revoked or expired now is refused (ErrKeyRevoked, ErrKeyExpired:
// verification class), as is one that conflicts with a key already pinned
// (keys.ErrTrustConflict: usage class); a refused key changes nothing.
// Several vendor keys may be pinned (a rotation); a running agent uses a
// newly pinned key from its next check on, without a restart.
func RunTrust(ctx context.Context, o TrustOptions, stdout, stderr io.Writer) error {
	st, err := loadState(o.Dir)
	if err != nil {
		return err
	}
	k, err := keys.ReadPublicFile(o.KeyFile)
	if err != nil {
		return fmt.Errorf("node %s: trust vendor key: %w", st.Name, err)
	}
	fp := k.Fingerprint()
	dst := filepath.Join(vendorDir(o.Dir), fp.String()+".asc")
	now := time.Now()
	if o.Now != nil {
		now = o.Now()
	}
	if err := k.Validate(now); err != nil {
		var ve *keys.VerifyError
		if !errors.As(err, &ve) {
			return fmt.Errorf("node %s: trust vendor key %s: %w", st.Name, o.KeyFile, err)
		}
		pinned := ""
		if _, serr := os.Stat(dst); serr == nil {
			pinned = fmt.Sprintf("; node %s still trusts the copy pinned earlier as %s: remove that file to stop trusting it", st.Name, dst)
		}
		key := fmt.Sprintf("vendor key %s (%s) in %s", ve.Signer, fault.Printable(ve.UserID, 200), o.KeyFile)
		var msg string
		switch ve.Kind {
		case keys.ErrKeyRevoked:
			msg = fmt.Sprintf("node %s: %v: %s has been revoked by its owner, so it was not pinned: pin the vendor's new key instead%s",
				st.Name, ve.Kind, key, pinned)
		case keys.ErrKeyExpired:
			msg = fmt.Sprintf("node %s: %v: %s expired at %s, so it was not pinned: ask the vendor for the key with its expiry extended, and pin that%s",
				st.Name, ve.Kind, key, ve.Expired.UTC().Format(time.RFC3339), pinned)
		default:
			return fmt.Errorf("node %s: trust vendor key %s: %w", st.Name, o.KeyFile, err)
		}
		return &keyError{msg: msg, err: err}
	}
	if err := checkPinnable(o.Dir, k); err != nil {
		return fmt.Errorf("node %s: trust vendor key %s from %s: %w; remove the conflicting file from %s first", st.Name, fp, o.KeyFile, err, vendorDir(o.Dir))
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := os.MkdirAll(vendorDir(o.Dir), 0o755); err != nil {
		return fmt.Errorf("node %s: trust vendor key: %w", st.Name, err)
	}
	if err := atomicfile.WriteFile(dst, k.Armored(), 0o644); err != nil {
		return fmt.Errorf("node %s: trust vendor key: %w", st.Name, err)
	}
	fmt.Fprintf(stdout, "node %s trusts vendor key %s (%s)\n", st.Name, fp, fault.Printable(k.UserID(), 200))
	if exp := k.Expires(); !exp.IsZero() {
		fmt.Fprintf(stdout, "the key expires %s\n", exp.UTC().Format(time.RFC3339))
	}
	return nil
}

// checkPinnable reports whether k may join the keys pinned in D: the keys
// package refuses a key one of whose subkeys belongs to another trusted
// key. A pinned file that does not read is left to loadTrust to report
// (pinning the same key again may be what repairs it).
func checkPinnable(dir string, k *keys.PublicKey) error {
	ents, err := os.ReadDir(vendorDir(dir))
	if err != nil {
		return nil
	}
	ts := keys.NewTrustStore()
	for _, e := range ents {
		if !isPinnedKeyFile(e) || e.Name() == k.Fingerprint().String()+".asc" {
			continue
		}
		if pk, err := readPinnedKey(filepath.Join(vendorDir(dir), e.Name())); err == nil {
			_ = ts.Add(keys.RoleVendor, pk) // conflicts among pinned keys are loadTrust's to report
		}
	}
	return ts.Add(keys.RoleVendor, k)
}

func isPinnedKeyFile(e fs.DirEntry) bool {
	return e.Type().IsRegular() && strings.HasSuffix(e.Name(), ".asc") && !strings.HasPrefix(e.Name(), atomicfile.TempPrefix)
}

// readPinnedKey reads a pinned vendor key file; its errors do not repeat
// the path.
func readPinnedKey(path string) (*keys.PublicKey, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return keys.ReadPublic(f)
}

// loadTrust reads every pinned vendor key of D into a new trust store. A
// pinned file that no longer reads under the key policy is an error: the
// operator must see it, not lose a key silently. No pinned key at all is
// ErrNoVendorKey; its message says where, not what to do (callers add
// that, for their audience).
func loadTrust(dir string) (*keys.TrustStore, error) {
	ents, err := os.ReadDir(vendorDir(dir))
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("pinned vendor keys: %w", err)
	}
	ts := keys.NewTrustStore()
	n := 0
	for _, e := range ents {
		if !isPinnedKeyFile(e) {
			continue
		}
		path := filepath.Join(vendorDir(dir), e.Name())
		k, err := readPinnedKey(path)
		if err != nil {
			return nil, fmt.Errorf("pinned vendor key %s: %w; remove that file, and pin the vendor key again with 'airlock-node trust --dir %s vendor.pub.asc'", path, err, dir)
		}
		if err := ts.Add(keys.RoleVendor, k); err != nil {
			return nil, fmt.Errorf("pinned vendor key %s: %w; remove one of the two from %s", path, err, vendorDir(dir))
		}
		n++
	}
	if n == 0 {
		return nil, fmt.Errorf("%w in %s", ErrNoVendorKey, vendorDir(dir))
	}
	return ts, nil
}

// trustAdvice completes an ErrNoVendorKey error for the operator of the node.
func trustAdvice(err error, dir string) error {
	if errors.Is(err, ErrNoVendorKey) {
		return fmt.Errorf("%w: pin the vendor's key with 'airlock-node trust --dir %s vendor.pub.asc'", err, dir)
	}
	return err
}

// EntitledPackage is verify.EntitledPackage at the given time.
func EntitledPackage(armored []byte, trust *keys.TrustStore, d catalog.Digest, now time.Time) (catalog.Package, keys.Signature, error) {
	return verify.EntitledPackage(armored, trust, d, verify.Policy{Now: now})
}
