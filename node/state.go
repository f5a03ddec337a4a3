package node

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"

	"github.com/airlock-project/airlock/atomicfile"
	"github.com/airlock-project/airlock/catalog"
	"github.com/airlock-project/airlock/fault"
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

// loadState reads and validates D/state.json. A directory without it is
// ErrNotInitialized; a state.json that does not decode, holds invalid
// values or has another format is a *stateError (ErrState).
func loadState(dir string) (*state, error) {
	path := statePath(dir)
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ENOTDIR) {
		if fi, serr := os.Stat(dir); serr == nil && !fi.IsDir() {
			return nil, fmt.Errorf("%s: %w: it is a file; give the node directory that 'airlock-node init' created as --dir", dir, ErrNotInitialized)
		}
		return nil, fmt.Errorf("%s: %w (no state.json); create it with 'airlock-node init --dir %s --name NAME'", dir, ErrNotInitialized, dir)
	}
	if err != nil {
		return nil, fmt.Errorf("read node state: %w", err)
	}
	damaged := func(format string, args ...any) error {
		return &stateError{path: path, problem: fmt.Sprintf(format, args...),
			next: "restore it from a backup, or " + startOver(dir)}
	}
	// The format first, so that a newer state.json is not called damaged.
	var head struct {
		Format string `json:"format"`
	}
	if json.Unmarshal(b, &head) == nil && head.Format != "" && head.Format != stateFormat {
		return nil, &stateError{path: path,
			problem: fmt.Sprintf("format %q, while this airlock-node reads %q", fault.Printable(head.Format, 64), stateFormat),
			next:    "run the airlock-node release that wrote it"}
	}
	var st state
	if err := catalog.DecodeStrict(b, &st, []string{"format", "name", "role", "installed", "jobs"}); err != nil {
		return nil, damaged("%v", err)
	}
	if st.Format != stateFormat {
		return nil, damaged("format %q, while this airlock-node reads %q", fault.Printable(st.Format, 64), stateFormat)
	}
	if err := catalog.ValidName(st.Name); err != nil {
		return nil, damaged("node %v", err)
	}
	if !ValidRole(st.Role) {
		return nil, damaged("role %q is not primary, backup, traffic or management", fault.Printable(st.Role, 64))
	}
	if st.Region != "" {
		if err := catalog.ValidName(st.Region); err != nil {
			return nil, damaged("region %v", err)
		}
	}
	for n, v := range st.Installed {
		if err := catalog.ValidName(n); err != nil || v.IsZero() {
			return nil, damaged("installed component %q: invalid name or version", fault.Printable(n, 64))
		}
	}
	return &st, nil
}

// stateError is a damaged or unknown file of the node directory: the file,
// what is wrong with it, and how to recover. It matches ErrState.
type stateError struct {
	path    string // the file concerned
	problem string // what is wrong with it
	next    string // what to do
}

func (e *stateError) Error() string {
	return fmt.Sprintf("%s: %v: %s; %s", e.path, ErrState, e.problem, e.next)
}

func (e *stateError) Unwrap() error { return ErrState }

// startOver says how to replace a node directory that cannot be repaired.
func startOver(dir string) string {
	return fmt.Sprintf("remove %s and run 'airlock-node init --dir %s' again (the node then gets a new token and certificate: register them again with 'airlock node add')", dir, dir)
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
