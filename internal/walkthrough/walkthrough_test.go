package walkthrough

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/klauspost/compress/zstd"
)

const (
	readmePath = "../../README.md"
	section    = "## A deployment, step by step"
)

// programs are the binaries the README's commands run.
var programs = []string{"airlock", "airlock-fetch", "airlock-server", "airlock-node"}

// TestReadmeWalkthrough runs every command of the README's deployment
// walk-through, in order, as one administrator would on four kinds of
// machine, here all on loopback in one temporary directory:
//
//   - The README's directories (/srv/airlock, /var/lib/airlock, …), host
//     names and listen addresses become temporary directories and free
//     loopback ports; the placeholder fingerprints become the ones the
//     nodes' init printed. A command still naming a real-world path, host
//     or placeholder after that fails the test: a new one must be added to
//     the table below, not silently skipped.
//   - Files the README says to carry between machines (vendor.pub.asc,
//     site.pub.asc, the nodes' tokens) are copied into the working
//     directory as soon as they exist; the package files, and the TLS
//     certificate of the update server (trusted through SSL_CERT_FILE, as
//     a public CA would be), are made up front.
//   - The node block runs once per node: as written for n1, and for n2
//     "the same with --name n2 --role backup", as the README says.
//   - "serve" commands run in the background until the test ends; an
//     "airlock install" gets --yes, as there is no terminal to confirm on.
//
// Every command must exit 0. At the end both nodes must run the published
// versions.
func TestReadmeWalkthrough(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the programs and runs the whole walk-through")
	}
	blocks := readmeBlocks(t)
	bin := buildPrograms(t)

	root := t.TempDir()
	work := filepath.Join(root, "work") // the current directory of every machine
	dirs := map[string]string{
		"vendor": filepath.Join(root, "srv-airlock"),
		"repo":   filepath.Join(root, "var-lib-airlock"),
		"stick":  filepath.Join(root, "media-stick"),
		"n1":     filepath.Join(root, "n1", "var-lib-airlock-node"),
		"n2":     filepath.Join(root, "n2", "var-lib-airlock-node"),
	}
	for _, d := range []string{work, dirs["stick"], filepath.Dir(dirs["n1"]), filepath.Dir(dirs["n2"])} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	writeCert(t, work)
	serverPort, n1Port, n2Port := freePort(t), freePort(t), freePort(t)

	w := &walker{t: t, work: work, bin: bin, env: []string{
		"PATH=" + bin + string(os.PathListSeparator) + os.Getenv("PATH"),
		"HOME=" + root,
		"TMPDIR=" + os.TempDir(),
		"SSL_CERT_FILE=" + filepath.Join(work, "cert.pem"),
	}}
	w.carry = map[string]string{
		"vendor.pub.asc": filepath.Join(dirs["vendor"], "vendor.pub.asc"),
		"site.pub.asc":   filepath.Join(dirs["repo"], "site.pub.asc"),
		"n1.token":       filepath.Join(dirs["n1"], "token"),
		"n2.token":       filepath.Join(dirs["n2"], "token"),
	}
	// Longer paths first: /var/lib/airlock-node before /var/lib/airlock.
	w.subst = []string{
		"/var/lib/airlock-node", dirs["n1"],
		"/var/lib/airlock", dirs["repo"],
		"/srv/airlock", dirs["vendor"],
		"/media/stick", dirs["stick"],
		"https://updates.acme.example", fmt.Sprintf("https://127.0.0.1:%d", serverPort),
		"0.0.0.0:443", fmt.Sprintf("127.0.0.1:%d", serverPort),
		"0.0.0.0:9443", fmt.Sprintf("127.0.0.1:%d", n1Port),
		"https://n1.plant:9443", fmt.Sprintf("https://127.0.0.1:%d", n1Port),
		"https://n2.plant:9443", fmt.Sprintf("https://127.0.0.1:%d", n2Port),
	}
	// n2 runs the node block "with --name n2 --role backup".
	n2 := []string{
		"/var/lib/airlock-node", dirs["n2"],
		"--name n1", "--name n2",
		"--role primary", "--role backup",
		"0.0.0.0:9443", fmt.Sprintf("127.0.0.1:%d", n2Port),
	}
	fingerprints := map[string]string{"n1": "5E:0F:…", "n2": "9A:41:…"}

	for _, b := range blocks {
		for _, line := range b {
			for _, name := range packageFiles(line) {
				writePackage(t, filepath.Join(work, name), name)
			}
		}
		if !strings.Contains(strings.Join(b, "\n"), "airlock-node init") {
			w.runBlock(b, nil)
			continue
		}
		for _, n := range []string{"n1", "n2"} {
			var extra []string
			if n == "n2" {
				extra = n2
			}
			out := w.runBlock(b, extra)
			fp := regexp.MustCompile(`([0-9A-F]{2}:){31}[0-9A-F]{2}`).FindString(out)
			if fp == "" {
				t.Fatalf("the node block printed no certificate fingerprint for %s:\n%s", n, out)
			}
			w.subst = append(w.subst, fingerprints[n], fp)
		}
	}
	if w.ran < 20 {
		t.Fatalf("ran %d commands of the README; the walk-through has more: is the section parsed right?", w.ran)
	}

	// Both nodes run what the vendor published.
	out := w.run("airlock status --json", nil)
	var st struct {
		Nodes []struct {
			Name      string            `json:"name"`
			Installed map[string]string `json:"installed"`
		} `json:"nodes"`
	}
	if err := json.Unmarshal([]byte(out), &st); err != nil {
		t.Fatalf("airlock status --json: %v\n%s", err, out)
	}
	if len(st.Nodes) != 2 {
		t.Fatalf("airlock status lists %d nodes, want 2:\n%s", len(st.Nodes), out)
	}
	for _, n := range st.Nodes {
		if n.Installed["base"] != "3.4.0" || n.Installed["product"] != "22.1.0" {
			t.Errorf("node %s runs %v after the walk-through, want base 3.4.0 and product 22.1.0", n.Name, n.Installed)
		}
	}
}

