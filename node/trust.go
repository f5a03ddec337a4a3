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
	"github.com/airlock-project/airlock/keys"
	"github.com/airlock-project/airlock/verify"
)

// TrustOptions are the parameters of RunTrust.
type TrustOptions struct {
	// Dir is the node directory.
	Dir string
	// KeyFile is the vendor's armored public key.
	KeyFile string
}

func vendorDir(dir string) string { return filepath.Join(dir, "vendor") }

// RunTrust pins a vendor public key: the key file is read under the key
// policy of package keys (a malformed, weak or secret key is an error of the
// verification class) and stored as D/vendor/<FINGERPRINT>.asc. Several
// vendor keys may be pinned (a rotation); a running agent uses a newly
// pinned key from its next check on, without a restart.
func RunTrust(ctx context.Context, o TrustOptions, stdout, stderr io.Writer) error {
	st, err := loadState(o.Dir)
	if err != nil {
		return err
	}
	k, err := keys.ReadPublicFile(o.KeyFile)
	if err != nil {
		return fmt.Errorf("node %s: trust vendor key: %w", st.Name, err)
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := os.MkdirAll(vendorDir(o.Dir), 0o755); err != nil {
		return fmt.Errorf("node %s: %w", st.Name, err)
	}
	dst := filepath.Join(vendorDir(o.Dir), k.Fingerprint().String()+".asc")
	if err := atomicfile.WriteFile(dst, k.Armored(), 0o644); err != nil {
		return fmt.Errorf("node %s: trust vendor key: %w", st.Name, err)
	}
	fmt.Fprintf(stdout, "node %s trusts vendor key %s (%s)\n", st.Name, k.Fingerprint(), k.UserID())
	if exp := k.Expires(); !exp.IsZero() {
		fmt.Fprintf(stdout, "the key expires %s\n", exp.UTC().Format(time.RFC3339))
	}
	return nil
}

// loadTrust reads every pinned vendor key of D into a new trust store. A
// pinned file that no longer reads under the key policy is an error: the
// operator must see it, not lose a key silently.
func loadTrust(dir string) (*keys.TrustStore, error) {
	ents, err := os.ReadDir(vendorDir(dir))
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, err
	}
	ts := keys.NewTrustStore()
	n := 0
	for _, e := range ents {
		if !e.Type().IsRegular() || !strings.HasSuffix(e.Name(), ".asc") || strings.HasPrefix(e.Name(), atomicfile.TempPrefix) {
			continue
		}
		k, err := keys.ReadPublicFile(filepath.Join(vendorDir(dir), e.Name()))
		if err != nil {
			return nil, fmt.Errorf("pinned vendor key: %w; pin it again with airlock-node trust", err)
		}
		if err := ts.Add(keys.RoleVendor, k); err != nil {
			return nil, fmt.Errorf("pinned vendor key %s: %w", e.Name(), err)
		}
		n++
	}
	if n == 0 {
		return nil, fmt.Errorf("%w in %s: run 'airlock-node trust --dir %s vendor.pub.asc'", ErrNoVendorKey, dir, dir)
	}
	return ts, nil
}

// EntitledPackage is verify.EntitledPackage at the given time.
func EntitledPackage(armored []byte, trust *keys.TrustStore, d catalog.Digest, now time.Time) (catalog.Package, keys.Signature, error) {
	return verify.EntitledPackage(armored, trust, d, verify.Policy{Now: now})
}
