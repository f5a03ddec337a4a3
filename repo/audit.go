package repo

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"go.etcd.io/bbolt"

	"github.com/airlock-project/airlock/catalog"
)

// Audit actions recorded by this package. Later features add their own
// (distribution, installation) through Tx.Audit.
const (
	ActionInit         = "init"
	ActionTrustAdd     = "trust.add"
	ActionTrustRemove  = "trust.remove"
	ActionKeyIssue     = "key.issue"
	ActionKeyRevoke    = "key.revoke"
	ActionBundleImport = "bundle.import"
	ActionSiteRotate   = "site.rotate"
)

// auditDomain separates audit hashes from every other SHA-256 in airlock.
const auditDomain = "airlock-audit/v1\n"

// zeroHash is the prev of the first entry.
var zeroHash = strings.Repeat("0", 64)

// AuditEntry is one record of the audit log. Hash is the SHA-256 of
// "airlock-audit/v1\n" and the canonical JSON of the other fields (Hash
// excluded); Prev is the Hash of the entry before (64 zeros for the first).
type AuditEntry struct {
	Seq     uint64          `json:"seq"`
	Time    time.Time       `json:"time"`
	Actor   string          `json:"actor"`
	Action  string          `json:"action"`
	Details json.RawMessage `json:"details"`
	Prev    string          `json:"prev"`
	Hash    string          `json:"hash"`
}

// computeHash returns the hash the entry must carry.
func (e AuditEntry) computeHash() (string, error) {
	body, err := catalog.EncodeCanonical(struct {
		Seq     uint64          `json:"seq"`
		Time    string          `json:"time"`
		Actor   string          `json:"actor"`
		Action  string          `json:"action"`
		Details json.RawMessage `json:"details"`
		Prev    string          `json:"prev"`
	}{e.Seq, e.Time.UTC().Format(time.RFC3339Nano), e.Actor, e.Action, e.Details, e.Prev})
	if err != nil {
		return "", err
	}
	h := sha256.New()
	h.Write([]byte(auditDomain))
	h.Write(body)
	return hex.EncodeToString(h.Sum(nil)), nil
}

// auditHead is meta/audit_head: the last entry appended.
type auditHead struct {
	Seq  uint64 `json:"seq"`
	Hash string `json:"hash"`
}

func seqKey(n uint64) []byte {
	var k [8]byte
	binary.BigEndian.PutUint64(k[:], n)
	return k[:]
}

// appendAudit adds an entry after meta/audit_head, in tx.
func appendAudit(tx *bbolt.Tx, now time.Time, actor, action string, details any) (AuditEntry, error) {
	var head auditHead
	if _, err := getJSON(tx, bucketMeta, metaAuditHead, &head); err != nil {
		return AuditEntry{}, err
	}
	if head.Hash == "" {
		head.Hash = zeroHash
	}
	d, err := catalog.EncodeCanonical(details)
	if err != nil {
		return AuditEntry{}, fmt.Errorf("audit %s: %w", action, err)
	}
	e := AuditEntry{
		Seq:     head.Seq + 1,
		Time:    now.UTC(),
		Actor:   actor,
		Action:  action,
		Details: json.RawMessage(bytes.TrimSuffix(d, []byte("\n"))),
		Prev:    head.Hash,
	}
	if e.Hash, err = e.computeHash(); err != nil {
		return AuditEntry{}, fmt.Errorf("audit %s: %w", action, err)
	}
	data, err := catalog.EncodeCanonical(e)
	if err != nil {
		return AuditEntry{}, fmt.Errorf("audit %s: %w", action, err)
	}
	if err := tx.Bucket(bucketAudit).Put(seqKey(e.Seq), data); err != nil {
		return AuditEntry{}, err
	}
	if err := putJSON(tx.Bucket(bucketMeta), metaAuditHead, auditHead{Seq: e.Seq, Hash: e.Hash}); err != nil {
		return AuditEntry{}, err
	}
	return e, nil
}

