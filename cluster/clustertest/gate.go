package clustertest

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"time"
)

// Gate holds some requests of the agents attached to it until it opens,
// so that a test can tell, without timing, that several nodes were in a
// step at once: every attached node was held while the others reached
// the gate. It opens when every node of its quorum has a request held (a
// barrier), or when Open is called. A request held for the gate's
// timeout is answered 503 with code "gate-timeout" and a message saying
// which nodes arrived, so that a test of concurrency fails, rather than
// hangs, when the nodes come one at a time; a request whose client gives
// up is dropped without reaching the agent (Attach) or without its
// answer (AttachAfter).
//
// A Gate is safe for concurrent use.
type Gate struct {
	match   func(*http.Request) bool
	quorum  []string
	timeout time.Duration

	mu      sync.Mutex
	held    []string // nodes with a request held, in order of arrival
	open    chan struct{}
	opened  bool
	dropped int
}

// IsInstall matches the submission of an install job (POST /v1/install).
func IsInstall(r *http.Request) bool {
	return r.Method == http.MethodPost && r.URL.Path == "/v1/install"
}

// IsJobPoll matches a poll of an install job (GET /v1/jobs/ID).
func IsJobPoll(r *http.Request) bool {
	return r.Method == http.MethodGet && strings.HasPrefix(r.URL.Path, "/v1/jobs/")
}

// IsUndrain matches an undrain (POST /v1/undrain).
func IsUndrain(r *http.Request) bool {
	return r.Method == http.MethodPost && r.URL.Path == "/v1/undrain"
}

// NewGate returns a closed gate for the requests that match, held at most
// timeout; it opens by itself once every node of quorum has a request
// held (no quorum: only Open opens it).
func NewGate(match func(*http.Request) bool, timeout time.Duration, quorum ...string) *Gate {
	return &Gate{match: match, quorum: slices.Clone(quorum), timeout: timeout, open: make(chan struct{})}
}

// Attach holds a's matching requests at the gate, before the agent acts
// (with Use: it keeps a's other middleware, and sees a request before
// them).
func (g *Gate) Attach(a *Agent) { g.attach(a, false) }

// AttachAfter lets the agent act on a's matching requests at once and
// holds its answers at the gate: the node has changed, the client does
// not know yet.
func (g *Gate) AttachAfter(a *Agent) { g.attach(a, true) }

func (g *Gate) attach(a *Agent, after bool) {
	name := a.Name
	a.Use(func(h http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if !g.match(r) {
				h.ServeHTTP(w, r)
				return
			}
			var rec *httptest.ResponseRecorder
			if after {
				rec = httptest.NewRecorder()
				h.ServeHTTP(rec, r)
			}
			g.arrive(name)
			t := time.NewTimer(g.timeout)
			defer t.Stop()
			select {
			case <-g.open:
				if rec == nil {
					h.ServeHTTP(w, r)
					return
				}
				for k, v := range rec.Header() {
					w.Header()[k] = v
				}
				w.WriteHeader(rec.Code)
				_, _ = w.Write(rec.Body.Bytes())
			case <-r.Context().Done():
				g.mu.Lock()
				g.dropped++
				g.mu.Unlock()
			case <-t.C:
				w.Header().Set("Content-Type", "application/json")
				w.WriteHeader(http.StatusServiceUnavailable)
				fmt.Fprintf(w, `{"error":%q,"code":"gate-timeout"}`,
					fmt.Sprintf("test gate: held %s %s for %s; nodes held so far: %s (quorum %s)", r.Method, r.URL.Path, g.timeout, strings.Join(g.Held(), ", "), strings.Join(g.quorum, ", ")))
			}
		})
	})
}

func (g *Gate) arrive(name string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.opened {
		return
	}
	if !slices.Contains(g.held, name) {
		g.held = append(g.held, name)
	}
	if len(g.quorum) == 0 {
		return
	}
	for _, n := range g.quorum {
		if !slices.Contains(g.held, n) {
			return
		}
	}
	g.opened = true
	close(g.open)
}

// Open opens the gate: held requests go on, later ones pass. It may be
// called more than once.
func (g *Gate) Open() {
	g.mu.Lock()
	defer g.mu.Unlock()
	if !g.opened {
		g.opened = true
		close(g.open)
	}
}

// Held returns the nodes that had a request held before the gate opened,
// in order of arrival.
func (g *Gate) Held() []string {
	g.mu.Lock()
	defer g.mu.Unlock()
	return slices.Clone(g.held)
}

// Dropped returns how many held requests were given up by their client.
func (g *Gate) Dropped() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.dropped
}
