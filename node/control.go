package node

import (
	"context"
	"fmt"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/airlock-project/airlock/fault"
)

// maxConnectionsOutput bounds what hooks/connections may print.
const maxConnectionsOutput = 64

// connCount is the outcome of a run of hooks/connections.
type connCount struct {
	hook bool   // hooks/connections exists: n and err are its outcome
	n    int    // the count, or -1
	err  string // why n is -1
}

func (a *Agent) hookPath(hook string) string { return filepath.Join(a.absDir, "hooks", hook) }

// controlHook describes a run of one of the drain, undrain, connections,
// promote and demote hooks: arguments NAME and extra, in the node
// directory, with Options.ControlHookTimeout.
func (a *Agent) controlHook(hook string, extra []string, env ...string) hookCall {
	a.mu.Lock()
	name, region := a.st.Name, a.st.Region
	a.mu.Unlock()
	svc := ""
	if a.svc != nil {
		svc = a.svc.addr
	}
	return hookCall{hook: hook, args: append([]string{name}, extra...), dir: a.absDir, timeout: a.opts.ControlHookTimeout, flag: "--control-hook-timeout",
		env: append([]string{"AIRLOCK_DIR=" + a.absDir, "AIRLOCK_REGION=" + region, "AIRLOCK_SERVICE=" + svc}, env...)}
}

// control takes the control token (see Agent.ctl), or returns ctx's error.
func (a *Agent) control(ctx context.Context) error {
	select {
	case a.ctl <- struct{}{}:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("node %s: waiting for another drain, undrain or role change: %w", a.Name(), ctx.Err())
	}
}

func (a *Agent) endControl() { <-a.ctl }

func drainWord(drained bool) string {
	if drained {
		return "drained"
	}
	return "undrained"
}

// SetDrained drains (true) or undrains (false) the node: it runs
// hooks/drain or hooks/undrain NAME if it exists, then sets and persists
// the drained flag, which the reference client service follows at once:
// drained, it refuses new connections; undrained, it accepts them. Open
// connections are never touched. If the hook fails, nothing changes and
// the error matches ErrHook. The hook runs on every call, even when the
// flag already has the wanted value, so it must be idempotent. Drains,
// undrains and role changes run one at a time.
func (a *Agent) SetDrained(ctx context.Context, drained bool) error {
	if err := a.control(ctx); err != nil {
		return err
	}
	defer a.endControl()
	hook, verb := HookUndrain, "undrain"
	if drained {
		hook, verb = HookDrain, "drain"
	}
	ran, err := a.runHook(ctx, a.controlHook(hook, nil), a.log)
	if err != nil {
		a.mu.Lock()
		defer a.mu.Unlock()
		return fmt.Errorf("%w; node %s stays %s: %s", err, a.st.Name, drainWord(a.st.Drained), hookFix(err, verb+" again"))
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	old := a.st.Drained
	a.st.Drained = drained
	if err := a.st.save(a.dir); err != nil {
		a.st.Drained = old
		err = fmt.Errorf("node %s: record the drained flag: %w", a.st.Name, err)
		if ran {
			err = fmt.Errorf("%w; hooks/%s has run, but the node reports itself %s: %s again once state.json can be written", err, hook, drainWord(old), verb)
		}
		return err
	}
	if a.svc != nil {
		a.svc.setDrained(drained)
	}
	a.log.Info("drained flag set", "drained", drained, "hook", ran)
	return nil
}

// SetRole sets and persists the node's role. A change to primary first
// runs hooks/promote NAME OLD_ROLE NEW_ROLE, a change from primary
// hooks/demote NAME OLD_ROLE NEW_ROLE, if they exist; if the hook fails the
// role is unchanged and the error matches ErrHook. Setting the role the
// node already has runs no hook and changes nothing.
func (a *Agent) SetRole(ctx context.Context, role string) error {
	if !ValidRole(role) {
		return fmt.Errorf("%w: node %s: role %q: want primary, backup, traffic or management", ErrBadRequest, a.Name(), fault.Printable(role, 64))
	}
	if err := a.control(ctx); err != nil {
		return err
	}
	defer a.endControl()
	a.mu.Lock()
	old := a.st.Role
	a.mu.Unlock()
	if old == role {
		return nil
	}
	hook := ""
	switch {
	case role == RolePrimary:
		hook = HookPromote
	case old == RolePrimary:
		hook = HookDemote
	}
	if hook != "" {
		h := a.controlHook(hook, []string{old, role}, "AIRLOCK_ROLE="+role, "AIRLOCK_PREVIOUS_ROLE="+old)
		if _, err := a.runHook(ctx, h, a.log); err != nil {
			return fmt.Errorf("%w; node %s stays %s: %s", err, a.Name(), old, hookFix(err, "change the role again"))
		}
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	a.st.Role = role
	if err := a.st.save(a.dir); err != nil {
		a.st.Role = old
		err = fmt.Errorf("node %s: record the role: %w", a.st.Name, err)
		if hook != "" {
			err = fmt.Errorf("%w; hooks/%s has run, but the node reports itself %s: change the role again once state.json can be written", err, hook, old)
		}
		return err
	}
	a.log.Info("role changed", "from", old, "to", role, "hook", hook)
	return nil
}

// RefreshConnections runs hooks/connections NAME, if it exists, and
// records its outcome for Status: the count it printed, or -1 and the
// reason if it failed, timed out or printed anything but one non-negative
// decimal integer (surrounding white space allowed, at most 64 bytes). The
// error it returns is that reason, matching ErrHook. Without the hook it
// does nothing: Status counts the reference service's connections. Runs
// happen one at a time; one cut short by ctx records nothing.
func (a *Agent) RefreshConnections(ctx context.Context) error {
	select {
	case a.counting <- struct{}{}:
	case <-ctx.Done():
		return ctx.Err()
	}
	defer func() { <-a.counting }()
	out := &headBuffer{max: maxConnectionsOutput}
	h := a.controlHook(HookConnections, nil)
	h.stdout, h.quiet = out, true
	ran, err := a.runHook(ctx, h, a.log)
	if ctx.Err() != nil {
		return ctx.Err()
	}
	c := connCount{hook: ran}
	if ran && err == nil {
		c.n, err = a.parseConnections(out)
	}
	if err != nil {
		c.n, c.err = -1, err.Error()
	}
	a.mu.Lock()
	a.counted = c
	a.mu.Unlock()
	return err
}

// parseConnections reads the count hooks/connections printed.
func (a *Agent) parseConnections(out *headBuffer) (int, error) {
	out.mu.Lock()
	defer out.mu.Unlock()
	path := a.hookPath(HookConnections)
	if out.overflow {
		return -1, fmt.Errorf("%w: %s on node %s printed more than %d bytes; it must print only the number of open client connections", ErrHook, path, a.Name(), out.max)
	}
	s := strings.TrimSpace(string(out.b))
	n, err := strconv.ParseUint(s, 10, 31)
	if err != nil {
		return -1, fmt.Errorf("%w: %s on node %s printed %q; it must print only the number of open client connections", ErrHook, path, a.Name(), s)
	}
	return int(n), nil
}
