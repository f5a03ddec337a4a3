package server

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"github.com/airlock-project/airlock/catalog"
	"github.com/airlock-project/airlock/fault"
	"github.com/airlock-project/airlock/progress"
)

// Admin is what the admin commands need from a store: a *Server opened
// directly, or a running server reached over its admin socket. The
// methods have the contracts of the *Server methods of the same names.
type Admin interface {
	Publish(ctx context.Context, req PublishRequest, rep progress.Reporter) (PublishResult, error)
	AddSite(ctx context.Context, name string, armoredKey []byte) (Site, error)
	ReplaceSiteKey(ctx context.Context, name string, armoredKey []byte) (Site, error)
	Reissue(ctx context.Context, site, ref string) (Delivery, error)
	Catalog(ctx context.Context) ([]catalog.Package, error)
	Sites(ctx context.Context) ([]Site, error)
	Close() error
}

// Connect returns an Admin for the store in cfg.Dir: the running server's
// admin socket if one answers, the store opened directly otherwise. If the
// database is held by a process that does not answer, the error matches
// ErrInUse. The caller closes the Admin.
func Connect(ctx context.Context, cfg Config) (Admin, error) {
	if c := dialAdmin(ctx, cfg.Dir); c != nil {
		return c, nil
	}
	s, err := Open(cfg)
	if errors.Is(err, ErrInUse) {
		// A server may have started meanwhile, and taken the lock first.
		if c := dialAdmin(ctx, cfg.Dir); c != nil {
			return c, nil
		}
	}
	if err != nil {
		return nil, err
	}
	return s, nil
}

// Admin socket paths.
const (
	adminPing    = "/admin/v1/ping"
	adminPublish = "/admin/v1/publish"
	adminSites   = "/admin/v1/sites"
	adminReissue = "/admin/v1/reissue"
	adminCatalog = "/admin/v1/catalog"
)

// maxAdminBody bounds admin requests (a site key is the largest).
const maxAdminBody = 2 << 20

// sitesResponse is the answer of 'site list', also its --json output.
type sitesResponse struct {
	Sites []Site `json:"sites"`
}

type siteRequest struct {
	Replace bool   `json:"replace,omitempty"`
	Name    string `json:"name"`
	Key     string `json:"key"`
}

type reissueRequest struct {
	Site    string `json:"site"`
	Package string `json:"package"`
}

type catalogResponse struct {
	Packages []catalog.Package `json:"packages"`
}

// adminError carries an error and its class across the socket.
type adminError struct {
	Error string `json:"error"`
	Class string `json:"class"`
}

func classOf(err error) string {
	switch fault.Code(err) {
	case fault.ExitUsage:
		return "usage"
	case fault.ExitVerification:
		return "verification"
	case fault.ExitPolicy:
		return "policy"
	}
	return "operational"
}

func (e adminError) err() error {
	switch e.Class {
	case "usage":
		return fault.Usage(e.Error)
	case "verification":
		return fault.Verification(e.Error)
	case "policy":
		return fault.Policy(e.Error)
	}
	return errors.New(e.Error)
}

// adminHandler answers the admin commands on the unix socket. Only the
// store's owner can connect (socket mode 0600, directory 0700).
func (s *Server) adminHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET "+adminPing, func(w http.ResponseWriter, r *http.Request) {
		adminReply(w, map[string]string{"vendor": s.pub.Fingerprint().String()}, nil)
	})
	mux.HandleFunc("POST "+adminPublish, func(w http.ResponseWriter, r *http.Request) {
		var req PublishRequest
		if err := adminRead(r, &req); err != nil {
			adminReply(w, nil, err)
			return
		}
		if !filepath.IsAbs(req.File) {
			adminReply(w, nil, fmt.Errorf("%w: file %q must be an absolute path", ErrBadRequest, req.File))
			return
		}
		res, err := s.Publish(r.Context(), req, nil)
		adminReply(w, res, err)
	})
	mux.HandleFunc("POST "+adminSites, func(w http.ResponseWriter, r *http.Request) {
		var req siteRequest
		if err := adminRead(r, &req); err != nil {
			adminReply(w, nil, err)
			return
		}
		site, err := s.addSite(r.Context(), req.Name, []byte(req.Key), req.Replace)
		adminReply(w, site, err)
	})
	mux.HandleFunc("POST "+adminReissue, func(w http.ResponseWriter, r *http.Request) {
		var req reissueRequest
		if err := adminRead(r, &req); err != nil {
			adminReply(w, nil, err)
			return
		}
		d, err := s.Reissue(r.Context(), req.Site, req.Package)
		adminReply(w, d, err)
	})
	mux.HandleFunc("GET "+adminSites, func(w http.ResponseWriter, r *http.Request) {
		sites, err := s.Sites(r.Context())
		adminReply(w, sitesResponse{Sites: sites}, err)
	})
	mux.HandleFunc("GET "+adminCatalog, func(w http.ResponseWriter, r *http.Request) {
		ps, err := s.Catalog(r.Context())
		adminReply(w, catalogResponse{Packages: ps}, err)
	})
	return mux
}

