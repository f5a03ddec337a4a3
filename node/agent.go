package node

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/airlock-project/airlock/atomicfile"
	"github.com/airlock-project/airlock/blob"
	"github.com/airlock-project/airlock/catalog"
)

// Defaults of Options.
const (
	DefaultHookTimeout = 10 * time.Minute
	// DefaultControlHookTimeout bounds the drain, undrain, connections,
	// promote and demote hooks.
	DefaultControlHookTimeout = time.Minute
	DefaultMaxUploads         = 4
	DefaultMaxQueue           = 64
)

// Crash points: the named instants of an install at which Options.CrashPoint
// is called, in this order. A test kills the agent there to check recovery.
const (
	CrashAfterUnpack     = "after-unpack"      // release unpacked in its temporary directory
	CrashAfterPreInstall = "after-pre-install" // release renamed into place, pre-install hook done
	CrashAfterSwitch     = "after-switch"      // current switched to the new release
	CrashBeforeCommit    = "before-state-write"
	CrashAfterCommit     = "after-state-write" // state.json says the new version
)

// Options configure an Agent. The zero value is usable.
type Options struct {
	// Logger receives structured logs; nil discards them.
	Logger *slog.Logger
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// HookTimeout bounds each install hook; 0 means DefaultHookTimeout.
	HookTimeout time.Duration
	// ControlHookTimeout bounds each drain, undrain, connections, promote
	// and demote hook; 0 means DefaultControlHookTimeout.
	ControlHookTimeout time.Duration
	// ServiceListen, if not empty, is the TCP address of the reference
	// client service (see the package documentation), e.g.
	// 127.0.0.1:7000; port 0 picks a free port, which Status.Service
	// reports. Open listens on it, Run serves it.
	ServiceListen string
	// MaxConnections bounds the reference service's open client
	// connections; 0 means DefaultMaxConnections.
	MaxConnections int
	// MaxUnpack bounds the bytes one package may unpack to; 0 means four
	// times the package size plus 1 GiB.
	MaxUnpack int64
	// MaxEntries bounds the members of one archive; 0 means DefaultMaxEntries.
	MaxEntries int
	// MaxUploads bounds concurrent upload bodies; 0 means DefaultMaxUploads.
	MaxUploads int
	// MaxQueue bounds queued install jobs; 0 means DefaultMaxQueue.
	MaxQueue int
	// CrashPoint, if set, is called at each Crash* point of an install, for
	// crash tests. It is never set in production.
	CrashPoint func(point string)
}

func (o Options) now() time.Time {
	if o.Now != nil {
		return o.Now()
	}
	return time.Now()
}

func (o Options) crash(point string) {
	if o.CrashPoint != nil {
		o.CrashPoint(point)
	}
}

// Agent is an open node directory: its state, staged packages, releases and
// the install worker. Open it with Open, serve Handler, run Run, and Close
// it. Its methods are safe for concurrent use; installs run one at a time in
// Run.
type Agent struct {
	dir string
	// absDir is dir made absolute, for the hooks, which run in other
	// working directories.
	absDir string
	opts   Options
	log    *slog.Logger
	token  [sha256.Size]byte // SHA-256 of the bearer token
	blobs  *blob.Store
	lock   *os.File
	queue  chan string
	slots  chan struct{} // upload slots
	svc    *service      // the reference client service; nil without Options.ServiceListen
	// ctl is held (one token) while a drain, undrain or role change runs,
	// so that their hooks and state changes happen one at a time.
	ctl chan struct{}
	// counting is held while hooks/connections runs: one run at a time.
	counting chan struct{}

	mu        sync.Mutex
	st        *state
	staged    map[catalog.Digest]catalog.Package // packages whose entitlement verified
	uploading map[catalog.Digest]bool            // per-package request in progress
	// settling holds jobs committed in state.json whose housekeeping
	// (pruning, unstaging) is not done yet: the API reports them running
	// until it is, so that a succeeded job means a settled node.
	settling map[string]bool
	// counted is the outcome of the latest run of hooks/connections.
	counted connCount
}

