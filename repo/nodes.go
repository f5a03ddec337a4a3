package repo

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"maps"
	"net/url"
	"slices"
	"sort"
	"strings"
	"time"

	"go.etcd.io/bbolt"

	"github.com/airlock-project/airlock/catalog"
)

// Audit actions of the cluster registry.
const (
	ActionNodeAdd    = "node.add"
	ActionNodeRemove = "node.remove"
	ActionNodeRole   = "node.role"
)

// Buckets of the cluster registry (see the package documentation: they are
// created by the first write that needs them, and a missing one reads as
// empty).
var (
	bucketNodes    = []byte("nodes")
	bucketRollouts = []byte("rollouts")
	bucketInstalls = []byte("installs")
)

// maxTokenLen bounds a node's bearer token.
const maxTokenLen = 1024

// CertFingerprint is the SHA-256 of a node's DER-encoded TLS certificate:
// the cluster pins it when the node is added and refuses any other
// certificate. It prints as colon-separated uppercase hex pairs, the form
// airlock-node init and openssl print.
type CertFingerprint [sha256.Size]byte

// ParseCertFingerprint parses a fingerprint written as 32 hex pairs,
// separated by colons or not, in either case. Anything else is an error
// matching ErrInvalid.
func ParseCertFingerprint(s string) (CertFingerprint, error) {
	var f CertFingerprint
	h := strings.ReplaceAll(strings.TrimSpace(s), ":", "")
	if len(h) != 2*len(f) {
		return f, fmt.Errorf("%w: certificate fingerprint %q: want the SHA-256 fingerprint airlock-node init prints (32 hex pairs, AB:CD:…)", ErrInvalid, s)
	}
	if _, err := hex.Decode(f[:], []byte(h)); err != nil {
		return f, fmt.Errorf("%w: certificate fingerprint %q: not hexadecimal", ErrInvalid, s)
	}
	return f, nil
}

// String returns "AB:CD:…" (95 characters).
func (f CertFingerprint) String() string {
	h := strings.ToUpper(hex.EncodeToString(f[:]))
	var b strings.Builder
	for i := 0; i < len(h); i += 2 {
		if i > 0 {
			b.WriteByte(':')
		}
		b.WriteString(h[i : i+2])
	}
	return b.String()
}

// Short returns the first eight pairs, for tables.
func (f CertFingerprint) Short() string { return f.String()[:23] + "…" }

// IsZero reports whether f is unset.
func (f CertFingerprint) IsZero() bool { return f == CertFingerprint{} }

// MarshalText encodes f as String does.
func (f CertFingerprint) MarshalText() ([]byte, error) { return []byte(f.String()), nil }

// UnmarshalText parses f as ParseCertFingerprint does.
func (f *CertFingerprint) UnmarshalText(b []byte) error {
	v, err := ParseCertFingerprint(string(b))
	if err != nil {
		return err
	}
	*f = v
	return nil
}

// Node is a cluster node registered with airlock node add: where its agent
// listens, how to authenticate to it, the certificate it must present, its
// intended role and region, and what was last seen of it.
type Node struct {
	// Name is the node's name, as its agent reports it (catalog.ValidName).
	Name string `json:"name"`
	// URL is the agent's base URL, https://HOST:PORT.
	URL string `json:"url"`
	// Token is the agent's bearer token. It is stored in the repository
	// (which only its administrator may read) and never printed: it is
	// left out of the JSON form of Node.
	Token string `json:"-"`
	// Fingerprint pins the agent's TLS certificate.
	Fingerprint CertFingerprint `json:"fingerprint"`
	// Role is primary, backup, traffic or management, as registered.
	Role string `json:"role"`
	// Region groups traffic nodes (optional).
	Region string `json:"region,omitempty"`
	// Added is when the node was added (or last re-added).
	Added time.Time `json:"added"`
	// Seen is what was last seen of the node, nil if it never answered.
	Seen *NodeSeen `json:"seen,omitempty"`
}

// NodeSeen is what a node reported the last time airlock asked it.
type NodeSeen struct {
	// At is when, by this host's clock.
	At time.Time `json:"at"`
	// Clock is the node's own clock at that time.
	Clock time.Time `json:"clock"`
	// Role and Region as the node reported them.
	Role   string `json:"role"`
	Region string `json:"region,omitempty"`
	// Installed is the node's installed version of each component.
	Installed map[string]catalog.Version `json:"installed"`
	// Staged lists the packages completely staged on the node.
	Staged []catalog.Digest `json:"staged"`
	// Drained reports whether the node refused new connections.
	Drained bool `json:"drained"`
}

// nodeRecord is the value of the nodes bucket: a Node with its token.
type nodeRecord struct {
	Name        string          `json:"name"`
	URL         string          `json:"url"`
	Token       string          `json:"token"`
	Fingerprint CertFingerprint `json:"fingerprint"`
	Role        string          `json:"role"`
	Region      string          `json:"region,omitempty"`
	Added       time.Time       `json:"added"`
	Seen        *NodeSeen       `json:"seen,omitempty"`
}

