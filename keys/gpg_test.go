package keys

// Interoperability with stock GnuPG (2.2 and later): everything airlock
// writes, gpg reads, and airlock verifies what gpg signs. Skipped only when
// there is no gpg binary; CI installs it.

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

type gpgHome struct {
	t   *testing.T
	dir string
}

func newGPG(t *testing.T) *gpgHome {
	t.Helper()
	if _, err := exec.LookPath("gpg"); err != nil {
		t.Skip("gpg not installed")
	}
	// A short path: gpg-agent's socket path must fit in sun_path.
	dir, err := os.MkdirTemp("", "gpg")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		kill := exec.Command("gpgconf", "--kill", "gpg-agent")
		kill.Env = append(os.Environ(), "GNUPGHOME="+dir)
		kill.Run()
		os.RemoveAll(dir)
	})
	return &gpgHome{t: t, dir: dir}
}

// try runs gpg in this home and returns stdout, stderr and the error.
func (g *gpgHome) try(stdin []byte, args ...string) ([]byte, string, error) {
	g.t.Helper()
	full := append([]string{"--homedir", g.dir, "--batch", "--no-tty", "--yes", "--pinentry-mode", "loopback"}, args...)
	cmd := exec.Command("gpg", full...)
	cmd.Env = append(os.Environ(), "GNUPGHOME="+g.dir, "LC_ALL=C")
	cmd.Stdin = bytes.NewReader(stdin)
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err := cmd.Run()
	return out.Bytes(), errOut.String(), err
}

func (g *gpgHome) run(stdin []byte, args ...string) []byte {
	g.t.Helper()
	out, stderr, err := g.try(stdin, args...)
	if err != nil {
		g.t.Fatalf("gpg %s: %v\n%s", strings.Join(args, " "), err, stderr)
	}
	return out
}

func (g *gpgHome) file(name string, content []byte) string {
	g.t.Helper()
	p := filepath.Join(g.dir, name)
	if err := os.WriteFile(p, content, 0o600); err != nil {
		g.t.Fatal(err)
	}
	return p
}

// genKey makes a key with gpg and returns its fingerprint.
func (g *gpgHome) genKey(uid, algo, expire string) Fingerprint {
	g.t.Helper()
	g.run(nil, "--passphrase", "", "--quick-gen-key", uid, algo, "sign", expire)
	out := g.run(nil, "--with-colons", "--list-keys", uid)
	m := regexp.MustCompile(`(?m)^fpr:+([0-9A-F]{40}):`).FindSubmatch(out)
	if m == nil {
		g.t.Fatalf("no fingerprint in:\n%s", out)
	}
	fp, err := ParseFingerprint(string(m[1]))
	if err != nil {
		g.t.Fatal(err)
	}
	return fp
}

func (g *gpgHome) export(fp Fingerprint) []byte {
	return g.run(nil, "--armor", "--export", fp.String())
}

// validSig checks gpg's status output for a good signature by fp.
func validSig(t *testing.T, status []byte, fp Fingerprint) {
	t.Helper()
	if !bytes.Contains(status, []byte("[GNUPG:] VALIDSIG "+fp.String())) {
		t.Fatalf("gpg reports no valid signature by %s:\n%s", fp, status)
	}
}

