package cluster

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"os"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/airlock-project/airlock/catalog"
	"github.com/airlock-project/airlock/fault"
	"github.com/airlock-project/airlock/node"
	"github.com/airlock-project/airlock/plan"
	"github.com/airlock-project/airlock/progress"
	"github.com/airlock-project/airlock/repo"
)

// The Run functions below are the airlock commands on the cluster. Each
// opens the repository as it needs, does its work, prints the result on
// stdout (text, or indented JSON), and returns an error whose class gives
// the exit code. They never print their error: the caller does, once.

// maxTokenFile bounds a token file.
const maxTokenFile = 4 << 10

// NodeAddCmd is airlock node add.
type NodeAddCmd struct {
	repo.Options
	Name string
	URL  string
	// TokenFile holds the node's bearer token (DIR/token of airlock-node
	// init); it is read once and the token is kept in the repository.
	TokenFile string
	// Fingerprint is the certificate fingerprint airlock-node init printed.
	Fingerprint string
	// Role and Region default to what the node reports.
	Role, Region string
	// Offline adds the node without asking it (it must then be given its
	// role); by default the node must answer.
	Offline bool
	JSON    bool
	Client  ClientOptions
}

// RunNodeAdd registers a node after checking that it answers at URL with
// the pinned certificate and the token, and calls itself Name. A role or
// region that disagrees with what the node reports is refused (usage).
func RunNodeAdd(ctx context.Context, c NodeAddCmd, stdout, stderr io.Writer) error {
	fp, err := repo.ParseCertFingerprint(c.Fingerprint)
	if err != nil {
		return fmt.Errorf("--fingerprint: %w", err)
	}
	token, err := readToken(c.TokenFile)
	if err != nil {
		return err
	}
	n := repo.Node{Name: c.Name, URL: strings.TrimSuffix(c.URL, "/"), Token: token, Fingerprint: fp, Role: c.Role, Region: c.Region}
	probe := n
	if probe.Role == "" {
		probe.Role = node.RoleTraffic
	}
	if err := repo.ValidateNode(probe); err != nil {
		return err
	}
	var seen *repo.NodeSeen
	if c.Offline {
		if c.Role == "" {
			return fmt.Errorf("%w: node add --offline needs --role: the node is not asked for it", repo.ErrInvalid)
		}
	} else {
		cl, err := NewClient(probe, c.Client)
		if err != nil {
			return err
		}
		ob := observe(ctx, cl, c.Options.Now)
		cl.Close()
		if ob.Err != nil {
			return addRefused(c, ob.Err)
		}
		st := ob.Status
		if c.Role != "" && c.Role != st.Role {
			return fmt.Errorf("%w: node %s reports role %s, not --role %s: omit --role to take the node's, or set it on the node first", repo.ErrInvalid, c.Name, st.Role, c.Role)
		}
		if c.Region != "" && c.Region != st.Region {
			return fmt.Errorf("%w: node %s reports region %q, not --region %s: omit --region to take the node's", repo.ErrInvalid, c.Name, st.Region, c.Region)
		}
		n.Role, n.Region = st.Role, st.Region
		s := seenOf(ob)
		seen = &s
		if ob.Offset > MaxClockSkew || ob.Offset < -MaxClockSkew {
			fmt.Fprintf(stderr, "warning: node %s's clock is %s off this host's: installs will refuse to run until it is fixed\n", c.Name, ob.Offset.Round(time.Second))
		}
	}
	n.Seen = seen
	r, err := repo.Open(ctx, rw(c.Options))
	if err != nil {
		return err
	}
	defer r.Close()
	replaced, err := r.AddNode(n)
	if err != nil {
		return err
	}
	if c.JSON {
		return writeJSON(stdout, struct {
			repo.Node
			Replaced bool `json:"replaced"`
		}{n, replaced != nil})
	}
	verb := "added"
	if replaced != nil {
		verb = "replaced"
	}
	fmt.Fprintf(stdout, "%s node %s (%s) at %s, certificate %s\n", verb, n.Name, roleRegion(n.Role, n.Region), n.URL, n.Fingerprint.Short())
	if replaced != nil && replaced.Fingerprint != n.Fingerprint {
		fmt.Fprintf(stdout, "the pinned certificate changed from %s\n", replaced.Fingerprint.Short())
	}
	if seen != nil {
		fmt.Fprintf(stdout, "it runs %s\n", versions(seen.Installed))
	}
	return nil
}