// Open opens the node directory dir for serving: it takes the directory's
// lock (ErrInUse if another agent holds it), loads state.json, the token and
// the pinned vendor keys (ErrNoVendorKey if there are none), removes what an
// interrupted run left behind, and repairs the releases from the state (see
// the package documentation). The caller must Close the agent.
func Open(dir string, opts Options) (*Agent, error) {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.HookTimeout <= 0 {
		opts.HookTimeout = DefaultHookTimeout
	}
	if opts.MaxUploads <= 0 {
		opts.MaxUploads = DefaultMaxUploads
	}
	if opts.MaxQueue <= 0 {
		opts.MaxQueue = DefaultMaxQueue
	}
	if opts.ControlHookTimeout <= 0 {
		opts.ControlHookTimeout = DefaultControlHookTimeout
	}
	if opts.MaxConnections <= 0 {
		opts.MaxConnections = DefaultMaxConnections
	}
	st, err := loadState(dir)
	if err != nil {
		return nil, err
	}
	absDir, err := filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("node %s: %w", st.Name, err)
	}
	lf, err := os.OpenFile(filepath.Join(dir, "lock"), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("node %s: lock the node directory: %w", st.Name, err)
	}
	ok, err := lockFile(lf)
	if err != nil || !ok {
		lf.Close()
		if err != nil {
			return nil, fmt.Errorf("node %s: lock %s: %w", st.Name, lf.Name(), err)
		}
		return nil, fmt.Errorf("%w: another airlock-node serves node %s from %s (it holds %s); stop it first", ErrInUse, st.Name, dir, lf.Name())
	}
	a := &Agent{dir: dir, absDir: absDir, opts: opts, log: opts.Logger.With("node", st.Name), lock: lf, st: st,
		queue: make(chan string, opts.MaxQueue), slots: make(chan struct{}, opts.MaxUploads),
		ctl: make(chan struct{}, 1), counting: make(chan struct{}, 1),
		staged: map[catalog.Digest]catalog.Package{}, uploading: map[catalog.Digest]bool{}, settling: map[string]bool{}}
	if err := a.open(); err != nil {
		lf.Close()
		return nil, err
	}
	if opts.ServiceListen != "" {
		a.svc, err = listenService(opts.ServiceListen, st.Name, st.Drained, opts.MaxConnections, a.log)
		if err != nil {
			lf.Close()
			return nil, fmt.Errorf("node %s: client service: %w; choose another --service-listen address", st.Name, err)
		}
	}
	return a, nil
}

func (a *Agent) open() error {
	tok, err := os.ReadFile(tokenPath(a.dir))
	if err != nil {
		return fmt.Errorf("node %s: bearer token: %w; restore it from a backup, or %s", a.st.Name, err, startOver(a.dir))
	}
	t := strings.TrimSpace(string(tok))
	if len(t) < 32 {
		// Never quote the token, even a damaged one.
		return fmt.Errorf("node %s: %w", a.st.Name, &stateError{path: tokenPath(a.dir), problem: "the bearer token is shorter than 32 characters",
			next: "restore it from a backup, or " + startOver(a.dir)})
	}
	a.token = sha256.Sum256([]byte(t))
	trust, err := loadTrust(a.dir)
	if err != nil {
		return fmt.Errorf("node %s: %w", a.st.Name, trustAdvice(err, a.dir))
	}
	for _, d := range []string{"entitlements", "staging", "staged", "releases", "hooks"} {
		if err := os.MkdirAll(filepath.Join(a.dir, d), 0o755); err != nil {
			return fmt.Errorf("node %s: %w", a.st.Name, err)
		}
	}
	if a.blobs, err = blob.Open(filepath.Join(a.dir, "staged")); err != nil {
		return fmt.Errorf("node %s: staged store: %w", a.st.Name, err)
	}
	if _, err := a.blobs.Clean(); err != nil {
		return fmt.Errorf("node %s: clean staged store: %w", a.st.Name, err)
	}
	if err := removeTemps(filepath.Join(a.dir, "entitlements")); err != nil {
		return fmt.Errorf("node %s: clean entitlements: %w", a.st.Name, err)
	}

	if _, err := os.Lstat(a.hookPath(HookConnections)); err == nil {
		a.counted = connCount{hook: true, n: -1, err: "not counted yet"}
	}

	changed, err := a.recoverReleases()
	if err != nil {
		return fmt.Errorf("node %s: repair releases: %w", a.st.Name, err)
	}
	now := a.opts.now()
	for i := range a.st.Jobs {
		j := &a.st.Jobs[i]
		if j.active() {
			j.State, j.Finished, j.Code = JobFailed, now, "interrupted"
			j.Error = fmt.Sprintf("%v: the node agent stopped before installing %s@%s finished; the previous release is current; install again", ErrInterrupted, j.Package.Name, j.Package.Version)
			a.log.Warn("install job interrupted by a restart", "job", j.ID, "package", j.Package.Name+"@"+j.Package.Version.String())
			changed = true
		}
	}
	if changed {
		if err := a.st.save(a.dir); err != nil {
			return fmt.Errorf("node %s: record the repaired state: %w", a.st.Name, err)
		}
	}

	ents, err := os.ReadDir(filepath.Join(a.dir, "entitlements"))
	if err != nil {
		return fmt.Errorf("node %s: %w", a.st.Name, err)
	}
	for _, e := range ents {
		hexd, ok := strings.CutSuffix(e.Name(), ".asc")
		if !ok {
			continue
		}
		d, err := catalog.ParseDigest(hexd)
		if err != nil {
			continue
		}
		armored, err := os.ReadFile(filepath.Join(a.dir, "entitlements", e.Name()))
		if err == nil {
			var p catalog.Package
			p, _, err = EntitledPackage(armored, trust, d, now)
			if err == nil {
				a.staged[d] = p
				continue
			}
		}
		a.log.Warn("staged package ignored: its entitlement no longer verifies; upload it again", "sha256", d.String(), "err", err)
	}
	return nil
}

