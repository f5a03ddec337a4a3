package node

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/airlock-project/airlock/atomicfile"
	"github.com/airlock-project/airlock/catalog"
)

// stateFormat is the format string of state.json.
const stateFormat = "airlock-node-state/v1"

// maxJobHistory bounds the finished jobs kept in state.json.
const maxJobHistory = 100

// state is the content of D/state.json: everything about the node that
// must survive a restart. It is authoritative for the installed versions.
type state struct {
	Format    string                     `json:"format"`
	Name      string                     `json:"name"`
	Role      string                     `json:"role"`
	Region    string                     `json:"region"`
	Installed map[string]catalog.Version `json:"installed"`
	Drained   bool                       `json:"drained"`
	Jobs      []Job                      `json:"jobs"`
}

func statePath(dir string) string { return filepath.Join(dir, "state.json") }

// loadState reads and validates D/state.json.
func loadState(dir string) (*state, error) {
	b, err := os.ReadFile(statePath(dir))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("%s: %w (no state.json); create it with 'airlock-node init --dir %s --name NAME'", dir, ErrNotInitialized, dir)
	}
	if err != nil {
		return nil, err
	}
	var st state
	if err := catalog.DecodeStrict(b, &st, []string{"format", "name", "role", "installed", "jobs"}); err != nil {
		return nil, fmt.Errorf("%s: %w", statePath(dir), err)
	}
	if st.Format != stateFormat {
		return nil, fmt.Errorf("%s: format %q, want %q", statePath(dir), st.Format, stateFormat)
	}
	if err := catalog.ValidName(st.Name); err != nil {
		return nil, fmt.Errorf("%s: node name: %v", statePath(dir), err)
	}
	if !ValidRole(st.Role) {
		return nil, fmt.Errorf("%s: role %q is not primary, backup, traffic or management", statePath(dir), st.Role)
	}
	for n, v := range st.Installed {
		if err := catalog.ValidName(n); err != nil || v.IsZero() {
			return nil, fmt.Errorf("%s: installed component %q: invalid name or version", statePath(dir), n)
		}
	}
	return &st, nil
}

// save writes st to D/state.json atomically.
func (st *state) save(dir string) error {
	if st.Installed == nil {
		st.Installed = map[string]catalog.Version{}
	}
	if st.Jobs == nil {
		st.Jobs = []Job{}
	}
	b, err := catalog.EncodeCanonical(st)
	if err != nil {
		return fmt.Errorf("node %s: encode state: %w", st.Name, err)
	}
	return atomicfile.WriteFile(statePath(dir), b, 0o644)
}

// job returns a pointer to the job with id, or nil.
func (st *state) job(id string) *Job {
	for i := range st.Jobs {
		if st.Jobs[i].ID == id {
			return &st.Jobs[i]
		}
	}
	return nil
}

// pruneJobs drops the oldest finished jobs beyond maxJobHistory. Active
// jobs are always kept.
func (st *state) pruneJobs() {
	finished := 0
	for _, j := range st.Jobs {
		if !j.active() {
			finished++
		}
	}
	if finished <= maxJobHistory {
		return
	}
	drop := finished - maxJobHistory
	kept := st.Jobs[:0]
	for _, j := range st.Jobs {
		if drop > 0 && !j.active() {
			drop--
			continue
		}
		kept = append(kept, j)
	}
	st.Jobs = kept
}

// installedCopy returns a copy of the installed versions.
func (st *state) installedCopy() map[string]catalog.Version {
	m := make(map[string]catalog.Version, len(st.Installed))
	for k, v := range st.Installed {
		m[k] = v
	}
	return m
}
