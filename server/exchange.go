package server

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/airlock-project/airlock/catalog"
	"github.com/airlock-project/airlock/keys"
	"github.com/airlock-project/airlock/plan"
	"github.com/airlock-project/airlock/verify"
)

// keyRecord is the value of the keys bucket: a download key that was
// exchanged, and the exact answer given.
type keyRecord struct {
	Site        string           `json:"site"`
	Signer      keys.Fingerprint `json:"signer"`
	KeyID       catalog.KeyID    `json:"key_id"`
	Exchanged   time.Time        `json:"exchanged"`
	Expires     time.Time        `json:"expires"`
	Entitlement string           `json:"entitlement"`
	Downloads   []Download       `json:"downloads"`
}

// Download is one entitled package as the exchange response lists it.
type Download struct {
	SHA256 catalog.Digest `json:"sha256"`
	Size   int64          `json:"size"`
	URL    string         `json:"url"`
}

func (r *keyRecord) entitled(d catalog.Digest) bool {
	for _, dl := range r.Downloads {
		if dl.SHA256 == d {
			return true
		}
	}
	return false
}

// ExchangeResult is the answer to a download key.
type ExchangeResult struct {
	// Entitlement is the armored, vendor-signed entitlement, byte for byte
	// the same every time the same key is exchanged.
	Entitlement []byte
	// Downloads lists one URL per entitled package, in entitlement order.
	Downloads []Download
	// Site and KeyID identify the download key answered.
	Site  string
	KeyID catalog.KeyID
	// Repeat is true when the key had been exchanged before.
	Repeat bool
}

// Exchange verifies an armored download key and answers it with a signed
// entitlement. The key must be signed by the key registered for the site
// it names, and the server's clock must lie within its validity window.
// A key exchanged before gets its stored answer again, never more; a new
// key gets, for the union of its nodes' install sequences (plan.Sequence
// over the whole catalog), every package the site has not acknowledged.
// Errors are of the verification class (bad or unknown signature,
// malformed key) or the policy class (clock: verify.ErrExpired,
// verify.ErrNotYetValid); nothing is recorded on error.
func (s *Server) Exchange(ctx context.Context, armored []byte) (*ExchangeResult, error) {
	idx := s.siteSnapshot()
	dk, err := verify.VerifyDownloadKey(armored, idx.trust, verify.Policy{Now: s.now(), Skew: s.cfg.skew()})
	if err != nil {
		return nil, err
	}
	owner := idx.byKey[dk.Signature.Signer]
	if owner != dk.Site {
		return nil, fmt.Errorf("download key %s refused (%w): it names site %q but is signed by the key registered for site %q; make the key on the repository of site %q",
			redact(dk.ID), ErrSiteMismatch, dk.Site, owner, dk.Site)
	}
	if rec, err := s.lookupKey(dk.ID); err != nil || rec != nil {
		if err != nil {
			return nil, err
		}
		return s.repeat(rec, dk)
	}

	var (
		rec         *keyRecord
		repeat      bool
		unreachable []unreachable
	)
	// Batch coalesces concurrent exchanges into one commit (one fsync); it
	// may run the function again, which therefore starts from scratch.
	err = s.db.Batch(func(tx *bolt.Tx) error {
		rec, repeat, unreachable = nil, false, nil
		kb := tx.Bucket(bucketKeys)
		if v := kb.Get([]byte(dk.ID)); v != nil {
			// Another request answered this key meanwhile: its answer stands.
			rec, repeat = new(keyRecord), true
			return decode(v, rec)
		}
		var err error
		rec, unreachable, err = s.entitle(tx, dk)
		if err != nil {
			return err
		}
		v, err := catalog.EncodeCanonical(rec)
		if err != nil {
			return err
		}
		return kb.Put([]byte(dk.ID), v)
	})
	if err != nil {
		return nil, err
	}
	if repeat {
		return s.repeat(rec, dk)
	}
	for _, u := range unreachable {
		s.log.Warn("entitlement incomplete: the catalog cannot bring a node up to date",
			"site", dk.Site, "key", redact(dk.ID), "node", u.node, "unreachable", u.err.Error())
	}
	s.log.Info("entitlement issued", "site", dk.Site, "key", redact(dk.ID), "packages", len(rec.Downloads))
	return rec.result(false), nil
}

