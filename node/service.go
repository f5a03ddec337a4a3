package node

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"
	"time"
)

// DefaultMaxConnections is the default of Options.MaxConnections.
const DefaultMaxConnections = 1000

// Limits of the reference service's protocol.
const (
	// maxGreeting bounds the greeting line DialService reads.
	maxGreeting = 256
	// refuseWriteTimeout bounds the write of a refusal line, so that the
	// accept loop never waits on a client.
	refuseWriteTimeout = 2 * time.Second
	// echoBuffer is the per-connection echo buffer: small, since the
	// service holds up to MaxConnections of them.
	echoBuffer = 1 << 10
)

// Greeting words of the reference service (see the package documentation).
const (
	greetOK      = "ok"
	greetDrained = "drained, try another node"
)

// service is the reference client service: a TCP echo service whose open
// connections the agent counts and which refuses new connections while the
// node is drained. It is safe for concurrent use.
type service struct {
	node string
	ln   net.Listener
	addr string
	max  int
	log  *slog.Logger

	wg sync.WaitGroup // one per open connection

	mu      sync.Mutex
	conns   map[net.Conn]struct{}
	drained bool
	started bool // serve was called
	serving bool // serve is accepting connections
	closed  bool
}

// listenService listens on addr for the reference service of node name;
// nothing is accepted before serve.
func listenService(addr, name string, drained bool, maxConns int, log *slog.Logger) (*service, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	return &service{node: name, ln: ln, addr: ln.Addr().String(), max: maxConns, drained: drained,
		log: log.With("service", ln.Addr().String()), conns: map[net.Conn]struct{}{}}, nil
}

// serve accepts client connections until ctx is done or the service is
// closed, then closes the listener and every open connection and waits
// for their goroutines. Only the first call serves; later ones return at
// once.
func (s *service) serve(ctx context.Context) {
	s.mu.Lock()
	if s.started || s.closed {
		s.mu.Unlock()
		return
	}
	s.started, s.serving = true, true
	s.mu.Unlock()
	stop := context.AfterFunc(ctx, s.close)
	defer stop()
	s.log.Info("client service accepting connections")

	var backoff time.Duration
	for {
		c, err := s.ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) || ctx.Err() != nil {
				break
			}
			// Out of file descriptors and the like: wait, as net/http does.
			backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
			s.log.Warn("client service cannot accept a connection; retrying", "err", err, "retry_in", backoff)
			t := time.NewTimer(backoff)
			select {
			case <-ctx.Done():
			case <-t.C:
			}
			t.Stop()
			continue
		}
		backoff = 0
		s.admit(c)
	}
	s.close()
	s.wg.Wait()
	s.log.Info("client service stopped")
}

// admit greets c and keeps it, or refuses it with one line and closes it:
// while drained, shutting down, or with max connections open.
func (s *service) admit(c net.Conn) {
	s.mu.Lock()
	var refusal string
	switch {
	case s.closed:
		refusal = "shutting down, try another node"
	case s.drained:
		refusal = greetDrained
	case len(s.conns) >= s.max:
		refusal = fmt.Sprintf("busy, %d connections open, try another node", len(s.conns))
	default:
		s.conns[c] = struct{}{}
		s.wg.Add(1)
	}
	open := len(s.conns)
	s.mu.Unlock()
	if refusal != "" {
		s.log.Debug("client connection refused", "remote", c.RemoteAddr().String(), "why", refusal)
		_ = c.SetWriteDeadline(time.Now().Add(refuseWriteTimeout))
		_, _ = io.WriteString(c, greeting(s.node, refusal)) // the client may be gone already
		c.Close()
		return
	}
	s.log.Debug("client connection accepted", "remote", c.RemoteAddr().String(), "open", open)
	go s.echo(c)
}

// echo greets c, then sends back whatever c sends until c closes or fails.
func (s *service) echo(c net.Conn) {
	defer s.wg.Done()
	defer s.release(c)
	if _, err := io.WriteString(c, greeting(s.node, greetOK)); err != nil {
		return
	}
	buf := make([]byte, echoBuffer)
	for {
		n, err := c.Read(buf)
		if n > 0 {
			if _, werr := c.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

// release closes c and stops counting it.
func (s *service) release(c net.Conn) {
	c.Close()
	s.mu.Lock()
	delete(s.conns, c)
	open := len(s.conns)
	s.mu.Unlock()
	s.log.Debug("client connection ended", "remote", c.RemoteAddr().String(), "open", open)
}

// close stops the service: it closes the listener and every open
// connection. It is idempotent.
func (s *service) close() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return
	}
	s.closed, s.serving = true, false
	if err := s.ln.Close(); err != nil {
		s.log.Warn("closing the client service listener", "err", err)
	}
	for c := range s.conns {
		c.Close()
	}
}

// setDrained makes the service refuse (true) or accept (false) new
// connections; open connections are left alone.
func (s *service) setDrained(drained bool) {
	s.mu.Lock()
	s.drained = drained
	s.mu.Unlock()
}

// count returns the number of open client connections.
func (s *service) count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.conns)
}

// accepting reports whether a new client connection would be accepted now.
func (s *service) accepting() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.serving && !s.drained && len(s.conns) < s.max
}

func greeting(node, word string) string { return "airlock-node " + node + ": " + word + "\n" }

// DialService connects to the reference client service of a node at addr
// (Status.Service) and reads its greeting line. If the service accepted
// the connection it returns it, ready to echo what the caller writes, and
// the caller must close it. If the service refused it (the node is
// drained, shutting down or at its connection limit) it returns an error
// matching ErrRefused that quotes the service's line. ctx bounds the dial
// and the greeting only.
func DialService(ctx context.Context, addr string) (net.Conn, error) {
	var d net.Dialer
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("client service %s: %w", addr, err)
	}
	stop := context.AfterFunc(ctx, func() { _ = c.SetReadDeadline(time.Now()) })
	line, err := readLine(c, maxGreeting)
	if !stop() || err != nil {
		c.Close()
		if ctx.Err() != nil {
			return nil, fmt.Errorf("client service %s: no greeting: %w", addr, ctx.Err())
		}
		return nil, fmt.Errorf("client service %s: no greeting: %w", addr, err)
	}
	_, word, ok := strings.Cut(line, ": ")
	if !ok || !strings.HasPrefix(line, "airlock-node ") {
		c.Close()
		return nil, fmt.Errorf("client service %s: unexpected greeting %q: is it an airlock-node client service?", addr, line)
	}
	if word != greetOK {
		c.Close()
		return nil, fmt.Errorf("%w: client service %s answered %q", ErrRefused, addr, line)
	}
	return c, nil
}

// readLine reads one line of at most limit bytes from r, byte by byte so
// that nothing after it is consumed, and returns it without its newline.
func readLine(r io.Reader, limit int) (string, error) {
	var b bytes.Buffer
	var one [1]byte
	for b.Len() <= limit {
		if _, err := io.ReadFull(r, one[:]); err != nil {
			return "", err
		}
		if one[0] == '\n' {
			return b.String(), nil
		}
		b.WriteByte(one[0])
	}
	return "", fmt.Errorf("line longer than %d bytes", limit)
}
