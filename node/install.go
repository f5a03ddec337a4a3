package node

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"

	"github.com/airlock-project/airlock/atomicfile"
	"github.com/airlock-project/airlock/catalog"
)

// Names inside D/releases/<name>/.
const (
	currentLink = "current"
	tempPrefix  = ".tmp-"
)

func (a *Agent) releasesDir() string { return filepath.Join(a.dir, "releases") }

// install runs the install of staged package d for job id (see the package
// documentation for the steps). On any error the previous release is
// current, the installed version unchanged, and the new release removed.
func (a *Agent) install(ctx context.Context, d catalog.Digest, id string, log *slog.Logger) (err error) {
	p, err := a.verifiedPackage(d)
	if err != nil {
		return err
	}
	log = log.With("package", p.String())
	a.mu.Lock()
	installed := a.st.installedCopy()
	err = a.policyCheck(p, installed)
	a.mu.Unlock()
	if err != nil {
		return err
	}
	prevVersion := installed[p.Name]
	name := a.Name()
	// ioFail names the node and package of an I/O failure.
	ioFail := func(err error) error { return fmt.Errorf("node %s: install %s: %w", name, p, err) }

	f, err := a.blobs.Open(d)
	if err != nil {
		return fmt.Errorf("%w: package %s is no longer staged on node %s (%v); stage it again with 'airlock distribute'", ErrNotStaged, p, name, err)
	}
	defer f.Close()

	relRoot := filepath.Join(a.releasesDir(), p.Name)
	if err := os.MkdirAll(relRoot, 0o755); err != nil {
		return ioFail(err)
	}
	tmp, err := os.MkdirTemp(relRoot, tempPrefix+p.Version.String()+"-")
	if err != nil {
		return ioFail(err)
	}
	final := filepath.Join(relRoot, p.Version.String())
	placed := false
	defer func() {
		if err == nil {
			return
		}
		if rerr := os.RemoveAll(tmp); rerr != nil {
			log.Error("cannot remove the temporary release", "dir", tmp, "err", rerr)
		}
		if placed {
			if rerr := os.RemoveAll(final); rerr != nil {
				log.Error("cannot remove the failed release", "dir", final, "err", rerr)
			}
		}
	}()

	kind, err := unpack(ctx, f, tmp, p, a.opts.limitsFor(p))
	if errors.Is(err, ErrDigest) {
		// Drop the damaged file so that the package can be uploaded again.
		if rerr := a.blobs.Remove(d); rerr != nil {
			log.Error("cannot remove the damaged staged file", "err", rerr)
		}
	}
	if err != nil {
		return fmt.Errorf("node %s: %w", name, err)
	}
	if err := os.Chmod(tmp, 0o755); err != nil {
		return ioFail(err)
	}
	log.Info("package unpacked", "format", kind.String())
	a.opts.crash(CrashAfterUnpack)

	// A directory already at final is the leftover of a failed attempt:
	// recovery and every failure remove releases newer than the installed
	// version, and only the installed version's release is ever current.
	if err := os.RemoveAll(final); err != nil {
		return ioFail(err)
	}
	if err := os.Rename(tmp, final); err != nil {
		return ioFail(err)
	}
	placed = true
	if err := atomicfile.SyncDir(relRoot); err != nil {
		return ioFail(err)
	}

	// Hooks run in the release, and get absolute paths.
	hookDir := filepath.Join(a.absDir, "releases", p.Name, p.Version.String())
	if err := a.runInstallHook(ctx, HookPreInstall, p, hookDir, prevVersion, log); err != nil {
		return fmt.Errorf("%w; %s was not installed and the previous release stays current: %s", err, p, hookFix(err, "install again"))
	}
	a.opts.crash(CrashAfterPreInstall)

	prevTarget, err := readCurrent(relRoot)
	if err != nil {
		return ioFail(err)
	}
	if err := switchCurrent(relRoot, p.Version.String()); err != nil {
		return ioFail(err)
	}
	a.opts.crash(CrashAfterSwitch)
	restore := func(cause error) error {
		if rerr := switchCurrent(relRoot, prevTarget); rerr != nil {
			return fmt.Errorf("%w; and switching current back to %q failed: %v (the agent repairs it when it restarts)", cause, prevTarget, rerr)
		}
		return cause
	}

	if err := a.runInstallHook(ctx, HookPostInstall, p, hookDir, prevVersion, log); err != nil {
		if rerr := switchCurrent(relRoot, prevTarget); rerr != nil {
			return fmt.Errorf("%w; and switching current back to %q failed: %v (the agent repairs it when it restarts)", err, prevTarget, rerr)
		}
		return fmt.Errorf("%w; %s was not installed and the previous release is current again: %s", err, p, hookFix(err, "install again"))
	}
	a.opts.crash(CrashBeforeCommit)

	// The commit point: the new version and the job's success in one write.
	a.mu.Lock()
	old, had := a.st.Installed[p.Name]
	a.st.Installed[p.Name] = p.Version
	j := a.st.job(id)
	var saved Job
	if j != nil {
		saved = *j
		j.State, j.Finished, j.Error, j.Code = JobSucceeded, a.opts.now(), "", ""
	}
	if serr := a.st.save(a.dir); serr != nil {
		if had {
			a.st.Installed[p.Name] = old
		} else {
			delete(a.st.Installed, p.Name)
		}
		if j != nil {
			*j = saved
		}
		a.mu.Unlock()
		return restore(fmt.Errorf("node %s: record the install of %s in %s: %w", a.st.Name, p, statePath(a.dir), serr))
	}
	a.settling[id] = true
	a.mu.Unlock()
	defer func() {
		a.mu.Lock()
		delete(a.settling, id)
		a.mu.Unlock()
	}()
	a.opts.crash(CrashAfterCommit)
	log.Info("package installed", "previous", prevVersion.String())

	// Housekeeping; the install has succeeded whatever happens here.
	if err := pruneReleases(relRoot, p.Version.String(), prevTarget); err != nil {
		log.Warn("cannot remove old releases", "err", err)
	}
	for _, old := range a.stagedNotNewer(p.Name, p.Version) {
		if err := a.removeStaged(old); err != nil {
			log.Warn("cannot remove a package no longer needed from the staging area", "sha256", old.String(), "err", err)
		}
	}
	return nil
}

