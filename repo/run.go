package repo

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/airlock-project/airlock/atomicfile"
	"github.com/airlock-project/airlock/fault"
	"github.com/airlock-project/airlock/keys"
	"github.com/airlock-project/airlock/progress"
)

// The Run functions below are the airlock commands that work on the
// repository. Each opens the repository as it needs (read-only for those
// that only read), does its work, prints the result to stdout (as text,
// or as indented JSON with JSON set), and returns an error whose class
// gives the exit code. They never print errors: the caller does, once.

// InitCmd is airlock init.
type InitCmd struct {
	Options
	Site string
	// PassphraseFile, if set, holds the passphrase that encrypts site.key,
	// on one line (see SiteKeyPassphrase.File); an empty file is refused.
	PassphraseFile string
	JSON           bool
}

// RunInit creates a repository (see InitWithPassphrase), its site.key
// passphrase-protected if PassphraseFile is set.
func RunInit(ctx context.Context, c InitCmd, stdout, stderr io.Writer) error {
	pass, err := keys.ReadPassphraseFile(c.PassphraseFile)
	if err != nil {
		return err
	}
	res, err := InitWithPassphrase(ctx, c.Options, c.Site, pass)
	if err != nil {
		return err
	}
	if c.JSON {
		return writeJSON(stdout, res)
	}
	fmt.Fprintf(stdout, "created repository %s for site %s\n", res.Dir, res.Site)
	fmt.Fprintf(stdout, "site key %s, public key in %s\n", res.SiteKey, res.PublicKey)
	if res.Protected {
		fmt.Fprintf(stdout, "%s is passphrase-protected: airlock key new reads the passphrase from --passphrase-file or AIRLOCK_PASSPHRASE_FILE, or asks on the terminal\n", SiteKeyFile)
	}
	fmt.Fprintf(stdout, "next: register it at the vendor (airlock-server site add --name %s --key site.pub.asc), then trust the vendor's key (airlock trust add --role vendor vendor.pub.asc)\n", res.Site)
	return nil
}

// TrustAddCmd is airlock trust add.
type TrustAddCmd struct {
	Options
	Role string
	File string
}

// RunTrustAdd trusts the public key in File for Role (see Repo.TrustAdd).
func RunTrustAdd(ctx context.Context, c TrustAddCmd, stdout, stderr io.Writer) error {
	role, err := keys.ParseRole(c.Role)
	if err != nil {
		return fmt.Errorf("%w: --role %q: trust add takes vendor or courier", ErrRole, printable(c.Role))
	}
	pub, err := keys.ReadPublicFile(c.File)
	if err != nil {
		return err
	}
	r, err := openRW(ctx, c.Options)
	if err != nil {
		return err
	}
	defer r.Close()
	info, changed, err := r.TrustAdd(role, pub)
	if err != nil {
		return err
	}
	if !changed {
		fmt.Fprintf(stdout, "key %s (%s) is already trusted as %s: nothing changed\n", info.Fingerprint, printable(info.UserID), info.Role)
		return nil
	}
	fmt.Fprintf(stdout, "trusted %s key %s (%s)\n", info.Role, info.Fingerprint, printable(info.UserID))
	return nil
}

// TrustListCmd is airlock trust list.
type TrustListCmd struct {
	Options
	JSON bool
}

// RunTrustList lists the trusted keys.
func RunTrustList(ctx context.Context, c TrustListCmd, stdout, stderr io.Writer) error {
	return listing[TrustedKey]{
		fetch:  (*Repo).TrustList,
		empty:  "no trusted keys: add the vendor's with 'airlock trust add --role vendor FILE'",
		header: []string{"ROLE", "FINGERPRINT", "USER ID", "EXPIRES", "ADDED"},
		row: func(k TrustedKey) []any {
			exp := "never"
			if !k.Expires.IsZero() {
				exp = stamp(k.Expires)
			}
			return []any{k.Role, k.Fingerprint, printable(k.UserID), exp, stamp(k.Added)}
		},
	}.run(ctx, c.Options, c.JSON, stdout)
}

