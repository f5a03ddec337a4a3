package cluster

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/airlock-project/airlock/catalog"
	"github.com/airlock-project/airlock/node"
	"github.com/airlock-project/airlock/plan"
	"github.com/airlock-project/airlock/progress"
	"github.com/airlock-project/airlock/repo"
)

// Defaults of DistributeOptions.
const (
	DefaultParallel     = 16
	DefaultStallTimeout = 2 * time.Minute
)

// Fan-out buffering: every node has a pipe of pipeChunks chunks of
// chunkSize bytes, so memory stays under nodes × 4 MiB whatever the package
// size.
const (
	chunkSize  = 256 << 10
	pipeChunks = 16
)

// busyRetries and busyBackoff bound the retries of a call that a node
// answered "busy" (its upload slots are taken, or an earlier upload of the
// package is still being received).
const (
	busyRetries = 6
	busyBackoff = 250 * time.Millisecond
)

// DistributeOptions tune Distribute. The zero value (but for Repo
// defaults) distributes to every registered node.
type DistributeOptions struct {
	// Nodes restricts the run to these registered nodes; empty means all.
	Nodes []string
	// Parallel is how many nodes one read of a package feeds at most; zero
	// means DefaultParallel. With more nodes needing a package, it is read
	// once per group of Parallel nodes.
	Parallel int
	// StallTimeout drops a node from a fan-out when it accepted no data
	// for this long (its pipe stayed full) or when its upload ends in
	// error; zero means DefaultStallTimeout.
	StallTimeout time.Duration
	// Progress reports the upload to each node; nil reports nothing.
	Progress progress.Reporter
	// Open opens a package's bytes; nil means the repository's blob. Tests
	// use it to count what is read.
	Open func(d catalog.Digest) (io.ReadCloser, error)
	// Client tunes the node clients.
	Client ClientOptions
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// Logger receives diagnostics; nil discards them.
	Logger *slog.Logger
}

