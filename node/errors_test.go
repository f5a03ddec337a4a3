package node

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/airlock-project/airlock/fault"
	"github.com/airlock-project/airlock/keys"
	"github.com/airlock-project/airlock/keys/keytest"
)

// TestStateErrors: a damaged or foreign state.json is ErrState (exit 3)
// for every command that reads it, and makes init refuse with
// ErrInitialized (exit 2) rather than overwrite it.
func TestStateErrors(t *testing.T) {
	v := newVendor(t, "Acme Vendor")
	for _, tc := range []struct {
		name, state, says string
	}{
		{"truncated", `{"format":"airlock-node-state/v1","name":"n1"`, "restore it from a backup"},
		{"bad role", `{"format":"airlock-node-state/v1","name":"n1","role":"king","installed":{},"jobs":[]}`, `role "king"`},
		{"bad region", `{"format":"airlock-node-state/v1","name":"n1","role":"traffic","region":"EU","installed":{},"jobs":[]}`, `region name "EU"`},
		{"newer", `{"format":"airlock-node-state/v2","name":"n1","role":"traffic","installed":{},"jobs":[],"new":1}`, "run the airlock-node release that wrote it"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := initNode(t, v)
			if err := os.WriteFile(statePath(dir), []byte(tc.state), 0o644); err != nil {
				t.Fatal(err)
			}
			ctx := t.Context()
			for what, err := range map[string]error{
				"status": RunStatus(ctx, StatusOptions{Dir: dir}, io.Discard, io.Discard),
				"trust":  RunTrust(ctx, TrustOptions{Dir: dir, KeyFile: v.pubFile}, io.Discard, io.Discard),
				"serve":  RunServe(ctx, ServeOptions{Dir: dir, Listen: "127.0.0.1:0"}, io.Discard, io.Discard),
			} {
				if !errors.Is(err, ErrState) || fault.Code(err) != fault.ExitVerification ||
					!strings.Contains(err.Error(), statePath(dir)) || !strings.Contains(err.Error(), tc.says) {
					t.Errorf("%s: %v (exit %d), want ErrState naming %s and saying %q", what, err, fault.Code(err), statePath(dir), tc.says)
				}
			}
			err := RunInit(ctx, InitOptions{Dir: dir, Name: "n1"}, io.Discard, io.Discard)
			if !errors.Is(err, ErrInitialized) || errors.Is(err, ErrState) || fault.Code(err) != fault.ExitUsage {
				t.Errorf("init: %v (exit %d), want ErrInitialized only", err, fault.Code(err))
			}
			if b, _ := os.ReadFile(statePath(dir)); string(b) != tc.state {
				t.Errorf("state.json changed to %s", b)
			}
		})
	}
}