func (s *Server) repeat(rec *keyRecord, dk *verify.DownloadKey) (*ExchangeResult, error) {
	if rec.Site != dk.Site || rec.Signer != dk.Signature.Signer {
		// The answer must not tell this client which site used the id: the
		// vendor's log does.
		s.log.Warn("download key id reused by another signer", "site", dk.Site, "first_site", rec.Site, "key", redact(dk.ID))
		return nil, fmt.Errorf("download key %s refused (%w): its id was already used by another download key; make a new download key ('airlock key new')", redact(dk.ID), ErrSiteMismatch)
	}
	return rec.result(true), nil
}

func (r *keyRecord) result(repeat bool) *ExchangeResult {
	return &ExchangeResult{Entitlement: []byte(r.Entitlement), Downloads: r.Downloads, Site: r.Site, KeyID: r.KeyID, Repeat: repeat}
}

// lookupKey returns the record of an exchanged key, or nil.
func (s *Server) lookupKey(id catalog.KeyID) (*keyRecord, error) {
	var rec *keyRecord
	err := s.db.View(func(tx *bolt.Tx) error {
		v := tx.Bucket(bucketKeys).Get([]byte(id))
		if v == nil {
			return nil
		}
		rec = new(keyRecord)
		return decode(v, rec)
	})
	return rec, err
}

// unreachable records a node whose components cannot all reach their
// newest version; the exchange logs it once the answer is committed.
type unreachable struct {
	node string
	err  error
}

// entitle computes and signs the answer to dk inside the write
// transaction that records it, so that the ledger it subtracts cannot
// change meanwhile.
func (s *Server) entitle(tx *bolt.Tx, dk *verify.DownloadKey) (*keyRecord, []unreachable, error) {
	available, err := readCatalog(tx)
	if err != nil {
		return nil, nil, err
	}
	delivered := map[catalog.Digest]bool{}
	c := tx.Bucket(bucketLedger).Cursor()
	prefix := append([]byte(dk.Site), 0)
	for k, _ := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, _ = c.Next() {
		var d catalog.Digest
		copy(d[:], k[len(prefix):])
		delivered[d] = true
	}
	pkgs, unreached := needed(dk, available, delivered)

	now := s.now()
	ent := catalog.Entitlement{
		Format:   catalog.EntitlementFormat,
		Site:     dk.Site,
		KeyID:    dk.ID,
		Issued:   now,
		Expires:  dk.Expires,
		Packages: pkgs,
	}
	payload, err := ent.Encode()
	if err != nil {
		return nil, nil, fmt.Errorf("encode entitlement: %w", err)
	}
	if s.Locked() {
		return nil, nil, s.errLocked()
	}
	var signed bytes.Buffer
	if err := s.vendor.SignMessage(&signed, payload); err != nil {
		return nil, nil, fmt.Errorf("sign entitlement: %w", err)
	}
	rec := &keyRecord{
		Site:        dk.Site,
		Signer:      dk.Signature.Signer,
		KeyID:       dk.ID,
		Exchanged:   now.UTC(),
		Expires:     dk.Expires.UTC(),
		Entitlement: signed.String(),
		Downloads:   make([]Download, 0, len(pkgs)),
	}
	for _, p := range pkgs {
		rec.Downloads = append(rec.Downloads, Download{SHA256: p.SHA256, Size: p.Size, URL: downloadURL(dk.ID, p.SHA256)})
	}
	return rec, unreached, nil
}