func (o *DistributeOptions) defaults(r *repo.Repo) {
	if o.Parallel <= 0 {
		o.Parallel = DefaultParallel
	}
	if o.StallTimeout <= 0 {
		o.StallTimeout = DefaultStallTimeout
	}
	if o.Progress == nil {
		o.Progress = progress.Discard
	}
	if o.Open == nil {
		o.Open = func(d catalog.Digest) (io.ReadCloser, error) { return r.OpenPackage(d) }
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
}

// DistributeReport is the outcome of Distribute.
type DistributeReport struct {
	// Nodes has one result per selected node, in registry order.
	Nodes []NodeResult `json:"nodes"`
	// Sent is the bytes sent to all nodes together; Read the bytes read
	// from the repository to send them.
	Sent int64 `json:"sent"`
	Read int64 `json:"read"`
}

// target is one node of a distribute run and the packages it needs.
type target struct {
	client *Client
	res    *NodeResult
	seen   repo.NodeSeen
	need   []catalog.Package
	task   progress.Task
	failed bool
}

// Distribute stages on every selected node the packages its install
// sequence needs (plan.Sequence from the versions the node reports now) and
// that it has not staged completely yet. Each package is read from the
// repository once for all the nodes that need it and fanned out to them
// concurrently, each node starting at its own resume offset (asked with
// HEAD first; the entitlement of the bundle that delivered the package is
// sent first when the node does not know the package). A node that fails,
// or stalls for StallTimeout, is dropped from the fan-out and reported;
// the others go on. The run is audited with every node's result.
//
// The report is returned in every case; the error is a *DistributeError
// naming the failed nodes (a rerun resumes them), or an error that stopped
// the whole run (the repository, an interrupt).
func Distribute(ctx context.Context, r *repo.Repo, o DistributeOptions) (*DistributeReport, error) {
	o.defaults(r)
	all, err := r.Nodes()
	if err != nil {
		return nil, err
	}
	nodes, err := selectNodes(all, o.Nodes)
	if err != nil {
		return nil, err
	}
	stored, err := r.Packages()
	if err != nil {
		return nil, err
	}
	available := make([]catalog.Package, len(stored))
	for i, p := range stored {
		available[i] = p.Package
	}
	cs, err := clients(nodes, o.Client)
	if err != nil {
		return nil, err
	}
	defer closeClients(cs)

	rep := &DistributeReport{}
	var targets []*target
	for i, ob := range observeAll(ctx, cs, o.Now) {
		t := &target{client: cs[i], res: &NodeResult{Node: cs[i].Node(), Sent: []string{}, Already: []string{}}}
		rep.Nodes = append(rep.Nodes, NodeResult{})
		targets = append(targets, t)
		if ob.Err != nil {
			t.fail(ob.Err)
			continue
		}
		t.seen = seenOf(ob)
		seq, err := plan.Sequence(ob.Status.Installed, available)
		if err != nil {
			t.res.Warning = fmt.Sprintf("not everything can be staged: %v", err)
		}
		t.need, t.res.Already = neededBy(ob.Status, seq)
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	err = fanOutAll(ctx, r, targets, &o, rep)
	for i, t := range targets {
		rep.Nodes[i] = *t.res
		rep.Sent += t.res.Bytes
	}
	if err != nil {
		return rep, err
	}
	results := make([]repo.DistributeResult, len(targets))
	seen := map[string]repo.NodeSeen{}
	var failed []NodeResult
	for i, t := range targets {
		results[i] = repo.DistributeResult{Node: t.res.Node, Staged: t.res.Sent, Error: t.res.Error}
		if t.failed {
			failed = append(failed, *t.res)
		}
		if !t.seen.At.IsZero() {
			seen[t.res.Node] = t.seen
		}
	}
	if err := r.RecordDistribute(results, seen); err != nil {
		return rep, fmt.Errorf("distribute: the uploads ended but could not be recorded: %w", err)
	}
	if len(failed) > 0 {
		return rep, &DistributeError{Failed: failed}
	}
	return rep, nil
}

func (t *target) fail(err error) {
	t.failed = true
	t.res.Err = err
	t.res.Error = err.Error()
	if t.task != nil {
		t.task.Done(err)
		t.task = nil
	}
}

// neededBy splits seq into the packages the node still needs and those it
// has staged completely already (by ID).
func neededBy(st node.Status, seq []catalog.Package) (need []catalog.Package, already []string) {
	complete := map[catalog.Digest]bool{}
	for _, sp := range st.Staged {
		if sp.Complete {
			complete[sp.SHA256] = true
		}
	}
	already = []string{}
	for _, p := range seq {
		if complete[p.SHA256] {
			already = append(already, p.ID())
			continue
		}
		need = append(need, p)
	}
	return need, already
}

// fanOutAll uploads every package needed by any target, one package at a
// time, each read once per group of o.Parallel nodes. It returns an error
// only for what stops the whole run.
func fanOutAll(ctx context.Context, r *repo.Repo, targets []*target, o *DistributeOptions, rep *DistributeReport) error {
	byDigest := map[catalog.Digest][]*target{}
	var order []catalog.Package
	for _, t := range targets {
		if t.failed {
			continue
		}
		var total int64
		for _, p := range t.need {
			if byDigest[p.SHA256] == nil {
				order = append(order, p)
			}
			byDigest[p.SHA256] = append(byDigest[p.SHA256], t)
			total += p.Size
		}
		if total > 0 {
			t.task = o.Progress.Start("upload to "+t.res.Node, total)
		}
	}
	defer func() {
		for _, t := range targets {
			if t.task != nil {
				t.task.Done(nil)
			}
		}
		o.Progress.Wait()
	}()
	slices.SortStableFunc(order, func(a, b catalog.Package) int {
		if c := a.Kind.Rank() - b.Kind.Rank(); c != 0 {
			return c
		}
		if a.Name != b.Name {
			if a.Name < b.Name {
				return -1
			}
			return 1
		}
		return a.Version.Compare(b.Version)
	})
	for _, p := range order {
		var live []*target
		for _, t := range byDigest[p.SHA256] {
			if !t.failed {
				live = append(live, t)
			}
		}
		if len(live) == 0 {
			continue
		}
		_, ent, err := r.PackageEntitlement(p.SHA256)
		if err != nil {
			return fmt.Errorf("distribute %s: %w", p, err)
		}
		for group := range slices.Chunk(live, o.Parallel) {
			n, err := fanOut(ctx, p, ent, group, o)
			rep.Read += n
			if err != nil {
				return err
			}
		}
	}
	return ctx.Err()
}

// lane is one node's share of a fan-out.
type lane struct {
	t      *target
	off    int64
	ch     chan []byte
	done   chan struct{}
	cancel context.CancelFunc
	err    error // set before done is closed
	sp     node.StagedPackage
	out    bool // left the fan-out
}

// fanOut sends package p to the targets of group: it prepares each node
// (HEAD, the entitlement if needed), then reads the package once, from the
// smallest offset any node needs, and feeds each node's pipe from its own
// offset. It returns the bytes read; its error stops the whole run (the
// repository's copy is unreadable, or ctx ended), while node failures are
// recorded on their targets.
func fanOut(ctx context.Context, p catalog.Package, ent []byte, group []*target, o *DistributeOptions) (int64, error) {
	offs := make([]int64, len(group))
	var wg sync.WaitGroup
	for i, t := range group {
		wg.Add(1)
		go func() {
			defer wg.Done()
			off, err := prepare(ctx, t.client, p, ent)
			if err != nil {
				offs[i] = -1
				t.fail(fmt.Errorf("stage %s: %w", p.ID(), err))
				return
			}
			offs[i] = off
		}()
	}
	wg.Wait()
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	var lanes []*lane
	start := p.Size
	for i, t := range group {
		switch {
		case offs[i] < 0:
		case offs[i] >= p.Size:
			t.res.Already = append(t.res.Already, p.ID())
			t.task.Add(p.Size)
		default:
			lanes = append(lanes, &lane{t: t, off: offs[i]})
			start = min(start, offs[i])
			t.task.Add(offs[i])
		}
	}
	if len(lanes) == 0 {
		return 0, nil
	}

	rc, err := o.Open(p.SHA256)
	if err != nil {
		return 0, fmt.Errorf("distribute %s: %w", p, err)
	}
	defer rc.Close()
	if start > 0 {
		if s, ok := rc.(io.Seeker); ok {
			if _, err := s.Seek(start, io.SeekStart); err != nil {
				return 0, fmt.Errorf("distribute %s: seek to byte %d: %w", p, start, err)
			}
		} else if _, err := io.CopyN(io.Discard, rc, start); err != nil {
			return start, fmt.Errorf("distribute %s: skip to byte %d: %w", p, start, err)
		}
	}
	for _, l := range lanes {
		lctx, cancel := context.WithCancel(ctx)
		l.ch, l.done, l.cancel = make(chan []byte, pipeChunks), make(chan struct{}), cancel
		go func() {
			defer close(l.done)
			body := &pipeReader{ctx: lctx, ch: l.ch, task: l.t.task}
			l.sp, l.err = l.t.client.Upload(lctx, p.SHA256, l.off, p.Size-l.off, body)
		}()
	}
	defer func() {
		for _, l := range lanes {
			l.cancel()
		}
	}()

	read, readErr := feed(ctx, rc, start, p, lanes, o)
	for _, l := range lanes {
		if !l.out {
			close(l.ch)
		}
	}
	for _, l := range lanes {
		<-l.done
		t := l.t
		switch {
		case readErr != nil:
			// The run stops; the nodes keep what they received.
		case l.err != nil:
			t.fail(fmt.Errorf("upload %s: %w", p.ID(), l.err))
		case !l.sp.Complete:
			t.fail(fmt.Errorf("upload %s: the node holds %d of %d bytes after the upload", p.ID(), l.sp.Offset, p.Size))
		default:
			t.res.Sent = append(t.res.Sent, p.ID())
			t.res.Bytes += p.Size - l.off
			o.Logger.Info("staged", "node", t.res.Node, "package", p.ID(), "from", l.off)
		}
	}
	return read, readErr
}

// feed reads the package from start and sends every chunk to the lanes
// that need it, dropping a lane whose upload ended or that accepted
// nothing for o.StallTimeout. It returns the bytes read.
func feed(ctx context.Context, rc io.Reader, start int64, p catalog.Package, lanes []*lane, o *DistributeOptions) (int64, error) {
	pos := start
	timer := time.NewTimer(o.StallTimeout)
	defer timer.Stop()
	for pos < p.Size {
		live := 0
		for _, l := range lanes {
			if !l.out {
				live++
			}
		}
		if live == 0 {
			break
		}
		// A fresh buffer per chunk: the lanes hold on to it until their
		// uploads have sent it.
		buf := make([]byte, min(chunkSize, p.Size-pos))
		n, err := io.ReadFull(rc, buf)
		if err != nil {
			if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
				err = fmt.Errorf("the repository's copy ends at byte %d of %d: run 'airlock check'", pos+int64(n), p.Size)
			}
			return pos - start + int64(n), fmt.Errorf("distribute %s: read: %w", p, err)
		}
		end := pos + int64(n)
		for _, l := range lanes {
			if l.out || l.off >= end {
				continue
			}
			chunk := buf[max(l.off-pos, 0):n]
			timer.Reset(o.StallTimeout)
			select {
			case l.ch <- chunk:
			case <-l.done:
				// The upload ended before all was sent: its error says why.
				l.out = true
				if l.err == nil {
					l.err = fmt.Errorf("the node ended the upload at byte %d of %d", l.sp.Offset, p.Size)
				}
			case <-timer.C:
				l.out = true
				l.cancel()
				<-l.done
				l.err = fmt.Errorf("the node accepted no data for %s (slow or stuck): dropped from the fan-out", o.StallTimeout)
			case <-ctx.Done():
				return end - start, ctx.Err()
			}
		}
		pos = end
	}
	return pos - start, nil
}

// pipeReader is the body of one node's upload: the chunks fed to its
// lane, in order, until the lane is closed.
type pipeReader struct {
	ctx  context.Context
	ch   <-chan []byte
	cur  []byte
	task progress.Task
}

func (r *pipeReader) Read(p []byte) (int, error) {
	if len(r.cur) == 0 {
		select {
		case b, ok := <-r.ch:
			if !ok {
				return 0, io.EOF
			}
			r.cur = b
		case <-r.ctx.Done():
			return 0, r.ctx.Err()
		}
	}
	n := copy(p, r.cur)
	r.cur = r.cur[n:]
	r.task.Add(int64(n))
	return n, nil
}

// prepare makes the node know package p (its entitlement) and returns the
// offset its upload resumes at; p.Size means it is staged completely.
func prepare(ctx context.Context, c *Client, p catalog.Package, ent []byte) (int64, error) {
	var st Staged
	err := retryBusy(ctx, func() error {
		var err error
		st, err = c.StagedOffset(ctx, p.SHA256)
		return err
	})
	if err != nil {
		return 0, err
	}
	if !st.Known {
		var sp node.StagedPackage
		err := retryBusy(ctx, func() error {
			var err error
			sp, err = c.PutEntitlement(ctx, p.SHA256, ent)
			return err
		})
		if err != nil {
			return 0, err
		}
		st = Staged{Known: true, Offset: sp.Offset, Size: sp.Size, Complete: sp.Complete}
	}
	if st.Size != p.Size {
		return 0, fmt.Errorf("node %s expects %d bytes for %s, the repository holds %d", c.Node(), st.Size, p.ID(), p.Size)
	}
	if st.Complete {
		return p.Size, nil
	}
	return st.Offset, nil
}

// retryBusy retries fn while the node answers busy or that an upload of
// the package is in progress (an earlier, broken connection that the node
// has not noticed yet), with growing pauses.
func retryBusy(ctx context.Context, fn func() error) error {
	wait := busyBackoff
	for i := 0; ; i++ {
		err := fn()
		var ae *APIError
		if err == nil || i == busyRetries || !errors.As(err, &ae) || (ae.Code != "busy" && ae.Code != "upload-in-progress") {
			return err
		}
		t := time.NewTimer(wait)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		}
		wait *= 2
	}
}
