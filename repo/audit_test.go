package repo

import (
	"bytes"
	"context"
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.etcd.io/bbolt"

	"github.com/airlock-project/airlock/catalog"
	"github.com/airlock-project/airlock/fault"
)

// auditEnv is a repository with at least five audit entries: init, two
// trust.add, key.issue, bundle.import, key.issue, key.revoke.
func auditEnv(t *testing.T) *env {
	e := newEnv(t)
	e.importBundle(e.bundle(e.issue(), "base@3.4.0"), ImportOptions{})
	k := e.issue()
	r := e.open()
	if _, err := r.RevokeKey(string(k)); err != nil {
		t.Fatal(err)
	}
	r.Close()
	return e
}

func TestAuditChain(t *testing.T) {
	e := auditEnv(t)
	r := e.openRO()
	defer r.Close()
	log, err := r.AuditLog()
	if err != nil {
		t.Fatal(err)
	}
	want := []string{ActionInit, ActionTrustAdd, ActionTrustAdd, ActionKeyIssue, ActionBundleImport, ActionKeyIssue, ActionKeyRevoke}
	if len(log) != len(want) {
		t.Fatalf("%d entries, want %d", len(log), len(want))
	}
	prev := zeroHash
	for i, en := range log {
		if en.Seq != uint64(i+1) || en.Action != want[i] || en.Prev != prev || en.Actor == "" || en.Time.IsZero() {
			t.Errorf("entry %d: %+v", i+1, en)
		}
		if !json.Valid(en.Details) {
			t.Errorf("entry %d details %q", i+1, en.Details)
		}
		prev = en.Hash
	}
	s, err := r.VerifyAudit()
	if err != nil || s.Entries != uint64(len(want)) || s.Head != prev {
		t.Errorf("VerifyAudit = %+v, %v", s, err)
	}
}

// TestAuditTampering edits the database file directly, as someone with
// access to it could, and checks that every change is detected, by
// VerifyAudit and by Check.
func TestAuditTampering(t *testing.T) {
	for _, tc := range []struct {
		name   string
		tamper func(tx *bbolt.Tx) error
		want   string
	}{
		{"edit an entry's details", func(tx *bbolt.Tx) error {
			return rewrite(tx, 4, func(v []byte) []byte { return bytes.Replace(v, []byte(`"nodes":[]`), []byte(`"nodes":["x"]`), 1) })
		}, "entry 4 (key.issue"},
		{"edit an entry's actor", func(tx *bbolt.Tx) error {
			return rewrite(tx, 2, func(v []byte) []byte { return bytes.Replace(v, []byte("tester@host"), []byte("someone@else"), 1) })
		}, "entry 2 (trust.add"},
		{"edit an entry and recompute its hash", func(tx *bbolt.Tx) error {
			return rewriteEntry(tx, 3, func(e *AuditEntry) { e.Actor = "someone@else" })
		}, "entry 4 does not link to entry 3"},
		{"remove an entry", func(tx *bbolt.Tx) error {
			return tx.Bucket(bucketAudit).Delete(seqKey(3))
		}, "entry 3 is missing"},
		{"remove two entries", func(tx *bbolt.Tx) error {
			tx.Bucket(bucketAudit).Delete(seqKey(3))
			return tx.Bucket(bucketAudit).Delete(seqKey(4))
		}, "entries 3 to 4 are missing"},
		{"remove the last entry", func(tx *bbolt.Tx) error {
			return tx.Bucket(bucketAudit).Delete(seqKey(7))
		}, "entries removed from the end"},
		{"remove the last entry and the head", func(tx *bbolt.Tx) error {
			tx.Bucket(bucketMeta).Delete(metaAuditHead)
			return tx.Bucket(bucketAudit).Delete(seqKey(7))
		}, "head of the log is missing"},
		{"swap two entries", func(tx *bbolt.Tx) error {
			b := tx.Bucket(bucketAudit)
			a, c := bytes.Clone(b.Get(seqKey(4))), bytes.Clone(b.Get(seqKey(5)))
			b.Put(seqKey(4), c)
			return b.Put(seqKey(5), a)
		}, "entry 4 holds the record of entry 5"},
		{"swap two entries and renumber them", func(tx *bbolt.Tx) error {
			b := tx.Bucket(bucketAudit)
			var x, y AuditEntry
			json.Unmarshal(b.Get(seqKey(4)), &x)
			json.Unmarshal(b.Get(seqKey(5)), &y)
			x.Seq, y.Seq = 5, 4
			bx, _ := json.Marshal(x)
			by, _ := json.Marshal(y)
			b.Put(seqKey(4), by)
			return b.Put(seqKey(5), bx)
		}, "entry 4 does not link to entry 3"},
		{"replace an entry with garbage", func(tx *bbolt.Tx) error {
			return tx.Bucket(bucketAudit).Put(seqKey(6), []byte("{"))
		}, "entry 6 cannot be decoded"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := auditEnv(t)
			db, err := bbolt.Open(filepath.Join(e.dir, DBFile), 0o600, &bbolt.Options{Timeout: time.Second})
			if err != nil {
				t.Fatal(err)
			}
			if err := db.Update(tc.tamper); err != nil {
				t.Fatal(err)
			}
			db.Close()
			r := e.openRO()
			defer r.Close()
			_, err = r.VerifyAudit()
			wantClass(t, err, fault.ExitVerification, ErrAudit)
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("VerifyAudit: %v\nwant it to say %q", err, tc.want)
			}
			_, err = r.Check(context.Background(), CheckOptions{})
			var ce *CheckError
			if !asCheckError(err, &ce) || !hasProblem(ce, "audit", tc.want) {
				t.Errorf("Check: %v\nwant an audit problem saying %q", err, tc.want)
			}
		})
	}
}

// TestAuditAppendsAfterTampering: appending continues from the recorded
// head, so a removed tail stays detectable after later writes.
func TestAuditAppendsAfterTampering(t *testing.T) {
	e := auditEnv(t)
	db, err := bbolt.Open(filepath.Join(e.dir, DBFile), 0o600, &bbolt.Options{Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	db.Update(func(tx *bbolt.Tx) error { return tx.Bucket(bucketAudit).Delete(seqKey(7)) })
	db.Close()
	e.issue()
	r := e.openRO()
	defer r.Close()
	if _, err := r.VerifyAudit(); err == nil || !strings.Contains(err.Error(), "entry 7 is missing") {
		t.Errorf("VerifyAudit after an append = %v", err)
	}
}

func rewrite(tx *bbolt.Tx, seq uint64, f func([]byte) []byte) error {
	b := tx.Bucket(bucketAudit)
	return b.Put(seqKey(seq), f(bytes.Clone(b.Get(seqKey(seq)))))
}

// rewriteEntry edits an entry and gives it a correct hash of its own.
func rewriteEntry(tx *bbolt.Tx, seq uint64, f func(*AuditEntry)) error {
	b := tx.Bucket(bucketAudit)
	var en AuditEntry
	if err := json.Unmarshal(b.Get(seqKey(seq)), &en); err != nil {
		return err
	}
	f(&en)
	h, err := en.computeHash()
	if err != nil {
		return err
	}
	en.Hash = h
	data, err := catalog.EncodeCanonical(en) // as appendAudit writes it
	if err != nil {
		return err
	}
	return b.Put(seqKey(seq), data)
}