// needed returns the union of the install sequences of dk's nodes, less
// the delivered packages, ordered by kind, name and version. Packages that
// no sequence reaches are not entitled; the nodes concerned are returned
// with the reason.
func needed(dk *verify.DownloadKey, available []catalog.Package, delivered map[catalog.Digest]bool) ([]catalog.Package, []unreachable) {
	var unreached []unreachable
	chosen := map[catalog.Digest]catalog.Package{}
	for _, n := range dk.Nodes {
		seq, err := plan.Sequence(n.Installed, available)
		if err != nil {
			unreached = append(unreached, unreachable{node: n.Name, err: err})
		}
		for _, p := range seq {
			if !delivered[p.SHA256] {
				chosen[p.SHA256] = p
			}
		}
	}
	out := make([]catalog.Package, 0, len(chosen))
	for _, p := range chosen {
		out = append(out, p)
	}
	slices.SortFunc(out, func(a, b catalog.Package) int {
		return cmp.Or(cmp.Compare(a.Kind.Rank(), b.Kind.Rank()), cmp.Compare(a.Name, b.Name), a.Version.Compare(b.Version))
	})
	return out, unreached
}

func downloadURL(id catalog.KeyID, d catalog.Digest) string {
	return "/v1/downloads/" + string(id) + "/" + d.String()
}

// AckResult is the answer to an acknowledgement.
type AckResult struct {
	// First is true when this acknowledgement recorded the delivery; false
	// when the site had already acknowledged the package.
	First bool
	// Delivery is the ledger entry (the earlier one when First is false).
	Delivery Delivery
}

// Ack records in the ledger that the site of download key id received
// package d, once per site and package: a repeated acknowledgement, by
// this key or another key of the site, records nothing and returns First
// false. A key that was never exchanged, or whose entitlement does not
// list d, is refused with errNotEntitled.
func (s *Server) Ack(_ context.Context, id catalog.KeyID, d catalog.Digest) (AckResult, error) {
	var res AckResult
	err := s.db.Batch(func(tx *bolt.Tx) error {
		res = AckResult{}
		rec, err := entitledIn(tx, id, d)
		if err != nil {
			return err
		}
		lb := tx.Bucket(bucketLedger)
		lk := ledgerKey(rec.Site, d)
		if v := lb.Get(lk); v != nil {
			return decode(v, &res.Delivery)
		}
		p, err := resolvePackage(tx, d.String())
		if err != nil {
			return err
		}
		res.First = true
		res.Delivery = Delivery{Site: rec.Site, Package: p.ID(), SHA256: d, KeyID: id, Acknowledged: s.now().UTC()}
		v, err := catalog.EncodeCanonical(res.Delivery)
		if err != nil {
			return err
		}
		return lb.Put(lk, v)
	})
	if err != nil {
		return AckResult{}, err
	}
	if res.First {
		s.log.Info("delivered", "site", res.Delivery.Site, "package", res.Delivery.Package, "key", redact(id))
	}
	return res, nil
}

// errNotEntitled: the key was not exchanged here, or its entitlement does
// not list the package.
var errNotEntitled = errors.New("not entitled")

// entitledIn returns the record of key id if its entitlement lists d.
func entitledIn(tx *bolt.Tx, id catalog.KeyID, d catalog.Digest) (*keyRecord, error) {
	v := tx.Bucket(bucketKeys).Get([]byte(id))
	if v == nil {
		return nil, fmt.Errorf("%w: download key %s has not been exchanged at this server; exchange it first", errNotEntitled, redact(id))
	}
	rec := new(keyRecord)
	if err := decode(v, rec); err != nil {
		return nil, err
	}
	if !rec.entitled(d) {
		return nil, fmt.Errorf("%w: package %s is not in the entitlement of download key %s; exchange the key again and use the URLs it lists", errNotEntitled, d.Short(), redact(id))
	}
	return rec, nil
}

// redact shortens a download key id for logs and messages: the first six
// characters and "…".
func redact(id catalog.KeyID) string {
	if len(id) <= 6 {
		return string(id)
	}
	return string(id[:6]) + "…"
}
