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
	path := filepath.Join(dir, VendorKeyFile)
	if unlock {
		priv, err = keys.UnlockPrivateFile(path, keys.PassphraseSource{File: p.File, Env: EnvPassphraseFile, Prompt: p.Prompt})
	} else {
		priv, err = keys.ReadPrivateFile(path, nil)
		if errors.Is(err, keys.ErrPassphrase) {
			// Protected, and not needed: the public half is enough.
			pub, err := keys.ReadPublicFile(filepath.Join(dir, VendorPubFile))
			if err != nil {
				return nil, nil, fmt.Errorf("%s is passphrase-protected, and its public half: %w; restore %s from the store's backup", VendorKeyFile, err, VendorPubFile)
			}
			return nil, pub, nil
		}
	}
	switch {
	case err == nil:
		return priv, priv.Public(), nil
	case errors.Is(err, keys.ErrPassphrase), errors.Is(err, keys.ErrPassphraseFile):
		return nil, nil, err
	}
	return nil, nil, fmt.Errorf("%w; restore %s from the store's backup", err, VendorKeyFile)
}
