package repo

import (
	"bytes"
	"errors"
	"fmt"
	"sort"
	"time"

	"go.etcd.io/bbolt"

	"github.com/airlock-project/airlock/keys"
)

// TrustedKey describes a key the repository trusts.
type TrustedKey struct {
	// Fingerprint identifies the key.
	Fingerprint keys.Fingerprint `json:"fingerprint"`
	// Role is the one role it is trusted for.
	Role keys.Role `json:"role"`
	// UserID is the key's primary user ID (text from its owner).
	UserID string `json:"user_id"`
	// Expires is when the key expires; zero if never.
	Expires time.Time `json:"expires,omitzero"`
	// Added is when it was added (or last replaced).
	Added time.Time `json:"added"`
}

// trustRecord is the value of the trust bucket.
type trustRecord struct {
	Role    keys.Role `json:"role"`
	UserID  string    `json:"user_id"`
	Added   time.Time `json:"added"`
	Armored []byte    `json:"armored"`
}

func (t trustRecord) info(fp keys.Fingerprint) TrustedKey {
	k := TrustedKey{Fingerprint: fp, Role: t.Role, UserID: t.UserID, Added: t.Added}
	if pub, err := keys.ReadPublic(bytes.NewReader(t.Armored)); err == nil {
		k.Expires = pub.Expires()
	}
	return k
}

// TrustAdd trusts pub for role, which must be vendor or courier (the site
// role belongs to the repository's own key: ErrRole). It refuses a key that
// is revoked or expired now, the site key itself, and a key already trusted
// for another role (ErrRoleConflict). Adding a key already trusted for the
// same role replaces it (a renewed expiry takes effect); adding the very
// same key again changes nothing and reports changed = false. A change is
// audited.
func (r *Repo) TrustAdd(role keys.Role, pub *keys.PublicKey) (info TrustedKey, changed bool, err error) {
	if role != keys.RoleVendor && role != keys.RoleCourier {
		return TrustedKey{}, false, fmt.Errorf("%w: --role %s: trust add takes vendor or courier keys; the site role is this repository's own key (%s)", ErrRole, role, SiteKeyFile)
	}
	fp := pub.Fingerprint()
	if fp == r.siteKey {
		return TrustedKey{}, false, fmt.Errorf("%w: key %s is this repository's site key; it cannot also be trusted as %s", ErrRoleConflict, fp, role)
	}
	now := r.opts.now()
	if err := pub.Validate(now); err != nil {
		return TrustedKey{}, false, trustAdvice(fmt.Errorf("trust add %s key %s: %w", role, fp, err))
	}
	rec := trustRecord{Role: role, UserID: pub.UserID(), Added: now.UTC(), Armored: pub.Armored()}
	err = r.Update(func(tx *Tx) error {
		var old trustRecord
		found, err := getJSON(tx.Tx, bucketTrust, []byte(fp.String()), &old)
		if err != nil {
			return err
		}
		if found && old.Role != role {
			return fmt.Errorf("%w: key %s (%s) is already trusted as %s; a key holds one role only: remove it first (airlock trust remove %s)", ErrRoleConflict, fp, old.UserID, old.Role, fp)
		}
		if found && bytes.Equal(old.Armored, rec.Armored) {
			info = old.info(fp)
			return nil
		}
		// Let the keys package judge the whole set: it also refuses a key
		// whose subkey belongs to another trusted key.
		store, err := loadTrust(tx.Tx)
		if err != nil {
			return err
		}
		if err := store.Add(role, pub); err != nil {
			return fmt.Errorf("trust add %s key %s: %w", role, fp, err)
		}
		if err := putJSON(tx.Bucket(bucketTrust), []byte(fp.String()), rec); err != nil {
			return err
		}
		if _, err := tx.Audit(ActionTrustAdd, struct {
			Fingerprint keys.Fingerprint `json:"fingerprint"`
			Role        keys.Role        `json:"role"`
			UserID      string           `json:"user_id"`
			Replaced    bool             `json:"replaced"`
		}{fp, role, rec.UserID, found}); err != nil {
			return err
		}
		info, changed = rec.info(fp), true
		return nil
	})
	return info, changed, err
}