func TestGPGReadsWhatWeWrite(t *testing.T) {
	g := newGPG(t)
	k, err := Generate(GenerateOptions{Name: "Jane Courier", Email: "jane@airlock.example"})
	if err != nil {
		t.Fatal(err)
	}
	pub := filepath.Join(g.dir, "courier.pub.asc")
	if err := WritePublicFile(pub, k.Public()); err != nil {
		t.Fatal(err)
	}
	g.run(nil, "--import", pub)
	if out := g.run(nil, "--with-colons", "--list-keys", k.Fingerprint().String()); !bytes.Contains(out, []byte("uid:")) ||
		!bytes.Contains(out, []byte("Jane Courier <jane@airlock.example>")) || !bytes.Contains(out, []byte("pub:-:255:22:")) {
		t.Fatalf("gpg lists:\n%s", out)
	}

	data := []byte("{\"format\":\"airlock-manifest/v1\"}\n")
	dataPath := g.file("manifest.json", data)
	var sig bytes.Buffer
	if err := k.SignDetached(&sig, bytes.NewReader(data)); err != nil {
		t.Fatal(err)
	}
	sigPath := g.file("manifest.json.asc", sig.Bytes())
	validSig(t, g.run(nil, "--status-fd", "1", "--verify", sigPath, dataPath), k.Fingerprint())
	tampered := g.file("tampered.json", append(data, ' '))
	if _, _, err := g.try(nil, "--verify", sigPath, tampered); err == nil {
		t.Fatal("gpg accepted our signature over changed data")
	}

	var msg bytes.Buffer
	if err := k.SignMessage(&msg, data); err != nil {
		t.Fatal(err)
	}
	msgPath := g.file("download.key", msg.Bytes())
	out := g.run(nil, "--status-fd", "2", "--decrypt", msgPath)
	if !bytes.Equal(out, data) {
		t.Fatalf("gpg --decrypt gave %q, want %q", out, data)
	}
	_, stderr, err := g.try(nil, "--status-fd", "2", "--decrypt", msgPath)
	if err != nil {
		t.Fatal(err)
	}
	validSig(t, []byte(stderr), k.Fingerprint())
	validSig(t, g.run(nil, "--status-fd", "1", "--verify", msgPath), k.Fingerprint())
}

// The contract test imports a courier key made by airlock-fetch into gpg and
// signs with it, as an attacker with a stolen or own key would.
func TestGPGImportsOurPrivateKey(t *testing.T) {
	for _, pass := range []string{"", "s3cret passphrase"} {
		name := "unencrypted"
		if pass != "" {
			name = "encrypted"
		}
		t.Run(name, func(t *testing.T) {
			g := newGPG(t)
			k, err := Generate(GenerateOptions{Name: "Mallory"})
			if err != nil {
				t.Fatal(err)
			}
			keyPath := filepath.Join(g.dir, "mallory.key")
			if err := WritePrivateFile(keyPath, k, []byte(pass)); err != nil {
				t.Fatal(err)
			}
			g.run(nil, "--passphrase", pass, "--import", keyPath)
			if out := g.run(nil, "--with-colons", "--list-secret-keys"); !bytes.Contains(out, []byte(k.Fingerprint().String())) {
				t.Fatalf("gpg has no secret key %s:\n%s", k.Fingerprint(), out)
			}
			data := g.file("manifest.json", []byte("forged manifest\n"))
			sigPath := filepath.Join(g.dir, "manifest.json.asc")
			g.run(nil, "--passphrase", pass, "--armor", "--detach-sign", "-o", sigPath, data)
			sig, _ := os.ReadFile(sigPath)

			ts := store(t, RoleCourier, k.Public())
			s, err := ts.VerifyDetached(RoleCourier, strings.NewReader("forged manifest\n"), bytes.NewReader(sig), Policy{})
			if err != nil {
				t.Fatal(err)
			}
			if s.Signer != k.Fingerprint() {
				t.Errorf("signer %s, want %s", s.Signer, k.Fingerprint())
			}
			// And untrusted, it is refused as the contract test expects.
			_, err = NewTrustStore().VerifyDetached(RoleCourier, strings.NewReader("forged manifest\n"), bytes.NewReader(sig), Policy{})
			wantErr(t, err, ErrUnknownSigner, k.Fingerprint().String())
		})
	}
}