// removeTemps removes atomicfile's temporary files left in dir.
func removeTemps(dir string) error {
	ents, err := os.ReadDir(dir)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), atomicfile.TempPrefix) {
			if err := os.RemoveAll(filepath.Join(dir, e.Name())); err != nil {
				return err
			}
		}
	}
	return nil
}

// Close stops the reference client service if Run did not, and releases
// the directory lock. Call it after Run has returned.
func (a *Agent) Close() error {
	if a.svc != nil {
		a.svc.close()
	}
	return a.lock.Close()
}

// Name returns the node's name.
func (a *Agent) Name() string {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.st.Name
}

// Status returns the node's status as GET /v1/status reports it. It runs
// no hook: with hooks/connections, Connections is the outcome of its
// latest run (RefreshConnections, which the API calls before answering).
func (a *Agent) Status() Status {
	a.mu.Lock()
	defer a.mu.Unlock()
	s := Status{Name: a.st.Name, Role: a.st.Role, Region: a.st.Region, Installed: a.st.installedCopy(),
		Drained: a.st.Drained, Accepting: !a.st.Drained, Time: a.opts.now(), Staged: []StagedPackage{}, Jobs: []Job{}}
	if a.svc != nil {
		s.Service, s.Accepting = a.svc.addr, a.svc.accepting()
	}
	switch {
	case a.counted.hook:
		s.Connections, s.ConnectionsError = a.counted.n, a.counted.err
	case a.svc != nil:
		s.Connections = a.svc.count()
	}
	for d, p := range a.staged {
		s.Staged = append(s.Staged, a.stagedInfoLocked(d, p))
	}
	sort.Slice(s.Staged, func(i, j int) bool {
		x, y := s.Staged[i], s.Staged[j]
		if x.Name != y.Name {
			return x.Name < y.Name
		}
		return x.Version.Less(y.Version)
	})
	for _, j := range a.st.Jobs {
		if j = a.viewLocked(j); j.active() {
			s.Jobs = append(s.Jobs, j)
		}
	}
	return s
}

// viewLocked returns j as the API shows it: a settling job is still
// running. Called with a.mu held.
func (a *Agent) viewLocked(j Job) Job {
	if a.settling[j.ID] {
		j.State, j.Finished = JobRunning, time.Time{}
	}
	return j
}

// Jobs returns the job history, newest first.
func (a *Agent) Jobs() []Job {
	a.mu.Lock()
	defer a.mu.Unlock()
	out := make([]Job, len(a.st.Jobs))
	for i, j := range a.st.Jobs {
		out[len(out)-1-i] = a.viewLocked(j)
	}
	return out
}