// TestReadmeInlineCommands checks that every command the README's prose
// mentions in `code` (airlock key list, airlock install --abandon, …)
// exists with the flags it names.
func TestReadmeInlineCommands(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the programs")
	}
	readme, err := os.ReadFile(readmePath)
	if err != nil {
		t.Fatal(err)
	}
	bin := buildPrograms(t)
	prose := regexp.MustCompile("(?s)```.*?```").ReplaceAllString(string(readme), "")
	spans := regexp.MustCompile("`([^`]+)`").FindAllStringSubmatch(prose, -1) // a span may wrap
	checked := 0
	for _, m := range spans {
		words := strings.Fields(m[1])
		span := strings.Join(words, " ")
		if len(words) < 2 || !isProgram(words[0]) {
			continue
		}
		var sub, flags []string
		for _, w := range words[1:] {
			switch {
			case strings.HasPrefix(w, "--"):
				flags = append(flags, strings.SplitN(w, "=", 2)[0])
			case len(flags) == 0 && regexp.MustCompile(`^[a-z][a-z-]*$`).MatchString(w):
				sub = append(sub, w)
			}
		}
		args := append(append([]string{}, sub...), "--help")
		cmd := exec.Command(filepath.Join(bin, words[0]), args...)
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Errorf("README mentions `%s`, but %s %s fails: %v\n%s", span, words[0], strings.Join(args, " "), err, out)
			continue
		}
		if len(sub) > 0 && !strings.Contains(string(out), strings.Join(append([]string{words[0]}, sub...), " ")) {
			t.Errorf("README mentions `%s`, but %s has no command %q:\n%s", span, words[0], strings.Join(sub, " "), out)
		}
		for _, f := range flags {
			if !regexp.MustCompile(regexp.QuoteMeta(f) + `\b`).Match(out) {
				t.Errorf("README mentions `%s`, but %s %s has no flag %s", span, words[0], strings.Join(sub, " "), f)
			}
		}
		t.Logf("checked `%s`", span)
		checked++
	}
	if checked < 5 {
		t.Fatalf("checked %d inline commands; the README mentions more: is the pattern right?", checked)
	}
}

