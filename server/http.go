package server

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"regexp"
	"strings"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/airlock-project/airlock/blob"
	"github.com/airlock-project/airlock/catalog"
	"github.com/airlock-project/airlock/fault"
	"github.com/airlock-project/airlock/keys"
	"github.com/airlock-project/airlock/verify"
)

// Limits of the vendor protocol.
const (
	// MaxExchangeBody bounds the body of POST /v1/exchange (256 KiB).
	MaxExchangeBody = 256 << 10
	// maxAckBody bounds the body of an acknowledgement.
	maxAckBody = 4 << 10
	// bodyReadTimeout bounds the time to receive a request body.
	bodyReadTimeout = 30 * time.Second
	// replyWriteTimeout bounds the time to send a response other than a
	// package file (downloads use Config.WriteTimeout per write instead).
	replyWriteTimeout = 30 * time.Second
	// sendChunk is how much of a package is sent between two extensions of
	// the write deadline.
	sendChunk = 4 << 20
)

// Reasons of error responses (the "reason" field).
const (
	ReasonMalformed        = "malformed"
	ReasonTooLarge         = "too-large"
	ReasonUnknownSite      = "unknown-site"
	ReasonBadSignature     = "bad-signature"
	ReasonClock            = "clock"
	ReasonNotEntitled      = "not-entitled"
	ReasonDelivered        = "delivered"
	ReasonNotFound         = "not-found"
	ReasonMethodNotAllowed = "method-not-allowed"
	ReasonInternal         = "internal"
)

// ErrorResponse is the JSON body of every error response.
type ErrorResponse struct {
	Error  string `json:"error"`
	Reason string `json:"reason"`
}

// ExchangeResponse is the JSON body of a successful exchange.
type ExchangeResponse struct {
	Entitlement string     `json:"entitlement"`
	Downloads   []Download `json:"downloads"`
}

// AckRequest is the JSON body of an acknowledgement.
type AckRequest struct {
	SHA256 catalog.Digest `json:"sha256"`
}

// AckResponse is the JSON body of a successful acknowledgement.
type AckResponse struct {
	Acknowledged bool `json:"acknowledged"`
	First        bool `json:"first"`
}

// Handler returns the HTTP handler of the vendor protocol:
//
//	POST       /v1/exchange                       a download key -> ExchangeResponse
//	GET, HEAD  /v1/downloads/KEYID/SHA256         the package file (Range, ETag "SHA256")
//	POST       /v1/downloads/KEYID/SHA256/ack     AckRequest -> AckResponse
//
// Every response carries Cache-Control: no-store; errors are
// ErrorResponse JSON; the handler never redirects. Bodies are bounded
// (http.MaxBytesReader), responses other than downloads get a fixed write
// deadline, downloads a deadline extended as data flows. Each request is
// logged once on Config.Logger, with download key ids shortened to six
// characters. The handler is safe for concurrent use; it works with any
// http.Server, but Serve sets the timeouts that make it safe on the
// internet.
func (s *Server) Handler() http.Handler { return http.HandlerFunc(s.serveHTTP) }

// apiError is a refusal with its HTTP status and reason.
type apiError struct {
	status int
	reason string
	msg    string
	cause  error // logged for internal errors, never sent
}

func (e *apiError) Error() string { return e.msg }

func refuse(status int, reason, format string, args ...any) *apiError {
	return &apiError{status: status, reason: reason, msg: fmt.Sprintf(format, args...)}
}

func internal(err error) *apiError {
	return &apiError{status: http.StatusInternalServerError, reason: ReasonInternal,
		msg: "internal error at the vendor's update server; try again later, and tell the vendor if it persists", cause: err}
}

func (s *Server) serveHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	rw := &respWriter{ResponseWriter: w, rc: http.NewResponseController(w)}
	rw.Header().Set("Cache-Control", "no-store")
	rw.setWriteDeadline(replyWriteTimeout)
	defer func() {
		if v := recover(); v != nil {
			if v == http.ErrAbortHandler {
				panic(v)
			}
			rw.fail(internal(fmt.Errorf("panic: %v", v)))
		}
		s.logRequest(r, rw, time.Since(start))
	}()
	if err := s.route(rw, r); err != nil {
		rw.fail(err)
	}
}

