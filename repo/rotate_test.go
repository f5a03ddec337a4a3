package repo

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/airlock-project/airlock/catalog"
	"github.com/airlock-project/airlock/fault"
	"github.com/airlock-project/airlock/keys"
	"github.com/airlock-project/airlock/repo/repotest"
)

// rotate rotates the site key of the repository in e and fails the test on
// error.
func (e *env) rotate(opts RotateOptions) *RotateResult {
	e.t.Helper()
	r := e.open()
	defer r.Close()
	res, err := r.RotateSiteKey(context.Background(), opts)
	if err != nil {
		e.t.Fatalf("rotate: %v", err)
	}
	return res
}

// publicFP returns the fingerprint of the public key file at path.
func publicFP(t *testing.T, path string) keys.Fingerprint {
	t.Helper()
	k, err := keys.ReadPublicFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return k.Fingerprint()
}

// keyStates returns the state of every download key by id.
func (e *env) keyStates() map[catalog.KeyID]KeyState {
	e.t.Helper()
	r := e.openRO()
	defer r.Close()
	list, err := r.Keys()
	if err != nil {
		e.t.Fatal(err)
	}
	out := map[catalog.KeyID]KeyState{}
	for _, k := range list {
		out[k.ID] = k.State
	}
	return out
}

// TestRotateSiteKey: the new key is in place and recorded, the old public
// key kept, every outstanding download key revoked (fulfilled and expired
// ones left as they are) and audited, the chain and Check sound; bundles
// answering a revoked key are refused (policy) and change nothing; keys
// issued afterwards are signed by the new key and answered.
func TestRotateSiteKey(t *testing.T) {
	e := newEnv(t)
	// Signatures are dated by the real clock, keys by the repository's:
	// keep the latter behind, so that it can move on and expire a key.
	e.advance(-5 * time.Minute)
	old := publicFP(t, filepath.Join(e.dir, SitePublicKey))
	done := e.issue()
	e.importBundle(e.bundle(done, "base@3.4.0"), ImportOptions{})
	k1, k2 := e.issue(), e.issue()
	early := e.bundle(k1, "product@22.1.0")
	r := e.open()
	short, _, err := r.IssueKey(KeyOptions{Expires: time.Minute})
	r.Close()
	must(t, err)
	e.advance(2 * time.Minute)

	res := e.rotate(RotateOptions{})
	if res.OldSiteKey != old || res.NewSiteKey == old || res.Protected || res.Site != testSite {
		t.Fatalf("result %+v; old key %s", res, old)
	}
	// Issued in the same second, they come in id order.
	if got := fmt.Sprint(res.Revoked); got != fmt.Sprint([]catalog.KeyID{k1, k2}) && got != fmt.Sprint([]catalog.KeyID{k2, k1}) {
		t.Errorf("revoked %v, want %v and %v", res.Revoked, k1, k2)
	}
	if got := publicFP(t, filepath.Join(e.dir, SitePublicKey)); got != res.NewSiteKey {
		t.Errorf("site.pub.asc holds %s, want the new key %s", got, res.NewSiteKey)
	}
	priv, err := keys.ReadPrivateFile(filepath.Join(e.dir, SiteKeyFile), nil)
	if err != nil || priv.Fingerprint() != res.NewSiteKey {
		t.Fatalf("site.key: %v, want the new key %s", err, res.NewSiteKey)
	}
	if fi, err := os.Stat(filepath.Join(e.dir, SiteKeyFile)); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("site.key: %v; want mode 0600", err)
	}
	wantArchive := filepath.Join(e.dir, SiteKeysDir, old.String()+".pub.asc")
	if res.Archived != wantArchive || publicFP(t, wantArchive) != old {
		t.Errorf("archived %q, want %s holding the old key", res.Archived, wantArchive)
	}
	if rots, _ := rotations(e.dir); len(rots) != 0 {
		t.Errorf("staging left behind: %v", rots)
	}
	ro := e.openRO()
	if ro.SiteKey() != res.NewSiteKey {
		t.Errorf("the database names %s, want %s", ro.SiteKey(), res.NewSiteKey)
	}
	log, err := ro.AuditLog()
	ro.Close()
	must(t, err)
	n := len(log)
	if n < 3 || log[n-3].Action != ActionKeyRevoke || log[n-2].Action != ActionKeyRevoke || log[n-1].Action != ActionSiteRotate {
		t.Fatalf("audit log ends with %v", log[max(0, n-3):])
	}
	var rot struct {
		Old     keys.Fingerprint `json:"old_site_key"`
		New     keys.Fingerprint `json:"new_site_key"`
		Revoked []catalog.KeyID  `json:"revoked"`
	}
	must(t, json.Unmarshal(log[n-1].Details, &rot))
	if rot.Old != old || rot.New != res.NewSiteKey || len(rot.Revoked) != 2 {
		t.Errorf("site.rotate details %s", log[n-1].Details)
	}
	states := e.keyStates()
	if states[done] != KeyFulfilled || states[k1] != KeyRevoked || states[k2] != KeyRevoked || states[short.ID] != KeyExpired {
		t.Errorf("key states after rotation: %v", states)
	}
	rep := e.mustCheck()
	if rep.Audit.Entries != uint64(n) {
		t.Errorf("check verified %d audit entries, the log has %d", rep.Audit.Entries, n)
	}

	// A bundle answering a key revoked by the rotation: refused, nothing changes.
	before := e.snapshot()
	r = e.open()
	_, err = r.Import(context.Background(), early, ImportOptions{})
	r.Close()
	wantClass(t, err, fault.ExitPolicy, ErrKeyRevoked)
	if e.snapshot() != before {
		t.Error("a refused import changed the repository")
	}

	// A key issued now is signed by the new key, and is answered.
	r = e.open()
	info, armored, err := r.IssueKey(KeyOptions{})
	r.Close()
	must(t, err)
	dkPath := filepath.Join(t.TempDir(), "dk.key")
	must(t, os.WriteFile(dkPath, armored, 0o644))
	if dk, err := repotest.ReadDownloadKey(dkPath, filepath.Join(e.dir, SitePublicKey)); err != nil || dk.ID != info.ID {
		t.Errorf("the new download key does not verify with the new site.pub.asc: %v", err)
	}
	if _, err := repotest.ReadDownloadKey(dkPath, wantArchive); err == nil {
		t.Error("the new download key verifies with the old public key")
	}
	e.importBundle(e.bundle(info.ID, "product@22.1.0"), ImportOptions{})
	e.mustCheck()
}

