package node

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/airlock-project/airlock/catalog"
	"github.com/airlock-project/airlock/fault"
	"github.com/airlock-project/airlock/keys"
)

// Request limits.
const (
	maxJSONBody = 64 << 10
	// uploadIdle is how long an upload body may stay silent.
	uploadIdle = 2 * time.Minute
)

// Handler returns the node API (see the package documentation). Every
// request must carry the bearer token; requests are logged without it.
func (a *Agent) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/status", a.writeStatus)
	mux.HandleFunc("PUT /v1/staged/{sha256}/entitlement", a.handlePutEntitlement)
	mux.HandleFunc("HEAD /v1/staged/{sha256}", a.handleStaged)
	mux.HandleFunc("GET /v1/staged/{sha256}", a.handleStaged)
	mux.HandleFunc("PUT /v1/staged/{sha256}", a.handlePutData)
	mux.HandleFunc("POST /v1/install", a.handleInstall)
	mux.HandleFunc("GET /v1/jobs", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, a.Jobs())
	})
	mux.HandleFunc("GET /v1/jobs/{id}", func(w http.ResponseWriter, r *http.Request) {
		j, err := a.Job(r.PathValue("id"))
		if err != nil {
			a.writeError(w, r, err)
			return
		}
		writeJSON(w, http.StatusOK, j)
	})
	mux.HandleFunc("POST /v1/drain", func(w http.ResponseWriter, r *http.Request) { a.handleDrain(w, r, true) })
	mux.HandleFunc("POST /v1/undrain", func(w http.ResponseWriter, r *http.Request) { a.handleDrain(w, r, false) })
	mux.HandleFunc("POST /v1/role", a.handleRole)
	return a.logRequests(a.authenticate(mux))
}

// authenticate refuses requests without the right bearer token. The
// comparison is of SHA-256 digests in constant time, so that neither the
// token's bytes nor its length leak through timing.
func (a *Agent) authenticate(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		tok, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		sum := sha256.Sum256([]byte(strings.TrimSpace(tok)))
		if !ok || subtle.ConstantTimeCompare(sum[:], a.token[:]) != 1 {
			w.Header().Set("WWW-Authenticate", `Bearer realm="airlock-node"`)
			// Say which node refused, never what was sent: no token, even
			// a wrong one, goes into an answer or a log.
			a.writeError(w, r, fmt.Errorf("%w for node %s (it accepts only 'Authorization: Bearer' with the content of its token file)", ErrUnauthorized, a.Name()))
			return
		}
		next.ServeHTTP(w, r)
	})
}

// statusWriter records the status of an answer for the request log.
type statusWriter struct {
	http.ResponseWriter
	status int
}

func (s *statusWriter) WriteHeader(code int) {
	if s.status == 0 {
		s.status = code
	}
	s.ResponseWriter.WriteHeader(code)
}

func (s *statusWriter) Write(b []byte) (int, error) {
	if s.status == 0 {
		s.status = http.StatusOK
	}
	return s.ResponseWriter.Write(b)
}

// Unwrap lets http.ResponseController reach the connection.
func (s *statusWriter) Unwrap() http.ResponseWriter { return s.ResponseWriter }

// logRequests logs every request: method, path, status, duration, client.
// Headers are never logged, so neither is the token.
func (a *Agent) logRequests(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		sw := &statusWriter{ResponseWriter: w}
		next.ServeHTTP(sw, r)
		level := slog.LevelInfo
		if (r.Method == http.MethodGet || r.Method == http.MethodHead) && sw.status < 400 {
			level = slog.LevelDebug // polling is not news
		}
		a.log.Log(r.Context(), level, "request", "method", r.Method, "path", r.URL.Path, "status", sw.status,
			"duration", time.Since(start).Round(time.Microsecond), "remote", r.RemoteAddr)
	})
}

func (a *Agent) handlePutEntitlement(w http.ResponseWriter, r *http.Request) {
	d, err := pathDigest(r)
	if err != nil {
		a.writeError(w, r, fmt.Errorf("node %s: %w", a.Name(), err))
		return
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, catalog.MaxDocumentSize+1))
	if err != nil {
		a.writeError(w, r, fmt.Errorf("node %s: read the entitlement for package %s: %w", a.Name(), d.Short(), err))
		return
	}
	sp, err := a.PutEntitlement(d, body)
	if err != nil {
		a.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, sp)
}

func (a *Agent) handleStaged(w http.ResponseWriter, r *http.Request) {
	d, err := pathDigest(r)
	if err != nil {
		a.writeError(w, r, fmt.Errorf("node %s: %w", a.Name(), err))
		return
	}
	sp, err := a.StagedInfo(d)
	if err != nil {
		a.writeError(w, r, err)
		return
	}
	setStagedHeaders(w, sp)
	writeJSON(w, http.StatusOK, sp)
}

