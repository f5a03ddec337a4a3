package repo

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"sort"
	"time"

	"go.etcd.io/bbolt"

	"github.com/airlock-project/airlock/catalog"
	"github.com/airlock-project/airlock/keys"
)

// KeyState is the state of an issued download key.
type KeyState string

// The states of a download key. Only outstanding keys may be answered; the
// others are closed for good.
const (
	// KeyOutstanding: issued, not yet answered, not expired.
	KeyOutstanding KeyState = "outstanding"
	// KeyFulfilled: a bundle answering it was imported.
	KeyFulfilled KeyState = "fulfilled"
	// KeyExpired: outstanding past its expiry (derived, never stored).
	KeyExpired KeyState = "expired"
	// KeyRevoked: revoked by an operator.
	KeyRevoked KeyState = "revoked"
)

// Bounds of KeyOptions.Expires.
const (
	DefaultKeyExpiry = 72 * time.Hour
	MaxKeyExpiry     = 90 * 24 * time.Hour
)

// KeyInfo describes an issued download key.
type KeyInfo struct {
	ID      catalog.KeyID           `json:"id"`
	State   KeyState                `json:"state"`
	Site    string                  `json:"site"`
	Issued  time.Time               `json:"issued"`
	Expires time.Time               `json:"expires"`
	Nodes   []catalog.NodeInventory `json:"nodes"`
	// Bundle is the bundle that fulfilled the key, if it is fulfilled.
	Bundle string `json:"bundle,omitempty"`
	// Closed is when it was fulfilled or revoked.
	Closed time.Time `json:"closed,omitzero"`
}

// keyRecord is the value of the keys bucket.
type keyRecord struct {
	ID      catalog.KeyID           `json:"id"`
	Site    string                  `json:"site"`
	Issued  time.Time               `json:"issued"`
	Expires time.Time               `json:"expires"`
	Nodes   []catalog.NodeInventory `json:"nodes"`
	State   KeyState                `json:"state"`
	Bundle  string                  `json:"bundle,omitempty"`
	Closed  time.Time               `json:"closed,omitzero"`
	Armored []byte                  `json:"armored"`
}

// state is the state at now: an outstanding key past its expiry is expired.
func (k keyRecord) state(now time.Time) KeyState {
	if k.State == KeyOutstanding && !now.Before(k.Expires) {
		return KeyExpired
	}
	return k.State
}

func (k keyRecord) info(now time.Time) KeyInfo {
	nodes := k.Nodes
	if nodes == nil {
		nodes = []catalog.NodeInventory{}
	}
	return KeyInfo{ID: k.ID, State: k.state(now), Site: k.Site, Issued: k.Issued, Expires: k.Expires,
		Nodes: nodes, Bundle: k.Bundle, Closed: k.Closed}
}

// answerable returns nil if a bundle may answer k at now, or a
// *KeyClosedError saying why not.
func (k keyRecord) answerable(now time.Time) error {
	switch k.state(now) {
	case KeyOutstanding:
		return nil
	case KeyFulfilled:
		return &KeyClosedError{ID: k.ID, Err: ErrKeyFulfilled, Bundle: k.Bundle, When: k.Closed}
	case KeyRevoked:
		return &KeyClosedError{ID: k.ID, Err: ErrKeyRevoked, When: k.Closed}
	default:
		return &KeyClosedError{ID: k.ID, Err: ErrKeyExpired, When: k.Expires}
	}
}

// KeyOptions says what download key IssueKey makes.
type KeyOptions struct {
	// Expires is how long the key stays valid: zero means
	// DefaultKeyExpiry; at most MaxKeyExpiry.
	Expires time.Duration
	// Nodes is the cluster inventory the key carries (may be empty).
	Nodes []catalog.NodeInventory
	// SiteKey signs the key: the site's private key as ReadSiteKey
	// returns it, which must be the repository's own. Nil reads site.key
	// with no passphrase, so a passphrase-protected one is then refused.
	SiteKey *keys.PrivateKey
}