// addRefused explains why node add could not check the node, in terms of
// the arguments given, keeping the class of err (a name that is not the
// node's is a usage error).
func addRefused(c NodeAddCmd, err error) error {
	var (
		ue *UnreachableError
		fe *FingerprintError
		ae *APIError
		ne *NameError
	)
	switch {
	case errors.As(err, &ue):
		return fmt.Errorf("%w; nothing was added (pass --offline to add it without asking it)", err)
	case errors.As(err, &fe):
		return &refusal{err: err, msg: fmt.Sprintf("node %s at %s presented certificate %s, not --fingerprint %s: copy the fingerprint that airlock-node init printed on that node, and check --url; nothing was added",
			c.Name, c.URL, fe.Got, fe.Pinned)}
	case errors.As(err, &ae) && ae.Code == "unauthorized":
		return &refusal{err: err, msg: fmt.Sprintf("node %s at %s refused the token in --token-file %s (unauthorized): give that node's own token file (DIR/token of airlock-node init); nothing was added",
			c.Name, c.URL, c.TokenFile)}
	case errors.As(err, &ne):
		return &refusal{err: errors.Join(err, fault.ErrUsage), msg: fmt.Sprintf("node %s: the agent at %s calls itself %q: give its own name (airlock node add %s …), or the --url of node %s; nothing was added",
			c.Name, ne.URL, fault.Printable(ne.Got, 80), fault.Printable(ne.Got, 80), c.Name)}
	}
	return fmt.Errorf("%w; nothing was added", err)
}

// refusal replaces the message of err and keeps its class.
type refusal struct {
	msg string
	err error
}

func (e *refusal) Error() string { return e.msg }
func (e *refusal) Unwrap() error { return e.err }

func readToken(path string) (string, error) {
	if path == "" {
		return "", fmt.Errorf("%w: no --token-file", repo.ErrInvalid)
	}
	f, err := os.Open(path)
	if err != nil {
		var pe *fs.PathError
		if errors.As(err, &pe) {
			err = pe.Err
		}
		return "", fmt.Errorf("--token-file %s: %w: give the node's token file (DIR/token of airlock-node init)", path, err)
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxTokenFile+1))
	if err != nil {
		var pe *fs.PathError
		if errors.As(err, &pe) {
			err = pe.Err
		}
		return "", fmt.Errorf("--token-file %s: %w: give the node's token file (DIR/token of airlock-node init)", path, err)
	}
	if len(b) > maxTokenFile {
		return "", fmt.Errorf("%w: --token-file %s is larger than %d bytes: give the node's token file (DIR/token of airlock-node init)", repo.ErrInvalid, path, maxTokenFile)
	}
	return strings.TrimSpace(string(b)), nil
}

// NodeListCmd is airlock node list.
type NodeListCmd struct {
	repo.Options
	JSON bool
}

