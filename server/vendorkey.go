package server

import (
	"errors"
	"fmt"
	"path/filepath"

	"github.com/airlock-project/airlock/keys"
)

// EnvPassphraseFile names the environment variable that cmd/airlock-server
// reads as --passphrase-file; messages name it.
const EnvPassphraseFile = "AIRLOCK_SERVER_PASSPHRASE_FILE"

// VendorPassphrase says where the passphrase of a passphrase-protected
// vendor.key comes from. The zero value gives none: a protected vendor.key
// is then refused by an Open that must unlock it (keys.ErrPassphrase, usage
// class).
type VendorPassphrase struct {
	// File holds the passphrase (--passphrase-file, or
	// AIRLOCK_SERVER_PASSPHRASE_FILE) on one line; trailing CR and LF are
	// not part of it. It is read even when vendor.key is not protected,
	// and the passphrase then ignored, as airlock and airlock-fetch do.
	File string
	// Prompt, if set, asks the operator for the passphrase of the key at
	// path; it is called only when vendor.key is protected and File is
	// empty. cmd/ sets it when there is a terminal to ask on.
	Prompt func(path string) ([]byte, error)
}

// readVendorKey reads DIR/vendor.key before the database is opened, so that
// a refusal changes nothing and a prompt holds no lock. An unprotected key
// is read whole. A protected one is decrypted if unlock is set (with the
// passphrase p gives); otherwise only its public half is returned, from
// vendor.pub.asc, and priv is nil: the store can then do everything but
// sign. The public half's fingerprint is checked against the database by
// load.
func readVendorKey(dir string, unlock bool, p VendorPassphrase) (priv *keys.PrivateKey, pub *keys.PublicKey, err error) {
	var pass []byte
	if unlock {
		if pass, err = keys.ReadPassphraseFile(p.File); err != nil {
			return nil, nil, err
		}
	}
	path := filepath.Join(dir, VendorKeyFile)
	k, err := keys.ReadPrivateFile(path, pass)
	if errors.Is(err, keys.ErrPassphrase) && !unlock {
		// Protected, and not needed: the public half is enough.
		pub, err := keys.ReadPublicFile(filepath.Join(dir, VendorPubFile))
		if err != nil {
			return nil, nil, fmt.Errorf("%s is passphrase-protected, and its public half: %w; restore %s from the store's backup", VendorKeyFile, err, VendorPubFile)
		}
		return nil, pub, nil
	}
	typed := false
	if errors.Is(err, keys.ErrPassphrase) && pass == nil && p.Prompt != nil {
		if pass, err = p.Prompt(path); err != nil {
			return nil, nil, err
		}
		if len(pass) == 0 {
			return nil, nil, fmt.Errorf("%w: no passphrase typed for %s; run the command again and type it, or pass --passphrase-file FILE", ErrPassphraseFile, path)
		}
		typed = true
		k, err = keys.ReadPrivateFile(path, pass)
	}
	switch {
	case err == nil:
		return k, k.Public(), nil
	case errors.Is(err, keys.ErrPassphrase) && typed:
		return nil, nil, fmt.Errorf("%w; run the command again and type the passphrase of %s", err, VendorKeyFile)
	case errors.Is(err, keys.ErrPassphrase) && pass == nil:
		return nil, nil, fmt.Errorf("%w; there is no terminal to ask for it on: pass --passphrase-file FILE or set %s", err, EnvPassphraseFile)
	case errors.Is(err, keys.ErrPassphrase):
		return nil, nil, fmt.Errorf("%w; check --passphrase-file %s", err, p.File)
	}
	return nil, nil, fmt.Errorf("%w; restore %s from the store's backup", err, VendorKeyFile)
}
