package fetch

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/airlock-project/airlock/keys"
)

// KeygenOptions are the options of RunKeygen.
type KeygenOptions struct {
	// Name and Email make the key's user ID; Name is required.
	Name, Email string
	// Out is the path prefix: the key is written to Out.key (mode 0600) and
	// Out.pub.asc.
	Out string
	// PassphraseFile, if set, holds the passphrase that encrypts Out.key.
	PassphraseFile string
	// Expiry, if positive, makes the key expire after it.
	Expiry time.Duration
	// JSON prints a KeygenReport as JSON.
	JSON bool
}

// KeygenReport is what RunKeygen prints with --json.
type KeygenReport struct {
	Fingerprint string `json:"fingerprint"`
	UserID      string `json:"user_id"`
	Private     string `json:"private"`
	Public      string `json:"public"`
}

// RunKeygen makes a courier key pair: the private key at Out.key (mode
// 0600, passphrase-protected if a passphrase file is given) and the public
// key at Out.pub.asc, for the restricted side to trust (airlock trust add
// --role courier). It never overwrites either file: if one exists it
// writes nothing (ErrExists).
func RunKeygen(ctx context.Context, o KeygenOptions, stdout, stderr io.Writer) error {
	if o.Out == "" {
		return fmt.Errorf("%w: no --out", ErrOptions)
	}
	if o.Name == "" {
		return fmt.Errorf("%w: no --name", ErrOptions)
	}
	if fi, err := os.Stat(o.Out); (err == nil && fi.IsDir()) || strings.HasSuffix(o.Out, string(filepath.Separator)) {
		return fmt.Errorf("%w: --out %s is a directory; --out is a file name prefix, such as %s", ErrOptions, o.Out, filepath.Join(o.Out, "courier"))
	}
	if dir := filepath.Dir(o.Out); !isDir(dir) {
		return fmt.Errorf("--out %s: directory %s does not exist; create it or choose another --out", o.Out, dir)
	}
	priv, pub := o.Out+".key", o.Out+".pub.asc"
	for _, p := range []string{priv, pub} {
		if _, err := os.Lstat(p); err == nil {
			return fmt.Errorf("%w: %s: choose another --out, or move the old key away first", ErrExists, p)
		}
	}
	pass, err := keys.ReadPassphraseFile(o.PassphraseFile)
	if err != nil {
		return err
	}
	k, err := keys.Generate(keys.GenerateOptions{Name: o.Name, Email: o.Email, Expiry: o.Expiry})
	if err != nil {
		return fmt.Errorf("courier key: %w; check --name, --email and --expiry", err)
	}
	if err := keys.WritePrivateFile(priv, k, pass); err != nil {
		return err
	}
	if err := keys.WritePublicFile(pub, k.Public()); err != nil {
		os.Remove(priv) // ours, written a moment ago: leave no half pair
		return err
	}
	r := KeygenReport{Fingerprint: k.Fingerprint().String(), UserID: printable(k.UserID()), Private: priv, Public: pub}
	if o.JSON {
		return writeJSON(stdout, r)
	}
	fmt.Fprintf(stdout, "courier key %s (%s)\n", r.Fingerprint, r.UserID)
	fmt.Fprintf(stdout, "private key: %s (mode 0600; keep it on this host)\n", priv)
	_, err = fmt.Fprintf(stdout, "public key:  %s (on the restricted side: airlock trust add --role courier %s)\n", pub, pub)
	return err
}

func isDir(path string) bool {
	fi, err := os.Stat(path)
	return err == nil && fi.IsDir()
}
