package fetch

import (
	"errors"
	"fmt"
	"io/fs"
	"os"

	"github.com/airlock-project/airlock/keys"
)

// What each input file is, for the advice in messages about it.
const (
	hintVendorKey   = "give the vendor's public key file (vendor.pub.asc), as the vendor published it"
	hintCourierPub  = "give the courier's public key file (PREFIX.pub.asc from 'airlock-fetch keygen')"
	hintDownloadKey = "give the download key file that 'airlock key new' wrote on the restricted side, unchanged"
	hintSignKey     = "give the courier's private key file (PREFIX.key from 'airlock-fetch keygen --name NAME --out PREFIX')"
)

// fileError reports a failure to open or read the input file that flag
// names, with what the file should be. A *fs.PathError is unwrapped, so the
// path is named once; errors.Is still matches fs.ErrNotExist and the like.
func fileError(flag, path string, err error, hint string) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		err = pe.Err
	}
	return fmt.Errorf("%s %s: %w; %s", flag, path, err, hint)
}

// hintFor returns "; hint" for an input that could not be parsed, unless
// keys found a key of the other kind (a public key given for a private one,
// or the other way round): its message then says which kind of file to give.
func hintFor(err error, hint string) string {
	var ve *keys.VerifyError
	if errors.As(err, &ve) && ve.WrongKind {
		return ""
	}
	return "; " + hint
}

// readPublicKey reads the armored public key file that flag names.
func readPublicKey(flag, path, hint string) (*keys.PublicKey, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fileError(flag, path, err, hint)
	}
	defer f.Close()
	if fi, err := f.Stat(); err == nil && fi.IsDir() {
		return nil, fmt.Errorf("%w: %s %s is a directory; %s", ErrOptions, flag, path, hint)
	}
	k, err := keys.ReadPublic(f)
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w%s", flag, path, err, hintFor(err, hint))
	}
	return k, nil
}

// readSignKey reads the courier's private key that --sign-key names,
// decrypting it with the passphrase of --passphrase-file if any.
func readSignKey(path, passphraseFile string, pass []byte) (*keys.PrivateKey, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fileError("--sign-key", path, err, hintSignKey)
	}
	defer f.Close()
	if fi, err := f.Stat(); err == nil && fi.IsDir() {
		return nil, fmt.Errorf("%w: --sign-key %s is a directory; %s", ErrOptions, path, hintSignKey)
	}
	k, err := keys.ReadPrivate(f, pass)
	switch {
	case err == nil:
		return k, nil
	case errors.Is(err, keys.ErrPassphrase) && passphraseFile == "":
		return nil, fmt.Errorf("--sign-key %s: %w; give its passphrase with --passphrase-file FILE", path, err)
	case errors.Is(err, keys.ErrPassphrase):
		return nil, fmt.Errorf("--sign-key %s: %w; check --passphrase-file %s", path, err, passphraseFile)
	}
	return nil, fmt.Errorf("--sign-key %s: %w%s", path, err, hintFor(err, hintSignKey))
}

// signKeyDead completes the keys error of a courier key (--sign-key) that is
// revoked or expired with what its owner, the operator, can do.
func signKeyDead(path string, err error) error {
	return fmt.Errorf("--sign-key %s: %w; make a new courier key ('airlock-fetch keygen --name NAME --out PREFIX'), and have the restricted side trust PREFIX.pub.asc ('airlock trust add --role courier')", path, err)
}