// route dispatches by path and method. It does no redirects, and refuses
// escaped paths, so a path means exactly one thing.
func (s *Server) route(w *respWriter, r *http.Request) *apiError {
	p := r.URL.Path
	if r.URL.RawPath != "" || !strings.HasPrefix(p, "/v1/") {
		return refuse(http.StatusNotFound, ReasonNotFound, "no such endpoint; this server answers POST /v1/exchange and /v1/downloads/KEYID/SHA256")
	}
	if p == "/v1/exchange" {
		if r.Method != http.MethodPost {
			return notAllowed(w, http.MethodPost)
		}
		return s.handleExchange(w, r)
	}
	rest, ok := strings.CutPrefix(p, "/v1/downloads/")
	parts := strings.Split(rest, "/")
	switch {
	case ok && len(parts) == 2:
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			return notAllowed(w, "GET, HEAD")
		}
		id, d, err := parseDownload(parts[0], parts[1])
		if err != nil {
			return err
		}
		w.key = redact(id)
		return s.handleDownload(w, r, id, d)
	case ok && len(parts) == 3 && parts[2] == "ack":
		if r.Method != http.MethodPost {
			return notAllowed(w, http.MethodPost)
		}
		id, d, err := parseDownload(parts[0], parts[1])
		if err != nil {
			return err
		}
		w.key = redact(id)
		return s.handleAck(w, r, id, d)
	}
	return refuse(http.StatusNotFound, ReasonNotFound, "no such endpoint; this server answers POST /v1/exchange and /v1/downloads/KEYID/SHA256")
}

func notAllowed(w *respWriter, allow string) *apiError {
	w.Header().Set("Allow", allow)
	return refuse(http.StatusMethodNotAllowed, ReasonMethodNotAllowed, "method not allowed here; use %s", allow)
}

func parseDownload(ks, ds string) (catalog.KeyID, catalog.Digest, *apiError) {
	id, err := catalog.ParseKeyID(ks)
	if err != nil {
		return "", catalog.Digest{}, refuse(http.StatusBadRequest, ReasonMalformed, "the download URL does not hold a download key id; use the URLs the exchange returned")
	}
	d, err := catalog.ParseDigest(ds)
	if err != nil {
		return "", catalog.Digest{}, refuse(http.StatusBadRequest, ReasonMalformed, "the download URL does not end in a sha256 of 64 lowercase hex digits; use the URLs the exchange returned")
	}
	return id, d, nil
}

func (s *Server) handleExchange(w *respWriter, r *http.Request) *apiError {
	b, aerr := readBody(w, r, MaxExchangeBody, "the download key")
	if aerr != nil {
		return aerr
	}
	if len(b) == 0 {
		return refuse(http.StatusBadRequest, ReasonMalformed, "empty request: send the armored download key that 'airlock key new' wrote as the body")
	}
	res, err := s.Exchange(r.Context(), b)
	if err != nil {
		return exchangeError(err, b, s.now())
	}
	w.site, w.key = res.Site, redact(res.KeyID)
	return w.json(http.StatusOK, ExchangeResponse{Entitlement: string(res.Entitlement), Downloads: res.Downloads})
}