// TestRotateSiteKeyPassphrase: the new site.key is encrypted with the new
// passphrase; the old one was never needed.
func TestRotateSiteKeyPassphrase(t *testing.T) {
	dir, init := protectedRepo(t)
	r, err := Open(context.Background(), Options{Dir: dir})
	must(t, err)
	res, err := r.RotateSiteKey(context.Background(), RotateOptions{Passphrase: []byte("a new passphrase")})
	r.Close()
	must(t, err)
	if !res.Protected || res.OldSiteKey != init.SiteKey {
		t.Errorf("result %+v", res)
	}
	if _, err := keys.ReadPrivateFile(filepath.Join(dir, SiteKeyFile), nil); !errors.Is(err, keys.ErrPassphrase) {
		t.Fatalf("the new site.key opens without a passphrase: %v", err)
	}
	if _, err := ReadSiteKey(dir, SiteKeyPassphrase{File: passFile(t, testPassphrase)}); !errors.Is(err, keys.ErrPassphrase) {
		t.Errorf("the new site.key opens with the old passphrase: %v", err)
	}
	k, err := ReadSiteKey(dir, SiteKeyPassphrase{File: passFile(t, "a new passphrase\n")})
	if err != nil || k.Fingerprint() != res.NewSiteKey {
		t.Fatalf("ReadSiteKey = %v; want the new key %s", err, res.NewSiteKey)
	}
	r, err = Open(context.Background(), Options{Dir: dir})
	must(t, err)
	_, _, err = r.IssueKey(KeyOptions{SiteKey: k})
	r.Close()
	must(t, err)
}