// TrustRemoveCmd is airlock trust remove.
type TrustRemoveCmd struct {
	Options
	Fingerprint string
}

// RunTrustRemove stops trusting a key.
func RunTrustRemove(ctx context.Context, c TrustRemoveCmd, stdout, stderr io.Writer) error {
	fp, err := keys.ParseFingerprint(c.Fingerprint)
	if err != nil {
		return fmt.Errorf("%w (see airlock trust list)", err)
	}
	r, err := openRW(ctx, c.Options)
	if err != nil {
		return err
	}
	defer r.Close()
	info, err := r.TrustRemove(fp)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "removed %s key %s (%s)\n", info.Role, info.Fingerprint, printable(info.UserID))
	return nil
}

// KeyNewCmd is airlock key new.
type KeyNewCmd struct {
	Options
	// Out is where the armored download key is written; it must not exist.
	Out string
	// Expires is the validity (zero: DefaultKeyExpiry).
	Expires time.Duration
	// Inventory is an inventory file (see ParseInventory); empty for the
	// registered cluster nodes (see Repo.NodeInventory).
	Inventory string
	// Passphrase unlocks a passphrase-protected site.key.
	Passphrase SiteKeyPassphrase
	JSON       bool
}

// RunKeyNew issues a download key and writes it to Out (see
// Repo.IssueKey). The site key is unlocked first (see ReadSiteKey), before
// the repository is opened, so that a prompt for its passphrase holds no
// lock; a refusal there leaves the repository and Out untouched. Out is
// published atomically after the key is recorded; if that fails the key
// stays recorded and the error says to revoke it.
func RunKeyNew(ctx context.Context, c KeyNewCmd, stdout, stderr io.Writer) error {
	if _, err := os.Lstat(c.Out); err == nil {
		return fmt.Errorf("%w: --out %s already exists: choose another name, or remove it first", ErrInvalid, c.Out)
	} else if !errors.Is(err, fs.ErrNotExist) {
		return outError(c.Out, err)
	}
	var opts KeyOptions
	opts.Expires = c.Expires
	if _, err := opts.expiry(); err != nil {
		return err
	}
	if c.Inventory != "" {
		nodes, err := ReadInventoryFile(c.Inventory)
		if err != nil {
			return err
		}
		opts.Nodes = nodes
	}
	if pendingRotation(c.Dir) != nil {
		// A read-write open finishes or undoes it (see Open).
		r, err := openRW(ctx, c.Options)
		if err != nil {
			return err
		}
		r.Close()
	}
	signer, err := ReadSiteKey(c.Dir, c.Passphrase)
	if err != nil {
		return err
	}
	opts.SiteKey = signer
	out, err := atomicfile.Create(c.Out, 0o644)
	if err != nil {
		return outError(c.Out, err)
	}
	out.NoReplace()
	defer out.Abort()
	r, err := openRW(ctx, c.Options)
	if err != nil {
		return err
	}
	defer r.Close()
	if c.Inventory == "" {
		// The registered nodes, with the versions they last reported.
		if opts.Nodes, err = r.NodeInventory(); err != nil {
			return err
		}
	}
	info, armored, err := r.IssueKey(opts)
	if err != nil {
		return err
	}
	if _, err := out.Write(armored); err == nil {
		err = out.Commit()
	}
	if err != nil {
		return fmt.Errorf("download key %s is recorded as outstanding but could not be written to %s: %w; revoke it (airlock key revoke %s) and make another", info.ID, c.Out, err, info.ID)
	}
	if c.JSON {
		return writeJSON(stdout, struct {
			KeyInfo
			File string `json:"file"`
		}{info, c.Out})
	}
	fmt.Fprintf(stdout, "download key %s for site %s, %d node(s), valid until %s, written to %s\n",
		info.ID, info.Site, len(info.Nodes), stamp(info.Expires), c.Out)
	fmt.Fprintf(stdout, "next: carry %s to the internet host and run airlock-fetch bundle --key %s …\n", c.Out, c.Out)
	return nil
}

