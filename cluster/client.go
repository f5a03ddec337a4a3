package cluster

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/airlock-project/airlock/catalog"
	"github.com/airlock-project/airlock/node"
	"github.com/airlock-project/airlock/repo"
)

// Defaults of ClientOptions.
const (
	DefaultRequestTimeout = 15 * time.Second
	DefaultDialTimeout    = 10 * time.Second
)

// uploadAnswerTimeout bounds the wait for any answer once a request is
// sent, the end of an upload included.
const uploadAnswerTimeout = 5 * time.Minute

// maxAnswer bounds a node's JSON answer (a status lists staged packages and
// jobs: small).
const maxAnswer = 1 << 20

// ClientOptions tune a Client. The zero value is usable.
type ClientOptions struct {
	// RequestTimeout bounds every call but the upload of package bytes,
	// which lasts as long as it moves; zero means DefaultRequestTimeout.
	RequestTimeout time.Duration
	// DialTimeout bounds connecting and the TLS handshake; zero means
	// DefaultDialTimeout.
	DialTimeout time.Duration
}

// Client talks to one node agent over HTTPS, accepting only the pinned
// certificate, with the node's bearer token. It is safe for concurrent use.
// Close releases its idle connections.
type Client struct {
	node    string
	base    *url.URL
	token   string
	pinned  repo.CertFingerprint
	timeout time.Duration
	http    *http.Client
}

