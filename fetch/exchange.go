package fetch

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"text/tabwriter"
	"time"

	"github.com/airlock-project/airlock/catalog"
	"github.com/airlock-project/airlock/fault"
	"github.com/airlock-project/airlock/keys"
	"github.com/airlock-project/airlock/progress"
	"github.com/airlock-project/airlock/verify"
)

// ServerOptions say which server to ask, with which download key, and
// which vendor key its answer must be signed with. exchange and bundle
// share them.
type ServerOptions struct {
	// Server is the base URL of the vendor's update server.
	Server string
	// VendorKey is the path of the pinned vendor public key.
	VendorKey string
	// DownloadKey is the path of the armored download key made by the
	// restricted side (airlock key new).
	DownloadKey string
	// Client tunes the HTTP client.
	Client ClientOptions
	// Logger receives debug records; nil discards them.
	Logger *slog.Logger
}

// ExchangeOptions are the options of RunExchange.
type ExchangeOptions struct {
	ServerOptions
	// JSON prints a JSON object instead of a table.
	JSON bool
}

// grant is the server's answer to a download key, verified: the vendor's
// signature, that it answers this key (site and id), its validity window,
// and that the download list is exactly the entitled packages.
type grant struct {
	key       catalog.DownloadKey // unverified payload: only compared with
	armored   []byte              // the entitlement, exactly as received
	ent       *verify.Entitlement // verified
	items     []item              // one per entitled package, in entitlement order
	vendor    *keys.PublicKey
	client    *client
	serverURL string
}

// obtain reads the inputs, exchanges the download key and verifies the
// answer. The caller closes g.client.
func obtain(ctx context.Context, o ServerOptions) (*grant, error) {
	switch {
	case o.Server == "":
		return nil, fmt.Errorf("%w: no --server", ErrOptions)
	case o.VendorKey == "":
		return nil, fmt.Errorf("%w: no --vendor-key", ErrOptions)
	case o.DownloadKey == "":
		return nil, fmt.Errorf("%w: no --key", ErrOptions)
	}
	c, err := newClient(o.Server, o.Client)
	if err != nil {
		return nil, err
	}
	vendor, err := readPublicKey("--vendor-key", o.VendorKey, hintVendorKey)
	if err != nil {
		return nil, err
	}
	raw, key, err := readDownloadKey(o.DownloadKey)
	if err != nil {
		return nil, err
	}
	g, err := exchangeAndVerify(ctx, c, vendor, raw, key)
	if err != nil {
		c.close()
		var se *ServerError
		if errors.As(err, &se) && fault.Code(err) != fault.ExitOperational {
			// A refusal of the key: name the file and the site it is for.
			err = fmt.Errorf("--key %s (site %s): %w", o.DownloadKey, fault.Printable(key.Site, 100), err)
		}
		return nil, err
	}
	logger(o.Logger).Debug("entitlement verified", "site", g.ent.Site, "key_id", g.ent.KeyID, "packages", len(g.ent.Packages))
	return g, nil
}

// readDownloadKey reads the armored download key and the payload it
// carries. The site signature cannot be checked here (the unrestricted side
// has no site key): the payload is only compared with the entitlement.
func readDownloadKey(path string) ([]byte, catalog.DownloadKey, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, catalog.DownloadKey{}, fileError("--key", path, err, hintDownloadKey)
	}
	defer f.Close()
	raw, err := io.ReadAll(io.LimitReader(f, maxDownloadKey+1))
	if err != nil {
		return nil, catalog.DownloadKey{}, fileError("--key", path, err, hintDownloadKey)
	}
	if len(raw) > maxDownloadKey {
		return nil, catalog.DownloadKey{}, fmt.Errorf("--key %s: %w: over %d bytes; %s", path, catalog.ErrTooLarge, maxDownloadKey, hintDownloadKey)
	}
	payload, err := keys.UnverifiedPayload(bytes.NewReader(raw))
	if err != nil {
		return nil, catalog.DownloadKey{}, fmt.Errorf("--key %s: %w%s", path, err, hintFor(err, hintDownloadKey))
	}
	key, err := catalog.DecodeDownloadKey(payload)
	if err != nil {
		return nil, catalog.DownloadKey{}, fmt.Errorf("--key %s: %w; %s", path, err, hintDownloadKey)
	}
	return raw, key, nil
}