func setStagedHeaders(w http.ResponseWriter, sp StagedPackage) {
	w.Header().Set(HeaderOffset, strconv.FormatInt(sp.Offset, 10))
	w.Header().Set(HeaderSize, strconv.FormatInt(sp.Size, 10))
	w.Header().Set(HeaderComplete, strconv.FormatBool(sp.Complete))
}

func (a *Agent) handlePutData(w http.ResponseWriter, r *http.Request) {
	d, err := pathDigest(r)
	if err != nil {
		a.writeError(w, r, fmt.Errorf("node %s: %w", a.Name(), err))
		return
	}
	c, err := parseChunk(r)
	if err != nil {
		a.writeError(w, r, fmt.Errorf("node %s: %w", a.Name(), err))
		return
	}
	body := &idleReader{r: r.Body, rc: http.NewResponseController(w), idle: uploadIdle}
	sp, err := a.PutData(r.Context(), d, c, body)
	if errors.Is(err, ErrOffset) {
		w.Header().Set(HeaderOffset, strconv.FormatInt(sp.Offset, 10))
	}
	if err != nil {
		a.writeError(w, r, err)
		return
	}
	setStagedHeaders(w, sp)
	writeJSON(w, http.StatusOK, sp)
}

// parseChunk reads where an upload body belongs from X-Airlock-Offset or
// Content-Range ("bytes N-M/TOTAL" or "bytes N-M/*"); neither means 0.
func parseChunk(r *http.Request) (Chunk, error) {
	c := Chunk{Length: r.ContentLength, Total: -1}
	if c.Length < 0 {
		c.Length = -1
	}
	off := r.Header.Get(HeaderOffset)
	cr := r.Header.Get("Content-Range")
	if off != "" && cr != "" {
		return c, fmt.Errorf("%w: send %s or Content-Range, not both", ErrBadRequest, HeaderOffset)
	}
	if off != "" {
		n, err := strconv.ParseInt(off, 10, 64)
		if err != nil || n < 0 {
			return c, fmt.Errorf("%w: %s %q is not a byte offset", ErrBadRequest, HeaderOffset, off)
		}
		c.Offset = n
		return c, nil
	}
	if cr == "" {
		return c, nil
	}
	spec, ok := strings.CutPrefix(cr, "bytes ")
	rng, total, ok2 := strings.Cut(spec, "/")
	first, last, ok3 := strings.Cut(rng, "-")
	start, err1 := strconv.ParseInt(first, 10, 64)
	end, err2 := strconv.ParseInt(last, 10, 64)
	if !ok || !ok2 || !ok3 || err1 != nil || err2 != nil || start < 0 || end < start {
		return c, fmt.Errorf("%w: Content-Range %q: want 'bytes FIRST-LAST/SIZE'", ErrBadRequest, cr)
	}
	if total != "*" {
		t, err := strconv.ParseInt(total, 10, 64)
		if err != nil || t <= end {
			return c, fmt.Errorf("%w: Content-Range %q: bad total size", ErrBadRequest, cr)
		}
		c.Total = t
	}
	n := end - start + 1
	if n <= 0 {
		return c, fmt.Errorf("%w: Content-Range %q: range too large", ErrBadRequest, cr)
	}
	if c.Length >= 0 && c.Length != n {
		return c, fmt.Errorf("%w: Content-Range %q announces %d bytes, Content-Length %d", ErrBadRequest, cr, n, c.Length)
	}
	c.Offset, c.Length = start, n
	return c, nil
}

func (a *Agent) handleInstall(w http.ResponseWriter, r *http.Request) {
	var req InstallRequest
	if err := decodeJSON(r, &req, "sha256"); err != nil {
		a.writeError(w, r, fmt.Errorf("node %s: install: %w", a.Name(), err))
		return
	}
	j, err := a.Submit(req.SHA256)
	if err != nil {
		a.writeError(w, r, err)
		return
	}
	w.Header().Set("Location", "/v1/jobs/"+j.ID)
	writeJSON(w, http.StatusAccepted, j)
}

// writeStatus answers with the node's status, its connections counted
// now. A failed count is reported in the status, not as an error.
func (a *Agent) writeStatus(w http.ResponseWriter, r *http.Request) {
	_ = a.RefreshConnections(r.Context())
	writeJSON(w, http.StatusOK, a.Status())
}

// handleDrain drains or undrains the node. Its hook runs to its end or
// its timeout even if the client goes away, so that a drain is never left
// half done by an impatient client.
func (a *Agent) handleDrain(w http.ResponseWriter, r *http.Request, drained bool) {
	if err := a.SetDrained(context.WithoutCancel(r.Context()), drained); err != nil {
		a.writeError(w, r, err)
		return
	}
	a.writeStatus(w, r)
}