// TestRotateSiteKeyLost: with site.key lost (and site.pub.asc too), Check
// says to rotate, rotation works, and Check is clean afterwards.
func TestRotateSiteKeyLost(t *testing.T) {
	for _, lost := range [][]string{{SiteKeyFile}, {SiteKeyFile, SitePublicKey}} {
		t.Run(strings.Join(lost, "+"), func(t *testing.T) {
			e := newEnv(t)
			k := e.issue()
			for _, f := range lost {
				must(t, os.Remove(filepath.Join(e.dir, f)))
			}
			r := e.openRO()
			_, err := r.Check(context.Background(), CheckOptions{})
			r.Close()
			var ce *CheckError
			if !errors.As(err, &ce) || len(ce.Problems) != len(lost) || !hasProblem(ce, "site-key", "airlock key rotate") {
				t.Fatalf("Check = %v", err)
			}
			res := e.rotate(RotateOptions{})
			if (res.Archived == "") != (len(lost) == 2) {
				t.Errorf("archived %q with %v lost", res.Archived, lost)
			}
			if len(res.Revoked) != 1 || res.Revoked[0] != k {
				t.Errorf("revoked %v, want %s", res.Revoked, k)
			}
			e.mustCheck()
			r = e.open()
			_, _, err = r.IssueKey(KeyOptions{})
			r.Close()
			must(t, err)
		})
	}
}

// TestCheckSiteKeyMismatch: a site.pub.asc or site.key of another key, or
// an archived key under the wrong name, is a problem naming the repair.
func TestCheckSiteKeyMismatch(t *testing.T) {
	e := newEnv(t)
	other, err := keys.Generate(keys.GenerateOptions{Name: "other"})
	must(t, err)
	must(t, os.Remove(filepath.Join(e.dir, SitePublicKey)))
	must(t, keys.WritePublicFile(filepath.Join(e.dir, SitePublicKey), other.Public()))
	must(t, os.Remove(filepath.Join(e.dir, SiteKeyFile)))
	must(t, keys.WritePrivateFile(filepath.Join(e.dir, SiteKeyFile), other, nil))
	must(t, os.MkdirAll(filepath.Join(e.dir, SiteKeysDir), 0o755))
	must(t, keys.WritePublicFile(filepath.Join(e.dir, SiteKeysDir, strings.Repeat("A", 40)+".pub.asc"), other.Public()))
	r := e.openRO()
	_, err = r.Check(context.Background(), CheckOptions{})
	r.Close()
	var ce *CheckError
	if !errors.As(err, &ce) || len(ce.Problems) != 3 ||
		!hasProblem(ce, "site-key", SitePublicKey) || !hasProblem(ce, "site-key", SiteKeyFile) || !hasProblem(ce, "site-key", "not the one its name says") {
		t.Fatalf("Check = %v", err)
	}
}