func TestGPGSignaturesVerifiedByUs(t *testing.T) {
	g := newGPG(t)
	fp := g.genKey("Test <t@example>", "ed25519", "never")
	pub, err := ReadPublic(bytes.NewReader(g.export(fp)))
	if err != nil {
		t.Fatal(err)
	}
	if pub.Fingerprint() != fp || pub.UserID() != "Test <t@example>" {
		t.Fatalf("read %s %q", pub.Fingerprint(), pub.UserID())
	}
	ts := store(t, RoleCourier, pub)
	data := []byte("line one\nline two\n")
	dataPath := g.file("data", data)

	verify := func(t *testing.T, sig []byte, data []byte) (Signature, error) {
		return ts.VerifyDetached(RoleCourier, bytes.NewReader(data), bytes.NewReader(sig), Policy{})
	}
	t.Run("detached", func(t *testing.T) {
		sig := g.run(nil, "--armor", "--detach-sign", "-o", "-", dataPath)
		s, err := verify(t, sig, data)
		if err != nil {
			t.Fatal(err)
		}
		if s.Signer != fp || s.SigningKey != fp || s.UserID != "Test <t@example>" || time.Since(s.Created) > time.Hour {
			t.Errorf("signature %+v", s)
		}
		_, err = verify(t, sig, append(data, '!'))
		wantErr(t, err, ErrBadSignature)
		_, err = store(t, RoleVendor, pub).VerifyDetached(RoleCourier, bytes.NewReader(data), bytes.NewReader(sig), Policy{})
		wantErr(t, err, ErrWrongRole)
	})
	t.Run("textmode", func(t *testing.T) {
		sig := g.run(nil, "--textmode", "--armor", "--detach-sign", "-o", "-", dataPath)
		if _, err := verify(t, sig, data); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("SHA-512", func(t *testing.T) {
		sig := g.run(nil, "--digest-algo", "SHA512", "--armor", "--detach-sign", "-o", "-", dataPath)
		if _, err := verify(t, sig, data); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("binary signature refused", func(t *testing.T) {
		sig := g.run(nil, "--detach-sign", "-o", "-", dataPath)
		_, err := verify(t, sig, data)
		wantErr(t, err, ErrMalformed)
	})
	t.Run("signed message, compressed", func(t *testing.T) {
		msg := g.run(nil, "--armor", "--sign", "-o", "-", dataPath)
		got, s, err := ts.VerifyMessage(RoleCourier, bytes.NewReader(msg), Policy{})
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, data) || s.Signer != fp {
			t.Errorf("got %q by %s", got, s.Signer)
		}
	})
	t.Run("signed message, uncompressed", func(t *testing.T) {
		msg := g.run(nil, "--compress-algo", "none", "--armor", "--sign", "-o", "-", dataPath)
		got, _, err := ts.VerifyMessage(RoleCourier, bytes.NewReader(msg), Policy{})
		if err != nil || !bytes.Equal(got, data) {
			t.Fatalf("got %q, %v", got, err)
		}
	})
	t.Run("clearsigned refused", func(t *testing.T) {
		msg := g.run(nil, "--clearsign", "-o", "-", dataPath)
		_, _, err := ts.VerifyMessage(RoleCourier, bytes.NewReader(msg), Policy{})
		wantErr(t, err, ErrMalformed)
	})
	t.Run("exported private key signs", func(t *testing.T) {
		k, err := ReadPrivate(bytes.NewReader(g.run(nil, "--passphrase", "", "--armor", "--export-secret-keys", fp.String())), nil)
		if err != nil {
			t.Fatal(err)
		}
		var sig bytes.Buffer
		if err := k.SignDetached(&sig, bytes.NewReader(data)); err != nil {
			t.Fatal(err)
		}
		validSig(t, g.run(nil, "--status-fd", "1", "--verify", g.file("ours.asc", sig.Bytes()), dataPath), fp)
	})
	t.Run("signing subkey", func(t *testing.T) {
		g.run(nil, "--passphrase", "", "--quick-add-key", fp.String(), "ed25519", "sign", "never")
		pub2, err := ReadPublic(bytes.NewReader(g.export(fp)))
		if err != nil {
			t.Fatal(err)
		}
		ts2 := store(t, RoleCourier, pub2)
		sig := g.run(nil, "--armor", "--detach-sign", "-o", "-", dataPath)
		s, err := ts2.VerifyDetached(RoleCourier, bytes.NewReader(data), bytes.NewReader(sig), Policy{})
		if err != nil {
			t.Fatal(err)
		}
		if s.Signer != fp || s.SigningKey == fp {
			t.Errorf("signer %s signing key %s: want the subkey of %s", s.Signer, s.SigningKey, fp)
		}
		// The old certificate, without the subkey, does not know it.
		_, err = ts.VerifyDetached(RoleCourier, bytes.NewReader(data), bytes.NewReader(sig), Policy{})
		wantErr(t, err, ErrUnknownSigner)
	})
}

func TestGPGKeyLifecycle(t *testing.T) {
	g := newGPG(t)
	fp := g.genKey("Expiring <e@example>", "ed25519", "1d")
	pub, err := ReadPublic(bytes.NewReader(g.export(fp)))
	if err != nil {
		t.Fatal(err)
	}
	if d := time.Until(pub.Expires()); d < 23*time.Hour || d > 25*time.Hour {
		t.Fatalf("gpg key expires %v, want in a day", pub.Expires())
	}
	dataPath := g.file("data", []byte("d"))
	sig := g.run(nil, "--armor", "--detach-sign", "-o", "-", dataPath)
	ts := store(t, RoleSite, pub)
	if _, err := ts.VerifyDetached(RoleSite, strings.NewReader("d"), bytes.NewReader(sig), Policy{}); err != nil {
		t.Fatal(err)
	}
	_, err = ts.VerifyDetached(RoleSite, strings.NewReader("d"), bytes.NewReader(sig), Policy{Now: time.Now().Add(48 * time.Hour)})
	wantErr(t, err, ErrKeyExpired, fp.String())

	// Revoke with the certificate gpg stored at generation.
	rev, err := os.ReadFile(filepath.Join(g.dir, "openpgp-revocs.d", fp.String()+".rev"))
	if err != nil {
		t.Fatal(err)
	}
	g.run(bytes.Replace(rev, []byte(":-----BEGIN"), []byte("-----BEGIN"), 1), "--import")
	revoked, err := ReadPublic(bytes.NewReader(g.export(fp)))
	if err != nil {
		t.Fatal(err)
	}
	if !revoked.Revoked() {
		t.Fatal("gpg revocation not seen")
	}
	_, err = store(t, RoleSite, revoked).VerifyDetached(RoleSite, strings.NewReader("d"), bytes.NewReader(sig), Policy{})
	wantErr(t, err, ErrKeyRevoked, fp.String())
}

func TestGPGWeakKeysRefused(t *testing.T) {
	g := newGPG(t)
	dataPath := g.file("data", []byte("d"))
	cases := []struct {
		algo   string
		digest string
		key    error // from ReadPublic
		sig    error // from VerifyDetached; the key is trusted only if ReadPublic took it
	}{
		{"dsa2048", "", ErrWeakAlgorithm, ErrWeakAlgorithm},
		{"rsa1024", "", ErrWeakRSA, ErrUnknownSigner},
		{"rsa2048", "SHA1", nil, ErrWeakHash},
	}
	for _, c := range cases {
		t.Run(c.algo+c.digest, func(t *testing.T) {
			fp := g.genKey(c.algo+" <"+c.algo+"@example>", c.algo, "never")
			pub, err := ReadPublic(bytes.NewReader(g.export(fp)))
			wantErr(t, err, c.key)
			ts := NewTrustStore()
			if pub != nil {
				ts = store(t, RoleCourier, pub)
			}
			args := []string{"--local-user", fp.String(), "--armor", "--detach-sign", "-o", "-"}
			if c.digest != "" {
				args = append(args, "--digest-algo", c.digest)
			}
			sig := g.run(nil, append(args, dataPath)...)
			_, err = ts.VerifyDetached(RoleCourier, strings.NewReader("d"), bytes.NewReader(sig), Policy{})
			wantErr(t, err, c.sig)
		})
	}
}
