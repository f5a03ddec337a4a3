package fetch

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path"
	"strings"
	"time"

	"github.com/airlock-project/airlock/catalog"
	"github.com/airlock-project/airlock/fault"
)

// DefaultIdleTimeout is how long a request may receive nothing (no response
// headers, no body byte) before the server counts as stalled.
const DefaultIdleTimeout = 60 * time.Second

// Bounds of the HTTP client.
const (
	dialTimeout      = 30 * time.Second
	handshakeTimeout = 30 * time.Second
	// maxExchangeAnswer bounds the exchange answer (the protocol's 8 MiB).
	maxExchangeAnswer = 8 << 20
	// maxSmallAnswer bounds error and acknowledgement answers.
	maxSmallAnswer = 64 << 10
	// maxDownloadKey is the server's limit on the exchange request body.
	maxDownloadKey = 256 << 10
)

// ClientOptions tune the HTTP client that talks to the vendor's server. The
// zero value is good.
type ClientOptions struct {
	// CAFile, if set, names a PEM file of certificate authorities trusted
	// for https in addition to the system roots.
	CAFile string
	// IdleTimeout bounds every wait for the server: for the response
	// headers and for each read of a body. Zero means DefaultIdleTimeout.
	IdleTimeout time.Duration
	// Proxy chooses a proxy for each request, as http.Transport.Proxy does;
	// nil means no proxy. cmd/ passes http.ProxyFromEnvironment.
	Proxy func(*http.Request) (*url.URL, error)
}

// client speaks the vendor protocol (see the package documentation). It is
// safe for concurrent use.
type client struct {
	base *url.URL
	http *http.Client
	idle time.Duration
}

// newClient returns a client of the server at base (http or https URL).
func newClient(base string, o ClientOptions) (*client, error) {
	u, err := url.Parse(base)
	if err == nil && u.User != nil {
		// Never echo a password.
		return nil, fmt.Errorf("%w: --server %q: a user name or password in the URL is not accepted: the protocol needs no login; give the server's URL alone", ErrOptions, printable(u.Redacted()))
	}
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.RawQuery != "" || u.Fragment != "" {
		return nil, fmt.Errorf("%w: --server %q: want an http:// or https:// URL such as https://updates.vendor.example", ErrOptions, printable(base))
	}
	idle := o.IdleTimeout
	if idle <= 0 {
		idle = DefaultIdleTimeout
	}
	roots, err := x509.SystemCertPool()
	if err != nil {
		roots = x509.NewCertPool()
	}
	if o.CAFile != "" {
		const hint = "give the PEM file of the certificate authority that signed the server's certificate"
		pem, err := os.ReadFile(o.CAFile)
		if err != nil {
			return nil, fileError("--ca-file", o.CAFile, err, hint)
		}
		if !roots.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("%w: --ca-file %s holds no PEM certificate; %s", ErrOptions, o.CAFile, hint)
		}
	}
	tr := &http.Transport{
		Proxy:                 o.Proxy,
		DialContext:           (&net.Dialer{Timeout: dialTimeout, KeepAlive: 30 * time.Second}).DialContext,
		TLSClientConfig:       &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12},
		TLSHandshakeTimeout:   handshakeTimeout,
		ResponseHeaderTimeout: 2 * idle, // a backstop: the idle timer fires first
		ExpectContinueTimeout: time.Second,
		MaxIdleConnsPerHost:   16,
		IdleConnTimeout:       90 * time.Second,
		ForceAttemptHTTP2:     true,
	}
	hc := &http.Client{
		Transport: tr,
		CheckRedirect: func(req *http.Request, _ []*http.Request) error {
			return fmt.Errorf("%w to %s; the protocol has none: check --server (give the URL the vendor gave, https:// if the vendor serves https)", ErrRedirect, printable(req.URL.Redacted()))
		},
	}
	u.Path = strings.TrimSuffix(u.Path, "/")
	u.RawPath = ""
	return &client{base: u, http: hc, idle: idle}, nil
}

