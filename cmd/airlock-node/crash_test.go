package main

import (
	"archive/tar"
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/klauspost/compress/zstd"

	"github.com/airlock-project/airlock/catalog"
	"github.com/airlock-project/airlock/keys"
	"github.com/airlock-project/airlock/node"
)

// agent is a real airlock-node serve process.
type agent struct {
	t      *testing.T
	cmd    *exec.Cmd
	url    string
	client *http.Client
	token  string
	stderr *bytes.Buffer
	exited chan struct{}
	// lines receives the lines of stdout after the first (a few are kept).
	lines chan string
}

var servingLine = regexp.MustCompile(`^node \S+ serving (https://\S+) `)

// startAgent runs airlock-node serve on dir with extra environment, and
// waits (with a deadline) for it to say where it listens.
func startAgent(t *testing.T, dir string, env ...string) *agent {
	t.Helper()
	return startAgentArgs(t, dir, nil, env...)
}

// startAgentArgs is startAgent with extra serve flags.
func startAgentArgs(t *testing.T, dir string, args []string, env ...string) *agent {
	t.Helper()
	bin, err := exec.LookPath("airlock-node") // put on PATH by testscript.Main
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, append([]string{"serve", "--dir", dir, "--listen", "127.0.0.1:0", "--log-level", "debug"}, args...)...)
	cmd.Env = append(os.Environ(), env...)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	a := &agent{t: t, cmd: cmd, stderr: &bytes.Buffer{}, exited: make(chan struct{}), lines: make(chan string, 8)}
	cmd.Stderr = a.stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	lines := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(out)
		for first := true; sc.Scan(); first = false {
			to := a.lines
			if first {
				to = lines
			}
			select {
			case to <- sc.Text():
			default:
			}
		}
	}()
	go func() { cmd.Wait(); close(a.exited) }()
	t.Cleanup(func() {
		cmd.Process.Kill()
		<-a.exited
	})
	select {
	case l := <-lines:
		m := servingLine.FindStringSubmatch(l)
		if m == nil {
			t.Fatalf("unexpected first line %q", l)
		}
		a.url = m[1]
	case <-a.exited:
		t.Fatalf("airlock-node serve exited: %s", a.stderr)
	case <-time.After(20 * time.Second):
		t.Fatalf("airlock-node serve did not start within 20s: %s", a.stderr)
	}
	pemBytes, err := os.ReadFile(filepath.Join(dir, "tls", "cert.pem"))
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(pemBytes)
	a.client = &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS13}}}
	tok, err := os.ReadFile(filepath.Join(dir, "token"))
	if err != nil {
		t.Fatal(err)
	}
	a.token = strings.TrimSpace(string(tok))
	return a
}

// call sends a request and decodes a JSON answer into out (if not nil).
func (a *agent) call(method, path string, body []byte, want int, out any) {
	a.t.Helper()
	req, err := http.NewRequest(method, a.url+path, bytes.NewReader(body))
	if err != nil {
		a.t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+a.token)
	req.Header.Set(node.HeaderOffset, "0")
	resp, err := a.client.Do(req)
	if err != nil {
		a.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != want {
		a.t.Fatalf("%s %s: status %d, want %d: %s", method, path, resp.StatusCode, want, b)
	}
	if out != nil {
		if err := json.Unmarshal(b, out); err != nil {
			a.t.Fatalf("%s %s: %v: %s", method, path, err, b)
		}
	}
}

// stop ends the agent with SIGTERM and waits for a clean exit.
func (a *agent) stop() {
	a.t.Helper()
	a.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-a.exited:
	case <-time.After(30 * time.Second):
		a.t.Fatal("airlock-node did not stop within 30s of SIGTERM")
	}
	if !a.cmd.ProcessState.Success() {
		a.t.Fatalf("airlock-node exited with %v after SIGTERM: %s", a.cmd.ProcessState, a.stderr)
	}
}

// waitKilled waits for the agent to die of SIGKILL (its own crash point).
func (a *agent) waitKilled() {
	a.t.Helper()
	select {
	case <-a.exited:
	case <-time.After(30 * time.Second):
		a.t.Fatal("the crash point was not reached within 30s")
	}
	ws, ok := a.cmd.ProcessState.Sys().(syscall.WaitStatus)
	if !ok || !ws.Signaled() || ws.Signal() != syscall.SIGKILL {
		a.t.Fatalf("airlock-node ended with %v, want killed by SIGKILL: %s", a.cmd.ProcessState, a.stderr)
	}
}