// expiry returns the validity asked for, or ErrInvalid.
func (o KeyOptions) expiry() (time.Duration, error) {
	exp := o.Expires
	if exp == 0 {
		exp = DefaultKeyExpiry
	}
	if exp < time.Second || exp > MaxKeyExpiry {
		return 0, fmt.Errorf("%w: --expires %s: want between 1s and %s", ErrInvalid, exp, MaxKeyExpiry)
	}
	return exp, nil
}

// IssueKey makes a new download key for the site: a random id, the
// inventory, a validity window from now, signed with the site key
// (opts.SiteKey, else site.key read without a passphrase) as an armored
// OpenPGP message. It records the key as outstanding and audits it, and
// only then returns the armored bytes for the caller to write. A site key
// other than the repository's own is refused.
func (r *Repo) IssueKey(opts KeyOptions) (KeyInfo, []byte, error) {
	exp, err := opts.expiry()
	if err != nil {
		return KeyInfo{}, nil, err
	}
	id, err := catalog.NewKeyID()
	if err != nil {
		return KeyInfo{}, nil, err
	}
	now := r.opts.now().UTC().Truncate(time.Second)
	dk := catalog.DownloadKey{
		Format: catalog.DownloadKeyFormat, Site: r.site, ID: id,
		Issued: now, Expires: now.Add(exp).Truncate(time.Second), Nodes: opts.Nodes,
	}
	payload, err := dk.Encode()
	if err != nil {
		return KeyInfo{}, nil, fmt.Errorf("download key: %w", err)
	}
	signer := opts.SiteKey
	if signer == nil {
		if signer, err = ReadSiteKey(r.dir, SiteKeyPassphrase{}); err != nil {
			return KeyInfo{}, nil, err
		}
	}
	if err := r.checkSiteKey(signer); err != nil {
		return KeyInfo{}, nil, err
	}
	var armored bytes.Buffer
	if err := signer.SignMessage(&armored, payload); err != nil {
		return KeyInfo{}, nil, fmt.Errorf("sign download key: %w", err)
	}
	rec := keyRecord{ID: id, Site: r.site, Issued: dk.Issued, Expires: dk.Expires, Nodes: dk.Nodes,
		State: KeyOutstanding, Armored: armored.Bytes()}
	err = r.Update(func(tx *Tx) error {
		if tx.Bucket(bucketKeys).Get([]byte(id)) != nil {
			return fmt.Errorf("download key id %s already issued (random id collision): retry", id)
		}
		if err := putJSON(tx.Bucket(bucketKeys), []byte(id), rec); err != nil {
			return err
		}
		_, err := tx.Audit(ActionKeyIssue, struct {
			ID      catalog.KeyID `json:"id"`
			Expires time.Time     `json:"expires"`
			Nodes   []string      `json:"nodes"`
		}{id, rec.Expires, nodeNames(rec.Nodes)})
		return err
	})
	if err != nil {
		return KeyInfo{}, nil, err
	}
	return rec.info(now), rec.Armored, nil
}

func nodeNames(ns []catalog.NodeInventory) []string {
	out := make([]string, 0, len(ns))
	for _, n := range ns {
		out = append(out, n.Name)
	}
	return out
}

// RevokeKey closes an outstanding (or expired) download key, so that no
// bundle answering it is accepted, and audits it. A key that is unknown
// (ErrNotFound), fulfilled or already revoked (ErrKeyClosed) is refused.
func (r *Repo) RevokeKey(id string) (KeyInfo, error) {
	kid, err := catalog.ParseKeyID(id)
	if err != nil {
		return KeyInfo{}, fmt.Errorf("%w: %q is not a download key id (26 lowercase base32 characters; see airlock key list)", ErrNotFound, id)
	}
	now := r.opts.now()
	var info KeyInfo
	err = r.Update(func(tx *Tx) error {
		var rec keyRecord
		found, err := getJSON(tx.Tx, bucketKeys, []byte(kid), &rec)
		if err != nil {
			return err
		}
		if !found {
			return fmt.Errorf("%w: download key %s was not issued by this repository (see airlock key list)", ErrNotFound, kid)
		}
		switch rec.State {
		case KeyFulfilled:
			return fmt.Errorf("%w: download key %s was already fulfilled by bundle %s; there is nothing left to revoke", ErrKeyClosed, kid, rec.Bundle)
		case KeyRevoked:
			return fmt.Errorf("%w: download key %s was already revoked at %s", ErrKeyClosed, kid, rec.Closed.UTC().Format(time.RFC3339))
		}
		was := rec.state(now)
		rec.State, rec.Closed = KeyRevoked, now.UTC()
		if err := putJSON(tx.Bucket(bucketKeys), []byte(kid), rec); err != nil {
			return err
		}
		info = rec.info(now)
		_, err = tx.Audit(ActionKeyRevoke, struct {
			ID  catalog.KeyID `json:"id"`
			Was KeyState      `json:"was"`
		}{kid, was})
		return err
	})
	return info, err
}

