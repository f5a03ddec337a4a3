package node

import (
	"errors"
	"io"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/airlock-project/airlock/catalog"
)

// layout creates releases/<name>/ entries: version directories (with a
// VERSION file), temporary entries, and current -> target ("" for none).
func layout(t *testing.T, dir, name, current string, entries ...string) {
	t.Helper()
	rel := filepath.Join(dir, "releases", name)
	for _, e := range entries {
		if err := os.MkdirAll(filepath.Join(rel, e), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(rel, e, "VERSION"), []byte(e), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if current != "" {
		if err := os.Symlink(current, filepath.Join(rel, "current")); err != nil {
			t.Fatal(err)
		}
	}
}

func entries(t *testing.T, dir string) []string {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	var out []string
	for _, e := range ents {
		out = append(out, e.Name())
	}
	return out
}

func TestRecoverReleases(t *testing.T) {
	v := newVendor(t, "Acme Vendor")
	for _, tc := range []struct {
		name      string
		installed []string
		comp      string
		current   string
		entries   []string
		wantCur   string
		want      []string
	}{
		{"killed after unpack", []string{"base=1.0.0"}, "base", "1.0.0", []string{"1.0.0", ".tmp-2.0.0-123"}, "1.0.0", []string{"1.0.0", "current"}},
		{"killed after rename", []string{"base=1.0.0"}, "base", "1.0.0", []string{"1.0.0", "2.0.0"}, "1.0.0", []string{"1.0.0", "current"}},
		{"killed after switch", []string{"base=1.0.0"}, "base", "2.0.0", []string{"1.0.0", "2.0.0", ".tmp-current-ab"}, "1.0.0", []string{"1.0.0", "current"}},
		{"killed after commit", []string{"base=2.0.0"}, "base", "2.0.0", []string{"1.0.0", "2.0.0"}, "2.0.0", []string{"1.0.0", "2.0.0", "current"}},
		{"current behind the state", []string{"base=2.0.0"}, "base", "1.0.0", []string{"1.0.0", "2.0.0"}, "2.0.0", []string{"1.0.0", "2.0.0", "current"}},
		{"first install killed after switch", []string{"base=3.3.2"}, "base", "3.4.0", []string{"3.4.0"}, "", nil},
		{"component not installed", nil, "license", "1.1.0", []string{"1.1.0"}, "", nil},
		{"no current yet", []string{"base=1.0.0"}, "base", "", []string{"1.0.0"}, "1.0.0", []string{"1.0.0", "current"}},
		{"other spelling of the version", []string{"base=1.0.0"}, "base", "1.0", []string{"1.0", "1.0.0"}, "1.0.0", []string{"1.0.0", "current"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := initNode(t, v, tc.installed...)
			layout(t, dir, tc.comp, tc.current, tc.entries...)
			a, err := Open(dir, Options{})
			if err != nil {
				t.Fatal(err)
			}
			defer a.Close()
			rel := filepath.Join(dir, "releases", tc.comp)
			cur, err := readCurrent(rel)
			if err != nil {
				t.Fatal(err)
			}
			if cur != tc.wantCur {
				t.Errorf("current -> %q, want %q", cur, tc.wantCur)
			}
			if got := entries(t, rel); !slices.Equal(got, tc.want) {
				t.Errorf("releases %v, want %v", got, tc.want)
			}
			if cur != "" {
				if b, err := os.ReadFile(filepath.Join(rel, "current", "VERSION")); err != nil || string(b) != cur {
					t.Errorf("current/VERSION %q, %v", b, err)
				}
			}
			// Repair is idempotent: a second start changes nothing.
			a.Close()
			a2, err := Open(dir, Options{})
			if err != nil {
				t.Fatal(err)
			}
			defer a2.Close()
			if changed, err := a2.recoverReleases(); err != nil || changed {
				t.Errorf("second repair: changed %v, err %v", changed, err)
			}
		})
	}
}

func TestRecoverJobs(t *testing.T) {
	v := newVendor(t, "Acme Vendor")
	dir := initNode(t, v, "base=1.0.0")
	st, err := loadState(dir)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	jp := JobPackage{SHA256: catalog.Digest{1}, Name: "base", Version: catalog.MustVersion("2.0.0")}
	st.Jobs = []Job{
		{ID: "a", State: JobSucceeded, Package: jp, Created: now, Finished: now},
		{ID: "b", State: JobRunning, Package: jp, Created: now, Started: now},
		{ID: "c", State: JobQueued, Package: jp, Created: now},
	}
	if err := st.save(dir); err != nil {
		t.Fatal(err)
	}
	a, err := Open(dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	for _, id := range []string{"b", "c"} {
		j, err := a.Job(id)
		if err != nil || j.State != JobFailed || j.Code != "interrupted" || j.Finished.IsZero() {
			t.Errorf("job %s after restart: %+v, %v", id, j, err)
		}
	}
	if j, _ := a.Job("a"); j.State != JobSucceeded {
		t.Errorf("finished job changed: %+v", j)
	}
	if st, _ := loadState(dir); st.Jobs[1].State != JobFailed {
		t.Error("interrupted jobs not persisted as failed")
	}
	if len(a.Status().Jobs) != 0 {
		t.Error("status lists active jobs after a restart")
	}
}

func TestOpenRefusals(t *testing.T) {
	v := newVendor(t, "Acme Vendor")
	dir := initNode(t, v)
	a, err := Open(dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Open(dir, Options{}); !errors.Is(err, ErrInUse) {
		t.Errorf("second Open: %v, want ErrInUse", err)
	}
	a.Close()
	a, err = Open(dir, Options{})
	if err != nil {
		t.Fatalf("Open after Close: %v", err)
	}
	a.Close()

	if _, err := Open(t.TempDir(), Options{}); !errors.Is(err, ErrNotInitialized) {
		t.Errorf("Open of an empty directory: %v, want ErrNotInitialized", err)
	}
	bare := filepath.Join(t.TempDir(), "bare")
	if err := RunInit(t.Context(), InitOptions{Dir: bare, Name: "n2"}, io.Discard, io.Discard); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(bare, Options{}); !errors.Is(err, ErrNoVendorKey) {
		t.Errorf("Open without a vendor key: %v, want ErrNoVendorKey", err)
	}
}

func TestPruneJobs(t *testing.T) {
	st := &state{}
	for i := 0; i < maxJobHistory+20; i++ {
		st.Jobs = append(st.Jobs, Job{ID: string(rune('a' + i%26)), State: JobSucceeded})
	}
	st.Jobs[0].State = JobQueued
	st.pruneJobs()
	if len(st.Jobs) != maxJobHistory+1 || st.Jobs[0].State != JobQueued {
		t.Errorf("after pruning: %d jobs, first %s; want %d with the active one kept", len(st.Jobs), st.Jobs[0].State, maxJobHistory+1)
	}
}