// exchangeError turns an error of Exchange into the protocol's refusal.
// The messages are for the courier on the unrestricted side, who prints
// them: what was refused and what to do. They speak only of the key that
// was sent (armored) and never of the server's own state: an internal
// error is logged, not sent.
func exchangeError(err error, armored []byte, now time.Time) *apiError {
	is := func(targets ...error) bool {
		for _, t := range targets {
			if errors.Is(err, t) {
				return true
			}
		}
		return false
	}
	switch {
	case is(verify.ErrExpired, verify.ErrNotYetValid, keys.ErrFutureSignature):
		return refuse(http.StatusUnprocessableEntity, ReasonClock, "%s", clockMessage(err, armored, now))
	case is(keys.ErrUnknownSigner, keys.ErrWrongRole):
		signer := "a key"
		var ve *keys.VerifyError
		if errors.As(err, &ve) && !ve.Signer.IsZero() {
			signer = "key " + ve.Signer.String()
		}
		return refuse(http.StatusForbidden, ReasonUnknownSite,
			"download key refused: it is signed by %s, which is not registered for any site at this vendor; ask the vendor to register the site's public key (REPO/site.pub.asc) with 'airlock-server site add', then exchange the key again", signer)
	case is(keys.ErrArmorTooLarge, keys.ErrSignatureTooLarge, catalog.ErrTooLarge):
		return refuse(http.StatusRequestEntityTooLarge, ReasonTooLarge, "download key refused: %s; send the file 'airlock key new' wrote, unchanged", keyProblem(err))
	case is(ErrSiteMismatch):
		return refuse(http.StatusForbidden, ReasonBadSignature, "%v", err)
	case is(keys.ErrKeyExpired, keys.ErrKeyRevoked):
		var ve *keys.VerifyError
		if errors.As(err, &ve) && ve.Role != keys.RoleSite {
			// Not the download key's signer but the vendor's own key,
			// which could not sign the entitlement: the server's state.
			return internal(err)
		}
		// keys states the fact; a new download key would be signed by the
		// same site key, so the remedy is the site key's registration.
		return refuse(http.StatusForbidden, ReasonBadSignature, "download key refused: %s; that is the site key registered at this vendor: the site needs a new site key, registered by the vendor ('airlock-server site add'), before its download keys are accepted again", keyProblem(err))
	case is(keys.ErrBadSignature, keys.ErrSignatureExpired,
		keys.ErrWeakAlgorithm, keys.ErrWeakHash, keys.ErrWeakRSA):
		return refuse(http.StatusForbidden, ReasonBadSignature, "download key refused: %s; make a new download key on the site's repository ('airlock key new') and send it unchanged", keyProblem(err))
	case is(fault.ErrVerification, fault.ErrPolicy, fault.ErrUsage):
		return refuse(http.StatusBadRequest, ReasonMalformed, "download key refused: %s; send the armored file 'airlock key new' wrote, unchanged", keyProblem(err))
	}
	return internal(err)
}

// keyProblem is the text of an error about the download key: when keys
// refused it, keys' own statement of the fact (without the "download key: "
// that verify puts before it: the refusal says so), else the error's.
func keyProblem(err error) string {
	var ve *keys.VerifyError
	if errors.As(err, &ve) {
		return ve.Error()
	}
	return err.Error()
}

// clockMessage explains a download key refused for its time: expired, or
// issued or signed later than the server's clock allows. The times come
// from the key itself (its signature verified, or nearly: only its date
// was refused), so that the courier can tell which clock is wrong.
func clockMessage(err error, armored []byte, now time.Time) string {
	var dk catalog.DownloadKey
	if payload, perr := keys.UnverifiedPayload(bytes.NewReader(armored)); perr == nil {
		dk, _ = catalog.DecodeDownloadKey(payload)
	}
	if dk.ID == "" {
		return fmt.Sprintf("download key refused: %s; check the clock of the restricted admin host that made it, and tell the vendor if its server's clock is wrong", keyProblem(err))
	}
	id, at := redact(dk.ID), now.UTC().Format(time.RFC3339)
	if errors.Is(err, verify.ErrExpired) {
		return fmt.Sprintf("download key %s of site %s expired at %s (the vendor's server time is %s); ask the restricted-side admin for a new download key ('airlock key new'); if this one was made just now, the clock of the restricted admin host that made it is wrong",
			id, dk.Site, dk.Expires.UTC().Format(time.RFC3339), at)
	}
	issued := dk.Issued
	var ve *keys.VerifyError
	if errors.As(err, &ve) && !ve.Created.IsZero() {
		issued = ve.Created
	}
	return fmt.Sprintf("download key %s of site %s was made at %s, later than the vendor's server time %s allows; check the clock of the restricted admin host that made it, and tell the vendor if its server's clock is wrong; then make a new download key ('airlock key new')",
		id, dk.Site, issued.UTC().Format(time.RFC3339), at)
}