// Keys returns every issued download key in the order issued, with its
// state now.
func (r *Repo) Keys() ([]KeyInfo, error) {
	now := r.opts.now()
	var out []KeyInfo
	err := r.db.View(func(tx *bbolt.Tx) error {
		return tx.Bucket(bucketKeys).ForEach(func(k, v []byte) error {
			var rec keyRecord
			if err := decodeRecord(bucketKeys, k, v, &rec); err != nil {
				return err
			}
			out = append(out, rec.info(now))
			return nil
		})
	})
	sort.SliceStable(out, func(i, j int) bool { return out[i].Issued.Before(out[j].Issued) })
	return out, err
}

// maxInventorySize bounds an inventory file.
const maxInventorySize = catalog.MaxDocumentSize

// ParseInventory strictly decodes an inventory document,
// {"nodes":[{"name":"n1","installed":{"base":"3.3.2"}}]}: unknown or
// missing fields, duplicate keys, trailing data, invalid or repeated node
// names, invalid component names or versions are errors matching
// ErrInventory (verification class).
func ParseInventory(data []byte) ([]catalog.NodeInventory, error) {
	var doc struct {
		Nodes []catalog.NodeInventory `json:"nodes"`
	}
	if err := catalog.DecodeStrict(data, &doc, []string{"nodes"}); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInventory, err)
	}
	if len(doc.Nodes) > 4096 {
		return nil, fmt.Errorf("%w: %d nodes, at most 4096", ErrInventory, len(doc.Nodes))
	}
	seen := make(map[string]bool, len(doc.Nodes))
	for i, n := range doc.Nodes {
		if err := catalog.ValidName(n.Name); err != nil {
			return nil, fmt.Errorf("%w: node %d: %v", ErrInventory, i+1, err)
		}
		if seen[n.Name] {
			return nil, fmt.Errorf("%w: node %s listed twice", ErrInventory, n.Name)
		}
		seen[n.Name] = true
		for c, v := range n.Installed {
			if err := catalog.ValidName(c); err != nil {
				return nil, fmt.Errorf("%w: node %s: component: %v", ErrInventory, n.Name, err)
			}
			if v.IsZero() {
				return nil, fmt.Errorf("%w: node %s: component %s has no version", ErrInventory, n.Name, c)
			}
		}
	}
	return doc.Nodes, nil
}

// ReadInventoryFile reads and parses an inventory file (see
// ParseInventory); errors name the file.
func ReadInventoryFile(path string) ([]catalog.NodeInventory, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("inventory %s: %w", path, pathCause(err))
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxInventorySize+1))
	if err != nil {
		return nil, fmt.Errorf("inventory %s: %w", path, err)
	}
	if len(data) > maxInventorySize {
		return nil, fmt.Errorf("inventory %s: %w: larger than %d bytes", path, ErrInventory, maxInventorySize)
	}
	nodes, err := ParseInventory(data)
	if err != nil {
		return nil, fmt.Errorf("inventory %s: %w; expected {\"nodes\":[{\"name\":\"n1\",\"installed\":{\"base\":\"3.3.2\"}}]}", path, err)
	}
	return nodes, nil
}