// TestTrustRefusesDeadKeys: trust refuses a revoked or expired vendor key
// (verification class) and pins nothing; a revoked copy of a pinned key
// says that the old copy is still trusted.
func TestTrustRefusesDeadKeys(t *testing.T) {
	v := newVendor(t, "Acme Vendor")
	dir := initNode(t, v)
	revoked := filepath.Join(t.TempDir(), "revoked.pub.asc")
	if err := os.WriteFile(revoked, revokedArmor(t, v.key), 0o644); err != nil {
		t.Fatal(err)
	}
	err := RunTrust(t.Context(), TrustOptions{Dir: dir, KeyFile: revoked}, io.Discard, io.Discard)
	pinned := filepath.Join(vendorDir(dir), v.key.Fingerprint().String()+".asc")
	if !errors.Is(err, keys.ErrKeyRevoked) || fault.Code(err) != fault.ExitVerification ||
		!strings.Contains(err.Error(), "still trusts the copy pinned earlier as "+pinned) || strings.Contains(err.Error(), "airlock trust remove") {
		t.Errorf("trust of a revoked copy: %v (exit %d)", err, fault.Code(err))
	}
	later := func() time.Time { return time.Now().Add(24 * time.Hour) }
	short, err := keys.Generate(keys.GenerateOptions{Name: "Short Lived", Expiry: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	shortFile := filepath.Join(t.TempDir(), "short.pub.asc")
	if err := keys.WritePublicFile(shortFile, short.Public()); err != nil {
		t.Fatal(err)
	}
	err = RunTrust(t.Context(), TrustOptions{Dir: dir, KeyFile: shortFile, Now: later}, io.Discard, io.Discard)
	if !errors.Is(err, keys.ErrKeyExpired) || fault.Code(err) != fault.ExitVerification || !strings.Contains(err.Error(), shortFile) {
		t.Errorf("trust of an expired key: %v (exit %d)", err, fault.Code(err))
	}
	if _, err := os.Stat(filepath.Join(vendorDir(dir), short.Fingerprint().String()+".asc")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the expired key was pinned: %v", err)
	}
}

// TestEntitlementDeadPinnedKey: an entitlement signed by a pinned vendor
// key that has since expired or been revoked is refused with the node's
// own remedy (airlock-node trust), not the restricted side's.
func TestEntitlementDeadPinnedKey(t *testing.T) {
	k, err := keys.Generate(keys.GenerateOptions{Name: "Acme Vendor", Now: time.Now().Add(-time.Hour), Expiry: 48 * time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	v := &vendor{key: k, pubFile: filepath.Join(t.TempDir(), "vendor.pub.asc")}
	if err := keys.WritePublicFile(v.pubFile, k.Public()); err != nil {
		t.Fatal(err)
	}
	data := []byte("payload")
	p := pkg(t, "base", "3.4.0", data)
	ent := v.entitlement(t, p)

	n := startNode(t, initNode(t, v), v, Options{Now: func() time.Time { return time.Now().Add(72 * time.Hour) }})
	resp, body := n.putEntitlement(p, ent)
	e := wantStatus(t, "expired vendor key", resp, body, http.StatusUnprocessableEntity, "verification-failed")
	for _, s := range []string{"node n1", "signing key expired", "which expired at", "airlock-node trust --dir " + n.dir} {
		if !strings.Contains(e.Error, s) {
			t.Errorf("error %q does not say %q", e.Error, s)
		}
	}

	dir := initNode(t, v)
	pinned := filepath.Join(vendorDir(dir), k.Fingerprint().String()+".asc")
	if err := os.WriteFile(pinned, revokedArmor(t, k), 0o644); err != nil {
		t.Fatal(err)
	}
	n = startNode(t, dir, v, Options{})
	_, err = n.agent.PutEntitlement(p.SHA256, ent)
	if !errors.Is(err, keys.ErrKeyRevoked) || fault.Code(err) != fault.ExitVerification {
		t.Fatalf("revoked vendor key: %v (exit %d)", err, fault.Code(err))
	}
	for _, s := range []string{"node n1", "has been revoked", "remove " + pinned, "airlock-node trust --dir " + dir} {
		if !strings.Contains(err.Error(), s) {
			t.Errorf("error %q does not say %q", err, s)
		}
	}
	if strings.Contains(err.Error(), "airlock trust") {
		t.Errorf("error %q gives the restricted side's remedy", err)
	}
	if _, err := os.Stat(n.agent.entitlementPath(p.SHA256)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the refused entitlement was kept: %v", err)
	}
}

// revokedArmor returns k's public key, revoked by k.
func revokedArmor(t *testing.T, k *keys.PrivateKey) []byte {
	t.Helper()
	b, err := keytest.RevokedPublic(k)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestConcurrentInit: of several inits of one directory at once, exactly
// one succeeds, and the certificate on disk is the one it printed: a
// loser neither overwrites the winner's files nor reports success.
func TestConcurrentInit(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "node")
	const n = 8
	outs := make([]bytes.Buffer, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = RunInit(t.Context(), InitOptions{Dir: dir, Name: "n1", JSON: true}, &outs[i], io.Discard)
		}()
	}
	wg.Wait()
	var won []InitResult
	for i, err := range errs {
		switch {
		case err == nil:
			var r InitResult
			if err := json.Unmarshal(outs[i].Bytes(), &r); err != nil {
				t.Fatal(err)
			}
			won = append(won, r)
		case errors.Is(err, ErrInUse) || errors.Is(err, ErrInitialized):
		default:
			t.Errorf("init %d: %v", i, err)
		}
	}
	if len(won) != 1 {
		t.Fatalf("%d inits succeeded, want 1", len(won))
	}
	fp, err := certFingerprintFile(dir)
	if err != nil {
		t.Fatal(err)
	}
	if fp != won[0].Fingerprint {
		t.Errorf("certificate on disk %s, the successful init printed %s", fp, won[0].Fingerprint)
	}
}