// RunNodeList lists the registered nodes with what was last seen of them
// (never their tokens).
func RunNodeList(ctx context.Context, c NodeListCmd, stdout, stderr io.Writer) error {
	r, err := repo.Open(ctx, ro(c.Options))
	if err != nil {
		return err
	}
	defer r.Close()
	nodes, err := r.Nodes()
	if err != nil {
		return err
	}
	if c.JSON {
		return writeJSON(stdout, nodes)
	}
	if len(nodes) == 0 {
		fmt.Fprintln(stdout, "no nodes registered: add them with airlock node add NAME --url URL --token-file F --fingerprint HEX")
		return nil
	}
	tw := tabwriter.NewWriter(stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tROLE\tREGION\tURL\tCERTIFICATE\tLAST SEEN\tINSTALLED")
	for _, n := range nodes {
		seen, inst := "never", "-"
		if n.Seen != nil {
			seen, inst = stamp(n.Seen.At), versions(n.Seen.Installed)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", n.Name, n.Role, dash(n.Region), n.URL, n.Fingerprint.Short(), seen, inst)
	}
	return tw.Flush()
}

// NodeRemoveCmd is airlock node remove.
type NodeRemoveCmd struct {
	repo.Options
	Name string
}

// RunNodeRemove unregisters a node.
func RunNodeRemove(ctx context.Context, c NodeRemoveCmd, stdout, stderr io.Writer) error {
	r, err := repo.Open(ctx, rw(c.Options))
	if err != nil {
		return err
	}
	defer r.Close()
	n, err := r.RemoveNode(c.Name)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "removed node %s (%s); its rollout history stays in the repository\n", n.Name, n.URL)
	return nil
}

// StatusCmd is airlock status.
type StatusCmd struct {
	repo.Options
	Nodes  []string
	JSON   bool
	Client ClientOptions
}

// NodeStatus is one node in airlock status. It holds versions, never the
// requirements of packages.
type NodeStatus struct {
	Name      string                     `json:"name"`
	Role      string                     `json:"role"`
	Region    string                     `json:"region,omitempty"`
	URL       string                     `json:"url"`
	Reachable bool                       `json:"reachable"`
	Error     string                     `json:"error,omitempty"`
	Installed map[string]catalog.Version `json:"installed"`
	Staged    []StagedStatus             `json:"staged"`
	Drained   bool                       `json:"drained"`
	// Accepting tells whether the node accepts new client connections.
	Accepting bool `json:"accepting"`
	// Connections is the number of open client connections, -1 when the
	// node could not count them (ConnectionsError says why).
	Connections      int    `json:"connections"`
	ConnectionsError string `json:"connections_error,omitempty"`
	// Time is the node's clock, ClockOffset its difference to this host's.
	Time        time.Time `json:"time,omitzero"`
	ClockOffset string    `json:"clock_offset,omitempty"`
	// Jobs are the install jobs queued or running.
	Jobs     []JobStatus `json:"jobs"`
	Warnings []string    `json:"warnings"`
	// fault labels an unanswered node for people: UNREACHABLE, or FAILED
	// (another certificate, an error answer).
	fault string
}

// StagedStatus is a package staged (or being staged) on a node.
type StagedStatus struct {
	SHA256   catalog.Digest `json:"sha256"`
	Package  string         `json:"package"`
	Size     int64          `json:"size"`
	Offset   int64          `json:"offset"`
	Complete bool           `json:"complete"`
}

// JobStatus is an active install job on a node.
type JobStatus struct {
	ID      string        `json:"id"`
	State   node.JobState `json:"state"`
	Package string        `json:"package"`
}

// RunStatus asks every selected node for its state and prints it. The
// state seen is recorded in the repository when it is not in use. Nodes
// that do not answer are listed as unreachable and make the command fail
// (operational; a certificate that is not the pinned one: verification)
// after everything is printed.
func RunStatus(ctx context.Context, c StatusCmd, stdout, stderr io.Writer) error {
	r, err := repo.Open(ctx, ro(c.Options))
	if err != nil {
		return err
	}
	all, err := r.Nodes()
	r.Close()
	if err != nil {
		return err
	}
	nodes, err := selectNodes(all, c.Nodes)
	if err != nil {
		return err
	}
	cs, err := clients(nodes, c.Client)
	if err != nil {
		return err
	}
	defer closeClients(cs)
	now := c.Options.Now
	if now == nil {
		now = time.Now
	}
	obs := observeAll(ctx, cs, now)
	if err := ctx.Err(); err != nil {
		return err
	}
	out := make([]NodeStatus, len(nodes))
	seen := map[string]repo.NodeSeen{}
	var errs []error
	for i, n := range nodes {
		ob := obs[i]
		ns := NodeStatus{Name: n.Name, Role: n.Role, Region: n.Region, URL: n.URL, Installed: map[string]catalog.Version{},
			Staged: []StagedStatus{}, Jobs: []JobStatus{}, Warnings: []string{}}
		if ob.Err != nil {
			ns.Error, ns.fault = ob.Err.Error(), "FAILED"
			if errors.Is(ob.Err, ErrUnreachable) {
				ns.fault = "UNREACHABLE"
			}
			errs = append(errs, ob.Err)
			out[i] = ns
			continue
		}
		st := ob.Status
		seen[n.Name] = seenOf(ob)
		ns.Reachable, ns.Role, ns.Region, ns.Drained, ns.Time = true, st.Role, st.Region, st.Drained, st.Time
		ns.Accepting, ns.Connections, ns.ConnectionsError = st.Accepting, st.Connections, st.ConnectionsError
		if st.Connections < 0 {
			ns.Warnings = append(ns.Warnings, "cannot count its client connections: "+st.ConnectionsError)
		}
		maps.Copy(ns.Installed, st.Installed)
		ns.ClockOffset = ob.Offset.Round(time.Millisecond).String()
		for _, sp := range st.Staged {
			ns.Staged = append(ns.Staged, StagedStatus{SHA256: sp.SHA256, Package: sp.Name + "@" + sp.Version.String(),
				Size: sp.Size, Offset: sp.Offset, Complete: sp.Complete})
		}
		for _, j := range st.Jobs {
			ns.Jobs = append(ns.Jobs, JobStatus{ID: j.ID, State: j.State, Package: j.Package.Name + "@" + j.Package.Version.String()})
		}
		if ob.Offset > MaxClockSkew || ob.Offset < -MaxClockSkew {
			ns.Warnings = append(ns.Warnings, fmt.Sprintf("clock is %s off this host's (more than %s): installs refuse to run until it is fixed", ob.Offset.Round(time.Second), MaxClockSkew))
		}
		if st.Role != n.Role {
			ns.Warnings = append(ns.Warnings, fmt.Sprintf("registered as %s, now %s: the role was changed outside airlock; if that is intended, record it with airlock node add %s … --role %s", n.Role, st.Role, n.Name, st.Role))
		}
		out[i] = ns
	}
	recordSeenQuietly(ctx, c.Options, seen)
	if c.JSON {
		if err := writeJSON(stdout, struct {
			Nodes []NodeStatus `json:"nodes"`
		}{out}); err != nil {
			return err
		}
	} else {
		writeStatus(stdout, out)
	}
	if len(errs) > 0 {
		return fmt.Errorf("%d of %d node(s) could not be asked: %w", len(errs), len(nodes), errors.Join(errs...))
	}
	return nil
}

// recordSeenQuietly records what the nodes reported if the repository is
// free at once: it is a cache, and status must not wait for a rollout.
func recordSeenQuietly(ctx context.Context, o repo.Options, seen map[string]repo.NodeSeen) {
	if len(seen) == 0 {
		return
	}
	o = rw(o)
	o.LockTimeout = 100 * time.Millisecond
	r, err := repo.Open(ctx, o)
	if err != nil {
		return
	}
	defer r.Close()
	_ = r.RecordSeen(seen) // a cache: a failure costs only freshness
}

func writeStatus(w io.Writer, nodes []NodeStatus) {
	for i, n := range nodes {
		if i > 0 {
			fmt.Fprintln(w)
		}
		if !n.Reachable {
			fmt.Fprintf(w, "%s (%s) %s: %s: %s\n", n.Name, roleRegion(n.Role, n.Region), n.URL, n.fault, n.Error)
			continue
		}
		state := "serving"
		if n.Drained {
			state = "drained"
		}
		fmt.Fprintf(w, "%s (%s) %s: %s, %d connection(s), clock offset %s\n", n.Name, roleRegion(n.Role, n.Region), n.URL, state, n.Connections, n.ClockOffset)
		fmt.Fprintf(w, "  installed: %s\n", versions(n.Installed))
		for _, s := range n.Staged {
			st := "staged"
			if !s.Complete {
				st = fmt.Sprintf("partial, %s of %s", progress.Bytes(s.Offset), progress.Bytes(s.Size))
			}
			fmt.Fprintf(w, "  staged: %s %s (%s)\n", s.Package, s.SHA256.Short(), st)
		}
		for _, j := range n.Jobs {
			fmt.Fprintf(w, "  job %s: %s %s\n", j.ID, j.State, j.Package)
		}
		for _, x := range n.Warnings {
			fmt.Fprintf(w, "  warning: %s\n", x)
		}
	}
}

// PlanCmd is airlock plan.
type PlanCmd struct {
	repo.Options
	Strategy       string
	Nodes          []string
	MaxUnavailable int
	SkipSettle     bool
	JSON           bool
	Client         ClientOptions
}

// RunPlan plans the rollout from the nodes' live state and prints it; it
// changes nothing.
func RunPlan(ctx context.Context, c PlanCmd, stdout, stderr io.Writer) error {
	if _, err := plan.ParseStrategy(c.Strategy); err != nil {
		return err
	}
	r, err := repo.Open(ctx, ro(c.Options))
	if err != nil {
		return err
	}
	defer r.Close()
	all, err := r.Nodes()
	if err != nil {
		return err
	}
	nodes, err := selectNodes(all, c.Nodes)
	if err != nil {
		return err
	}
	now := c.Options.Now
	if now == nil {
		now = time.Now
	}
	pl, err := buildPlan(ctx, r, nodes, c.Client, plan.Options{Strategy: c.Strategy, Nodes: c.Nodes,
		MaxUnavailable: c.MaxUnavailable, Now: now(), SkipSettle: c.SkipSettle}, now)
	if err != nil {
		return unreachableAdvice(err)
	}
	if c.JSON {
		return writeJSON(stdout, pl)
	}
	WritePlan(stdout, pl)
	return nil
}

// WritePlan prints a plan for people: each node's install sequence, then
// the numbered steps with their waves and earliest times.
func WritePlan(w io.Writer, pl *plan.Plan) {
	fmt.Fprintf(w, "plan %s: strategy %s, %d step(s)\n", pl.ID, pl.Strategy, len(pl.Steps))
	for _, np := range pl.Nodes {
		seq := "up to date"
		if !np.UpToDate {
			parts := make([]string, len(np.Packages))
			for i, p := range np.Packages {
				parts[i] = p.Name + " " + p.Version.String()
				if !p.Earliest.IsZero() {
					parts[i] += " (not before " + stamp(p.Earliest) + ")"
				}
			}
			seq = strings.Join(parts, " → ")
		}
		fmt.Fprintf(w, "  %s (%s): %s\n", np.Node, roleRegion(np.Role, np.Region), seq)
	}
	if len(pl.Steps) == 0 {
		fmt.Fprintln(w, "nothing to install")
		return
	}
	fmt.Fprintln(w, "steps:")
	width := len(fmt.Sprint(len(pl.Steps)))
	for _, s := range pl.Steps {
		wave := ""
		if s.Wave != 0 {
			wave = fmt.Sprintf("[wave %d] ", s.Wave)
		}
		fmt.Fprintf(w, "  %*d. %s%s\n", width, s.N, wave, s.Text)
	}
	fmt.Fprintln(w, "next: airlock distribute, then airlock install with the same --strategy")
}

// DistributeCmd is airlock distribute.
type DistributeCmd struct {
	repo.Options
	DistributeOptions
	JSON bool
}

// RunDistribute stages the needed packages on the nodes (see Distribute)
// and prints each node's result.
func RunDistribute(ctx context.Context, c DistributeCmd, stdout, stderr io.Writer) error {
	r, err := repo.Open(ctx, rw(c.Options))
	if err != nil {
		return err
	}
	defer r.Close()
	if c.DistributeOptions.Now == nil {
		c.DistributeOptions.Now = c.Options.Now
	}
	rep, err := Distribute(ctx, r, c.DistributeOptions)
	if rep == nil {
		return err
	}
	if c.JSON {
		if werr := writeJSON(stdout, rep); werr != nil {
			return werr
		}
		return err
	}
	for _, n := range rep.Nodes {
		switch {
		case n.Err != nil:
			fmt.Fprintf(stdout, "%s: FAILED (sent %s): %v\n", n.Node, list(n.Sent), n.Err)
		case len(n.Sent) == 0:
			fmt.Fprintf(stdout, "%s: nothing to send (already staged: %s)\n", n.Node, list(n.Already))
		default:
			fmt.Fprintf(stdout, "%s: staged %s, %s sent (already staged: %s)\n", n.Node, list(n.Sent), progress.Bytes(n.Bytes), list(n.Already))
		}
		if n.Warning != "" {
			fmt.Fprintf(stdout, "%s: warning: %s\n", n.Node, n.Warning)
		}
	}
	if err == nil {
		fmt.Fprintf(stdout, "%s sent to %d node(s), %s read from the repository\n", progress.Bytes(rep.Sent), len(rep.Nodes), progress.Bytes(rep.Read))
	}
	return err
}

// InstallCmd is airlock install.
type InstallCmd struct {
	repo.Options
	InstallOptions
}

// RunInstall executes (or with DryRun prints) the rollout (see Install).
func RunInstall(ctx context.Context, c InstallCmd, stdout, stderr io.Writer) error {
	if _, err := plan.ParseStrategy(c.Strategy); err != nil {
		return err
	}
	o := c.Options
	if c.DryRun {
		o = ro(o)
	} else {
		o = rw(o)
	}
	r, err := repo.Open(ctx, o)
	if err != nil {
		return err
	}
	defer r.Close()
	opts := c.InstallOptions
	opts.Out = stdout
	if opts.Now == nil {
		opts.Now = c.Options.Now
	}
	_, err = Install(ctx, r, opts)
	return unreachableAdvice(err)
}

// unreachableAdvice adds the next step to a plan that failed because the
// repository lacks a version some node needs on the way (plan.ErrUnreachable).
func unreachableAdvice(err error) error {
	if !errors.Is(err, plan.ErrUnreachable) {
		return err
	}
	return fmt.Errorf("%w; fetch the missing versions with a new download key (airlock key new), or leave these nodes out (--node)", err)
}

func rw(o repo.Options) repo.Options { o.ReadOnly = false; return o }
func ro(o repo.Options) repo.Options { o.ReadOnly = true; return o }

func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.SetEscapeHTML(false)
	return enc.Encode(v)
}

func stamp(t time.Time) string { return t.UTC().Format(time.RFC3339) }

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func list(ids []string) string {
	if len(ids) == 0 {
		return "-"
	}
	return strings.Join(ids, ", ")
}

// versions lists installed versions: "base 3.3.2, product 21.1.0".
func versions(m map[string]catalog.Version) string {
	if len(m) == 0 {
		return "nothing"
	}
	parts := make([]string, 0, len(m))
	for _, k := range slices.Sorted(maps.Keys(m)) {
		parts = append(parts, k+" "+m[k].String())
	}
	return strings.Join(parts, ", ")
}

// roleRegion is "traffic, eu", or "traffic" without a region.
func roleRegion(role, region string) string {
	if region == "" {
		return role
	}
	return role + ", " + region
}
