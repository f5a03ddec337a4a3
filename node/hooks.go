package node

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"os/exec"
	"strings"
	"sync"
	"time"
)

// Hook names, in D/hooks/. Every hook is optional; see the package
// documentation for when each runs and with which arguments.
const (
	HookPreInstall  = "pre-install"
	HookPostInstall = "post-install"
	HookDrain       = "drain"
	HookUndrain     = "undrain"
	HookConnections = "connections"
	HookPromote     = "promote"
	HookDemote      = "demote"
)

// hookOutputTail bounds the output of a hook kept for its log entry and
// error message: the last bytes, where the reason of a failure usually is.
const hookOutputTail = 4 << 10

// hookCall is one run of a hook.
type hookCall struct {
	hook  string   // name in D/hooks
	about string   // what the run concerns, for messages ("for package base@3.4.0"); may be empty
	args  []string // arguments after the hook's path
	dir   string   // working directory
	env   []string // variables added to the agent's environment, AIRLOCK_HOOK and AIRLOCK_NODE
	// timeout bounds the run; the hook's whole process group is killed then.
	timeout time.Duration
	// flag is the airlock-node serve flag that sets timeout, for messages.
	flag string
	// stdout, if set, receives the hook's standard output, which then stays
	// out of the output tail (stderr still goes there).
	stdout io.Writer
	// quiet logs a successful run at debug level (for hooks run on every
	// status request).
	quiet bool
}

// runHook runs D/hooks/<h.hook> if it exists, and reports whether it
// exists. The hook runs in its own process group, killed with all its
// children when h.timeout passes or ctx ends. Its output is logged; its
// last lines go into the error (matching ErrHook) if it fails or is not an
// executable file. If ctx ends first, the error is ctx's.
func (a *Agent) runHook(ctx context.Context, h hookCall, log *slog.Logger) (bool, error) {
	path := a.hookPath(h.hook)
	where := path
	if h.about != "" {
		where += " " + h.about
	}
	fi, err := os.Stat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return true, fmt.Errorf("%w: %s on node %s: %v", ErrHook, where, a.Name(), err)
	}
	if !fi.Mode().IsRegular() || fi.Mode()&0o111 == 0 {
		return true, fmt.Errorf("%w: %s on node %s is not an executable file; make it executable (chmod +x) or remove it", ErrHook, where, a.Name())
	}
	hctx, cancel := context.WithTimeout(ctx, h.timeout)
	defer cancel()
	cmd := exec.CommandContext(hctx, path, h.args...)
	cmd.Dir = h.dir
	cmd.Env = append(cmd.Environ(), "AIRLOCK_HOOK="+h.hook, "AIRLOCK_NODE="+a.Name())
	cmd.Env = append(cmd.Env, h.env...)
	out := &tailBuffer{max: hookOutputTail}
	cmd.Stdout, cmd.Stderr = out, out
	if h.stdout != nil {
		cmd.Stdout = h.stdout
	}
	cmd.WaitDelay = 5 * time.Second
	ownProcessGroup(cmd)
	start := time.Now()
	err = cmd.Run()
	level := slog.LevelInfo
	if h.quiet && err == nil {
		level = slog.LevelDebug
	}
	log.Log(ctx, level, "hook ran", "hook", h.hook, "duration", time.Since(start).Round(time.Millisecond), "output", out.String(), "err", err)
	if err == nil {
		return true, nil
	}
	why := err.Error()
	if errors.Is(hctx.Err(), context.DeadlineExceeded) && ctx.Err() == nil {
		why = fmt.Sprintf("timed out after %s", h.timeout)
		if h.flag != "" {
			why += fmt.Sprintf(" (airlock-node serve %s sets the limit)", h.flag)
		}
	} else if ctx.Err() != nil {
		return true, ctx.Err()
	}
	msg := fmt.Sprintf("%v: %s on node %s: %s", ErrHook, where, a.Name(), why)
	if s := strings.TrimSpace(out.String()); s != "" {
		msg += "; output: " + s
	}
	return true, &hookError{msg: msg}
}

// hookFix returns what to do about the hook error err before then: fix a
// hook that ran and failed; a hook that could not run says itself how to
// fix it ("make it executable").
func hookFix(err error, then string) string {
	var he *hookError
	if errors.As(err, &he) {
		return "fix the hook and " + then
	}
	return then + " once that is done"
}

// hookError is a failed hook; it matches ErrHook.
type hookError struct{ msg string }

func (e *hookError) Error() string        { return e.msg }
func (e *hookError) Is(target error) bool { return target == ErrHook }

// tailBuffer keeps the last max bytes written to it. Safe for concurrent
// use (a hook's stdout and stderr share it).
type tailBuffer struct {
	mu  sync.Mutex
	max int
	b   []byte
	cut bool
}

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.b = append(t.b, p...)
	if len(t.b) > t.max {
		t.b = append(t.b[:0], t.b[len(t.b)-t.max:]...)
		t.cut = true
	}
	return len(p), nil
}

func (t *tailBuffer) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.cut {
		return "…" + string(t.b)
	}
	return string(t.b)
}

// headBuffer keeps the first max bytes written to it and records whether
// more came; it never fails a write, so that a chatty hook is not killed
// by a broken pipe but reported.
type headBuffer struct {
	mu       sync.Mutex
	max      int
	b        []byte
	overflow bool
}

func (h *headBuffer) Write(p []byte) (int, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	room := h.max - len(h.b)
	if len(p) > room {
		h.overflow = true
		h.b = append(h.b, p[:max(room, 0)]...)
	} else {
		h.b = append(h.b, p...)
	}
	return len(p), nil
}