func (s *Server) handleDownload(w *respWriter, r *http.Request, id catalog.KeyID, d catalog.Digest) *apiError {
	rec, err := s.lookupKey(id)
	if err != nil {
		return internal(err)
	}
	if rec == nil || !rec.entitled(d) {
		if rec == nil {
			return refuse(http.StatusNotFound, ReasonNotEntitled, "download key %s has not been exchanged at this server; exchange it first", redact(id))
		}
		return refuse(http.StatusNotFound, ReasonNotEntitled, "package %s is not in the entitlement of download key %s; exchange the key again and use the URLs it lists", d.Short(), redact(id))
	}
	w.site = rec.Site
	if del, ok, err := s.delivery(rec.Site, d); err != nil {
		return internal(err)
	} else if ok {
		return refuse(http.StatusGone, ReasonDelivered, "package %s was already delivered to site %s (acknowledged %s); a package is downloaded once: ask the vendor to reissue it ('airlock-server reissue --site %s --package %s')",
			del.Package, rec.Site, del.Acknowledged.Format(time.RFC3339), rec.Site, del.Package)
	}
	f, err := s.blobs.Open(d)
	if err != nil {
		if errors.Is(err, blob.ErrNotFound) {
			return internal(fmt.Errorf("package file %s missing from %s: %w", d, PackagesDir, err))
		}
		return internal(err)
	}
	defer f.Close()
	h := w.Header()
	h.Set("Content-Type", "application/octet-stream")
	h.Set("ETag", `"`+d.String()+`"`)
	w.progress = s.cfg.writeTimeout()
	http.ServeContent(w, r, "", time.Time{}, f)
	return nil
}

// delivery returns the ledger entry of site and d, if any.
func (s *Server) delivery(site string, d catalog.Digest) (Delivery, bool, error) {
	var del Delivery
	found := false
	err := s.db.View(func(tx *bolt.Tx) error {
		v := tx.Bucket(bucketLedger).Get(ledgerKey(site, d))
		if v == nil {
			return nil
		}
		found = true
		return decode(v, &del)
	})
	return del, found, err
}

func (s *Server) handleAck(w *respWriter, r *http.Request, id catalog.KeyID, d catalog.Digest) *apiError {
	b, aerr := readBody(w, r, maxAckBody, "the acknowledgement")
	if aerr != nil {
		return aerr
	}
	var req AckRequest
	if err := catalog.DecodeStrict(b, &req, []string{"sha256"}); err != nil {
		return refuse(http.StatusBadRequest, ReasonMalformed, `acknowledgement refused: %v; send {"sha256":"<the package's sha256>"}`, err)
	}
	if req.SHA256 != d {
		return refuse(http.StatusBadRequest, ReasonMalformed, "acknowledgement refused: the body names sha256 %s but the URL names %s; acknowledge a package with the digest of the file received", req.SHA256.Short(), d.Short())
	}
	res, err := s.Ack(r.Context(), id, d)
	if errors.Is(err, errNotEntitled) {
		return refuse(http.StatusNotFound, ReasonNotEntitled, "acknowledgement refused: %v", err)
	}
	if err != nil {
		return internal(err)
	}
	w.site = res.Delivery.Site
	return w.json(http.StatusOK, AckResponse{Acknowledged: true, First: res.First})
}

// readBody reads a request body of at most limit bytes within
// bodyReadTimeout.
func readBody(w *respWriter, r *http.Request, limit int64, what string) ([]byte, *apiError) {
	tooLarge := refuse(http.StatusRequestEntityTooLarge, ReasonTooLarge, "%s is larger than %d bytes; send the file as written, nothing else", what, limit)
	if r.ContentLength > limit {
		return nil, tooLarge
	}
	_ = w.rc.SetReadDeadline(time.Now().Add(bodyReadTimeout))
	b, err := io.ReadAll(http.MaxBytesReader(w, r.Body, limit))
	var mbe *http.MaxBytesError
	if errors.As(err, &mbe) {
		return nil, tooLarge
	}
	if err != nil {
		return nil, refuse(http.StatusBadRequest, ReasonMalformed, "could not read %s: %v; send it again", what, err)
	}
	return b, nil
}

