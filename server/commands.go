package server

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/airlock-project/airlock/catalog"
	"github.com/airlock-project/airlock/fault"
	"github.com/airlock-project/airlock/keys"
	"github.com/airlock-project/airlock/progress"
)

// The Run functions below are the airlock-server commands: cmd/airlock-server
// parses flags into their options and calls them. Each writes its result
// to stdout (JSON with the JSON option) and returns an error whose class
// gives the exit code.

// InitOptions are the options of 'airlock-server init'.
type InitOptions struct {
	Dir  string
	Name string    // vendor key user ID; empty means "airlock vendor"
	Now  time.Time // key creation time; zero means now
	// PassphraseFile, if set, holds the passphrase that encrypts
	// vendor.key, on one line (see VendorPassphrase.File); a missing or
	// empty file is refused before anything is made.
	PassphraseFile string
}

// RunInit makes a new store (see InitWithPassphrase), its vendor.key
// passphrase-protected if PassphraseFile is set, and tells where the
// public key is.
func RunInit(_ context.Context, opts InitOptions, stdout, _ io.Writer) error {
	pass, err := keys.ReadPassphraseFile(opts.PassphraseFile)
	if err != nil {
		return err
	}
	pub, err := InitWithPassphrase(opts.Dir, opts.Name, opts.Now, pass)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "initialized vendor store %s\nvendor key %s %q\npublic key %s: give it to every site, courier and node to trust ('airlock trust add --role vendor')\n",
		opts.Dir, pub.Fingerprint(), pub.UserID(), filepath.Join(opts.Dir, VendorPubFile))
	if len(pass) > 0 {
		fmt.Fprintf(stdout, "%s is passphrase-protected: serve reads the passphrase from --passphrase-file or %s, or asks on the terminal; the other commands do not need it\n",
			VendorKeyFile, EnvPassphraseFile)
	}
	return nil
}

// PublishOptions are the options of 'airlock-server publish'. Version,
// Kind and Requires are parsed here, so that a bad spelling is a usage
// error naming the flag.
type PublishOptions struct {
	Config
	Name     string
	Kind     string
	Version  string
	Requires []string
	Settle   time.Duration
	Reboot   bool
	File     string
	JSON     bool
	Progress progress.Reporter // nil: none
}

// request parses the options into a PublishRequest.
func (o PublishOptions) request() (PublishRequest, error) {
	req := PublishRequest{Name: o.Name, File: o.File, Reboot: o.Reboot, Settle: catalog.Duration(o.Settle), Requires: []catalog.Constraint{}}
	if err := catalog.ValidName(o.Name); err != nil {
		return req, fmt.Errorf("%w: --name: %v", fault.ErrUsage, err)
	}
	k, err := catalog.ParseKind(o.Kind)
	if err != nil {
		return req, fmt.Errorf("%w: --kind: %v", fault.ErrUsage, err)
	}
	req.Kind = k
	if req.Version, err = catalog.ParseVersion(o.Version); err != nil {
		return req, fmt.Errorf("%w: --version: %v", fault.ErrUsage, err)
	}
	for _, r := range o.Requires {
		c, err := catalog.ParseConstraint(r)
		if err != nil {
			return req, fmt.Errorf("%w: --requires: %v", fault.ErrUsage, err)
		}
		req.Requires = append(req.Requires, c)
	}
	if o.Settle < 0 || o.Settle > 365*24*time.Hour {
		return req, fmt.Errorf("%w: --settle %s: want a duration from 0 to 8760h", fault.ErrUsage, o.Settle)
	}
	return req, nil
}

// RunPublish adds a package file to the catalog, through the running
// server if there is one (see Connect).
func RunPublish(ctx context.Context, opts PublishOptions, stdout, _ io.Writer) error {
	req, err := opts.request()
	if err != nil {
		return err
	}
	if _, err := os.Stat(req.File); err != nil {
		return fmt.Errorf("publish %s: %w", req.File, pathless(err, "check the package FILE argument"))
	}
	a, err := Connect(ctx, opts.Config)
	if err != nil {
		return err
	}
	defer a.Close()
	res, err := a.Publish(ctx, req, opts.Progress)
	if opts.Progress != nil {
		opts.Progress.Wait()
	}
	if err != nil {
		return err
	}
	if opts.JSON {
		return writeJSON(stdout, res)
	}
	verb := "published"
	if !res.Added {
		verb = "already published, unchanged:"
	}
	fmt.Fprintf(stdout, "%s %s sha256 %s size %d\n", verb, res.Package.ID(), res.Package.SHA256, res.Package.Size)
	return nil
}