// outError explains why the file out cannot be written: its directory is
// missing, is not a directory, or is not writable.
func outError(out string, err error) error {
	dir := filepath.Dir(out)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return fmt.Errorf("--out %s: directory %s does not exist: create it, or choose another --out", out, dir)
	case errors.Is(err, syscall.ENOTDIR):
		return fmt.Errorf("--out %s: %s is not a directory: choose another --out", out, dir)
	case errors.Is(err, fs.ErrPermission), errors.Is(err, syscall.EROFS):
		return fmt.Errorf("--out %s: directory %s is not writable (%w): choose another --out", out, dir, pathCause(err))
	}
	return fmt.Errorf("--out %s: %w", out, err)
}

// pathCause returns the cause of a *fs.PathError, whose own message names
// a path the caller's message already names (or a temporary file).
func pathCause(err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}

// KeyListCmd is airlock key list.
type KeyListCmd struct {
	Options
	JSON bool
}

// RunKeyList lists the download keys with their states.
func RunKeyList(ctx context.Context, c KeyListCmd, stdout, stderr io.Writer) error {
	return listing[KeyInfo]{
		fetch:  (*Repo).Keys,
		empty:  "no download keys: make one with 'airlock key new --out FILE'",
		header: []string{"ID", "STATE", "ISSUED", "EXPIRES", "NODES", "BUNDLE"},
		row: func(k KeyInfo) []any {
			return []any{k.ID, k.State, stamp(k.Issued), stamp(k.Expires), len(k.Nodes), dash(k.Bundle)}
		},
	}.run(ctx, c.Options, c.JSON, stdout)
}

// KeyRevokeCmd is airlock key revoke.
type KeyRevokeCmd struct {
	Options
	ID string
}

// RunKeyRevoke revokes a download key (see Repo.RevokeKey).
func RunKeyRevoke(ctx context.Context, c KeyRevokeCmd, stdout, stderr io.Writer) error {
	r, err := openRW(ctx, c.Options)
	if err != nil {
		return err
	}
	defer r.Close()
	info, err := r.RevokeKey(c.ID)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "revoked download key %s: no bundle answering it will be imported\n", info.ID)
	return nil
}

// KeyRotateCmd is airlock key rotate.
type KeyRotateCmd struct {
	Options
	// PassphraseFile, if set, holds the passphrase that encrypts the new
	// site.key (see InitCmd.PassphraseFile).
	PassphraseFile string
	// Confirm, if set, is asked the question before anything changes; an
	// error it returns (the operator declined) is returned as it is.
	Confirm func(question string) error
	// Hook is RotateOptions.Hook.
	Hook func(point string) error
	JSON bool
}