// Job returns the job with id, or an error matching ErrNotFound.
func (a *Agent) Job(id string) (Job, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if j := a.st.job(id); j != nil {
		return a.viewLocked(*j), nil
	}
	return Job{}, fmt.Errorf("%w: node %s has no job %q (it keeps the last %d)", ErrNotFound, a.st.Name, id, maxJobHistory)
}

// Submit queues the install of the staged package d and returns its job.
// It refuses at once, queueing nothing, a package that is not completely
// staged (ErrNotStaged), whose entitlement does not verify, that is not
// newer than what is installed (ErrAlreadyInstalled, ErrDowngrade) or whose
// requires do not hold (ErrRequires) — judged on the installed versions as
// they will be once the jobs already queued have succeeded. Submitting a
// package that is already queued or running returns that job.
func (a *Agent) Submit(d catalog.Digest) (Job, error) {
	// A job of d queued, running or just finished comes first: a running
	// install may already have taken the staged file, and a rerun of
	// airlock submits again a job it did not record.
	if j, ok := a.activeJob(d); ok {
		return j, nil
	}
	if err := a.installedBefore(d); err != nil {
		return Job{}, err
	}
	p, err := a.verifiedPackage(d)
	if errors.Is(err, ErrNoEntitlement) {
		return Job{}, fmt.Errorf("%w: node %s has neither the entitlement nor the data of package %s", ErrNotStaged, a.Name(), d.Short())
	}
	if err != nil {
		return Job{}, err
	}
	if n, err := a.blobs.Stat(d); err != nil || n != p.Size {
		have := a.partialSize(d)
		return Job{}, fmt.Errorf("%w: node %s holds %d of the %d bytes of package %s", ErrNotStaged, a.Name(), have, p.Size, p)
	}

	a.mu.Lock()
	defer a.mu.Unlock()
	projected := a.st.installedCopy()
	for _, j := range a.st.Jobs {
		if !j.active() {
			continue
		}
		if j.Package.SHA256 == d {
			return j, nil
		}
		projected[j.Package.Name] = j.Package.Version
	}
	if err := a.policyCheck(p, projected); err != nil {
		return Job{}, err
	}
	if len(a.queue) == cap(a.queue) {
		return Job{}, fmt.Errorf("%w: node %s has %d installs queued; retry once they have run", ErrBusy, a.st.Name, cap(a.queue))
	}
	id, err := newJobID()
	if err != nil {
		return Job{}, err
	}
	j := Job{ID: id, State: JobQueued, Package: JobPackage{SHA256: d, Name: p.Name, Version: p.Version}, Created: a.opts.now()}
	a.st.Jobs = append(a.st.Jobs, j)
	a.st.pruneJobs()
	if err := a.st.save(a.dir); err != nil {
		a.st.Jobs = a.st.Jobs[:len(a.st.Jobs)-1]
		return Job{}, fmt.Errorf("node %s: record the install job of %s: %w", a.st.Name, p, err)
	}
	a.queue <- id // never blocks: capacity checked under a.mu, the only sender
	a.log.Info("install queued", "job", id, "package", p.String())
	return j, nil
}

// activeJob returns the queued or running job that installs d, if any.
func (a *Agent) activeJob(d catalog.Digest) (Job, bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, j := range a.st.Jobs {
		if j.active() && j.Package.SHA256 == d {
			return j, true
		}
	}
	return Job{}, false
}

// installedBefore returns ErrAlreadyInstalled if a job installed package d
// and its version (or a newer one) is still installed: the node forgets an
// installed package's staged file, so a retried install must still be told
// that there is nothing to do.
func (a *Agent) installedBefore(d catalog.Digest) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	for i := len(a.st.Jobs) - 1; i >= 0; i-- {
		j := a.st.Jobs[i]
		if j.Package.SHA256 != d || j.State != JobSucceeded {
			continue
		}
		if v, ok := a.st.Installed[j.Package.Name]; ok && v.Compare(j.Package.Version) >= 0 {
			return fmt.Errorf("%w: node %s has %s %s; package %s@%s (%s) was installed by job %s", ErrAlreadyInstalled,
				a.st.Name, j.Package.Name, v, j.Package.Name, j.Package.Version, d.Short(), j.ID)
		}
	}
	return nil
}

