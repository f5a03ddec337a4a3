package node

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"sync"
	"time"
)

// Server limits.
const (
	readHeaderTimeout = 10 * time.Second
	idleTimeout       = 2 * time.Minute
	maxHeaderBytes    = 16 << 10
	shutdownGrace     = 30 * time.Second
)

// ServeOptions are the parameters of RunServe.
type ServeOptions struct {
	// Dir is the node directory.
	Dir string
	// Listen is the TCP address to listen on, e.g. 127.0.0.1:9443 (port 0
	// picks a free port, printed on stdout).
	Listen string
	// Agent configures the agent; its Logger is used for the server too.
	Agent Options
}

// RunServe opens the node directory (see Open) and serves the node API over
// HTTPS (TLS 1.3 only, with the certificate made by RunInit) on o.Listen
// until ctx is done, then shuts down gracefully: it stops accepting, lets
// requests in flight finish for up to 30 seconds, cancels a running install
// (which rolls back), stops the reference client service (closing its
// connections) and returns nil. The first line on stdout is
// "node NAME serving https://ADDR (certificate FINGERPRINT)"; with
// o.Agent.ServiceListen, the second is "node NAME client service on ADDR".
func RunServe(ctx context.Context, o ServeOptions, stdout, stderr io.Writer) error {
	log := o.Agent.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
		o.Agent.Logger = log
	}
	a, err := Open(o.Dir, o.Agent)
	if err != nil {
		return err
	}
	defer a.Close()
	cert, err := loadCertificate(o.Dir)
	if err != nil {
		return fmt.Errorf("node %s: %w", a.Name(), err)
	}
	fp := CertFingerprint(cert.Certificate[0])
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", o.Listen)
	if err != nil {
		return fmt.Errorf("node %s: listen on %s: %w; choose another --listen address", a.Name(), o.Listen, err)
	}
	srv := &http.Server{
		Handler:           a.Handler(),
		ReadHeaderTimeout: readHeaderTimeout,
		IdleTimeout:       idleTimeout,
		MaxHeaderBytes:    maxHeaderBytes,
		TLSConfig:         &tls.Config{MinVersion: tls.VersionTLS13, Certificates: []tls.Certificate{cert}},
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
		BaseContext:       func(net.Listener) context.Context { return context.WithoutCancel(ctx) },
	}

	workCtx, stopWork := context.WithCancel(ctx)
	defer stopWork()
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		a.Run(workCtx)
	}()
	serveErr := make(chan error, 1)
	go func() { serveErr <- srv.ServeTLS(ln, "", "") }()

	fmt.Fprintf(stdout, "node %s serving https://%s (certificate %s)\n", a.Name(), ln.Addr(), fp)
	if svc := a.Status().Service; svc != "" {
		fmt.Fprintf(stdout, "node %s client service on %s\n", a.Name(), svc)
	}
	log.Info("serving", "node", a.Name(), "addr", ln.Addr().String(), "fingerprint", fp)

	select {
	case err = <-serveErr:
		err = fmt.Errorf("node %s: serve: %w", a.Name(), err)
	case <-ctx.Done():
		log.Info("shutting down", "node", a.Name())
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), shutdownGrace)
		if serr := srv.Shutdown(sctx); serr != nil {
			log.Warn("requests still running at shutdown were cut", "err", serr)
			srv.Close()
		}
		cancel()
		if serr := <-serveErr; serr != nil && !errors.Is(serr, http.ErrServerClosed) {
			log.Warn("server stopped", "err", serr)
		}
	}
	stopWork()
	wg.Wait()
	return err
}

// loadCertificate reads the TLS certificate and key that RunInit made. A
// file that cannot be read is an operational error; a pair that does not
// parse or match is a *stateError.
func loadCertificate(dir string) (tls.Certificate, error) {
	certPEM, err := os.ReadFile(certPath(dir))
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("TLS certificate: %w; restore it from a backup, or %s", err, startOver(dir))
	}
	keyPEM, err := os.ReadFile(keyPath(dir))
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("TLS key: %w; restore it from a backup, or %s", err, startOver(dir))
	}
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return tls.Certificate{}, &stateError{path: certPath(dir) + " and " + keyPath(dir), problem: err.Error(),
			next: "restore them from a backup, or " + startOver(dir)}
	}
	return cert, nil
}