// exchangeAndVerify asks the server and checks its answer.
func exchangeAndVerify(ctx context.Context, c *client, vendor *keys.PublicKey, raw []byte, key catalog.DownloadKey) (*grant, error) {
	ans, err := c.exchange(ctx, raw)
	if err != nil {
		return nil, err
	}
	trust := keys.NewTrustStore()
	if err := trust.Add(keys.RoleVendor, vendor); err != nil {
		return nil, fmt.Errorf("vendor key: %w", err)
	}
	armored := []byte(ans.Entitlement)
	// Site and key are compared below, as a verification failure (the
	// server answered another request), not as a policy refusal.
	ent, err := verify.VerifyEntitlement(armored, trust, verify.Policy{})
	if err != nil {
		return nil, entitlementError(err, key.ID, vendor)
	}
	if ent.Site != key.Site || ent.KeyID != key.ID {
		return nil, fmt.Errorf("%w: the server's entitlement is for site %q key %s, the download key is for site %q key %s; nothing was downloaded",
			ErrKeyMismatch, ent.Site, ent.KeyID, key.Site, key.ID)
	}
	items, err := matchDownloads(c, ent.Packages, ans.Downloads)
	if err != nil {
		return nil, fmt.Errorf("the server's answer to download key %s: %w", key.ID, err)
	}
	return &grant{key: key, armored: armored, ent: ent, items: items, vendor: vendor, client: c, serverURL: c.base.Redacted()}, nil
}

// entitlementError reports an entitlement that did not verify. When keys
// refused its signer, the remedy is about the vendor key pinned by
// --vendor-key, the only key trusted here.
func entitlementError(err error, id catalog.KeyID, vendor *keys.PublicKey) error {
	err = fmt.Errorf("the server's answer to download key %s: %w", id, err)
	var ve *keys.VerifyError
	if !errors.As(err, &ve) {
		return err
	}
	switch ve.Kind {
	case keys.ErrUnknownSigner:
		return &keyError{err: err, msg: fmt.Sprintf("the server's answer to download key %s: %v: the entitlement is signed by %s, not by the pinned --vendor-key (%s); check --server, and if the vendor has a new key, get it from the vendor by a trusted channel",
			id, ve.Kind, signerName(ve), vendor.Fingerprint())}
	case keys.ErrKeyExpired:
		return fmt.Errorf("%w; that is the pinned --vendor-key: get the vendor's key with its expiry extended, by a trusted channel, and give it as --vendor-key", err)
	case keys.ErrKeyRevoked:
		return fmt.Errorf("%w; that is the pinned --vendor-key: get the vendor's new key by a trusted channel, and give it as --vendor-key", err)
	}
	return err
}

// matchDownloads requires the download list to name each entitled package
// once, with its entitled size, and nothing else, and resolves the URLs.
// The list is unsigned: only the entitlement says what to accept.
func matchDownloads(c *client, ps []catalog.Package, ds []download) ([]item, error) {
	urls := make(map[catalog.Digest]download, len(ds))
	for _, d := range ds {
		if _, dup := urls[d.SHA256]; dup {
			return nil, fmt.Errorf("%w: the download list names %s twice", ErrProtocol, d.SHA256.Short())
		}
		urls[d.SHA256] = d
	}
	items := make([]item, 0, len(ps))
	for _, p := range ps {
		d, ok := urls[p.SHA256]
		if !ok {
			return nil, &PackageError{p, fmt.Errorf("%w: the download list has no URL for it", ErrProtocol)}
		}
		if d.Size != p.Size {
			return nil, &PackageError{p, fmt.Errorf("%w: the download list says %d bytes, the entitlement %d", ErrProtocol, d.Size, p.Size)}
		}
		u, err := c.resolve(d.URL)
		if err != nil {
			return nil, &PackageError{p, err}
		}
		items = append(items, item{pkg: p, url: u})
		delete(urls, p.SHA256)
	}
	for d := range urls {
		return nil, fmt.Errorf("%w: the download list names %s, which the entitlement does not", ErrProtocol, d.Short())
	}
	return items, nil
}