// policyCheck refuses p unless it is newer than the installed version of
// its component and its requires hold on installed. Called with a.mu held.
func (a *Agent) policyCheck(p catalog.Package, installed map[string]catalog.Version) error {
	if v, ok := installed[p.Name]; ok {
		switch c := p.Version.Compare(v); {
		case c == 0:
			return fmt.Errorf("%w: node %s already has %s %s, the version of package %s; nothing to do", ErrAlreadyInstalled, a.st.Name, p.Name, v, p)
		case c < 0:
			return fmt.Errorf("%w: node %s has %s %s, newer than package %s; a downgrade is never installed: leave the node at %s %s", ErrDowngrade, a.st.Name, p.Name, v, p, p.Name, v)
		}
	}
	var unmet []string
	for _, c := range p.Requires {
		if c.SatisfiedBy(installed) {
			continue
		}
		have := "node has no " + c.Name
		if v, ok := installed[c.Name]; ok {
			have = "node has " + v.String()
		}
		unmet = append(unmet, fmt.Sprintf("%s (%s)", c, have))
	}
	if len(unmet) > 0 {
		return fmt.Errorf("%w: package %s needs %s on node %s; install those versions first", ErrRequires, p, strings.Join(unmet, ", "), a.st.Name)
	}
	return nil
}

func newJobID() (string, error) {
	var b [12]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", err
	}
	return hex.EncodeToString(b[:]), nil
}

// Run runs the install worker and the reference client service (if
// configured) until ctx is done; call it once. Queued jobs are installed
// one at a time, in order. A job running when ctx ends is cancelled (its
// hooks killed) and rolled back; jobs still queued are marked failed; the
// client service stops and closes its open connections. It returns nil
// once all of this is done.
func (a *Agent) Run(ctx context.Context) error {
	if a.svc != nil {
		var wg sync.WaitGroup
		wg.Go(func() { a.svc.serve(ctx) })
		defer wg.Wait()
	}
	for {
		select {
		case <-ctx.Done():
			a.failQueued("the node agent shut down before the install started; install again")
			return nil
		case id := <-a.queue:
			a.runJob(ctx, id)
		}
	}
}

// failQueued marks every queued job failed.
func (a *Agent) failQueued(why string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	changed := false
	for i := range a.st.Jobs {
		if j := &a.st.Jobs[i]; j.State == JobQueued {
			j.State, j.Finished, j.Code, j.Error = JobFailed, a.opts.now(), "interrupted", fmt.Sprintf("%v: %s", ErrInterrupted, why)
			changed = true
		}
	}
	if changed {
		if err := a.st.save(a.dir); err != nil {
			a.log.Error("cannot record the queued jobs as failed", "err", err)
		}
	}
}

// runJob runs one job and records its outcome.
func (a *Agent) runJob(ctx context.Context, id string) {
	a.mu.Lock()
	j := a.st.job(id)
	if j == nil || j.State != JobQueued {
		a.mu.Unlock()
		return
	}
	j.State, j.Started = JobRunning, a.opts.now()
	d := j.Package.SHA256
	if err := a.st.save(a.dir); err != nil {
		a.log.Error("cannot record the job as running", "job", id, "err", err)
	}
	a.mu.Unlock()

	log := a.log.With("job", id, "sha256", d.Short())
	log.Info("install started")
	err := a.install(ctx, d, id, log)
	if err == nil {
		return
	}
	if ctx.Err() != nil {
		err = fmt.Errorf("%w: the node agent was stopped during the install; the previous release is current; install again", ErrInterrupted)
	}
	log.Error("install failed", "err", err)
	a.mu.Lock()
	defer a.mu.Unlock()
	if j := a.st.job(id); j != nil {
		_, code := statusOf(err)
		j.State, j.Finished, j.Error, j.Code = JobFailed, a.opts.now(), err.Error(), code
		if serr := a.st.save(a.dir); serr != nil {
			a.log.Error("cannot record the failed job", "job", id, "err", serr)
		}
	}
}
