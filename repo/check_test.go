package repo

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/airlock-project/airlock/catalog"
	"github.com/airlock-project/airlock/fault"
	"github.com/airlock-project/airlock/repo/repotest"
)

func asCheckError(err error, ce **CheckError) bool { return errors.As(err, ce) }

func hasProblem(ce *CheckError, kind, text string) bool {
	for _, p := range ce.Problems {
		if p.Kind == kind && strings.Contains(p.String(), text) {
			return true
		}
	}
	return false
}

func TestCheckFindsProblems(t *testing.T) {
	e := newEnv(t)
	res := e.importBundle(e.bundle(e.issue(), "base@3.4.0", "product@22.1.0", "license@1.1.0"), ImportOptions{})
	r := e.open()
	blobs := r.Blobs()
	r.Close()
	byName := map[string]catalog.Package{}
	for _, p := range res.Packages {
		byName[p.Name] = p.Package
	}
	// Damage: one blob flipped, one truncated, one removed; plus an orphan
	// blob, a leftover temporary file and a stray file.
	base := blobs.Path(byName["base"].SHA256)
	os.Chmod(base, 0o644)
	must(t, repotest.FlipByte(base, 10))
	prod := blobs.Path(byName["product"].SHA256)
	os.Chmod(prod, 0o644)
	must(t, os.Truncate(prod, 100))
	must(t, blobs.Remove(byName["license"].SHA256))
	orphan, _, err := blobs.Put(context.Background(), strings.NewReader("orphan"), catalog.Digest{}, -1)
	must(t, err)
	temp := filepath.Join(e.dir, BlobDir, "sha256", ".tmp-leftover-1")
	must(t, os.WriteFile(temp, []byte("x"), 0o644))
	stray := filepath.Join(e.dir, BlobDir, "sha256", "README")
	must(t, os.WriteFile(stray, []byte("x"), 0o644))

	r = e.openRO()
	rep, err := r.Check(context.Background(), CheckOptions{})
	r.Close()
	wantClass(t, err, fault.ExitVerification, ErrCheck)
	var ce *CheckError
	errors.As(err, &ce)
	for _, want := range []struct{ kind, text string }{
		{"corrupt-blob", "base@3.4.0"},
		{"corrupt-blob", "product@22.1.0"},
		{"missing-blob", "license@1.1.0"},
		{"orphan-blob", orphan.String()},
		{"temp-file", ".tmp-leftover-1"},
		{"stray-file", "README"},
	} {
		if !hasProblem(ce, want.kind, want.text) {
			t.Errorf("no %s problem naming %s in:\n%v", want.kind, want.text, err)
		}
	}
	if len(ce.Problems) != 6 || len(rep.Problems) != 6 {
		t.Errorf("%d problems, want 6:\n%v", len(ce.Problems), err)
	}

	// A read-write open removes the leftovers of imports, nothing else.
	r = e.open()
	removed := r.recovered
	r.Close()
	if len(removed) != 2 {
		t.Errorf("recovery removed %v, want the orphan and the temporary file", removed)
	}
	r = e.openRO()
	_, err = r.Check(context.Background(), CheckOptions{})
	r.Close()
	errors.As(err, &ce)
	if len(ce.Problems) != 4 || hasProblem(ce, "orphan-blob", "") || hasProblem(ce, "temp-file", "") {
		t.Errorf("after recovery:\n%v", err)
	}
	if _, err := os.Stat(stray); err != nil {
		t.Error("recovery removed a file it does not know")
	}
}

func TestCheckDangling(t *testing.T) {
	e := newEnv(t)
	res := e.importBundle(e.bundle(e.issue(), "base@3.4.0"), ImportOptions{})
	// Remove the bundle record: its package and key now point nowhere.
	r := e.open()
	must(t, r.Update(func(tx *Tx) error { return tx.Bucket(bucketBundles).Delete([]byte(res.Bundle)) }))
	r.Close()
	r = e.openRO()
	defer r.Close()
	_, err := r.Check(context.Background(), CheckOptions{})
	var ce *CheckError
	if !errors.As(err, &ce) || !hasProblem(ce, "dangling", "base@3.4.0") || !hasProblem(ce, "dangling", "download key") {
		t.Errorf("Check = %v", err)
	}
}

func TestCheckCleanRepository(t *testing.T) {
	e := newEnv(t)
	rep := e.mustCheck()
	if rep.Packages != 0 || rep.Trusted != 2 || rep.Audit.Entries != 3 || len(rep.Problems) != 0 {
		t.Errorf("report %+v", rep)
	}
}
