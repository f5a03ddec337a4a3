package repo

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/airlock-project/airlock/catalog"
	"github.com/airlock-project/airlock/fault"
	"github.com/airlock-project/airlock/repo/repotest"
)

func TestIssueKey(t *testing.T) {
	e := newEnv(t)
	r := e.open()
	defer r.Close()
	nodes := []catalog.NodeInventory{inventory("n2", "base", "3.3.2"), inventory("n1", "base", "3.3.2", "product", "21.1.0")}
	info, armored, err := r.IssueKey(KeyOptions{Expires: 5 * time.Hour, Nodes: nodes})
	if err != nil {
		t.Fatal(err)
	}
	if info.State != KeyOutstanding || info.Site != testSite || info.Expires.Sub(info.Issued) != 5*time.Hour {
		t.Errorf("info %+v", info)
	}
	if !strings.HasPrefix(string(armored), "-----BEGIN PGP MESSAGE-----") {
		t.Errorf("not an armored message: %.40q", armored)
	}
	// The vendor's view: the key verifies with site.pub.asc and carries
	// the inventory.
	path := filepath.Join(t.TempDir(), "download.key")
	must(t, os.WriteFile(path, armored, 0o644))
	dk, err := repotest.ReadDownloadKey(path, filepath.Join(e.dir, SitePublicKey))
	if err != nil {
		t.Fatal(err)
	}
	if dk.ID != info.ID || dk.Site != testSite || len(dk.Nodes) != 2 || dk.Nodes[0].Name != "n1" ||
		dk.Nodes[0].Installed["product"].String() != "21.1.0" || !dk.Expires.Equal(info.Expires) {
		t.Errorf("download key payload %+v", dk)
	}
	list, _ := r.Keys()
	if len(list) != 1 || list[0].ID != info.ID || len(list[0].Nodes) != 2 {
		t.Errorf("Keys() = %+v", list)
	}
	for _, d := range []time.Duration{-time.Hour, time.Millisecond, MaxKeyExpiry + time.Second} {
		_, _, err := r.IssueKey(KeyOptions{Expires: d})
		wantClass(t, err, fault.ExitUsage, ErrInvalid)
	}
}

func TestKeyStates(t *testing.T) {
	e := newEnv(t)
	fulfilled := e.issue()
	e.importBundle(e.bundle(fulfilled, "base@3.4.0"), ImportOptions{})
	revoked := e.issue()
	r := e.open()
	info, err := r.RevokeKey(string(revoked))
	r.Close()
	if err != nil || info.State != KeyRevoked || info.Closed.IsZero() {
		t.Fatalf("revoke: %+v, %v", info, err)
	}
	outstanding := e.issue()
	e.advance(time.Hour)
	r = e.open()
	_, _, err = r.IssueKey(KeyOptions{Expires: time.Minute})
	r.Close()
	must(t, err)
	e.advance(2 * time.Minute)

	r = e.open()
	defer r.Close()
	list, err := r.Keys()
	must(t, err)
	states := map[KeyState]int{}
	for _, k := range list {
		states[k.State]++
	}
	if states[KeyFulfilled] != 1 || states[KeyRevoked] != 1 || states[KeyOutstanding] != 1 || states[KeyExpired] != 1 {
		t.Errorf("states %v", states)
	}
	for _, k := range list {
		if (k.ID == fulfilled) != (k.Bundle != "") || (k.ID == fulfilled) != (k.State == KeyFulfilled) {
			t.Errorf("key %+v", k)
		}
	}

	_, err = r.RevokeKey(string(revoked))
	wantClass(t, err, fault.ExitPolicy, ErrKeyClosed)
	_, err = r.RevokeKey(string(fulfilled))
	wantClass(t, err, fault.ExitPolicy, ErrKeyClosed)
	if !strings.Contains(err.Error(), "fulfilled") {
		t.Errorf("message %v", err)
	}
	other, _ := catalog.NewKeyID()
	_, err = r.RevokeKey(string(other))
	wantClass(t, err, fault.ExitUsage, ErrNotFound)
	_, err = r.RevokeKey("not-an-id")
	wantClass(t, err, fault.ExitUsage, ErrNotFound)
	if _, err := r.RevokeKey(string(outstanding)); err != nil {
		t.Errorf("revoke outstanding: %v", err)
	}
	log, _ := r.AuditLog()
	var revokes int
	for _, en := range log {
		if en.Action == ActionKeyRevoke {
			revokes++
		}
	}
	if revokes != 2 {
		t.Errorf("%d key.revoke entries, want 2", revokes)
	}
}