// TrustRemove stops trusting the key with fingerprint fp (ErrNotFound if it
// is not trusted) and audits it.
func (r *Repo) TrustRemove(fp keys.Fingerprint) (TrustedKey, error) {
	var info TrustedKey
	err := r.Update(func(tx *Tx) error {
		var rec trustRecord
		found, err := getJSON(tx.Tx, bucketTrust, []byte(fp.String()), &rec)
		if err != nil {
			return err
		}
		if !found {
			return fmt.Errorf("%w: key %s is not trusted (see airlock trust list)", ErrNotFound, fp)
		}
		if err := tx.Bucket(bucketTrust).Delete([]byte(fp.String())); err != nil {
			return err
		}
		info = rec.info(fp)
		_, err = tx.Audit(ActionTrustRemove, struct {
			Fingerprint keys.Fingerprint `json:"fingerprint"`
			Role        keys.Role        `json:"role"`
			UserID      string           `json:"user_id"`
		}{fp, rec.Role, rec.UserID})
		return err
	})
	return info, err
}

// TrustList returns the trusted keys, sorted by role, then fingerprint.
func (r *Repo) TrustList() ([]TrustedKey, error) {
	var out []TrustedKey
	err := r.db.View(func(tx *bbolt.Tx) error {
		return tx.Bucket(bucketTrust).ForEach(func(k, v []byte) error {
			fp, err := keys.ParseFingerprint(string(k))
			if err != nil {
				return fmt.Errorf("database bucket trust: key %q: %v: run 'airlock check'", k, err)
			}
			var rec trustRecord
			if err := decodeRecord(bucketTrust, k, v, &rec); err != nil {
				return err
			}
			out = append(out, rec.info(fp))
			return nil
		})
	})
	sort.Slice(out, func(i, j int) bool {
		if out[i].Role != out[j].Role {
			return out[i].Role < out[j].Role
		}
		return out[i].Fingerprint.String() < out[j].Fingerprint.String()
	})
	return out, err
}

// trustAdvice completes err with what to do in this repository's trust
// store when err is a refusal of package keys whose remedy depends on who
// verifies: a signer that is not trusted, a key that has been revoked or has
// expired. keys states only the fact, with the signer and role; the advice
// is appended to the whole message, whose last part is keys' own. Any other
// error is returned as it is.
func trustAdvice(err error) error {
	var ve *keys.VerifyError
	if !errors.As(err, &ve) {
		return err
	}
	switch ve.Kind {
	case keys.ErrUnknownSigner:
		return fmt.Errorf("%w: if that key is the %s's, add it with 'airlock trust add --role %s FILE'", err, ve.Role, ve.Role)
	case keys.ErrKeyRevoked:
		return fmt.Errorf("%w: remove it from the trust store ('airlock trust remove %s') and trust its owner's new key", err, ve.Signer)
	case keys.ErrKeyExpired:
		return fmt.Errorf("%w: ask its owner to extend the expiry (or for a new key) and trust the updated key", err)
	}
	return err
}

// TrustStore returns the trusted vendor and courier keys as a trust store,
// for verification.
func (r *Repo) TrustStore() (*keys.TrustStore, error) {
	var s *keys.TrustStore
	err := r.db.View(func(tx *bbolt.Tx) error {
		var err error
		s, err = loadTrust(tx)
		return err
	})
	return s, err
}

func loadTrust(tx *bbolt.Tx) (*keys.TrustStore, error) {
	s := keys.NewTrustStore()
	err := tx.Bucket(bucketTrust).ForEach(func(k, v []byte) error {
		var rec trustRecord
		if err := decodeRecord(bucketTrust, k, v, &rec); err != nil {
			return err
		}
		pub, err := keys.ReadPublic(bytes.NewReader(rec.Armored))
		if err != nil {
			return fmt.Errorf("trusted key %s in the database cannot be read: %w", k, err)
		}
		if pub.Fingerprint().String() != string(k) {
			return fmt.Errorf("trusted key %s in the database holds key %s: run 'airlock check'", k, pub.Fingerprint())
		}
		if err := s.Add(rec.Role, pub); err != nil {
			return fmt.Errorf("trusted key %s: %w", k, err)
		}
		return nil
	})
	return s, err
}
