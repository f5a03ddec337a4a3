package repo

import (
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/airlock-project/airlock/fault"
	"github.com/airlock-project/airlock/keys"
	"github.com/airlock-project/airlock/repo/repotest"
)

const testPassphrase = "correct horse battery staple"

// protectedRepo makes a repository whose site.key is encrypted with
// testPassphrase, and returns it with the init result.
func protectedRepo(t *testing.T) (string, *InitResult) {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "repo")
	res, err := InitWithPassphrase(context.Background(), Options{Dir: dir}, testSite, []byte(testPassphrase))
	if err != nil {
		t.Fatal(err)
	}
	return dir, res
}

// passFile writes content to a new file and returns its path.
func passFile(t *testing.T, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "pass.txt")
	must(t, os.WriteFile(p, []byte(content), 0o600))
	return p
}

func TestInitWithPassphrase(t *testing.T) {
	dir, res := protectedRepo(t)
	if !res.Protected {
		t.Error("result does not say site.key is passphrase-protected")
	}
	path := filepath.Join(dir, SiteKeyFile)
	if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("site.key: %v; want mode 0600", err)
	}
	// Encrypted: it does not open without the passphrase, or with another.
	if _, err := keys.ReadPrivateFile(path, nil); !errors.Is(err, keys.ErrPassphrase) {
		t.Fatalf("site.key opened without a passphrase: %v", err)
	}
	if _, err := keys.ReadPrivateFile(path, []byte("wrong")); !errors.Is(err, keys.ErrPassphrase) {
		t.Fatalf("site.key opened with a wrong passphrase: %v", err)
	}
	k, err := keys.ReadPrivateFile(path, []byte(testPassphrase))
	if err != nil {
		t.Fatal(err)
	}
	if k.Fingerprint() != res.SiteKey {
		t.Errorf("site.key holds %s, init reported %s", k.Fingerprint(), res.SiteKey)
	}
	if pub, err := keys.ReadPublicFile(res.PublicKey); err != nil || pub.Fingerprint() != res.SiteKey {
		t.Errorf("site.pub.asc: %v", err)
	}

	// Without a passphrase site.key stays as it was: in the clear.
	plain := filepath.Join(t.TempDir(), "repo")
	res, err = InitWithPassphrase(context.Background(), Options{Dir: plain}, testSite, nil)
	must(t, err)
	if res.Protected {
		t.Error("an unencrypted site.key is reported as protected")
	}
	if _, err := keys.ReadPrivateFile(filepath.Join(plain, SiteKeyFile), nil); err != nil {
		t.Errorf("unencrypted site.key: %v", err)
	}
}