func (n nodeRecord) node() Node {
	return Node{Name: n.Name, URL: n.URL, Token: n.Token, Fingerprint: n.Fingerprint, Role: n.Role,
		Region: n.Region, Added: n.Added, Seen: n.Seen}
}

// validRoles are the node roles (as in package node, which the repository
// does not import).
var validRoles = map[string]bool{"primary": true, "backup": true, "traffic": true, "management": true}

// ValidateNode checks a node registration: its name and region
// (catalog.ValidName), role, an https URL with a host and nothing but an
// optional "/" path, a token of printable ASCII without spaces, and a
// fingerprint. The errors match ErrInvalid (usage class) and name the flag.
func ValidateNode(n Node) error {
	if err := catalog.ValidName(n.Name); err != nil {
		return fmt.Errorf("%w: node name %q: %v", ErrInvalid, n.Name, err)
	}
	if !validRoles[n.Role] {
		return fmt.Errorf("%w: node %s: --role %q: want primary, backup, traffic or management", ErrInvalid, n.Name, n.Role)
	}
	if n.Region != "" {
		if err := catalog.ValidName(n.Region); err != nil {
			return fmt.Errorf("%w: node %s: --region %q: %v", ErrInvalid, n.Name, n.Region, err)
		}
	}
	u, err := url.Parse(n.URL)
	if err != nil || u.Scheme != "https" || u.Host == "" || u.User != nil || (u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.Fragment != "" {
		return fmt.Errorf("%w: node %s: --url %q: want https://HOST:PORT, the address airlock-node serve listens on", ErrInvalid, n.Name, n.URL)
	}
	if n.Token == "" || len(n.Token) > maxTokenLen {
		return fmt.Errorf("%w: node %s: the token is empty or longer than %d bytes: give the node's token file (DIR/token of airlock-node init)", ErrInvalid, n.Name, maxTokenLen)
	}
	for _, c := range []byte(n.Token) {
		if c <= ' ' || c > '~' {
			return fmt.Errorf("%w: node %s: the token holds spaces or non-ASCII bytes: give the node's token file (DIR/token of airlock-node init)", ErrInvalid, n.Name)
		}
	}
	if n.Fingerprint.IsZero() {
		return fmt.Errorf("%w: node %s: no certificate fingerprint", ErrInvalid, n.Name)
	}
	return nil
}

// AddNode registers n (see ValidateNode), with Added set to now. A node of
// the same name is replaced, which is how a re-initialised node (new token,
// new certificate) is pinned again; the replaced registration is returned,
// nil if there was none. The change is audited (never the token).
func (r *Repo) AddNode(n Node) (replaced *Node, err error) {
	if err := ValidateNode(n); err != nil {
		return nil, err
	}
	n.URL = strings.TrimSuffix(n.URL, "/")
	n.Added = r.opts.now().UTC()
	rec := nodeRecord{Name: n.Name, URL: n.URL, Token: n.Token, Fingerprint: n.Fingerprint, Role: n.Role,
		Region: n.Region, Added: n.Added, Seen: n.Seen}
	err = r.Update(func(tx *Tx) error {
		b, err := tx.CreateBucketIfNotExists(bucketNodes)
		if err != nil {
			return err
		}
		if old := b.Get([]byte(n.Name)); old != nil {
			var o nodeRecord
			if err := decodeRecord(bucketNodes, []byte(n.Name), old, &o); err != nil {
				return err
			}
			on := o.node()
			replaced = &on
		}
		if err := putJSON(b, []byte(n.Name), rec); err != nil {
			return err
		}
		details := struct {
			Name        string          `json:"name"`
			URL         string          `json:"url"`
			Fingerprint CertFingerprint `json:"fingerprint"`
			Role        string          `json:"role"`
			Region      string          `json:"region,omitempty"`
			Replaced    bool            `json:"replaced"`
		}{n.Name, n.URL, n.Fingerprint, n.Role, n.Region, replaced != nil}
		_, err = tx.Audit(ActionNodeAdd, details)
		return err
	})
	if err != nil {
		return nil, err
	}
	return replaced, nil
}

// SetRoles records new registered roles (name → role) in one transaction,
// auditing each change: a failover performed by an airlock rollout
// (promote, re-pair) moves the registry with it, so that status warns only
// about role changes made behind airlock's back. An unknown node is
// ErrNotFound; a node already in its role is left alone.
func (r *Repo) SetRoles(roles map[string]string) error {
	return r.Update(func(tx *Tx) error {
		b, err := tx.CreateBucketIfNotExists(bucketNodes)
		if err != nil {
			return err
		}
		for _, name := range slices.Sorted(maps.Keys(roles)) {
			role := roles[name]
			if !validRoles[role] {
				return fmt.Errorf("%w: node %s: role %q: want primary, backup, traffic or management", ErrInvalid, name, role)
			}
			raw := b.Get([]byte(name))
			if raw == nil {
				return fmt.Errorf("%w: node %s is not registered", ErrNotFound, name)
			}
			var rec nodeRecord
			if err := decodeRecord(bucketNodes, []byte(name), raw, &rec); err != nil {
				return err
			}
			if rec.Role == role {
				continue
			}
			details := struct {
				Name string `json:"name"`
				From string `json:"from"`
				To   string `json:"to"`
			}{name, rec.Role, role}
			rec.Role = role
			if err := putJSON(b, []byte(name), rec); err != nil {
				return err
			}
			if _, err := tx.Audit(ActionNodeRole, details); err != nil {
				return err
			}
		}
		return nil
	})
}

// RemoveNode unregisters the node name and audits it; its rollout history
// stays. An unknown name is ErrNotFound (usage class).
func (r *Repo) RemoveNode(name string) (Node, error) {
	var out Node
	err := r.Update(func(tx *Tx) error {
		b := tx.Bucket(bucketNodes)
		var v []byte
		if b != nil {
			v = b.Get([]byte(name))
		}
		if v == nil {
			return fmt.Errorf("%w: no node %q is registered (see airlock node list)", ErrNotFound, name)
		}
		var rec nodeRecord
		if err := decodeRecord(bucketNodes, []byte(name), v, &rec); err != nil {
			return err
		}
		out = rec.node()
		if err := b.Delete([]byte(name)); err != nil {
			return err
		}
		_, err := tx.Audit(ActionNodeRemove, struct {
			Name        string          `json:"name"`
			URL         string          `json:"url"`
			Fingerprint CertFingerprint `json:"fingerprint"`
		}{rec.Name, rec.URL, rec.Fingerprint})
		return err
	})
	return out, err
}

// Nodes returns every registered node, sorted by name, tokens included.
func (r *Repo) Nodes() ([]Node, error) {
	out := []Node{}
	err := r.View(func(tx *Tx) error {
		b := tx.Bucket(bucketNodes)
		if b == nil {
			return nil
		}
		return b.ForEach(func(k, v []byte) error {
			var rec nodeRecord
			if err := decodeRecord(bucketNodes, k, v, &rec); err != nil {
				return err
			}
			out = append(out, rec.node())
			return nil
		})
	})
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, err
}

// RecordSeen stores what the nodes named in seen reported (Node.Seen). It
// is an observation, not an action, and is not audited; names that are not
// registered (any more) are ignored.
func (r *Repo) RecordSeen(seen map[string]NodeSeen) error {
	if len(seen) == 0 {
		return nil
	}
	return r.Update(func(tx *Tx) error { return recordSeen(tx.Tx, seen) })
}

// recordSeen updates Node.Seen in tx.
func recordSeen(tx *bbolt.Tx, seen map[string]NodeSeen) error {
	b := tx.Bucket(bucketNodes)
	if b == nil {
		return nil
	}
	for name, s := range seen {
		v := b.Get([]byte(name))
		if v == nil {
			continue
		}
		var rec nodeRecord
		if err := decodeRecord(bucketNodes, []byte(name), v, &rec); err != nil {
			return err
		}
		s.At, s.Clock = s.At.UTC(), s.Clock.UTC()
		rec.Seen = &s
		if err := putJSON(b, []byte(name), rec); err != nil {
			return err
		}
	}
	return nil
}

// NodeInventory returns the inventory a download key carries: every
// registered node with the versions it last reported (none if it never
// answered), sorted by name.
func (r *Repo) NodeInventory() ([]catalog.NodeInventory, error) {
	nodes, err := r.Nodes()
	if err != nil {
		return nil, err
	}
	out := make([]catalog.NodeInventory, 0, len(nodes))
	for _, n := range nodes {
		inv := catalog.NodeInventory{Name: n.Name, Installed: map[string]catalog.Version{}}
		if n.Seen != nil {
			for c, v := range n.Seen.Installed {
				inv.Installed[c] = v
			}
		}
		out = append(out, inv)
	}
	return out, nil
}

// PackageEntitlement returns the stored package with digest d and the
// armored, vendor-signed entitlement of the bundle that delivered it: the
// proof a node needs before it accepts the package's bytes. An unknown
// digest is ErrNotFound.
func (r *Repo) PackageEntitlement(d catalog.Digest) (catalog.Package, []byte, error) {
	var p packageRecord
	var b bundleRecord
	err := r.View(func(tx *Tx) error {
		found, err := getJSON(tx.Tx, bucketPackages, []byte(d.String()), &p)
		if err != nil {
			return err
		}
		if !found {
			return fmt.Errorf("%w: no package with sha256 %s in repository %s (see airlock list)", ErrNotFound, d.Short(), r.dir)
		}
		found, err = getJSON(tx.Tx, bucketBundles, []byte(p.Bundle), &b)
		if err != nil {
			return err
		}
		if !found || len(b.Entitlement) == 0 {
			return fmt.Errorf("repository %s: package %s names bundle %s, which is not stored: run 'airlock check'", r.dir, p.Package, p.Bundle)
		}
		return nil
	})
	if err != nil {
		return catalog.Package{}, nil, err
	}
	return p.Package, bytes.Clone(b.Entitlement), nil
}