// stageAndInstall uploads p and its entitlement, installs it and returns
// the job id (without waiting).
func (a *agent) stageAndInstall(p catalog.Package, data, ent []byte) string {
	a.t.Helper()
	a.call("PUT", "/v1/staged/"+p.SHA256.String()+"/entitlement", ent, http.StatusOK, nil)
	a.call("PUT", "/v1/staged/"+p.SHA256.String(), data, http.StatusOK, nil)
	var j node.Job
	a.call("POST", "/v1/install", []byte(`{"sha256":"`+p.SHA256.String()+`"}`), http.StatusAccepted, &j)
	return j.ID
}

func (a *agent) waitJob(id string) node.Job {
	a.t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		var j node.Job
		a.call("GET", "/v1/jobs/"+id, nil, http.StatusOK, &j)
		if j.State == node.JobSucceeded || j.State == node.JobFailed {
			return j
		}
		if time.Now().After(deadline) {
			a.t.Fatalf("job %s still %s after 30s", id, j.State)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// payload makes a tar.zst release of base@version.
func payload(t *testing.T, version string) []byte {
	t.Helper()
	var tb bytes.Buffer
	tw := tar.NewWriter(&tb)
	for name, body := range map[string]string{"VERSION": "base " + version + "\n", "bin/run": "#!/bin/sh\n"} {
		if err := tw.WriteHeader(&tar.Header{Name: name, Mode: 0o755, Size: int64(len(body)), Typeflag: tar.TypeReg}); err != nil {
			t.Fatal(err)
		}
		tw.Write([]byte(body))
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	enc, err := zstd.NewWriter(nil, zstd.WithEncoderConcurrency(1))
	if err != nil {
		t.Fatal(err)
	}
	defer enc.Close()
	return enc.EncodeAll(tb.Bytes(), nil)
}

// signedPackage returns the metadata of base@version and an entitlement
// listing it, signed by vendor.
func signedPackage(t *testing.T, vendor *keys.PrivateKey, version string, data []byte) (catalog.Package, []byte) {
	t.Helper()
	p := catalog.Package{Name: "base", Kind: catalog.KindBase, Version: catalog.MustVersion(version),
		SHA256: catalog.Digest(sha256.Sum256(data)), Size: int64(len(data))}
	id, _ := catalog.NewKeyID()
	e := catalog.Entitlement{Format: catalog.EntitlementFormat, Site: "plant-3", KeyID: id,
		Issued: time.Now().Add(-time.Hour), Expires: time.Now().Add(time.Hour), Packages: []catalog.Package{p}}
	b, err := e.Encode()
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	if err := vendor.SignMessage(&out, b); err != nil {
		t.Fatal(err)
	}
	return p, out.Bytes()
}

// TestCrashDuringInstall kills a real agent at each crash point of an
// install of base 2.0.0 over 1.0.0, restarts it, and checks that the node
// is consistent: the previous release current and installed (killed before
// the state write) or the new one (after), state.json matching current, no
// temporary files; and that the package can then be installed.
func TestCrashDuringInstall(t *testing.T) {
	if testing.Short() {
		t.Skip("runs real processes")
	}
	vendor, err := keys.Generate(keys.GenerateOptions{Name: "Acme Vendor", Now: time.Now().Add(-time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	d1, d2 := payload(t, "1.0.0"), payload(t, "2.0.0")
	p1, e1 := signedPackage(t, vendor, "1.0.0", d1)
	p2, e2 := signedPackage(t, vendor, "2.0.0", d2)

	for _, tc := range []struct {
		point   string
		want    string // installed and current after the restart
		retried bool   // the job failed and is installed again
	}{
		{node.CrashAfterUnpack, "1.0.0", true},
		{node.CrashAfterPreInstall, "1.0.0", true},
		{node.CrashAfterSwitch, "1.0.0", true},
		{node.CrashBeforeCommit, "1.0.0", true},
		{node.CrashAfterCommit, "2.0.0", false},
	} {
		t.Run(tc.point, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "node")
			ctx := context.Background()
			if err := node.RunInit(ctx, node.InitOptions{Dir: dir, Name: "n1", Installed: map[string]catalog.Version{"base": catalog.MustVersion("0.9")}}, io.Discard, io.Discard); err != nil {
				t.Fatal(err)
			}
			pub := filepath.Join(t.TempDir(), "vendor.pub.asc")
			if err := keys.WritePublicFile(pub, vendor.Public()); err != nil {
				t.Fatal(err)
			}
			if err := node.RunTrust(ctx, node.TrustOptions{Dir: dir, KeyFile: pub}, io.Discard, io.Discard); err != nil {
				t.Fatal(err)
			}
			hookLog := filepath.Join(t.TempDir(), "hooks.log")
			for _, h := range []string{node.HookPreInstall, node.HookPostInstall} {
				script := fmt.Sprintf("#!/bin/sh\necho %s $2 >>%s\n", h, hookLog)
				if err := os.WriteFile(filepath.Join(dir, "hooks", h), []byte(script), 0o755); err != nil {
					t.Fatal(err)
				}
			}

			a := startAgent(t, dir)
			if j := a.waitJob(a.stageAndInstall(p1, d1, e1)); j.State != node.JobSucceeded {
				t.Fatalf("install 1.0.0: %+v", j)
			}
			a.stop()

			a = startAgent(t, dir, crashEnv+"="+tc.point)
			id := a.stageAndInstall(p2, d2, e2)
			a.waitKilled()

			a = startAgent(t, dir)
			var st node.Status
			a.call("GET", "/v1/status", nil, http.StatusOK, &st)
			if got := st.Installed["base"].String(); got != tc.want {
				t.Errorf("after the crash the node reports base %s, want %s", got, tc.want)
			}
			checkConsistent(t, dir, tc.want)
			j := a.waitJob(id)
			if tc.retried {
				if j.State != node.JobFailed || j.Code != "interrupted" {
					t.Errorf("interrupted job: %+v", j)
				}
				// Still staged: installing again completes it.
				var j2 node.Job
				a.call("POST", "/v1/install", []byte(`{"sha256":"`+p2.SHA256.String()+`"}`), http.StatusAccepted, &j2)
				if j2 = a.waitJob(j2.ID); j2.State != node.JobSucceeded {
					t.Fatalf("install again after the crash: %+v", j2)
				}
				checkConsistent(t, dir, "2.0.0")
			} else if j.State != node.JobSucceeded {
				t.Errorf("job committed before the crash: %+v", j)
			}
			a.stop()
			b, _ := os.ReadFile(hookLog)
			if !strings.HasPrefix(string(b), "pre-install 1.0.0\npost-install 1.0.0\npre-install 2.0.0\n") || !strings.HasSuffix(string(b), "post-install 2.0.0\n") {
				t.Errorf("hooks ran as:\n%s", b)
			}
		})
	}
}

// checkConsistent checks that state.json, current and the release
// directories of base all say version want.
func checkConsistent(t *testing.T, dir, want string) {
	t.Helper()
	var st struct {
		Installed map[string]string `json:"installed"`
	}
	b, err := os.ReadFile(filepath.Join(dir, "state.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &st); err != nil {
		t.Fatal(err)
	}
	if st.Installed["base"] != want {
		t.Errorf("state.json says base %s, want %s", st.Installed["base"], want)
	}
	rel := filepath.Join(dir, "releases", "base")
	cur, err := os.Readlink(filepath.Join(rel, "current"))
	if err != nil || cur != want {
		t.Errorf("current -> %q (%v), want %q", cur, err, want)
	}
	v, err := os.ReadFile(filepath.Join(rel, "current", "VERSION"))
	if err != nil || string(v) != "base "+want+"\n" {
		t.Errorf("current/VERSION = %q (%v)", v, err)
	}
	ents, err := os.ReadDir(rel)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
		if strings.HasPrefix(e.Name(), ".tmp-") {
			t.Errorf("temporary entry %s left in %s", e.Name(), rel)
		}
	}
	for _, n := range names {
		if n != "current" && n != "1.0.0" && n != want {
			t.Errorf("release %s present; releases are %v", n, names)
		}
	}
	if !slices.Contains(names, want) {
		t.Errorf("release %s missing; releases are %v", want, names)
	}
	if _, err := os.Stat(filepath.Join(dir, "lock")); errors.Is(err, os.ErrNotExist) {
		t.Error("no lock file: was the directory ever served?")
	}
}