func adminRead(r *http.Request, into any) error {
	b, err := io.ReadAll(http.MaxBytesReader(nil, r.Body, maxAdminBody))
	if err != nil {
		return fmt.Errorf("admin request: %w", err)
	}
	if err := json.Unmarshal(b, into); err != nil {
		return fmt.Errorf("%w: admin request: %v", ErrBadRequest, err)
	}
	return nil
}

func adminReply(w http.ResponseWriter, v any, err error) {
	w.Header().Set("Content-Type", "application/json")
	status := http.StatusOK
	if err != nil {
		status = http.StatusUnprocessableEntity
		if classOf(err) == "operational" {
			status = http.StatusInternalServerError
		}
		v = adminError{Error: err.Error(), Class: classOf(err)}
	}
	b, merr := catalog.EncodeCanonical(v)
	if merr != nil {
		status = http.StatusInternalServerError
		b, _ = json.Marshal(adminError{Error: merr.Error(), Class: "operational"})
	}
	w.WriteHeader(status)
	w.Write(b)
}

// adminClient is an Admin that talks to a running server's socket.
type adminClient struct {
	dir  string
	http *http.Client
}

// dialAdmin returns a client of the server listening on DIR/admin.sock, or
// nil if none answers.
func dialAdmin(ctx context.Context, dir string) *adminClient {
	sock := filepath.Join(dir, AdminSocket)
	if _, err := os.Stat(sock); err != nil {
		return nil
	}
	c := &adminClient{dir: dir, http: &http.Client{
		Transport: &http.Transport{
			DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
				var d net.Dialer
				return d.DialContext(ctx, "unix", sock)
			},
			DisableCompression: true,
		},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}}
	pctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	if err := c.call(pctx, http.MethodGet, adminPing, nil, nil); err != nil {
		c.Close()
		return nil
	}
	return c
}

func (c *adminClient) call(ctx context.Context, method, path string, req, resp any) error {
	var body io.Reader
	if req != nil {
		b, err := json.Marshal(req)
		if err != nil {
			return err
		}
		body = bytes.NewReader(b)
	}
	hr, err := http.NewRequestWithContext(ctx, method, "http://admin"+path, body)
	if err != nil {
		return err
	}
	hr.Header.Set("Content-Type", "application/json")
	res, err := c.http.Do(hr)
	if err != nil {
		return fmt.Errorf("running server at %s: %w", filepath.Join(c.dir, AdminSocket), err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(io.LimitReader(res.Body, catalog.MaxDocumentSize*4))
	if err != nil {
		return fmt.Errorf("running server at %s: %w", filepath.Join(c.dir, AdminSocket), err)
	}
	if res.StatusCode != http.StatusOK {
		var ae adminError
		if err := json.Unmarshal(b, &ae); err != nil || ae.Error == "" {
			return fmt.Errorf("running server at %s answered %s", filepath.Join(c.dir, AdminSocket), res.Status)
		}
		return ae.err()
	}
	if resp == nil {
		return nil
	}
	return json.Unmarshal(b, resp)
}

// Publish asks the running server to publish; it reads req.File itself, so
// the path is made absolute here. rep is not used: the server does the work.
func (c *adminClient) Publish(ctx context.Context, req PublishRequest, _ progress.Reporter) (PublishResult, error) {
	abs, err := filepath.Abs(req.File)
	if err != nil {
		return PublishResult{}, err
	}
	req.File = abs
	var res PublishResult
	err = c.call(ctx, http.MethodPost, adminPublish, req, &res)
	return res, err
}

// AddSite sends the key to the running server, which registers it.
func (c *adminClient) AddSite(ctx context.Context, name string, armoredKey []byte) (Site, error) {
	var site Site
	err := c.call(ctx, http.MethodPost, adminSites, siteRequest{Name: name, Key: string(armoredKey)}, &site)
	return site, err
}

// ReplaceSiteKey asks the running server to replace a site's key.
func (c *adminClient) ReplaceSiteKey(ctx context.Context, name string, armoredKey []byte) (Site, error) {
	var site Site
	err := c.call(ctx, http.MethodPost, adminSites, siteRequest{Name: name, Key: string(armoredKey), Replace: true}, &site)
	return site, err
}

// Reissue asks the running server to reissue.
func (c *adminClient) Reissue(ctx context.Context, site, ref string) (Delivery, error) {
	var d Delivery
	err := c.call(ctx, http.MethodPost, adminReissue, reissueRequest{Site: site, Package: ref}, &d)
	return d, err
}

// Catalog asks the running server for its catalog.
func (c *adminClient) Catalog(ctx context.Context) ([]catalog.Package, error) {
	var res catalogResponse
	err := c.call(ctx, http.MethodGet, adminCatalog, nil, &res)
	return res.Packages, err
}

// Sites asks the running server for its registered sites.
func (c *adminClient) Sites(ctx context.Context) ([]Site, error) {
	var res sitesResponse
	err := c.call(ctx, http.MethodGet, adminSites, nil, &res)
	return res.Sites, err
}

// Close drops the idle connections to the socket.
func (c *adminClient) Close() error {
	c.http.CloseIdleConnections()
	return nil
}
