package repo

import (
	"errors"
	"fmt"
	"path/filepath"
	"time"

	"github.com/airlock-project/airlock/keys"
)

// SiteKeyPassphrase says where the passphrase of a passphrase-protected
// site.key comes from. The zero value gives none: an encrypted site.key is
// then refused (keys.ErrPassphrase, usage class).
type SiteKeyPassphrase struct {
	// File holds the passphrase (--passphrase-file, AIRLOCK_PASSPHRASE_FILE)
	// on one line; trailing CR and LF are not part of it. It is read even
	// when site.key is not encrypted, and the passphrase then ignored, as
	// airlock-fetch does.
	File string
	// Prompt, if set, asks the operator for the passphrase of the key at
	// path; it is called only when site.key is encrypted and File is empty.
	// cmd/ sets it when there is a terminal to ask on.
	Prompt func(path string) ([]byte, error)
}

// ReadSiteKey reads the site's private key of the repository in dir,
// decrypting it if it is passphrase-protected. It reads no database and
// takes no lock, so a prompt for the passphrase never keeps other commands
// waiting; IssueKey checks that the key is the repository's own. Without a
// repository in dir it fails as Open does (ErrNoRepository). A missing,
// empty or non-regular passphrase file, an encrypted site.key with no
// passphrase to be had, and a passphrase that does not decrypt it are
// usage errors (exit 2; the last two match keys.ErrPassphrase), each naming
// site.key and how to give the passphrase. While an interrupted site key
// rotation is pending (see RotateSiteKey) site.key may not be the site key
// yet: that is refused, saying how to finish the rotation.
func ReadSiteKey(dir string, p SiteKeyPassphrase) (*keys.PrivateKey, error) {
	if err := findDB(dir); err != nil {
		return nil, err
	}
	if err := pendingRotation(dir); err != nil {
		return nil, err
	}
	k, err := keys.UnlockPrivateFile(filepath.Join(dir, SiteKeyFile), keys.PassphraseSource{File: p.File, Env: "AIRLOCK_PASSPHRASE_FILE", Prompt: p.Prompt})
	if err != nil && !errors.Is(err, keys.ErrPassphrase) && !errors.Is(err, keys.ErrPassphraseFile) {
		return nil, fmt.Errorf("%w: the repository signs download keys with it; restore %s from a backup of the repository, or, if it is lost, replace the site key with 'airlock key rotate'", err, SiteKeyFile)
	}
	if err != nil {
		return nil, err
	}
	return k, nil
}

// checkSiteKey refuses a site key other than the one the repository was
// created with.
func (r *Repo) checkSiteKey(k *keys.PrivateKey) error {
	if k.Fingerprint() != r.siteKey {
		return fmt.Errorf("%s holds key %s, but the repository was created with site key %s: restore the original %s",
			filepath.Join(r.dir, SiteKeyFile), k.Fingerprint(), r.siteKey, SiteKeyFile)
	}
	return nil
}

// newSiteKey makes the site key of site, as init and rotation do.
func newSiteKey(site string, now time.Time) (*keys.PrivateKey, error) {
	return keys.Generate(keys.GenerateOptions{Name: "airlock site " + site, Now: now})
}