// handleRole changes the node's role; like a drain, its hook is not
// cancelled when the client goes away.
func (a *Agent) handleRole(w http.ResponseWriter, r *http.Request) {
	var req RoleRequest
	if err := decodeJSON(r, &req, "role"); err != nil {
		a.writeError(w, r, fmt.Errorf("node %s: role: %w", a.Name(), err))
		return
	}
	if err := a.SetRole(context.WithoutCancel(r.Context()), req.Role); err != nil {
		a.writeError(w, r, err)
		return
	}
	a.writeStatus(w, r)
}

// decodeJSON strictly decodes a small JSON request body.
func decodeJSON(r *http.Request, v any, required ...string) error {
	b, err := io.ReadAll(io.LimitReader(r.Body, maxJSONBody+1))
	if err != nil {
		return fmt.Errorf("read the request: %w", err)
	}
	if len(b) > maxJSONBody {
		return fmt.Errorf("%w: body over %d bytes", ErrTooLarge, maxJSONBody)
	}
	if err := catalog.DecodeStrict(bytes.TrimSpace(b), v, required); err != nil {
		return fmt.Errorf("%w: %v", ErrBadRequest, err)
	}
	return nil
}

func pathDigest(r *http.Request) (catalog.Digest, error) {
	s := r.PathValue("sha256")
	d, err := catalog.ParseDigest(s)
	if err != nil || d.IsZero() {
		return catalog.Digest{}, fmt.Errorf("%w: %q is not a sha256 digest (64 lowercase hex digits)", ErrBadRequest, s)
	}
	return d, nil
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		status = http.StatusInternalServerError
		b, _ = json.Marshal(APIError{Error: "encode answer: " + err.Error(), Code: "internal"})
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", strconv.Itoa(len(b)+1))
	w.WriteHeader(status)
	w.Write(append(b, '\n'))
}

// writeError answers with the status and code of err's kind (statusOf).
func (a *Agent) writeError(w http.ResponseWriter, r *http.Request, err error) {
	status, code := statusOf(err)
	if status >= 500 {
		a.log.Error("request failed", "method", r.Method, "path", r.URL.Path, "err", err)
	}
	writeJSON(w, status, APIError{Error: err.Error(), Code: code})
}

// statusOf maps an error to its HTTP status and APIError code.
func statusOf(err error) (int, string) {
	for _, m := range []struct {
		err    error
		status int
		code   string
	}{
		{ErrUnauthorized, http.StatusUnauthorized, "unauthorized"},
		{ErrTooLarge, http.StatusRequestEntityTooLarge, "too-large"},
		{ErrBusy, http.StatusServiceUnavailable, "busy"},
		{ErrNotFound, http.StatusNotFound, "not-found"},
		{ErrNoEntitlement, http.StatusConflict, "no-entitlement"},
		{ErrOffset, http.StatusConflict, "offset-mismatch"},
		{ErrUploadBusy, http.StatusConflict, "upload-in-progress"},
		{ErrNotStaged, http.StatusConflict, "not-staged"},
		{ErrAlreadyInstalled, http.StatusConflict, "already-installed"},
		{ErrDowngrade, http.StatusConflict, "downgrade"},
		{ErrRequires, http.StatusConflict, "requires-unmet"},
		{keys.ErrUnknownSigner, http.StatusForbidden, "untrusted-signer"},
		{keys.ErrWrongRole, http.StatusForbidden, "untrusted-signer"},
		{ErrNotEntitled, http.StatusUnprocessableEntity, "not-entitled"},
		{ErrDigest, http.StatusUnprocessableEntity, "digest-mismatch"},
		{ErrArchive, http.StatusUnprocessableEntity, "unsafe-archive"},
		{ErrHook, http.StatusInternalServerError, "hook-failed"},
		{ErrInterrupted, http.StatusServiceUnavailable, "interrupted"},
		{ErrNoVendorKey, http.StatusInternalServerError, "no-vendor-key"},
		{ErrBadRequest, http.StatusBadRequest, "bad-request"},
	} {
		if errors.Is(err, m.err) {
			return m.status, m.code
		}
	}
	var mbe *http.MaxBytesError
	switch {
	case errors.As(err, &mbe):
		return http.StatusRequestEntityTooLarge, "too-large"
	case errors.Is(err, fault.ErrVerification):
		return http.StatusUnprocessableEntity, "verification-failed"
	case errors.Is(err, fault.ErrPolicy):
		return http.StatusConflict, "refused"
	}
	return http.StatusInternalServerError, "internal"
}

// idleReader extends the connection's read deadline before every read, so
// that an upload may last as long as it keeps moving, and a silent one ends.
type idleReader struct {
	r    io.Reader
	rc   *http.ResponseController
	idle time.Duration
}

func (i *idleReader) Read(p []byte) (int, error) {
	_ = i.rc.SetReadDeadline(time.Now().Add(i.idle)) // unsupported by some writers: then the server's own timeouts apply
	return i.r.Read(p)
}