// SiteAddOptions are the options of 'airlock-server site add'.
type SiteAddOptions struct {
	Config
	Name    string
	KeyFile string
	JSON    bool
	// Replace replaces the site's registered key even though it is
	// valid (Server.ReplaceSiteKey).
	Replace bool
}

// RunSiteAdd registers a site's public key.
func RunSiteAdd(ctx context.Context, opts SiteAddOptions, stdout, _ io.Writer) error {
	if err := catalog.ValidName(opts.Name); err != nil {
		return fmt.Errorf("%w: --name: site %v", fault.ErrUsage, err)
	}
	b, err := readKeyFile(opts.KeyFile)
	if err != nil {
		return fmt.Errorf("site add %s: --key %s: %w", opts.Name, opts.KeyFile, err)
	}
	a, err := Connect(ctx, opts.Config)
	if err != nil {
		return err
	}
	defer a.Close()
	add := a.AddSite
	if opts.Replace {
		add = a.ReplaceSiteKey
	}
	site, err := add(ctx, opts.Name, b)
	if err != nil {
		return fmt.Errorf("site add %s: --key %s: %w", opts.Name, opts.KeyFile, err)
	}
	if opts.JSON {
		return writeJSON(stdout, site)
	}
	switch site.Change {
	case "unchanged":
		fmt.Fprintf(stdout, "site %s registered with key %s %q (unchanged)\n", site.Name, site.Fingerprint, sanitize(site.UserID))
	case "updated":
		fmt.Fprintf(stdout, "site %s: key %s %q updated (a new copy of the registered key)\n", site.Name, site.Fingerprint, sanitize(site.UserID))
	case "revoked":
		fmt.Fprintf(stdout, "site %s: key %s %q recorded as revoked: its download keys are refused from now on; register the site's new key with 'airlock-server site add --name %s --key NEW.pub.asc'\n",
			site.Name, site.Fingerprint, sanitize(site.UserID), site.Name)
	case "replaced":
		fmt.Fprintf(stdout, "site %s: key replaced by %s %q; download keys signed by the old key are refused, and packages already delivered to the site stay delivered\n", site.Name, site.Fingerprint, sanitize(site.UserID))
	default:
		fmt.Fprintf(stdout, "site %s registered with key %s %q\n", site.Name, site.Fingerprint, sanitize(site.UserID))
	}
	return nil
}

// SiteListOptions are the options of 'airlock-server site list'.
type SiteListOptions struct {
	Config
	JSON bool
}

// RunSiteList lists the registered sites, with how many packages each has
// acknowledged.
func RunSiteList(ctx context.Context, opts SiteListOptions, stdout, _ io.Writer) error {
	a, err := Connect(ctx, opts.Config)
	if err != nil {
		return err
	}
	defer a.Close()
	sites, err := a.Sites(ctx)
	if err != nil {
		return err
	}
	if opts.JSON {
		if sites == nil {
			sites = []Site{}
		}
		return writeJSON(stdout, sitesResponse{Sites: sites})
	}
	if len(sites) == 0 {
		fmt.Fprintln(stdout, "no sites registered; add one with 'airlock-server site add --name NAME --key site.pub.asc'")
		return nil
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tKEY\tUSER ID\tADDED\tDELIVERED")
	for _, s := range sites {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\n", s.Name, s.Fingerprint, sanitize(s.UserID), s.Added.UTC().Format(time.RFC3339), s.Delivered)
	}
	return tw.Flush()
}

// readKeyFile reads a site's public key file for site add; errors do not
// repeat the path, which the caller names.
func readKeyFile(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, pathless(err, "give the site's public key, REPO/site.pub.asc that 'airlock init' wrote")
	}
	defer f.Close()
	if fi, err := f.Stat(); err == nil && !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("%w: not a regular file; give the site's public key, REPO/site.pub.asc that 'airlock init' wrote", ErrBadRequest)
	}
	b, err := readAllLimit(f, maxAdminBody)
	if err != nil {
		return nil, pathless(err, "give the site's public key file")
	}
	return b, nil
}

// pathless drops the path of a *fs.PathError, which the caller's message
// names already, and adds the advice.
func pathless(err error, advice string) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		err = pe.Err
	}
	return fmt.Errorf("%w; %s", err, advice)
}