// close releases idle connections.
func (c *client) close() { c.http.CloseIdleConnections() }

// endpoint returns the URL of a path of the protocol under the base URL.
func (c *client) endpoint(p string) string {
	u := *c.base
	u.Path += p
	return u.String()
}

// resolve turns a download URL from the exchange answer into an absolute
// URL. It must be a clean path (resolved under the base URL) or an absolute
// URL on the same origin as the base URL, without query or fragment.
func (c *client) resolve(ref string) (string, error) {
	u, err := url.Parse(ref)
	if err != nil || u.Opaque != "" || u.User != nil || u.RawQuery != "" || u.Fragment != "" || u.ForceQuery || u.Path == "" || path.Clean(u.Path) != u.Path || !strings.HasPrefix(u.Path, "/") {
		return "", fmt.Errorf("%w: download URL %q is not a clean path", ErrProtocol, printable(ref))
	}
	if u.Scheme == "" && u.Host == "" {
		r := *c.base
		r.Path += u.Path
		return r.String(), nil
	}
	if u.Scheme != c.base.Scheme || u.Host != c.base.Host {
		return "", fmt.Errorf("%w: download URL %q is not on %s://%s", ErrProtocol, printable(ref), c.base.Scheme, c.base.Host)
	}
	return u.String(), nil
}

// errIdle is the cancellation cause of a request whose idle timer fired.
var errIdle = errors.New("idle timeout")

// do sends req with an idle timer armed from the start: it covers the wait
// for the response headers and every read of the body, which the caller
// must close. Errors are classed: a redirect (ErrRedirect), a stall
// (ErrStalled), anything else is operational.
func (c *client) do(ctx context.Context, req *http.Request) (*http.Response, error) {
	ctx, cancel := context.WithCancelCause(ctx)
	t := time.AfterFunc(c.idle, func() { cancel(errIdle) })
	resp, err := c.http.Do(req.WithContext(ctx))
	if err != nil {
		t.Stop()
		stalled := context.Cause(ctx) == errIdle
		cancel(nil)
		if stalled {
			return nil, fmt.Errorf("%w: no answer within %s", ErrStalled, c.idle)
		}
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err // the caller names the URL; a redirect names its target
		}
		return nil, err
	}
	t.Reset(c.idle)
	resp.Body = &idleBody{rc: resp.Body, ctx: ctx, cancel: cancel, t: t, idle: c.idle}
	return resp, nil
}

// idleBody re-arms the idle timer at every byte received and turns its
// firing into ErrStalled.
type idleBody struct {
	rc     io.ReadCloser
	ctx    context.Context
	cancel context.CancelCauseFunc
	t      *time.Timer
	idle   time.Duration
}

func (b *idleBody) Read(p []byte) (int, error) {
	n, err := b.rc.Read(p)
	if n > 0 {
		b.t.Reset(b.idle)
	}
	if err != nil && err != io.EOF && context.Cause(b.ctx) == errIdle {
		err = fmt.Errorf("%w: nothing received for %s", ErrStalled, b.idle)
	}
	return n, err
}

func (b *idleBody) Close() error {
	b.t.Stop()
	err := b.rc.Close()
	b.cancel(nil)
	return err
}

// exchangeAnswer is the body of a successful exchange.
type exchangeAnswer struct {
	Entitlement string     `json:"entitlement"`
	Downloads   []download `json:"downloads"`
}

// download is one entry of the exchange answer's download list.
type download struct {
	SHA256 catalog.Digest `json:"sha256"`
	Size   int64          `json:"size"`
	URL    string         `json:"url"`
}

