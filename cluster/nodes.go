package cluster

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/airlock-project/airlock/catalog"
	"github.com/airlock-project/airlock/node"
	"github.com/airlock-project/airlock/repo"
)

// MaxClockSkew is how far a node's clock may be from this host's before
// status warns and a rollout's health gate fails.
const MaxClockSkew = time.Minute

// selectNodes returns the registered nodes named in names (all of them if
// names is empty), in registry order; an empty registry or an unknown name
// is ErrNoNodes.
func selectNodes(all []repo.Node, names []string) ([]repo.Node, error) {
	if len(all) == 0 {
		return nil, fmt.Errorf("%w: no nodes are registered: add them with airlock node add NAME --url URL --token-file F --fingerprint HEX", ErrNoNodes)
	}
	if len(names) == 0 {
		return all, nil
	}
	known := make([]string, len(all))
	for i, n := range all {
		known[i] = n.Name
	}
	var out []repo.Node
	for _, n := range all {
		if slices.Contains(names, n.Name) {
			out = append(out, n)
		}
	}
	for _, name := range names {
		if !slices.Contains(known, name) {
			return nil, fmt.Errorf("%w: --node %s is not registered; the registered nodes are %s (airlock node list)", ErrNoNodes, name, strings.Join(known, ", "))
		}
	}
	return out, nil
}

// clients opens a client per node, in the same order. Close them with
// closeClients.
func clients(nodes []repo.Node, o ClientOptions) ([]*Client, error) {
	out := make([]*Client, 0, len(nodes))
	for _, n := range nodes {
		c, err := NewClient(n, o)
		if err != nil {
			closeClients(out)
			return nil, fmt.Errorf("node %s is registered with an invalid entry (%w): re-add it with airlock node add", n.Name, err)
		}
		out = append(out, c)
	}
	return out, nil
}

func closeClients(cs []*Client) {
	for _, c := range cs {
		c.Close()
	}
}

// observed is the answer of one node's status call.
type observed struct {
	Status node.Status
	// At is the local time halfway through the call.
	At time.Time
	// Offset is the node's clock minus ours (at At).
	Offset time.Duration
	Err    error
}

// observe asks the node for its status and measures its clock offset.
func observe(ctx context.Context, c *Client, now func() time.Time) observed {
	if now == nil {
		now = time.Now
	}
	t0 := now()
	st, err := c.Status(ctx)
	t1 := now()
	mid := t0.Add(t1.Sub(t0) / 2)
	o := observed{Status: st, At: mid, Err: err}
	if err == nil {
		if st.Name != c.Node() {
			o.Err = &NameError{Node: c.Node(), URL: c.URL(), Got: st.Name}
		}
		o.Offset = st.Time.Sub(mid)
	}
	return o
}

// observeAll asks every node for its status concurrently.
func observeAll(ctx context.Context, cs []*Client, now func() time.Time) []observed {
	out := make([]observed, len(cs))
	var wg sync.WaitGroup
	for i, c := range cs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			out[i] = observe(ctx, c, now)
		}()
	}
	wg.Wait()
	return out
}

// seenOf is what the registry keeps of a status.
func seenOf(o observed) repo.NodeSeen {
	s := repo.NodeSeen{At: o.At, Clock: o.Status.Time, Role: o.Status.Role, Region: o.Status.Region,
		Installed: o.Status.Installed, Drained: o.Status.Drained, Staged: []catalog.Digest{}}
	if s.Installed == nil {
		s.Installed = map[string]catalog.Version{}
	}
	for _, sp := range o.Status.Staged {
		if sp.Complete {
			s.Staged = append(s.Staged, sp.SHA256)
		}
	}
	return s
}

// describe summarizes a node's state for messages: "drained, role backup,
// base 3.4.0, product 22.1.0".
func describe(st node.Status) string {
	var parts []string
	if st.Drained {
		parts = append(parts, "drained")
	} else {
		parts = append(parts, "serving")
	}
	parts = append(parts, "role "+st.Role)
	for _, k := range slices.Sorted(maps.Keys(st.Installed)) {
		parts = append(parts, k+" "+st.Installed[k].String())
	}
	for _, j := range st.Jobs {
		parts = append(parts, fmt.Sprintf("job %s %s (%s %s)", j.ID, j.State, j.Package.Name, j.Package.Version))
	}
	return strings.Join(parts, ", ")
}