// RunKeyRotate replaces the site key (see Repo.RotateSiteKey) and prints
// what the operator and the vendor must do next. A current site.key that
// is passphrase-protected is not replaced by one in the clear: without
// PassphraseFile that is refused (usage), as are a bad passphrase file
// and, from Confirm, a declined question; each leaves the repository as
// it was.
func RunKeyRotate(ctx context.Context, c KeyRotateCmd, stdout, stderr io.Writer) error {
	pass, err := keys.ReadPassphraseFile(c.PassphraseFile)
	if err != nil {
		return err
	}
	if err := findDB(c.Dir); err != nil {
		return err
	}
	keyPath := filepath.Join(c.Dir, SiteKeyFile)
	if _, err := keys.ReadPrivateFile(keyPath, nil); pass == nil && errors.Is(err, keys.ErrPassphrase) {
		return fmt.Errorf("%w: %s is passphrase-protected, and no passphrase was given for the new site key: pass --passphrase-file FILE or set AIRLOCK_PASSPHRASE_FILE (the file of the new key's passphrase); nothing was changed", ErrInvalid, keyPath)
	}
	if c.Confirm != nil {
		r, err := openRO(ctx, c.Options)
		if err != nil {
			return err
		}
		list, err := r.Keys()
		site, fp := r.site, r.siteKey
		r.Close()
		if err != nil {
			return err
		}
		n := 0
		for _, k := range list {
			if k.State == KeyOutstanding {
				n++
			}
		}
		q := fmt.Sprintf("Replace the site key %s of site %s with a new one, revoking %d outstanding download key(s)? Nothing can be fetched until the vendor has registered the new key.", fp, site, n)
		if err := c.Confirm(q); err != nil {
			return err
		}
	}
	r, err := openRW(ctx, c.Options)
	if err != nil {
		return err
	}
	defer r.Close()
	res, err := r.RotateSiteKey(ctx, RotateOptions{Passphrase: pass, Hook: c.Hook})
	if err != nil {
		return err
	}
	if c.JSON {
		return writeJSON(stdout, res)
	}
	fmt.Fprintf(stdout, "replaced the site key of site %s: %s is now %s (was %s)\n", res.Site, SiteKeyFile, res.NewSiteKey, res.OldSiteKey)
	if res.Protected {
		fmt.Fprintf(stdout, "%s is passphrase-protected: airlock key new reads the passphrase from --passphrase-file or AIRLOCK_PASSPHRASE_FILE, or asks on the terminal\n", SiteKeyFile)
	}
	if res.Archived != "" {
		fmt.Fprintf(stdout, "the old public key is kept in %s\n", res.Archived)
	} else {
		fmt.Fprintf(stdout, "%s did not hold the old key, so its public half is not kept; its fingerprint is in the audit log\n", SitePublicKey)
	}
	if len(res.Revoked) == 0 {
		fmt.Fprintln(stdout, "no download key was outstanding")
	} else {
		ids := make([]string, len(res.Revoked))
		for i, id := range res.Revoked {
			ids[i] = string(id)
		}
		fmt.Fprintf(stdout, "revoked %d outstanding download key(s) signed by the old key; bundles answering them will be refused: %s\n", len(ids), strings.Join(ids, ", "))
	}
	fmt.Fprintf(stdout, "next: give %s to the vendor, who runs 'airlock-server site add --name %s --key site.pub.asc --replace'; then make a new download key with 'airlock key new'\n", res.PublicKey, res.Site)
	return nil
}

// ImportCmd is airlock verify and airlock import.
type ImportCmd struct {
	Options
	ImportOptions
	// Bundle is the bundle file or its first volume.
	Bundle string
	JSON   bool
}

// RunVerify verifies a bundle against the repository and changes nothing
// (see Repo.Verify). The repository is read in one read-only transaction
// and closed before the bundle is read, so a long verification does not
// keep other commands waiting.
func RunVerify(ctx context.Context, c ImportCmd, stdout, stderr io.Writer) error {
	r, err := openRO(ctx, c.Options)
	if err != nil {
		return err
	}
	snap, err := r.snapshot()
	r.Close()
	if err != nil {
		return err
	}
	res, err := verifySnapshot(ctx, c.Bundle, snap, c.ImportOptions)
	if err != nil {
		return err
	}
	if c.JSON {
		return writeJSON(stdout, res)
	}
	printBundle(stdout, "verified", res)
	fmt.Fprintf(stdout, "nothing was changed; import it with 'airlock import %s'\n", c.Bundle)
	return nil
}

// RunImport imports a bundle (see Repo.Import).
func RunImport(ctx context.Context, c ImportCmd, stdout, stderr io.Writer) error {
	r, err := openRW(ctx, c.Options)
	if err != nil {
		return err
	}
	defer r.Close()
	res, err := r.Import(ctx, c.Bundle, c.ImportOptions)
	if err != nil {
		return err
	}
	if c.JSON {
		return writeJSON(stdout, res)
	}
	printBundle(stdout, "imported", res)
	return nil
}