// exchange posts the armored download key and returns the raw, unverified
// answer.
func (c *client) exchange(ctx context.Context, key []byte) (*exchangeAnswer, error) {
	req, err := http.NewRequest(http.MethodPost, c.endpoint("/v1/exchange"), bytes.NewReader(key))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/pgp-signature")
	req.Header.Set("Accept", "application/json")
	resp, err := c.do(ctx, req)
	if err != nil {
		return nil, fmt.Errorf("exchange at %s: %w%s", c.base.Redacted(), err, rerunExchange(err))
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, c.serverError("exchange", resp)
	}
	b, err := readAtMost(resp.Body, maxExchangeAnswer)
	if err != nil {
		return nil, fmt.Errorf("exchange at %s: read the answer: %w%s", c.base.Redacted(), err, rerunExchange(err))
	}
	a, err := decodeExchangeAnswer(b)
	if err != nil {
		return nil, fmt.Errorf("exchange at %s: %w", c.base.Redacted(), err)
	}
	return a, nil
}

// decodeExchangeAnswer decodes the body of a successful exchange; both
// fields are required. Nothing in it is trusted yet.
func decodeExchangeAnswer(b []byte) (*exchangeAnswer, error) {
	var a exchangeAnswer
	if err := json.Unmarshal(b, &a); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrProtocol, err)
	}
	if a.Entitlement == "" || a.Downloads == nil {
		return nil, fmt.Errorf("%w: the answer lacks \"entitlement\" or \"downloads\"", ErrProtocol)
	}
	return &a, nil
}

// ack acknowledges the download at u (an absolute download URL) and
// reports whether it was the first acknowledgement of it.
func (c *client) ack(ctx context.Context, u string, d catalog.Digest) (first bool, err error) {
	body, err := json.Marshal(struct {
		SHA256 catalog.Digest `json:"sha256"`
	}{d})
	if err != nil {
		return false, err
	}
	req, err := http.NewRequest(http.MethodPost, u+"/ack", bytes.NewReader(body))
	if err != nil {
		return false, err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := c.do(ctx, req)
	if err != nil {
		return false, fmt.Errorf("acknowledge at %s: %w", c.base.Redacted(), err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return false, c.serverError("acknowledge", resp)
	}
	b, err := readAtMost(resp.Body, maxSmallAnswer)
	if err != nil {
		return false, err
	}
	var a struct {
		Acknowledged bool `json:"acknowledged"`
		First        bool `json:"first"`
	}
	if err := json.Unmarshal(b, &a); err != nil || !a.Acknowledged {
		return false, fmt.Errorf("%w: acknowledgement answer %q", ErrProtocol, printable(string(b)))
	}
	return a.First, nil
}

// rerunExchange is the advice for an exchange that failed on the way: an
// operational failure (the network, the server's own trouble) is worth a
// rerun; a hostile answer (a redirect) carries its own advice.
func rerunExchange(err error) string {
	if fault.Code(err) != fault.ExitOperational || errors.Is(err, context.Canceled) {
		return ""
	}
	return "; check --server and the network, then rerun (an exchange is safe to repeat)"
}

// serverError turns a non-2xx answer into a *ServerError.
func (c *client) serverError(op string, resp *http.Response) error {
	e := &ServerError{Op: op, Server: c.base.Redacted(), Status: resp.StatusCode}
	b, _ := readAtMost(resp.Body, maxSmallAnswer)
	var body struct {
		Error  string `json:"error"`
		Reason string `json:"reason"`
	}
	if json.Unmarshal(b, &body) == nil && body.Error != "" {
		e.Message, e.Reason = printable(body.Error), printable(body.Reason)
	} else {
		e.Message = printable(strings.TrimSpace(string(b)))
		if e.Message == "" {
			e.Message = http.StatusText(resp.StatusCode)
		}
	}
	return e
}

// readAtMost reads r to the end, refusing more than limit bytes.
func readAtMost(r io.Reader, limit int64) ([]byte, error) {
	b, err := io.ReadAll(io.LimitReader(r, limit+1))
	if err != nil {
		return nil, err
	}
	if int64(len(b)) > limit {
		return nil, fmt.Errorf("%w: the answer exceeds %d bytes", ErrOversize, limit)
	}
	return b, nil
}

// printable makes text from the server safe to print: control and
// non-printing runes become '?', and it is cut to a sane length (the
// server's longest messages, with their advice, fit).
func printable(s string) string { return fault.Printable(s, 600) }
