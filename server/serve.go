package server

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"syscall"
	"time"

	"github.com/airlock-project/airlock/fault"
)

// Timeouts and limits of the public listener.
const (
	readHeaderTimeout = 10 * time.Second
	idleTimeout       = 2 * time.Minute
	maxHeaderBytes    = 16 << 10
)

// ServeOptions says where Serve listens.
type ServeOptions struct {
	// Listen is the TCP address of the vendor protocol, e.g. 127.0.0.1:8080
	// (port 0 picks a free port; Ready reports it).
	Listen string
	// TLSCert and TLSKey, both or neither, are PEM files; with them the
	// protocol is served over HTTPS (TLS 1.2 or later).
	TLSCert, TLSKey string
	// Ready, if set, is called once both the protocol listener and the
	// admin socket accept connections, with the protocol's base URL.
	Ready func(baseURL string)
}

// Serve answers the vendor protocol on opts.Listen and the admin commands
// on DIR/admin.sock (mode 0600) until ctx is cancelled, then shuts down
// gracefully: it stops accepting, lets requests in flight finish for up to
// Config.ShutdownGrace, closes what remains, and removes the socket. It
// returns nil after a shutdown caused by ctx, or the error that stopped it.
// A Server whose vendor key is locked (Config.Unlock) is refused with
// ErrLocked before anything listens: it could not sign entitlements.
func (s *Server) Serve(ctx context.Context, opts ServeOptions) error {
	if s.Locked() {
		return fmt.Errorf("serve: %w", s.errLocked())
	}
	var tlsConf *tls.Config
	if (opts.TLSCert == "") != (opts.TLSKey == "") {
		return fmt.Errorf("serve: %w: --tls-cert and --tls-key go together: give both for HTTPS, or neither", ErrBadRequest)
	}
	if opts.TLSCert != "" {
		cert, err := tls.LoadX509KeyPair(opts.TLSCert, opts.TLSKey)
		var pe *fs.PathError
		switch {
		case errors.As(err, &pe):
			return fmt.Errorf("serve: --tls-cert %s, --tls-key %s: %w; check both files", opts.TLSCert, opts.TLSKey, err)
		case err != nil:
			return fmt.Errorf("serve: --tls-cert %s, --tls-key %s: %w: %v; give a PEM certificate and its own PEM private key", opts.TLSCert, opts.TLSKey, errBadTLS, err)
		}
		tlsConf = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	}
	ln, err := net.Listen("tcp", opts.Listen)
	if err != nil {
		return listenError(opts.Listen, err)
	}
	scheme := "http"
	if tlsConf != nil {
		ln = tls.NewListener(ln, tlsConf)
		scheme = "https"
	}
	adminLn, sock, err := s.listenAdmin()
	if err != nil {
		ln.Close()
		return err
	}
	defer os.Remove(sock)

	errLog := slog.NewLogLogger(s.log.Handler(), slog.LevelWarn)
	public := &http.Server{
		Handler:           s.Handler(),
		ReadHeaderTimeout: readHeaderTimeout,
		IdleTimeout:       idleTimeout,
		MaxHeaderBytes:    maxHeaderBytes,
		ErrorLog:          errLog,
		BaseContext:       func(net.Listener) context.Context { return context.WithoutCancel(ctx) },
	}
	admin := &http.Server{
		Handler:           s.adminHandler(),
		ReadHeaderTimeout: readHeaderTimeout,
		MaxHeaderBytes:    maxHeaderBytes,
		ErrorLog:          errLog,
	}
	errc := make(chan error, 2)
	go func() { errc <- public.Serve(ln) }()
	go func() { errc <- admin.Serve(adminLn) }()
	base := scheme + "://" + ln.Addr().String()
	s.log.Info("serving", "url", base, "admin", sock, "vendor", s.pub.Fingerprint().String())
	if opts.Ready != nil {
		opts.Ready(base)
	}

	var stopErr error
	select {
	case <-ctx.Done():
	case stopErr = <-errc:
		stopErr = fmt.Errorf("serve: %w", stopErr)
	}
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.cfg.grace())
	defer cancel()
	for _, srv := range []*http.Server{public, admin} {
		if err := srv.Shutdown(sctx); err != nil {
			s.log.Warn("requests still running at shutdown were cut", "error", err.Error())
			srv.Close()
		}
	}
	s.log.Info("stopped")
	return stopErr
}

// errBadTLS: --tls-cert or --tls-key is not PEM, or they do not match.
var errBadTLS = fault.Verification("unusable TLS certificate or key")

// listenError explains why the public listener could not be opened: a
// malformed --listen is a usage error; a port in use or not allowed is
// operational, with what to do.
func listenError(addr string, err error) error {
	var ae *net.AddrError
	var pe *net.ParseError
	switch {
	case errors.As(err, &ae), errors.As(err, &pe):
		return fmt.Errorf("serve: %w: --listen %s: %v; give HOST:PORT, such as 127.0.0.1:8080 or :443", ErrBadRequest, addr, err)
	case errors.Is(err, syscall.EADDRINUSE):
		return fmt.Errorf("serve: --listen %s: %w; another program (or another airlock-server) listens there: stop it or choose another --listen", addr, err)
	case errors.Is(err, syscall.EACCES):
		return fmt.Errorf("serve: --listen %s: %w; ports below 1024 need privileges: choose a port from 1024 up, or grant the privilege (CAP_NET_BIND_SERVICE)", addr, err)
	case errors.Is(err, syscall.EADDRNOTAVAIL):
		return fmt.Errorf("serve: --listen %s: %w; the host has no such address: give one of its own addresses, or 0.0.0.0", addr, err)
	}
	return fmt.Errorf("serve: --listen %s: %w", addr, err)
}

// listenAdmin opens DIR/admin.sock with mode 0600. The caller holds the
// database lock, so a socket file already there is a leftover of a server
// that died, and is replaced.
func (s *Server) listenAdmin() (net.Listener, string, error) {
	sock := filepath.Join(s.dir, AdminSocket)
	// sockaddr_un holds 108 bytes with the terminating NUL (104 on BSDs).
	if len(sock) > 103 {
		return nil, "", fmt.Errorf("serve: %w: the admin socket path %s is %d bytes, longer than a unix socket allows (103); use a shorter --dir", ErrBadRequest, sock, len(sock))
	}
	if err := os.Remove(sock); err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, "", fmt.Errorf("serve: remove stale %s: %w", sock, err)
	}
	ln, err := net.Listen("unix", sock)
	if err != nil {
		return nil, "", fmt.Errorf("serve: admin socket %s: %w", sock, err)
	}
	ln.(*net.UnixListener).SetUnlinkOnClose(false)
	if err := os.Chmod(sock, 0o600); err != nil {
		ln.Close()
		return nil, "", fmt.Errorf("serve: admin socket %s: %w", sock, err)
	}
	return ln, sock, nil
}