func isProgram(s string) bool {
	for _, p := range programs {
		if s == p {
			return true
		}
	}
	return false
}

// readmeBlocks returns the sh blocks of the walk-through section, each as
// its logical command lines (continuations joined, comments dropped).
func readmeBlocks(t *testing.T) [][]string {
	t.Helper()
	readme, err := os.ReadFile(readmePath)
	if err != nil {
		t.Fatal(err)
	}
	s := string(readme)
	i := strings.Index(s, section)
	if i < 0 {
		t.Fatalf("README.md has no %q section", section)
	}
	s = s[i+len(section):]
	if j := strings.Index(s, "\n## "); j >= 0 {
		s = s[:j]
	}
	var blocks [][]string
	var cur []string
	in, cont := false, ""
	for _, line := range strings.Split(s, "\n") {
		switch {
		case !in && strings.TrimSpace(line) == "```sh":
			in, cur = true, nil
		case in && strings.TrimSpace(line) == "```":
			if cont != "" {
				t.Fatalf("README: a sh block ends in a continuation line: %q", cont)
			}
			in = false
			blocks = append(blocks, cur)
		case in:
			line = stripComment(line)
			if strings.HasSuffix(line, `\`) {
				cont += strings.TrimSuffix(line, `\`) + " "
				continue
			}
			line = strings.TrimSpace(cont + line)
			cont = ""
			if line != "" {
				cur = append(cur, strings.Join(strings.Fields(line), " "))
			}
		}
	}
	if len(blocks) < 5 {
		t.Fatalf("README's walk-through has %d sh blocks; is the section's format changed?", len(blocks))
	}
	return blocks
}

// stripComment drops a trailing " # comment" (the README quotes no #).
func stripComment(line string) string {
	if strings.HasPrefix(strings.TrimSpace(line), "#") {
		return ""
	}
	if i := strings.Index(line, " #"); i >= 0 {
		return strings.TrimRight(line[:i], " ")
	}
	return line
}

// packageFiles returns the package files a publish command names.
func packageFiles(line string) []string {
	f := strings.Fields(line)
	if len(f) < 3 || f[0] != "airlock-server" || f[1] != "publish" {
		return nil
	}
	return []string{f[len(f)-1]}
}

// walker runs README commands in one working directory, with one
// environment that export lines extend.
type walker struct {
	t     *testing.T
	work  string
	bin   string
	env   []string
	carry map[string]string // file in work -> where it appears
	subst []string          // old, new pairs applied to every command
	ran   int
}

// realWorld matches what must not reach a command: the README's machines.
var realWorld = regexp.MustCompile(`/srv/|/var/lib/|/media/|\.example|\.plant|0\.0\.0\.0|…`)

func (w *walker) runBlock(lines, extra []string) string {
	var out strings.Builder
	for _, line := range lines {
		out.WriteString(w.run(line, extra))
	}
	return out.String()
}

// run runs one README command line after the substitutions, and returns
// its stdout. serve commands are started in the background.
func (w *walker) run(line string, extra []string) string {
	t := w.t
	t.Helper()
	orig := line
	line = strings.NewReplacer(extra...).Replace(line)
	line = strings.NewReplacer(w.subst...).Replace(line)
	if m := realWorld.FindString(line); m != "" {
		t.Fatalf("README command %q still names %q after the substitutions: add it to the test's table", orig, m)
	}
	if strings.HasPrefix(line, "airlock install") && !strings.Contains(line, "--yes") {
		line += " --yes"
	}
	for name, src := range w.carry {
		dst := filepath.Join(w.work, name)
		if _, err := os.Stat(dst); err == nil {
			continue
		}
		if b, err := os.ReadFile(src); err == nil {
			if err := os.WriteFile(dst, b, 0o600); err != nil {
				t.Fatal(err)
			}
		}
	}
	if k, v, ok := strings.Cut(strings.TrimPrefix(line, "export "), "="); ok && strings.HasPrefix(line, "export ") {
		w.env = append(w.env, k+"="+v)
		return ""
	}
	w.ran++
	f := strings.Fields(line)
	if len(f) > 1 && f[1] == "serve" {
		w.serve(line)
		return ""
	}
	cmd := exec.Command("bash", "-c", "set -euo pipefail\n"+line)
	cmd.Dir, cmd.Env = w.work, w.env
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("README command failed: %s\nran: %s\n%v\nstdout:\n%s\nstderr:\n%s", orig, line, err, stdout.String(), stderr.String())
	}
	t.Logf("$ %s\n%s", line, stdout.String())
	return stdout.String()
}

// serve starts a serve command in the background, waits until it listens
// on its --listen address, and stops it when the test ends.
func (w *walker) serve(line string) {
	t := w.t
	t.Helper()
	m := regexp.MustCompile(`--listen (\S+)`).FindStringSubmatch(line)
	if m == nil {
		t.Fatalf("README serve command without --listen: %s", line)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cmd := exec.CommandContext(ctx, "bash", "-c", "exec "+line)
	cmd.Dir, cmd.Env = w.work, w.env
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGTERM) }
	cmd.WaitDelay = 10 * time.Second
	log := filepath.Join(w.work, fmt.Sprintf("serve-%d.log", w.ran))
	lf, err := os.Create(log)
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdout, cmd.Stderr = lf, lf
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cancel()
		_ = cmd.Wait()
		lf.Close()
		if t.Failed() {
			b, _ := os.ReadFile(log)
			t.Logf("log of %s:\n%s", line, b)
		}
	})
	for deadline := time.Now().Add(15 * time.Second); ; {
		c, err := net.DialTimeout("tcp", m[1], time.Second)
		if err == nil {
			c.Close()
			return
		}
		if time.Now().After(deadline) {
			b, _ := os.ReadFile(log)
			t.Fatalf("%s: nothing listens on %s after 15 s:\n%s", line, m[1], b)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// buildPrograms builds the four programs into a temporary directory.
func buildPrograms(t *testing.T) string {
	t.Helper()
	bin := t.TempDir()
	args := []string{"build", "-o", bin + string(os.PathSeparator)}
	for _, p := range programs {
		args = append(args, "./cmd/"+p)
	}
	cmd := exec.Command("go", args...)
	cmd.Dir = "../.."
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// writeCert writes cert.pem and key.pem: a self-signed certificate for
// updates.acme.example and 127.0.0.1, standing in for the vendor's.
func writeCert(t *testing.T, dir string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "updates.acme.example"},
		DNSNames:              []string{"updates.acme.example"},
		IPAddresses:           []net.IP{net.IPv4(127, 0, 0, 1)},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kb, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "cert.pem"), pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "key.pem"), pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb}), 0o600); err != nil {
		t.Fatal(err)
	}
}

// writePackage writes a small .tar.zst package: a VERSION file and some
// random payload.
func writePackage(t *testing.T, path, name string) {
	t.Helper()
	var buf bytes.Buffer
	zw, err := zstd.NewWriter(&buf)
	if err != nil {
		t.Fatal(err)
	}
	tw := tar.NewWriter(zw)
	payload := make([]byte, 64<<10)
	if _, err := rand.Read(payload); err != nil {
		t.Fatal(err)
	}
	for _, f := range []struct {
		name string
		data []byte
	}{{"VERSION", []byte(name + "\n")}, {"payload.bin", payload}} {
		if err := tw.WriteHeader(&tar.Header{Name: f.name, Mode: 0o644, Size: int64(len(f.data)), ModTime: time.Now()}); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write(f.data); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
}