// NewClient returns a client for the registered node n.
func NewClient(n repo.Node, o ClientOptions) (*Client, error) {
	if err := repo.ValidateNode(n); err != nil {
		return nil, err
	}
	base, err := url.Parse(n.URL)
	if err != nil {
		return nil, fmt.Errorf("node %s: url %q: %w", n.Name, n.URL, err)
	}
	base.Path = ""
	if o.RequestTimeout <= 0 {
		o.RequestTimeout = DefaultRequestTimeout
	}
	if o.DialTimeout <= 0 {
		o.DialTimeout = DefaultDialTimeout
	}
	c := &Client{node: n.Name, base: base, token: n.Token, pinned: n.Fingerprint, timeout: o.RequestTimeout}
	tlsConf := &tls.Config{
		MinVersion: tls.VersionTLS13,
		// The node's certificate is self-signed: it is trusted by its pinned
		// fingerprint alone, checked in VerifyPeerCertificate.
		InsecureSkipVerify:    true,
		VerifyPeerCertificate: c.verifyPeer,
	}
	dialer := &net.Dialer{Timeout: o.DialTimeout, KeepAlive: 30 * time.Second}
	c.http = &http.Client{
		Transport: &http.Transport{
			Proxy:               nil,
			DialContext:         dialer.DialContext,
			TLSClientConfig:     tlsConf,
			TLSHandshakeTimeout: o.DialTimeout,
			// The answer to the last chunk of an upload comes after the node
			// has checked the whole package's digest.
			ResponseHeaderTimeout: uploadAnswerTimeout,
			MaxIdleConnsPerHost:   4,
			IdleConnTimeout:       90 * time.Second,
			ExpectContinueTimeout: time.Second,
			ForceAttemptHTTP2:     false,
		},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	return c, nil
}

// Node returns the name of the node the client talks to.
func (c *Client) Node() string { return c.node }

// URL returns the node's base URL.
func (c *Client) URL() string { return c.base.String() }

// Close releases the client's idle connections.
func (c *Client) Close() { c.http.CloseIdleConnections() }

// verifyPeer accepts exactly the pinned leaf certificate.
func (c *Client) verifyPeer(raw [][]byte, _ [][]*x509.Certificate) error {
	if len(raw) == 0 {
		return &FingerprintError{Node: c.node, Pinned: c.pinned}
	}
	got := repo.CertFingerprint(sha256.Sum256(raw[0]))
	if subtle.ConstantTimeCompare(got[:], c.pinned[:]) != 1 {
		return &FingerprintError{Node: c.node, Got: got, Pinned: c.pinned}
	}
	return nil
}

// Status returns the node's status (GET /v1/status).
func (c *Client) Status(ctx context.Context) (node.Status, error) {
	var st node.Status
	err := c.call(ctx, http.MethodGet, "/v1/status", nil, nil, &st, "status")
	return st, err
}

// PutEntitlement sends the armored entitlement that lists package d, which
// the node verifies before it accepts d's bytes.
func (c *Client) PutEntitlement(ctx context.Context, d catalog.Digest, armored []byte) (node.StagedPackage, error) {
	var sp node.StagedPackage
	err := c.call(ctx, http.MethodPut, "/v1/staged/"+d.String()+"/entitlement", nil, bytes.NewReader(armored), &sp, "send the entitlement of "+d.Short())
	return sp, err
}

// Staged is how much of a package a node holds.
type Staged struct {
	// Known is false when the node knows nothing of the package (no
	// entitlement yet): send the entitlement first.
	Known bool
	// Offset is the bytes held, Size the package's signed size.
	Offset, Size int64
	// Complete is true when the package is staged and verified.
	Complete bool
}

// StagedOffset asks how much of package d the node holds (HEAD
// /v1/staged/{sha256}).
func (c *Client) StagedOffset(ctx context.Context, d catalog.Digest) (Staged, error) {
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	op := "ask for staged " + d.Short()
	resp, err := c.do(ctx, http.MethodHead, "/v1/staged/"+d.String(), nil, nil, -1)
	if err != nil {
		return Staged{}, c.transportError(op, err)
	}
	resp.Body.Close()
	switch {
	case resp.StatusCode == http.StatusNotFound:
		return Staged{}, nil
	case resp.StatusCode != http.StatusOK:
		return Staged{}, &APIError{Node: c.node, Op: op, Status: resp.StatusCode, Code: codeOf(resp.StatusCode)}
	}
	off, err1 := strconv.ParseInt(resp.Header.Get(node.HeaderOffset), 10, 64)
	size, err2 := strconv.ParseInt(resp.Header.Get(node.HeaderSize), 10, 64)
	complete, err3 := strconv.ParseBool(resp.Header.Get(node.HeaderComplete))
	if err1 != nil || err2 != nil || err3 != nil || off < 0 || size < 0 || off > size {
		return Staged{}, fmt.Errorf("node %s: %s: malformed answer headers (%s %q, %s %q, %s %q)", c.node, op,
			node.HeaderOffset, resp.Header.Get(node.HeaderOffset), node.HeaderSize, resp.Header.Get(node.HeaderSize),
			node.HeaderComplete, resp.Header.Get(node.HeaderComplete))
	}
	return Staged{Known: true, Offset: off, Size: size, Complete: complete}, nil
}

// Upload sends length bytes of package d, read from r, to be appended at
// offset (which must be what StagedOffset reported). It lasts as long as r
// delivers; the caller bounds it with ctx. The answer says how much the
// node now holds and whether the package is complete and verified.
func (c *Client) Upload(ctx context.Context, d catalog.Digest, offset, length int64, r io.Reader) (node.StagedPackage, error) {
	op := fmt.Sprintf("upload %s from byte %d", d.Short(), offset)
	h := http.Header{node.HeaderOffset: {strconv.FormatInt(offset, 10)}, "Content-Type": {"application/octet-stream"}}
	resp, err := c.do(ctx, http.MethodPut, "/v1/staged/"+d.String(), h, r, length)
	if err != nil {
		return node.StagedPackage{}, c.transportError(op, err)
	}
	defer resp.Body.Close()
	var sp node.StagedPackage
	return sp, c.answer(resp, op, &sp)
}

// Install asks the node to install the staged package d and returns the
// job it queued (or the job already queued for d).
func (c *Client) Install(ctx context.Context, d catalog.Digest) (node.Job, error) {
	var j node.Job
	body, _ := json.Marshal(node.InstallRequest{SHA256: d})
	err := c.call(ctx, http.MethodPost, "/v1/install", nil, bytes.NewReader(body), &j, "install "+d.Short())
	return j, err
}

// Job returns the install job id.
func (c *Client) Job(ctx context.Context, id string) (node.Job, error) {
	var j node.Job
	err := c.call(ctx, http.MethodGet, "/v1/jobs/"+url.PathEscape(id), nil, nil, &j, "ask for job "+id)
	return j, err
}

// Jobs returns the node's job history, newest first.
func (c *Client) Jobs(ctx context.Context) ([]node.Job, error) {
	var js []node.Job
	err := c.call(ctx, http.MethodGet, "/v1/jobs", nil, nil, &js, "list jobs")
	return js, err
}

// Drain stops the node accepting new client connections.
func (c *Client) Drain(ctx context.Context) (node.Status, error) {
	var st node.Status
	err := c.call(ctx, http.MethodPost, "/v1/drain", nil, nil, &st, "drain")
	return st, err
}

// Undrain lets the node accept client connections again.
func (c *Client) Undrain(ctx context.Context) (node.Status, error) {
	var st node.Status
	err := c.call(ctx, http.MethodPost, "/v1/undrain", nil, nil, &st, "undrain")
	return st, err
}

// SetRole gives the node role (primary, backup, traffic, management).
func (c *Client) SetRole(ctx context.Context, role string) (node.Status, error) {
	var st node.Status
	body, _ := json.Marshal(node.RoleRequest{Role: role})
	err := c.call(ctx, http.MethodPost, "/v1/role", nil, bytes.NewReader(body), &st, "set role "+role)
	return st, err
}

// call makes a short request bounded by the request timeout and decodes a
// JSON answer into out.
func (c *Client) call(ctx context.Context, method, path string, h http.Header, body *bytes.Reader, out any, op string) error {
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	var r io.Reader
	length := int64(0)
	if body != nil {
		r, length = body, int64(body.Len())
		if h == nil {
			h = http.Header{}
		}
		h.Set("Content-Type", "application/json")
	}
	resp, err := c.do(ctx, method, path, h, r, length)
	if err != nil {
		return c.transportError(op, err)
	}
	defer resp.Body.Close()
	return c.answer(resp, op, out)
}

// do sends one request with the token.
func (c *Client) do(ctx context.Context, method, path string, h http.Header, body io.Reader, length int64) (*http.Response, error) {
	u := *c.base
	u.Path = path
	req, err := http.NewRequestWithContext(ctx, method, u.String(), body)
	if err != nil {
		return nil, err
	}
	for k, v := range h {
		req.Header[k] = v
	}
	if body != nil && length >= 0 {
		req.ContentLength = length
		if length == 0 {
			req.Body = http.NoBody
		}
	}
	req.Header.Set("Authorization", "Bearer "+c.token)
	req.Header.Set("Accept", "application/json")
	return c.http.Do(req)
}

// answer decodes a 2xx JSON answer into out, or returns the node's error.
func (c *Client) answer(resp *http.Response, op string, out any) error {
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxAnswer+1))
	if err != nil {
		return c.transportError(op, err)
	}
	if len(data) > maxAnswer {
		return fmt.Errorf("node %s: %s: answer larger than %d bytes", c.node, op, maxAnswer)
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		e := &APIError{Node: c.node, Op: op, Status: resp.StatusCode}
		var ae node.APIError
		if json.Unmarshal(data, &ae) == nil && (ae.Error != "" || ae.Code != "") {
			e.Message, e.Code = ae.Error, ae.Code
		} else {
			e.Code = codeOf(resp.StatusCode)
		}
		return e
	}
	if out == nil {
		return nil
	}
	if err := json.Unmarshal(data, out); err != nil {
		if resp.Request != nil && resp.Request.Context().Err() != nil {
			// Cut short by our own interruption: not the node's fault.
			return c.transportError(op, resp.Request.Context().Err())
		}
		return fmt.Errorf("node %s: %s: undecodable answer: %v", c.node, op, err)
	}
	return nil
}

// transportError turns a failed exchange into a *FingerprintError, a
// context error, or an *UnreachableError.
func (c *Client) transportError(op string, err error) error {
	var fe *FingerprintError
	if errors.As(err, &fe) {
		return fe
	}
	if errors.Is(err, context.Canceled) {
		return err
	}
	var ue *url.Error
	if errors.As(err, &ue) {
		err = ue.Err
	}
	return &UnreachableError{Node: c.node, URL: c.base.String(), Err: fmt.Errorf("%s: %w", op, err)}
}

// codeOf names the API error code of an answer without a body (HEAD).
func codeOf(status int) string {
	switch status {
	case http.StatusUnauthorized:
		return "unauthorized"
	case http.StatusServiceUnavailable:
		return "busy"
	case http.StatusNotFound:
		return "not-found"
	}
	return ""
}
