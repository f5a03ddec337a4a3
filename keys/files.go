package keys

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"

	"github.com/airlock-project/airlock/atomicfile"
)

// WritePrivateFile writes k armored (encrypted if passphrase is non-empty)
// to path with mode 0600, atomically: a temporary file in the same
// directory, fsync, a no-replace link into place, fsync of the directory. It
// never overwrites: if path exists the error matches ErrKeyFileExists and
// nothing is written.
func WritePrivateFile(path string, k *PrivateKey, passphrase []byte) error {
	if _, err := os.Lstat(path); err == nil {
		return fmt.Errorf("write private key: %s already exists: choose another name, or move the old key away first: %w", path, ErrKeyFileExists)
	}
	var buf bytes.Buffer
	if err := k.WriteArmored(&buf, passphrase); err != nil {
		return fmt.Errorf("write private key %s: %w", path, err)
	}
	err := atomicfile.WriteNew(path, buf.Bytes(), 0o600)
	if errors.Is(err, fs.ErrExist) {
		return fmt.Errorf("write private key: %s already exists: choose another name, or move the old key away first: %w", path, ErrKeyFileExists)
	}
	if err != nil {
		return fmt.Errorf("write private key %s: %w", path, err)
	}
	return nil
}

// WritePublicFile writes k armored to path with mode 0644, atomically
// (replacing any file there).
func WritePublicFile(path string, k *PublicKey) error {
	if err := atomicfile.WriteFile(path, k.Armored(), 0o644); err != nil {
		return fmt.Errorf("write public key %s: %w", path, err)
	}
	return nil
}

// ReadPrivateFile is ReadPrivate of the file at path; errors name the path.
func ReadPrivateFile(path string, passphrase []byte) (*PrivateKey, error) {
	what := "private key " + path
	f, err := openKeyFile(path, what)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	k, err := readPrivate(f, passphrase, what, true)
	if err != nil {
		return nil, err
	}
	return k, nil
}

// ReadPublicFile is ReadPublic of the file at path; errors name the path.
func ReadPublicFile(path string) (*PublicKey, error) {
	what := "public key " + path
	f, err := openKeyFile(path, what)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	k, err := readPublic(f, what, true)
	if err != nil {
		return nil, err
	}
	return k, nil
}

// openKeyFile opens a key file for reading; what ("public key PATH")
// names it in errors, once.
func openKeyFile(path, what string) (*os.File, error) {
	f, err := os.Open(path)
	if err != nil {
		var pe *fs.PathError
		if errors.As(err, &pe) && pe.Path == path {
			err = pe.Err
		}
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	if st, err := f.Stat(); err == nil && st.IsDir() {
		f.Close()
		return nil, fmt.Errorf("%s: is a directory, not a key file", what)
	}
	return f, nil
}

// inFile puts what before err, an error of readPublic or readPrivate whose
// message does not name their input, when the input is a file (file set):
// their other messages start with what, so that every error of
// ReadPublicFile and ReadPrivateFile names the file exactly once, and a
// caller adds only what the file is for.
func inFile(err error, what string, file bool) error {
	if !file {
		return err
	}
	return fmt.Errorf("%s: %w", what, err)
}