// ExchangeReport is what RunExchange prints with --json.
type ExchangeReport struct {
	Site      string            `json:"site"`
	KeyID     catalog.KeyID     `json:"key_id"`
	Issued    time.Time         `json:"issued"`
	Expires   time.Time         `json:"expires"`
	Packages  []catalog.Package `json:"packages"`
	Downloads []DownloadReport  `json:"downloads"`
}

// DownloadReport is one download URL of an ExchangeReport.
type DownloadReport struct {
	Package string         `json:"package"`
	SHA256  catalog.Digest `json:"sha256"`
	Size    int64          `json:"size"`
	URL     string         `json:"url"`
}

// RunExchange exchanges the download key at the server and prints what the
// vendor-signed entitlement grants, after verifying it (see the package
// documentation for the checks and the exit classes). It downloads and
// acknowledges nothing, so it may be run any number of times: the server
// answers the same key with the same entitlement. An empty entitlement is
// a success.
func RunExchange(ctx context.Context, o ExchangeOptions, stdout, stderr io.Writer) error {
	g, err := obtain(ctx, o.ServerOptions)
	if err != nil {
		return err
	}
	defer g.client.close()
	r := ExchangeReport{Site: g.ent.Site, KeyID: g.ent.KeyID, Issued: g.ent.Issued.UTC(), Expires: g.ent.Expires.UTC(),
		Packages: nonNil(g.ent.Packages), Downloads: []DownloadReport{}}
	for _, it := range g.items {
		r.Downloads = append(r.Downloads, DownloadReport{Package: it.pkg.ID(), SHA256: it.pkg.SHA256, Size: it.pkg.Size, URL: it.url})
	}
	if o.JSON {
		return writeJSON(stdout, r)
	}
	fmt.Fprintf(stdout, "entitlement for site %s, download key %s, signed by vendor key %s\n", r.Site, r.KeyID, g.vendor.Fingerprint())
	fmt.Fprintf(stdout, "issued %s, expires %s\n", r.Issued.Format(time.RFC3339), r.Expires.Format(time.RFC3339))
	if len(r.Packages) == 0 {
		fmt.Fprintln(stdout, "no packages: this site has everything the vendor offers for its inventory (a package already delivered to it is offered again only if the vendor reissues it)")
		return nil
	}
	var total int64
	tw := tabwriter.NewWriter(stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "PACKAGE\tKIND\tSIZE\tSHA256\tREQUIRES")
	for _, p := range r.Packages {
		total += p.Size
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", p.ID(), p.Kind, progress.Bytes(p.Size), p.SHA256.Short(), requires(p))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	_, err = fmt.Fprintf(stdout, "%d packages, %s\n", len(r.Packages), progress.Bytes(total))
	return err
}

func requires(p catalog.Package) string {
	if len(p.Requires) == 0 {
		return "-"
	}
	var b bytes.Buffer
	for i, c := range p.Requires {
		if i > 0 {
			b.WriteString(", ")
		}
		fmt.Fprint(&b, c)
	}
	return b.String()
}

func nonNil[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return s
}

// writeJSON prints v indented, without HTML escaping.
func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

func logger(l *slog.Logger) *slog.Logger {
	if l == nil {
		return slog.New(slog.DiscardHandler)
	}
	return l
}
