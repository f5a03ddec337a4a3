package keys

import (
	"errors"
	"fmt"
	"path/filepath"
)

// PassphraseSource says where the passphrase of a passphrase-protected
// private key file comes from, for UnlockPrivateFile.
type PassphraseSource struct {
	// File holds the passphrase (--passphrase-file; see
	// ReadPassphraseFile). It is read even when the key is not protected,
	// and the passphrase then ignored.
	File string
	// Env names the environment variable that sets --passphrase-file, for
	// messages.
	Env string
	// Prompt, if set, asks the operator for the passphrase of the key at
	// path; it is called only when the key is protected and File is
	// empty. cmd/ sets it when there is a terminal to ask on.
	Prompt func(path string) ([]byte, error)
}

// UnlockPrivateFile reads the private key file at path, decrypting it with
// the passphrase src gives if it is protected. A missing, empty or
// non-regular passphrase file matches ErrPassphraseFile; a protected key
// with no passphrase to be had, nothing typed at the prompt, and a
// passphrase that does not decrypt it match ErrPassphrase (all usage
// class), each message saying how to give the passphrase. Other errors
// are ReadPrivateFile's, for the caller to add its remedy.
func UnlockPrivateFile(path string, src PassphraseSource) (*PrivateKey, error) {
	pass, err := ReadPassphraseFile(src.File)
	if err != nil {
		return nil, err
	}
	k, err := ReadPrivateFile(path, pass)
	typed := false
	if errors.Is(err, ErrPassphrase) && pass == nil && src.Prompt != nil {
		if pass, err = src.Prompt(path); err != nil {
			return nil, err
		}
		if len(pass) == 0 {
			return nil, fmt.Errorf("%w: no passphrase typed for %s; run the command again and type it, or pass --passphrase-file FILE", ErrPassphrase, path)
		}
		typed = true
		k, err = ReadPrivateFile(path, pass)
	}
	switch {
	case err == nil:
		return k, nil
	case errors.Is(err, ErrPassphrase) && typed:
		return nil, fmt.Errorf("%w; run the command again and type the passphrase of %s", err, filepath.Base(path))
	case errors.Is(err, ErrPassphrase) && pass == nil:
		return nil, fmt.Errorf("%w; there is no terminal to ask for it on: pass --passphrase-file FILE or set %s", err, src.Env)
	case errors.Is(err, ErrPassphrase):
		return nil, fmt.Errorf("%w; check --passphrase-file %s", err, src.File)
	}
	return nil, err
}