// readCurrent returns the target of relRoot/current, or "" if there is none.
func readCurrent(relRoot string) (string, error) {
	t, err := os.Readlink(filepath.Join(relRoot, currentLink))
	if errors.Is(err, fs.ErrNotExist) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("%s: %w", filepath.Join(relRoot, currentLink), err)
	}
	return t, nil
}

// switchCurrent points relRoot/current at target atomically: a symlink
// made under a temporary name is renamed over current, and the directory is
// synced. An empty target removes current.
func switchCurrent(relRoot, target string) error {
	cur := filepath.Join(relRoot, currentLink)
	if target == "" {
		if err := os.Remove(cur); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return err
		}
		return atomicfile.SyncDir(relRoot)
	}
	var b [8]byte
	if _, err := rand.Read(b[:]); err != nil {
		return err
	}
	tmp := filepath.Join(relRoot, tempPrefix+currentLink+"-"+hex.EncodeToString(b[:]))
	if err := os.Symlink(target, tmp); err != nil {
		return err
	}
	if err := os.Rename(tmp, cur); err != nil {
		os.Remove(tmp)
		return err
	}
	return atomicfile.SyncDir(relRoot)
}

// pruneReleases removes the releases in relRoot other than keep and prev.
func pruneReleases(relRoot, keep, prev string) error {
	ents, err := os.ReadDir(relRoot)
	if err != nil {
		return err
	}
	for _, e := range ents {
		n := e.Name()
		if n == keep || n == prev || n == currentLink || strings.HasPrefix(n, tempPrefix) {
			continue
		}
		if _, err := catalog.ParseVersion(n); err != nil || !e.IsDir() {
			continue
		}
		if err := os.RemoveAll(filepath.Join(relRoot, n)); err != nil {
			return err
		}
	}
	return nil
}

// recoverReleases makes D/releases agree with state.json, which is
// authoritative (see the package documentation). It reports whether it
// changed anything. It runs before the worker starts.
func (a *Agent) recoverReleases() (bool, error) {
	root := a.releasesDir()
	comps, err := os.ReadDir(root)
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	changed := false
	for _, c := range comps {
		name := c.Name()
		if !c.IsDir() || catalog.ValidName(name) != nil {
			a.log.Warn("unexpected entry in the releases directory left alone", "entry", name)
			continue
		}
		relRoot := filepath.Join(root, name)
		want, installed := a.st.Installed[name]
		ents, err := os.ReadDir(relRoot)
		if err != nil {
			return changed, err
		}
		for _, e := range ents {
			n := e.Name()
			if strings.HasPrefix(n, tempPrefix) {
				a.log.Info("removing an interrupted install's temporary files", "component", name, "entry", n)
				if err := os.RemoveAll(filepath.Join(relRoot, n)); err != nil {
					return changed, err
				}
				continue
			}
			v, err := catalog.ParseVersion(n)
			if err != nil || !e.IsDir() {
				continue
			}
			if !installed || v.Compare(want) > 0 || (v.Compare(want) == 0 && n != want.String()) {
				a.log.Warn("removing a release that was never committed", "component", name, "version", n)
				if err := os.RemoveAll(filepath.Join(relRoot, n)); err != nil {
					return changed, err
				}
				changed = true
			}
		}
		target := ""
		if installed {
			if fi, err := os.Stat(filepath.Join(relRoot, want.String())); err == nil && fi.IsDir() {
				target = want.String()
			}
		}
		cur, err := readCurrent(relRoot)
		if err != nil {
			return changed, err
		}
		if cur != target {
			a.log.Warn("repairing current to match the installed version", "component", name, "current", cur, "installed", want.String(), "target", target)
			if err := switchCurrent(relRoot, target); err != nil {
				return changed, err
			}
			changed = true
		}
	}
	return changed, nil
}

// runInstallHook runs D/hooks/<hook> NAME VERSION RELEASE_DIR, if it
// exists, with the release directory as working directory, the AIRLOCK_*
// variables of the package and Options.HookTimeout (see runHook).
func (a *Agent) runInstallHook(ctx context.Context, hook string, p catalog.Package, relDir string, prev catalog.Version, log *slog.Logger) error {
	_, err := a.runHook(ctx, hookCall{
		hook:    hook,
		flag:    "--hook-timeout",
		about:   "for package " + p.String(),
		args:    []string{p.Name, p.Version.String(), relDir},
		dir:     relDir,
		timeout: a.opts.HookTimeout,
		env: []string{
			"AIRLOCK_PACKAGE=" + p.Name,
			"AIRLOCK_VERSION=" + p.Version.String(),
			"AIRLOCK_KIND=" + string(p.Kind),
			"AIRLOCK_SHA256=" + p.SHA256.String(),
			"AIRLOCK_RELEASE_DIR=" + relDir,
			"AIRLOCK_PREVIOUS_VERSION=" + prev.String(),
		},
	}, log)
	return err
}
