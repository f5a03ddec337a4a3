package keys

import (
	"fmt"
	"sort"
	"sync"

	"github.com/airlock-project/airlock/fault"
)

// Trusted is one entry of a trust store: a public key and the one role it is
// trusted for.
type Trusted struct {
	Role Role
	Key  *PublicKey
}

// ErrTrustConflict reports an Add that would give a key a second role, or
// make one signing key belong to two trusted keys (usage class).
var ErrTrustConflict = fault.Usage("conflicting trust")

// TrustStore is an in-memory set of trusted public keys, each with exactly
// one role. It is safe for concurrent use; verification only takes a read
// lock. Persisting it is the caller's business (store Key.Armored() and Role).
type TrustStore struct {
	mu      sync.RWMutex
	byFP    map[Fingerprint]Trusted   // primary fingerprint -> entry
	signers map[Fingerprint]signerRef // primary and subkey fingerprints
	byKeyID map[uint64][]Fingerprint  // 64-bit key ID -> signing key fingerprints
}

// signerRef locates one key packet of a trusted key.
type signerRef struct {
	primary Fingerprint
	index   int // into PublicKey.keys
}

// NewTrustStore returns an empty store.
func NewTrustStore() *TrustStore {
	return &TrustStore{
		byFP:    map[Fingerprint]Trusted{},
		signers: map[Fingerprint]signerRef{},
		byKeyID: map[uint64][]Fingerprint{},
	}
}

// Add trusts k for role. Adding a key already trusted for the same role
// replaces it (a renewed expiry or a new subkey takes effect); adding it
// with another role is an error matching ErrTrustConflict, as is a key one
// of whose (sub)keys already belongs to another trusted key. An invalid role
// is an error matching ErrRole.
func (t *TrustStore) Add(role Role, k *PublicKey) error {
	if err := role.check(); err != nil {
		return err
	}
	if k == nil {
		return fmt.Errorf("trust %s: no key: %w", role, ErrTrustConflict)
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if old, ok := t.byFP[k.fp]; ok && old.Role != role {
		return fmt.Errorf("key %s (%s) is already trusted as %s: a key has one role only; remove it first to trust it as %s: %w",
			k.fp, printable(k.userID), old.Role, role, ErrTrustConflict)
	}
	for _, ki := range k.keys {
		if ref, ok := t.signers[ki.fp]; ok && ref.primary != k.fp {
			return fmt.Errorf("key %s (%s) contains key %s, which belongs to the trusted key %s: %w",
				k.fp, printable(k.userID), ki.fp, ref.primary, ErrTrustConflict)
		}
	}
	t.remove(k.fp)
	t.byFP[k.fp] = Trusted{Role: role, Key: k}
	for i, ki := range k.keys {
		t.signers[ki.fp] = signerRef{primary: k.fp, index: i}
		id := ki.fp.KeyID()
		t.byKeyID[id] = append(t.byKeyID[id], ki.fp)
	}
	return nil
}

// Remove stops trusting the key whose primary fingerprint is fp, and reports
// whether it was trusted.
func (t *TrustStore) Remove(fp Fingerprint) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.remove(fp)
}

func (t *TrustStore) remove(fp Fingerprint) bool {
	old, ok := t.byFP[fp]
	if !ok {
		return false
	}
	delete(t.byFP, fp)
	for _, ki := range old.Key.keys {
		delete(t.signers, ki.fp)
		id := ki.fp.KeyID()
		list := t.byKeyID[id][:0]
		for _, f := range t.byKeyID[id] {
			if f != ki.fp {
				list = append(list, f)
			}
		}
		if len(list) == 0 {
			delete(t.byKeyID, id)
		} else {
			t.byKeyID[id] = list
		}
	}
	return true
}

// List returns every trusted key, sorted by role name, then fingerprint.
func (t *TrustStore) List() []Trusted {
	t.mu.RLock()
	out := make([]Trusted, 0, len(t.byFP))
	for _, e := range t.byFP {
		out = append(out, e)
	}
	t.mu.RUnlock()
	sort.Slice(out, func(i, j int) bool {
		if out[i].Role != out[j].Role {
			return out[i].Role < out[j].Role
		}
		return out[i].Key.fp.String() < out[j].Key.fp.String()
	})
	return out
}

// Lookup returns the entry of the key whose primary fingerprint is fp.
func (t *TrustStore) Lookup(fp Fingerprint) (Trusted, bool) {
	t.mu.RLock()
	defer t.mu.RUnlock()
	e, ok := t.byFP[fp]
	return e, ok
}

// findSigner resolves the issuer named by a signature to a trusted key and
// the key packet in it. fp wins over keyID when present.
func (t *TrustStore) findSigner(fp Fingerprint, hasFP bool, keyID uint64) (Trusted, *keyInfo, int) {
	t.mu.RLock()
	defer t.mu.RUnlock()
	var cands []Fingerprint
	if hasFP {
		cands = []Fingerprint{fp}
	} else {
		cands = t.byKeyID[keyID]
	}
	found := 0
	var tr Trusted
	var ki *keyInfo
	for _, c := range cands {
		ref, ok := t.signers[c]
		if !ok {
			continue
		}
		found++
		tr = t.byFP[ref.primary]
		ki = &tr.Key.keys[ref.index]
	}
	return tr, ki, found
}