// TestRotateInterrupted stops a rotation at each hook point, as a crash
// would (the staging directory of a rotation stopped before its commit is
// kept, as a crash keeps it), and checks that Check reports it with the
// repair, ReadSiteKey refuses, and a read-write open finishes the
// rotation if it was committed or undoes it if not.
func TestRotateInterrupted(t *testing.T) {
	for _, tc := range []struct {
		point     string
		committed bool
		repair    string
	}{
		{HookRotateStaged, false, "removes it"},
		{HookRotateCommitted, true, "finishes it"},
		{HookRotatePublished, true, "finishes it"},
	} {
		t.Run(tc.point, func(t *testing.T) {
			e := newEnv(t)
			old := publicFP(t, filepath.Join(e.dir, SitePublicKey))
			k := e.issue()
			var kept string
			hook := func(point string) error {
				if point != tc.point {
					return nil
				}
				if !tc.committed {
					// Keep the staged key from the undo, as a crash would.
					rots, err := rotations(e.dir)
					if err != nil || len(rots) != 1 {
						t.Fatalf("staging: %v %v", rots, err)
					}
					kept = rots[0].path
					must(t, os.Rename(kept, kept+".keep"))
				}
				return errors.New("injected")
			}
			r := e.open()
			res, err := r.RotateSiteKey(context.Background(), RotateOptions{Hook: hook})
			r.Close()
			if err == nil || !strings.Contains(err.Error(), "injected") {
				t.Fatalf("rotate = %v", err)
			}
			if tc.committed != strings.Contains(err.Error(), "check --repair") {
				t.Errorf("error does not say what to do: %v", err)
			}
			if kept != "" {
				must(t, os.Rename(kept+".keep", kept))
			}
			if tc.committed && res == nil {
				t.Fatal("a committed rotation returned no result")
			}

			r = e.openRO()
			_, err = r.Check(context.Background(), CheckOptions{})
			want := old
			if tc.committed {
				want = res.NewSiteKey
			}
			if r.SiteKey() != want {
				t.Errorf("the database names %s, want %s", r.SiteKey(), want)
			}
			r.Close()
			var ce *CheckError
			if !errors.As(err, &ce) || len(ce.Problems) != 1 || !hasProblem(ce, "rotation", tc.repair) {
				t.Fatalf("Check = %v", err)
			}
			if _, err := ReadSiteKey(e.dir, SiteKeyPassphrase{}); err == nil || !strings.Contains(err.Error(), "check --repair") {
				t.Errorf("ReadSiteKey during an interrupted rotation = %v", err)
			}

			r = e.open()
			did := r.rotated
			r.Close()
			verb := "removed"
			if tc.committed {
				verb = "finished"
			}
			if len(did) != 1 || !strings.HasPrefix(did[0], verb) {
				t.Errorf("the read-write open did %v, want %s", did, verb)
			}
			e.mustCheck()
			if got := publicFP(t, filepath.Join(e.dir, SitePublicKey)); got != want {
				t.Errorf("site.pub.asc holds %s, want %s", got, want)
			}
			wantState := KeyOutstanding
			if tc.committed {
				wantState = KeyRevoked
			}
			if s := e.keyStates()[k]; s != wantState {
				t.Errorf("download key %s, want %s", s, wantState)
			}
			r = e.open()
			_, armored, err := r.IssueKey(KeyOptions{})
			r.Close()
			must(t, err)
			if !bytes.HasPrefix(armored, []byte("-----BEGIN PGP MESSAGE-----")) {
				t.Errorf("download key %q", armored[:40])
			}
		})
	}
}

// TestRunKeyRotateRefusals: a protected site.key is not replaced by one in
// the clear, a declined question and a bad passphrase file change nothing.
func TestRunKeyRotateRefusals(t *testing.T) {
	dir, _ := protectedRepo(t)
	before, err := repotest.Snapshot(dir)
	must(t, err)
	run := func(c KeyRotateCmd) error {
		c.Options = Options{Dir: dir}
		return RunKeyRotate(context.Background(), c, io.Discard, io.Discard)
	}
	err = run(KeyRotateCmd{})
	wantClass(t, err, fault.ExitUsage, ErrInvalid)
	if !strings.Contains(err.Error(), "--passphrase-file") {
		t.Errorf("message does not say what to do: %v", err)
	}
	wantClass(t, run(KeyRotateCmd{PassphraseFile: passFile(t, "")}), fault.ExitUsage, keys.ErrPassphraseFile)
	declined := errors.New("declined")
	var asked string
	err = run(KeyRotateCmd{PassphraseFile: passFile(t, "x"), Confirm: func(q string) error { asked = q; return declined }})
	if err != declined || !strings.Contains(asked, "revoking 0 outstanding download key(s)") {
		t.Errorf("declined: %v, asked %q", err, asked)
	}
	if after, _ := repotest.Snapshot(dir); after != before {
		t.Error("a refused rotation changed the repository")
	}
	var out bytes.Buffer
	must(t, RunKeyRotate(context.Background(), KeyRotateCmd{Options: Options{Dir: dir}, PassphraseFile: passFile(t, "x"),
		Confirm: func(string) error { return nil }}, &out, io.Discard))
	for _, want := range []string{"site.key is passphrase-protected", "the old public key is kept in", "no download key was outstanding",
		"who runs 'airlock-server site add --name plant-3 --key site.pub.asc --replace'; then make a new download key with 'airlock key new'"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q:\n%s", want, out.String())
		}
	}
}