func TestParseInventory(t *testing.T) {
	nodes, err := ParseInventory([]byte(`{"nodes":[{"name":"n1","installed":{"base":"3.3.2","product":"21.1.0"}},{"name":"n2","installed":{}}]}`))
	if err != nil || len(nodes) != 2 || nodes[0].Installed["base"].String() != "3.3.2" {
		t.Fatalf("ParseInventory = %+v, %v", nodes, err)
	}
	if nodes, err := ParseInventory([]byte(`{"nodes":[]}`)); err != nil || len(nodes) != 0 {
		t.Errorf("empty inventory: %v, %v", nodes, err)
	}
	for _, bad := range []string{
		``, `{}`, `[]`, `{"nodes":null}`, `{"nodes":[],"x":1}`, `{"nodes":[]} {}`,
		`{"nodes":[{"name":"N1","installed":{}}]}`,
		`{"nodes":[{"name":"../n","installed":{}}]}`,
		`{"nodes":[{"name":"n1","installed":{}},{"name":"n1","installed":{}}]}`,
		`{"nodes":[{"name":"n1","installed":{"Base":"1"}}]}`,
		`{"nodes":[{"name":"n1","installed":{"base":"v1"}}]}`,
		`{"nodes":[{"name":"n1","installed":{"base":null}}]}`,
		`{"nodes":[{"name":"n1","installed":{"base":"1","base":"2"}}]}`,
		`{"nodes":[{"name":"n1","extra":1}]}`,
	} {
		_, err := ParseInventory([]byte(bad))
		if !errors.Is(err, ErrInventory) || fault.Code(err) != fault.ExitVerification {
			t.Errorf("ParseInventory(%s) = %v, want ErrInventory", bad, err)
		}
	}
	path := filepath.Join(t.TempDir(), "inv.json")
	os.WriteFile(path, []byte(`{"nodes":[{"name":"n1"}]`), 0o644)
	if _, err := ReadInventoryFile(path); err == nil || !strings.Contains(err.Error(), path) {
		t.Errorf("ReadInventoryFile error does not name the file: %v", err)
	}
}

func FuzzParseInventory(f *testing.F) {
	for _, s := range []string{
		`{"nodes":[{"name":"n1","installed":{"base":"3.3.2"}}]}`,
		`{"nodes":[]}`,
		`{"nodes":[{"name":"n1","installed":{"base":"1","base":"2"}}]}`,
		`{"nodes":[{"name":"a","installed":{}},{"name":"b","installed":{"x":"0.0.1"}}]}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		nodes, err := ParseInventory(data)
		if err != nil {
			if !errors.Is(err, ErrInventory) {
				t.Fatalf("error %v is not ErrInventory", err)
			}
			return
		}
		// Whatever parses must make a valid download key.
		id, _ := catalog.NewKeyID()
		now := time.Now()
		k := catalog.DownloadKey{Format: catalog.DownloadKeyFormat, Site: "s", ID: id, Issued: now, Expires: now.Add(time.Hour), Nodes: nodes}
		if _, err := k.Encode(); err != nil {
			t.Fatalf("parsed inventory %+v makes an invalid download key: %v", nodes, err)
		}
	})
}