// respWriter records what the access log needs and moves the write
// deadline forward as a download progresses.
type respWriter struct {
	http.ResponseWriter
	rc       *http.ResponseController
	status   int
	bytes    int64
	progress time.Duration // > 0: each write may take this long
	site     string
	key      string // already redacted
	reason   string
	cause    error
}

func (w *respWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

func (w *respWriter) setWriteDeadline(d time.Duration) {
	// A ResponseWriter without deadlines (a test recorder) is fine.
	_ = w.rc.SetWriteDeadline(time.Now().Add(d))
}

func (w *respWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *respWriter) Write(p []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	if w.progress > 0 {
		w.setWriteDeadline(w.progress)
	}
	n, err := w.ResponseWriter.Write(p)
	w.bytes += int64(n)
	return n, err
}

// ReadFrom sends src in chunks, extending the write deadline before each,
// and keeps the underlying ReaderFrom (sendfile) when there is one.
func (w *respWriter) ReadFrom(src io.Reader) (int64, error) {
	rf, ok := w.ResponseWriter.(io.ReaderFrom)
	if !ok || w.progress <= 0 {
		return io.Copy(writerOnly{w}, src)
	}
	if w.status == 0 {
		w.status = http.StatusOK
	}
	var total int64
	for {
		w.setWriteDeadline(w.progress)
		var chunk *io.LimitedReader
		lr, limited := src.(*io.LimitedReader)
		if limited {
			if lr.N <= 0 {
				return total, nil
			}
			chunk = &io.LimitedReader{R: lr.R, N: min(lr.N, sendChunk)}
		} else {
			chunk = &io.LimitedReader{R: src, N: sendChunk}
		}
		want := chunk.N
		n, err := rf.ReadFrom(chunk)
		total += n
		w.bytes += n
		if limited {
			lr.N -= n
		}
		if err != nil || n < want {
			return total, err
		}
	}
}

// writerOnly hides ReadFrom so that io.Copy uses Write.
type writerOnly struct{ io.Writer }

func (w *respWriter) json(status int, v any) *apiError {
	b, err := catalog.EncodeCanonical(v)
	if err != nil {
		return internal(err)
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	w.Write(b)
	return nil
}

// fail sends e as the response, unless a response was already started.
func (w *respWriter) fail(e *apiError) {
	w.reason, w.cause = e.reason, e.cause
	if w.status != 0 {
		return
	}
	w.json(e.status, ErrorResponse{Error: e.msg, Reason: e.reason})
}

// keyIDPattern matches anything spelled like a download key id, as a whole
// word: a run inside a longer word (a hex digest) is not a key id.
var keyIDPattern = regexp.MustCompile(`\b[a-z2-7]{26}\b`)

// scrub shortens every download key id in s and bounds its length, so that
// nothing logged holds a key id in full.
func scrub(s string) string {
	s = keyIDPattern.ReplaceAllStringFunc(s, func(m string) string { return m[:6] + "…" })
	if len(s) > 300 {
		s = s[:300] + "…"
	}
	return s
}

func (s *Server) logRequest(r *http.Request, w *respWriter, d time.Duration) {
	status := w.status
	if status == 0 {
		status = http.StatusOK
	}
	attrs := []slog.Attr{
		slog.String("method", r.Method),
		slog.String("path", scrub(r.URL.EscapedPath())),
		slog.Int("status", status),
		slog.Int64("bytes", w.bytes),
		slog.Duration("duration", d),
		slog.String("remote", r.RemoteAddr),
	}
	if w.site != "" {
		attrs = append(attrs, slog.String("site", w.site))
	}
	if w.key != "" {
		attrs = append(attrs, slog.String("key", w.key))
	}
	if w.reason != "" {
		attrs = append(attrs, slog.String("reason", w.reason))
	}
	level := slog.LevelInfo
	if w.cause != nil {
		level = slog.LevelError
		attrs = append(attrs, slog.String("error", scrub(w.cause.Error())))
	}
	s.log.LogAttrs(r.Context(), level, "request", attrs...)
}
