package clustertest

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/airlock-project/airlock/node"
)

// Kinds of Event.
const (
	// EventDrain: the agent answered a drain.
	EventDrain = "drain"
	// EventUndrain: the agent answered an undrain.
	EventUndrain = "undrain"
	// EventRole: the agent answered a role change; Detail is the new role.
	EventRole = "role"
	// EventInstall: the agent accepted an install job; Detail is the
	// package, "name@version".
	EventInstall = "install"
	// EventInstalled: the agent first reported the job succeeded.
	EventInstalled = "installed"
	// EventInstallFailed: the agent first reported the job failed.
	EventInstallFailed = "install-failed"
)

// Event is one change of a node, as its agent answered the API call that
// made it (or, for EventInstalled and EventInstallFailed, the first poll
// that saw the job end).
type Event struct {
	// Seq orders the events of every agent attached to one EventLog: an
	// answer is recorded before the client receives it, so that Seq
	// follows causality.
	Seq    int
	Time   time.Time
	Node   string
	Kind   string
	Detail string
}

func (e Event) String() string {
	s := fmt.Sprintf("%d %s %s", e.Seq, e.Kind, e.Node)
	if e.Detail != "" {
		s += " " + e.Detail
	}
	return s
}

// EventLog records the changes that attached agents answer, in one
// sequence.
type EventLog struct {
	mu     sync.Mutex
	events []Event
	ended  map[string]bool // node/job ids already reported ended
}

// NewEventLog returns an empty log.
func NewEventLog() *EventLog { return &EventLog{ended: map[string]bool{}} }

// Attach records a's changes (it replaces a's middleware, see Wrap; add
// other middleware after it with Use).
func (l *EventLog) Attach(a *Agent) {
	name := a.Name
	a.Wrap(func(h http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			// Buffer the whole answer and record it before it is sent, so
			// that the client cannot act on it before it is recorded.
			rec := httptest.NewRecorder()
			var body []byte
			if r.Method == http.MethodPost && r.URL.Path == "/v1/role" {
				var buf bytes.Buffer
				_, _ = buf.ReadFrom(r.Body)
				body = buf.Bytes()
				r.Body.Close()
				r.Body = readCloser{bytes.NewReader(body)}
			}
			h.ServeHTTP(rec, r)
			if rec.Code/100 == 2 {
				l.observe(name, r, rec.Body.Bytes())
			}
			for k, v := range rec.Header() {
				w.Header()[k] = v
			}
			w.WriteHeader(rec.Code)
			_, _ = w.Write(rec.Body.Bytes())
		})
	})
}

type readCloser struct{ *bytes.Reader }

func (readCloser) Close() error { return nil }

func (l *EventLog) observe(name string, r *http.Request, answer []byte) {
	switch {
	case r.Method == http.MethodPost && r.URL.Path == "/v1/drain":
		l.add(name, EventDrain, "")
	case r.Method == http.MethodPost && r.URL.Path == "/v1/undrain":
		l.add(name, EventUndrain, "")
	case r.Method == http.MethodPost && r.URL.Path == "/v1/role":
		var st node.Status
		if json.Unmarshal(answer, &st) == nil {
			l.add(name, EventRole, st.Role)
		}
	case r.Method == http.MethodPost && r.URL.Path == "/v1/install":
		var j node.Job
		if json.Unmarshal(answer, &j) == nil {
			l.add(name, EventInstall, j.Package.Name+"@"+j.Package.Version.String())
		}
	case r.Method == http.MethodGet && strings.HasPrefix(r.URL.Path, "/v1/jobs/"):
		var j node.Job
		if json.Unmarshal(answer, &j) != nil {
			return
		}
		kind := ""
		switch j.State {
		case node.JobSucceeded:
			kind = EventInstalled
		case node.JobFailed:
			kind = EventInstallFailed
		default:
			return
		}
		l.mu.Lock()
		seen := l.ended[name+"/"+j.ID]
		l.ended[name+"/"+j.ID] = true
		l.mu.Unlock()
		if !seen {
			l.add(name, kind, j.Package.Name+"@"+j.Package.Version.String())
		}
	}
}

func (l *EventLog) add(name, kind, detail string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.events = append(l.events, Event{Seq: len(l.events) + 1, Time: time.Now(), Node: name, Kind: kind, Detail: detail})
}

// Events returns the events so far, in order.
func (l *EventLog) Events() []Event {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]Event(nil), l.events...)
}

// NodeSpec describes one agent of StartNodes.
type NodeSpec struct {
	Name, Role, Region string
}

// StartNodes starts an agent per spec at Installed, with the options o,
// and registers them in rp.
func StartNodes(t testing.TB, rp *Repo, o node.Options, specs ...NodeSpec) []*Agent {
	t.Helper()
	var out []*Agent
	for _, s := range specs {
		out = append(out, StartAgent(t, rp.World, AgentOptions{Name: s.Name, Role: s.Role, Region: s.Region, Installed: Installed, Node: o}))
	}
	Register(t, rp, out...)
	return out
}
