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
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("read private key: %w", err)
	}
	defer f.Close()
	k, err := ReadPrivate(f, passphrase)
	if err != nil {
		return nil, fmt.Errorf("private key %s: %w", path, err)
	}
	return k, nil
}

// ReadPublicFile is ReadPublic of the file at path; errors name the path.
func ReadPublicFile(path string) (*PublicKey, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("read public key: %w", err)
	}
	defer f.Close()
	k, err := ReadPublic(f)
	if err != nil {
		return nil, fmt.Errorf("public key %s: %w", path, err)
	}
	return k, nil
}