func TestReadSiteKey(t *testing.T) {
	dir, res := protectedRepo(t)
	plain := filepath.Join(t.TempDir(), "plain")
	plainRes, err := Init(context.Background(), Options{Dir: plain}, testSite)
	must(t, err)
	keyPath := filepath.Join(dir, SiteKeyFile)
	never := func(string) ([]byte, error) {
		t.Error("prompted although it was not needed")
		return nil, errors.New("prompted")
	}
	typed := func(s string) func(string) ([]byte, error) {
		return func(path string) ([]byte, error) {
			if path != keyPath {
				t.Errorf("prompt names %s, want %s", path, keyPath)
			}
			return []byte(s), nil
		}
	}
	good := passFile(t, testPassphrase+"\n")
	for _, tc := range []struct {
		name string
		dir  string
		p    SiteKeyPassphrase
		code int      // 0: the key is read
		is   error    // the error matches it
		msg  []string // and says all of these
	}{
		{name: "file", dir: dir, p: SiteKeyPassphrase{File: good, Prompt: never}},
		{name: "file without line end", dir: dir, p: SiteKeyPassphrase{File: passFile(t, testPassphrase)}},
		{name: "file with CRLF", dir: dir, p: SiteKeyPassphrase{File: passFile(t, testPassphrase+"\r\n")}},
		{name: "prompt", dir: dir, p: SiteKeyPassphrase{Prompt: typed(testPassphrase)}},
		{name: "unencrypted, passphrase ignored", dir: plain, p: SiteKeyPassphrase{File: passFile(t, "anything\n"), Prompt: never}},
		{name: "unencrypted, nothing asked", dir: plain, p: SiteKeyPassphrase{Prompt: never}},
		{
			name: "missing, no terminal", dir: dir, p: SiteKeyPassphrase{},
			code: fault.ExitUsage, is: keys.ErrPassphrase,
			msg: []string{keyPath, "protected by a passphrase", "pass --passphrase-file FILE or set AIRLOCK_PASSPHRASE_FILE"},
		},
		{
			name: "wrong file", dir: dir, p: SiteKeyPassphrase{File: passFile(t, "wrong\n"), Prompt: never},
			code: fault.ExitUsage, is: keys.ErrPassphrase,
			msg: []string{keyPath, "does not decrypt it", "check --passphrase-file "},
		},
		{
			name: "wrong typed", dir: dir, p: SiteKeyPassphrase{Prompt: typed("wrong")},
			code: fault.ExitUsage, is: keys.ErrPassphrase,
			msg: []string{keyPath, "does not decrypt it", "type the passphrase of site.key"},
		},
		{
			name: "nothing typed", dir: dir, p: SiteKeyPassphrase{Prompt: typed("")},
			code: fault.ExitUsage, is: keys.ErrPassphrase, msg: []string{"no passphrase typed for " + keyPath, "--passphrase-file"},
		},
		{
			name: "empty file", dir: dir, p: SiteKeyPassphrase{File: passFile(t, "\n"), Prompt: never},
			code: fault.ExitUsage, is: keys.ErrPassphraseFile, msg: []string{"--passphrase-file", "is empty"},
		},
		{
			name: "empty file, unencrypted key", dir: plain, p: SiteKeyPassphrase{File: passFile(t, ""), Prompt: never},
			code: fault.ExitUsage, is: keys.ErrPassphraseFile, msg: []string{"is empty"},
		},
		{
			name: "no such file", dir: dir, p: SiteKeyPassphrase{File: filepath.Join(t.TempDir(), "nothere"), Prompt: never},
			code: fault.ExitUsage, is: keys.ErrPassphraseFile, msg: []string{"nothere does not exist"},
		},
		{
			name: "directory", dir: dir, p: SiteKeyPassphrase{File: t.TempDir(), Prompt: never},
			code: fault.ExitUsage, is: keys.ErrPassphraseFile, msg: []string{"not a regular file"},
		},
		{
			name: "no repository", dir: t.TempDir(), p: SiteKeyPassphrase{File: good, Prompt: never},
			code: fault.ExitUsage, is: ErrNoRepository, msg: []string{"airlock init"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			k, err := ReadSiteKey(tc.dir, tc.p)
			if tc.code == 0 {
				if err != nil {
					t.Fatal(err)
				}
				want := res.SiteKey
				if tc.dir == plain {
					want = plainRes.SiteKey
				}
				if k.Fingerprint() != want {
					t.Errorf("read key %s, want %s", k.Fingerprint(), want)
				}
				return
			}
			wantClass(t, err, tc.code, tc.is)
			for _, m := range tc.msg {
				if !strings.Contains(err.Error(), m) {
					t.Errorf("message %q does not say %q", err, m)
				}
			}
		})
	}

	// A prompt that fails (Ctrl-C, no terminal after all) fails the read.
	stop := errors.New("interrupted")
	if _, err := ReadSiteKey(dir, SiteKeyPassphrase{Prompt: func(string) ([]byte, error) { return nil, stop }}); !errors.Is(err, stop) {
		t.Errorf("failed prompt: %v", err)
	}
}

// TestKeyNewPassphrase issues download keys from a repository whose site
// key is encrypted: with the passphrase they verify with site.pub.asc;
// without it, or with a wrong one, nothing changes.
func TestKeyNewPassphrase(t *testing.T) {
	dir, _ := protectedRepo(t)
	ctx := context.Background()
	opts := Options{Dir: dir}
	out := filepath.Join(t.TempDir(), "dk.key")
	before, err := repotest.Snapshot(dir)
	must(t, err)
	for _, p := range []SiteKeyPassphrase{{}, {File: passFile(t, "wrong\n")}} {
		err := RunKeyNew(ctx, KeyNewCmd{Options: opts, Out: out, Passphrase: p}, io.Discard, io.Discard)
		wantClass(t, err, fault.ExitUsage, keys.ErrPassphrase)
		if _, err := os.Lstat(out); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("a refused key new wrote %s", out)
		}
		if after, _ := repotest.Snapshot(dir); after != before {
			t.Errorf("a refused key new changed the repository:\n%s\nwas\n%s", after, before)
		}
	}

	// IssueKey without a key to sign with reads site.key with no
	// passphrase: refused alike.
	r, err := Open(ctx, opts)
	must(t, err)
	_, _, err = r.IssueKey(KeyOptions{})
	wantClass(t, err, fault.ExitUsage, keys.ErrPassphrase)
	// Another key than the repository's own is refused.
	other, err := keys.Generate(keys.GenerateOptions{Name: "not the site"})
	must(t, err)
	_, _, err = r.IssueKey(KeyOptions{SiteKey: other})
	if err == nil || !strings.Contains(err.Error(), "restore the original site.key") {
		t.Errorf("IssueKey signed with a foreign key: %v", err)
	}
	r.Close()

	must(t, RunKeyNew(ctx, KeyNewCmd{Options: opts, Out: out, Passphrase: SiteKeyPassphrase{File: passFile(t, testPassphrase+"\n")}}, io.Discard, io.Discard))
	dk, err := repotest.ReadDownloadKey(out, filepath.Join(dir, SitePublicKey))
	if err != nil {
		t.Fatalf("download key signed with the decrypted site key: %v", err)
	}
	if dk.Site != testSite {
		t.Errorf("download key for site %q", dk.Site)
	}
}