func printBundle(w io.Writer, verb string, res *ImportResult) {
	var size int64
	fresh := 0
	for _, p := range res.Packages {
		size += p.Size
		if p.New {
			fresh++
		}
	}
	fmt.Fprintf(w, "%s bundle %s for site %s, answering download key %s\n", verb, res.Bundle, res.Site, res.KeyID)
	fmt.Fprintf(w, "courier %s (%s), vendor %s\n", res.Courier, printable(res.CourierUserID), res.Vendor)
	fmt.Fprintf(w, "%d package(s), %s, %d new, %d already stored:\n", len(res.Packages), progress.Bytes(size), fresh, len(res.Packages)-fresh)
	tw := table(w, "  PACKAGE", "KIND", "SIZE", "SHA256", "STATE")
	for _, p := range res.Packages {
		state := "new"
		if !p.New {
			state = "already stored"
		}
		row(tw, "  "+p.ID(), p.Kind, progress.Bytes(p.Size), p.SHA256.Short(), state)
	}
	tw.Flush()
}

// ListCmd is airlock list and airlock bundles.
type ListCmd struct {
	Options
	JSON bool
}

// RunList lists the stored packages.
func RunList(ctx context.Context, c ListCmd, stdout, stderr io.Writer) error {
	return listing[StoredPackage]{
		fetch:  (*Repo).Packages,
		empty:  "no packages: import a bundle with 'airlock import BUNDLE'",
		header: []string{"PACKAGE", "KIND", "SIZE", "SHA256", "REQUIRES", "SETTLE", "REBOOT", "IMPORTED"},
		row: func(p StoredPackage) []any {
			req := make([]string, len(p.Requires))
			for i, c := range p.Requires {
				req[i] = c.String()
			}
			settle := "-"
			if p.Settle > 0 {
				settle = time.Duration(p.Settle).String()
			}
			return []any{p.ID(), p.Kind, progress.Bytes(p.Size), p.SHA256.Short(), dash(strings.Join(req, ", ")), settle, p.Reboot, stamp(p.Imported)}
		},
	}.run(ctx, c.Options, c.JSON, stdout)
}

// RunBundles lists the imported bundles.
func RunBundles(ctx context.Context, c ListCmd, stdout, stderr io.Writer) error {
	return listing[BundleInfo]{
		fetch:  (*Repo).Bundles,
		empty:  "no bundles imported yet",
		header: []string{"BUNDLE", "KEY", "PACKAGES", "SIZE", "COURIER", "IMPORTED", "BY"},
		row: func(b BundleInfo) []any {
			return []any{b.ID, b.KeyID, len(b.Packages), progress.Bytes(b.Size), b.Courier, stamp(b.Imported), b.Actor}
		},
	}.run(ctx, c.Options, c.JSON, stdout)
}

// AuditCmd is airlock audit.
type AuditCmd struct {
	Options
	// Verify checks the hash chain instead of listing.
	Verify bool
	JSON   bool
}

// RunAudit lists the audit log, or with Verify checks its hash chain (see
// Repo.VerifyAudit).
func RunAudit(ctx context.Context, c AuditCmd, stdout, stderr io.Writer) error {
	r, err := openRO(ctx, c.Options)
	if err != nil {
		return err
	}
	defer r.Close()
	if c.Verify {
		s, err := r.VerifyAudit()
		if err != nil {
			return fmt.Errorf("repository %s: %w", r.dir, err)
		}
		if c.JSON {
			return writeJSON(stdout, s)
		}
		fmt.Fprintf(stdout, "audit log of %s: %d entries, hash chain intact; head %s\n", r.dir, s.Entries, s.Head)
		return nil
	}
	list, err := r.AuditLog()
	if err != nil {
		return err
	}
	if c.JSON {
		return writeJSON(stdout, nonNil(list))
	}
	tw := table(stdout, "SEQ", "TIME", "ACTOR", "ACTION", "DETAILS")
	for _, e := range list {
		row(tw, e.Seq, stamp(e.Time), printable(e.Actor), e.Action, printable(string(e.Details)))
	}
	return tw.Flush()
}

