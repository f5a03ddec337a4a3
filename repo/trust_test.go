package repo

import (
	"strings"
	"testing"
	"time"

	"github.com/airlock-project/airlock/fault"
	"github.com/airlock-project/airlock/keys"
)

func TestTrust(t *testing.T) {
	e := newEnv(t)
	r := e.open()
	defer r.Close()
	list, err := r.TrustList()
	if err != nil || len(list) != 2 || list[0].Role != keys.RoleCourier || list[1].Role != keys.RoleVendor {
		t.Fatalf("TrustList = %+v, %v", list, err)
	}
	if list[0].Fingerprint != e.world.Courier.Fingerprint() || !strings.Contains(list[0].UserID, "Test Courier") {
		t.Errorf("courier entry %+v", list[0])
	}
	entries := func() int { log, _ := r.AuditLog(); return len(log) }
	n := entries()

	// The same key again: nothing changes, nothing is audited.
	if _, changed, err := r.TrustAdd(keys.RoleCourier, e.world.Courier.Public()); err != nil || changed {
		t.Errorf("re-adding: changed %v, %v", changed, err)
	}
	// One role per key.
	_, _, err = r.TrustAdd(keys.RoleVendor, e.world.Courier.Public())
	wantClass(t, err, fault.ExitUsage, ErrRoleConflict)
	if !strings.Contains(err.Error(), "trust remove") {
		t.Errorf("message does not say what to do: %v", err)
	}
	// The site role is the repository's own key.
	other, _ := keys.Generate(keys.GenerateOptions{Name: "Other"})
	_, _, err = r.TrustAdd(keys.RoleSite, other.Public())
	wantClass(t, err, fault.ExitUsage, ErrRole)
	site, err := keys.ReadPublicFile(e.dir + "/" + SitePublicKey)
	must(t, err)
	_, _, err = r.TrustAdd(keys.RoleCourier, site)
	wantClass(t, err, fault.ExitUsage, ErrRoleConflict)
	// An expired key is refused.
	old, _ := keys.Generate(keys.GenerateOptions{Name: "Old", Now: time.Now().Add(-48 * time.Hour), Expiry: time.Hour})
	_, _, err = r.TrustAdd(keys.RoleCourier, old.Public())
	wantClass(t, err, fault.ExitVerification, keys.ErrKeyExpired)
	if entries() != n {
		t.Errorf("refused trust changes were audited: %d entries, want %d", entries(), n)
	}

	// A second courier, then removal.
	info, changed, err := r.TrustAdd(keys.RoleCourier, other.Public())
	if err != nil || !changed || info.Role != keys.RoleCourier {
		t.Fatalf("add second courier: %+v %v %v", info, changed, err)
	}
	if _, err := r.TrustRemove(other.Fingerprint()); err != nil {
		t.Fatal(err)
	}
	_, err = r.TrustRemove(other.Fingerprint())
	wantClass(t, err, fault.ExitUsage, ErrNotFound)
	if entries() != n+2 {
		t.Errorf("%d audit entries, want %d", entries(), n+2)
	}
	log, _ := r.AuditLog()
	if log[len(log)-1].Action != ActionTrustRemove || !strings.Contains(string(log[len(log)-1].Details), other.Fingerprint().String()) {
		t.Errorf("last entry %+v", log[len(log)-1])
	}
	ts, err := r.TrustStore()
	must(t, err)
	if len(ts.List()) != 2 {
		t.Errorf("trust store has %d keys", len(ts.List()))
	}
}