// AuditLog returns every entry in order, as stored, without verifying the
// chain (see VerifyAudit).
func (r *Repo) AuditLog() ([]AuditEntry, error) {
	var out []AuditEntry
	err := r.db.View(func(tx *bbolt.Tx) error {
		return tx.Bucket(bucketAudit).ForEach(func(k, v []byte) error {
			var e AuditEntry
			if err := decodeRecord(bucketAudit, k, v, &e); err != nil {
				return err
			}
			out = append(out, e)
			return nil
		})
	})
	return out, err
}

// AuditSummary is the result of a successful chain verification.
type AuditSummary struct {
	// Entries is the number of entries.
	Entries uint64 `json:"entries"`
	// Head is the hash of the last entry: record it elsewhere to detect a
	// rewrite of the whole log later.
	Head string `json:"head"`
}

// VerifyAudit checks the hash chain of the audit log: consecutive sequence
// numbers from 1, every entry's hash, every link to the entry before, and
// the last entry against meta/audit_head. The error, of the verification
// class (ErrAudit), names the first entry found wrong and how.
func (r *Repo) VerifyAudit() (AuditSummary, error) {
	var s AuditSummary
	err := r.db.View(func(tx *bbolt.Tx) error {
		var err error
		s, err = verifyAudit(tx)
		return err
	})
	return s, err
}

func verifyAudit(tx *bbolt.Tx) (AuditSummary, error) {
	bad := func(format string, a ...any) error {
		return fmt.Errorf("%w: %s: the audit log was tampered with or damaged; restore the repository from a backup and compare", ErrAudit, fmt.Sprintf(format, a...))
	}
	next, prev := uint64(1), zeroHash
	c := tx.Bucket(bucketAudit).Cursor()
	for k, v := c.First(); k != nil; k, v = c.Next() {
		if len(k) != 8 {
			return AuditSummary{}, bad("an entry is stored under a malformed key %x", k)
		}
		seq := binary.BigEndian.Uint64(k)
		if seq != next {
			if next == seq-1 {
				return AuditSummary{}, bad("entry %d is missing (removed)", next)
			}
			return AuditSummary{}, bad("entries %d to %d are missing (removed)", next, seq-1)
		}
		var e AuditEntry
		if err := json.Unmarshal(v, &e); err != nil {
			return AuditSummary{}, bad("entry %d cannot be decoded (edited): %v", seq, err)
		}
		if e.Seq != seq {
			return AuditSummary{}, bad("entry %d holds the record of entry %d (entries moved or reordered)", seq, e.Seq)
		}
		if e.Prev != prev {
			return AuditSummary{}, bad("entry %d does not link to entry %d (an entry before it was edited, removed or reordered)", seq, seq-1)
		}
		h, err := e.computeHash()
		if err != nil || h != e.Hash {
			return AuditSummary{}, bad("entry %d (%s at %s) does not match its hash (edited)", seq, e.Action, e.Time.UTC().Format(time.RFC3339))
		}
		prev, next = e.Hash, next+1
	}
	last := next - 1
	var head auditHead
	found, err := getJSON(tx, bucketMeta, metaAuditHead, &head)
	if err != nil {
		return AuditSummary{}, bad("the recorded head cannot be decoded: %v", err)
	}
	switch {
	case !found && last > 0:
		return AuditSummary{}, bad("the recorded head of the log is missing")
	case found && head.Seq > last:
		return AuditSummary{}, bad("the log ends at entry %d but entry %d was recorded as the last (entries removed from the end)", last, head.Seq)
	case found && (head.Seq != last || head.Hash != prev):
		return AuditSummary{}, bad("the log ends at entry %d, which is not the recorded head (entry %d, %.12s)", last, head.Seq, head.Hash)
	}
	return AuditSummary{Entries: last, Head: prev}, nil
}