// CheckCmd is airlock check.
type CheckCmd struct {
	Options
	CheckOptions
	// Repair removes leftovers of interrupted imports, and finishes or
	// undoes an interrupted site key rotation, first (opening the
	// repository read-write).
	Repair bool
	JSON   bool
}

// RunCheck checks the repository (see Repo.Check), after Repair if asked.
func RunCheck(ctx context.Context, c CheckCmd, stdout, stderr io.Writer) error {
	var r *Repo
	var err error
	var removed, rotated []string
	if c.Repair {
		c.Options.ReadOnly = false
		// A read-write open repairs first (see Open).
		r, err = Open(ctx, c.Options)
		if err == nil {
			removed, rotated = r.recovered, r.rotated
		}
	} else {
		r, err = openRO(ctx, c.Options)
	}
	if r != nil {
		defer r.Close()
	}
	if err != nil {
		return err
	}
	rep, cerr := r.Check(ctx, c.CheckOptions)
	if rep == nil {
		return cerr
	}
	if c.JSON {
		if err := writeJSON(stdout, struct {
			*CheckReport
			Removed  []string `json:"removed"`
			Rotation []string `json:"rotation_recovered,omitempty"`
		}{rep, nonNil(removed), rotated}); err != nil {
			return err
		}
		return cerr
	}
	for _, s := range rotated {
		fmt.Fprintln(stdout, s)
	}
	for _, p := range removed {
		fmt.Fprintf(stdout, "removed %s (left by an interrupted import)\n", p)
	}
	if cerr != nil {
		return cerr
	}
	fmt.Fprintf(stdout, "repository %s: %d package(s) (%s re-hashed), %d bundle(s), %d download key(s), %d trusted key(s), %d audit entries: no problems\n",
		rep.Dir, rep.Packages, progress.Bytes(rep.Bytes), rep.Bundles, rep.Keys, rep.Trusted, rep.Audit.Entries)
	return nil
}

// listing is the shape of every listing command: read the list from the
// repository opened read-only, then print it as JSON (an empty list is [])
// or, for people, as a table, with a hint instead of an empty one.
type listing[T any] struct {
	fetch  func(*Repo) ([]T, error)
	empty  string
	header []string
	row    func(T) []any
}

func (l listing[T]) run(ctx context.Context, o Options, asJSON bool, stdout io.Writer) error {
	r, err := openRO(ctx, o)
	if err != nil {
		return err
	}
	defer r.Close()
	list, err := l.fetch(r)
	if err != nil {
		return err
	}
	if asJSON {
		return writeJSON(stdout, nonNil(list))
	}
	if len(list) == 0 {
		fmt.Fprintln(stdout, l.empty)
		return nil
	}
	tw := table(stdout, l.header...)
	for _, x := range list {
		row(tw, l.row(x)...)
	}
	return tw.Flush()
}

func openRO(ctx context.Context, o Options) (*Repo, error) {
	o.ReadOnly = true
	return Open(ctx, o)
}

func openRW(ctx context.Context, o Options) (*Repo, error) {
	o.ReadOnly = false
	return Open(ctx, o)
}

func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.SetEscapeHTML(false)
	return enc.Encode(v)
}

// nonNil makes an empty listing encode as [] rather than null.
func nonNil[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return s
}

func table(w io.Writer, header ...string) *tabwriter.Writer {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, strings.Join(header, "\t"))
	return tw
}

func row(tw *tabwriter.Writer, cells ...any) {
	s := make([]string, len(cells))
	for i, c := range cells {
		s[i] = fmt.Sprint(c)
	}
	fmt.Fprintln(tw, strings.Join(s, "\t"))
}

func stamp(t time.Time) string { return t.UTC().Format(time.RFC3339) }

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// printable makes text from outside (user IDs, details) safe to print:
// control and non-printing runes become '?', and it is cut to a sane length.
func printable(s string) string { return fault.Printable(s, 200) }