// ReissueOptions are the options of 'airlock-server reissue'.
type ReissueOptions struct {
	Config
	Site    string
	Package string // NAME@VERSION or sha256
}

// RunReissue makes a delivered package downloadable again for a site.
func RunReissue(ctx context.Context, opts ReissueOptions, stdout, _ io.Writer) error {
	a, err := Connect(ctx, opts.Config)
	if err != nil {
		return err
	}
	defer a.Close()
	d, err := a.Reissue(ctx, opts.Site, opts.Package)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "reissued %s to site %s (delivered %s); its next download key is entitled to it again\n",
		d.Package, d.Site, d.Acknowledged.Format(time.RFC3339))
	return nil
}

// CatalogOptions are the options of 'airlock-server catalog'.
type CatalogOptions struct {
	Config
	JSON bool
}

// RunCatalog lists the published packages: a table, or with JSON
// {"packages":[...]} in catalog.Package form.
func RunCatalog(ctx context.Context, opts CatalogOptions, stdout, _ io.Writer) error {
	a, err := Connect(ctx, opts.Config)
	if err != nil {
		return err
	}
	defer a.Close()
	ps, err := a.Catalog(ctx)
	if err != nil {
		return err
	}
	if opts.JSON {
		if ps == nil {
			ps = []catalog.Package{}
		}
		return writeJSON(stdout, catalogResponse{Packages: ps})
	}
	if len(ps) == 0 {
		fmt.Fprintln(stdout, "no packages published; add one with 'airlock-server publish'")
		return nil
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tKIND\tVERSION\tSIZE\tSHA256\tREQUIRES\tSETTLE\tREBOOT")
	for _, p := range ps {
		req := make([]string, len(p.Requires))
		for i, c := range p.Requires {
			req[i] = c.String()
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%s\t%s\t%s\t%v\n", p.Name, p.Kind, p.Version, p.Size, p.SHA256.Short(),
			strings.Join(req, ", "), time.Duration(p.Settle), p.Reboot)
	}
	return tw.Flush()
}

// ServeCommandOptions are the options of 'airlock-server serve'.
type ServeCommandOptions struct {
	Config
	ServeOptions
}

// RunServe opens the store and serves until ctx is cancelled (SIGTERM,
// SIGINT). Without Config.Logger it logs text lines to stderr. It prints
// the base URL on stdout once it accepts connections. It signs
// entitlements, so it unlocks a passphrase-protected vendor.key (sets
// Config.Unlock; the passphrase comes from Config.Passphrase) before it
// opens the database: without the passphrase, or with a wrong one, it fails
// (usage) having changed nothing and listened nowhere.
func RunServe(ctx context.Context, opts ServeCommandOptions, stdout, stderr io.Writer) error {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.NewTextHandler(stderr, nil))
	}
	if (opts.TLSCert == "") != (opts.TLSKey == "") {
		// Checked by Serve too; here before the store is opened.
		return fmt.Errorf("serve: %w: --tls-cert and --tls-key go together: give both for HTTPS, or neither", ErrBadRequest)
	}
	// A running server is refused before the passphrase is asked for.
	if c := dialAdmin(ctx, opts.Dir); c != nil {
		c.Close()
		return errServing(opts.Dir)
	}
	opts.Unlock = true
	s, err := Open(opts.Config)
	if errors.Is(err, ErrInUse) {
		if c := dialAdmin(ctx, opts.Dir); c != nil {
			c.Close()
			return errServing(opts.Dir)
		}
	}
	if err != nil {
		return err
	}
	defer s.Close()
	ready := opts.Ready
	opts.Ready = func(base string) {
		fmt.Fprintf(stdout, "serving %s (admin socket %s)\n", base, filepath.Join(opts.Dir, AdminSocket))
		if ready != nil {
			ready(base)
		}
	}
	return s.Serve(ctx, opts.ServeOptions)
}

// errServing refuses a second server on the store in dir.
func errServing(dir string) error {
	return fmt.Errorf("serve %s: %w: an airlock-server already serves this store (its admin socket %s answers); stop it first, or give another --dir",
		dir, ErrInUse, filepath.Join(dir, AdminSocket))
}

func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// sanitize makes text from a key (a user ID) safe to print.
func sanitize(s string) string { return fault.Printable(s, 200) }
