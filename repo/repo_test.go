package repo

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.etcd.io/bbolt"

	"github.com/airlock-project/airlock/fault"
	"github.com/airlock-project/airlock/keys"
)

func TestInit(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "repo")
	ctx := context.Background()
	res, err := Init(ctx, Options{Dir: dir, Actor: "a@b"}, "plant-3")
	if err != nil {
		t.Fatal(err)
	}
	if res.Site != "plant-3" || res.PublicKey != filepath.Join(dir, SitePublicKey) {
		t.Errorf("result %+v", res)
	}
	fi, err := os.Stat(filepath.Join(dir, SiteKeyFile))
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("site.key: %v, mode %v; want 0600", err, fi.Mode())
	}
	pub, err := keys.ReadPublicFile(res.PublicKey)
	if err != nil || pub.Fingerprint() != res.SiteKey {
		t.Fatalf("site.pub.asc: %v, fingerprint %v, want %v", err, pub.Fingerprint(), res.SiteKey)
	}
	if fi, err := os.Stat(filepath.Join(dir, BlobDir, "sha256")); err != nil || !fi.IsDir() {
		t.Fatalf("blob store: %v", err)
	}
	r, err := Open(ctx, Options{Dir: dir, ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	if r.Site() != "plant-3" || r.SiteKey() != res.SiteKey {
		t.Errorf("opened site %q key %v", r.Site(), r.SiteKey())
	}
	log, err := r.AuditLog()
	if err != nil || len(log) != 1 || log[0].Action != ActionInit || log[0].Actor != "a@b" {
		t.Errorf("audit log after init: %+v, %v", log, err)
	}
	r.Close()
	// No leftovers of the database's construction.
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), ".tmp-") {
			t.Errorf("leftover %s", e.Name())
		}
	}

	_, err = Init(ctx, Options{Dir: dir}, "plant-3")
	wantClass(t, err, fault.ExitUsage, ErrExists)
	if k, _ := keys.ReadPublicFile(res.PublicKey); k.Fingerprint() != res.SiteKey {
		t.Error("a refused init replaced the site key")
	}
}

func TestInitRefusals(t *testing.T) {
	ctx := context.Background()
	for _, site := range []string{"", "Plant", "../x", "a b"} {
		_, err := Init(ctx, Options{Dir: t.TempDir()}, site)
		wantClass(t, err, fault.ExitUsage, ErrInvalid)
	}
	// A site key without a database: an interrupted init.
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, SiteKeyFile), []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := Init(ctx, Options{Dir: dir}, "plant-3")
	wantClass(t, err, fault.ExitUsage, ErrExists)
	if !strings.Contains(err.Error(), "remove") {
		t.Errorf("message does not say what to do: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, DBFile)); !errors.Is(err, os.ErrNotExist) {
		t.Error("a refused init created the database")
	}
}

func TestOpenNoRepository(t *testing.T) {
	dir := t.TempDir()
	for _, ro := range []bool{false, true} {
		_, err := Open(context.Background(), Options{Dir: dir, ReadOnly: ro})
		wantClass(t, err, fault.ExitUsage, ErrNoRepository)
		if !strings.Contains(err.Error(), "airlock init") {
			t.Errorf("message does not say what to do: %v", err)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, DBFile)); !errors.Is(err, os.ErrNotExist) {
		t.Error("Open created a database")
	}
}

func TestOpenSchema(t *testing.T) {
	for _, tc := range []struct {
		schema string
		want   string
	}{
		{"2", "newer airlock"},
		{"0", "cannot be migrated"},
		{"x", "not an airlock repository"},
	} {
		e := newEnv(t)
		setMeta(t, e.dir, metaSchema, tc.schema)
		for _, ro := range []bool{false, true} {
			o := e.opts()
			o.ReadOnly = ro
			_, err := Open(context.Background(), o)
			if !errors.Is(err, ErrSchema) || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("schema %q: Open = %v, want ErrSchema saying %q", tc.schema, err, tc.want)
			}
		}
	}
	// Not a bbolt file at all.
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, DBFile), []byte(strings.Repeat("not a database\n", 1000)), 0o600)
	if _, err := Open(context.Background(), Options{Dir: dir, ReadOnly: true}); !errors.Is(err, ErrSchema) {
		t.Errorf("garbage database: Open = %v, want ErrSchema", err)
	}
}

func setMeta(t *testing.T, dir string, key []byte, value string) {
	t.Helper()
	db, err := bbolt.Open(filepath.Join(dir, DBFile), 0o600, &bbolt.Options{Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if err := db.Update(func(tx *bbolt.Tx) error { return tx.Bucket(bucketMeta).Put(key, []byte(value)) }); err != nil {
		t.Fatal(err)
	}
}

func TestInUse(t *testing.T) {
	e := newEnv(t)
	holder := e.open()
	data, err := os.ReadFile(filepath.Join(e.dir, LockFile))
	if err != nil || !strings.Contains(string(data), `"command":"go test"`) {
		t.Fatalf("airlock.lock: %q, %v", data, err)
	}
	for _, ro := range []bool{false, true} {
		o := e.opts()
		o.ReadOnly = ro
		o.LockTimeout = 50 * time.Millisecond
		start := time.Now()
		_, err := Open(context.Background(), o)
		wantClass(t, err, fault.ExitPolicy, ErrInUse)
		var iu *InUseError
		if !errors.As(err, &iu) || iu.Holder == nil || iu.Holder.PID != os.Getpid() || iu.Holder.Command != "go test" {
			t.Fatalf("read-only %v: error %#v does not name the holder", ro, err)
		}
		if d := time.Since(start); d > 5*time.Second {
			t.Errorf("waited %s for a 50ms lock timeout", d)
		}
		if msg := err.Error(); !strings.Contains(msg, "in use by pid") || !strings.Contains(msg, "go test") || !strings.Contains(msg, "since") {
			t.Errorf("message %q", msg)
		}
	}
	holder.Close()
	if _, err := os.Stat(filepath.Join(e.dir, LockFile)); !errors.Is(err, os.ErrNotExist) {
		t.Error("airlock.lock left after Close")
	}
	// Readers share the lock.
	a, b := e.openRO(), e.openRO()
	a.Close()
	b.Close()
}

func TestStaleLockFile(t *testing.T) {
	// A holder recorded by a process that no longer exists is not named.
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, LockFile), []byte(`{"pid":999999999,"command":"airlock import x","since":"2026-01-01T00:00:00Z"}`), 0o644)
	if h := readHolder(dir); h != nil {
		t.Errorf("stale holder %+v reported", h)
	}
	os.WriteFile(filepath.Join(dir, LockFile), []byte(`garbage`), 0o644)
	if h := readHolder(dir); h != nil {
		t.Errorf("garbage holder %+v reported", h)
	}
	err := (&InUseError{Dir: dir, Waited: time.Second}).Error()
	if !strings.Contains(err, "another airlock process") {
		t.Errorf("message without holder: %q", err)
	}
}

func TestUpdateReadOnly(t *testing.T) {
	e := newEnv(t)
	r := e.openRO()
	defer r.Close()
	if err := r.Update(func(*Tx) error { return nil }); err == nil {
		t.Error("Update on a read-only repository succeeded")
	}
	if _, err := r.Import(context.Background(), "x", ImportOptions{}); err == nil {
		t.Error("Import on a read-only repository succeeded")
	}
	if _, err := r.Repair(context.Background()); err == nil {
		t.Error("Repair on a read-only repository succeeded")
	}
}
