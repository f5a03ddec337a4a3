package main

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ProtonMail/go-crypto/openpgp/armor"
	"github.com/rogpeppe/go-internal/testscript"

	"github.com/airlock-project/airlock/catalog"
	"github.com/airlock-project/airlock/cluster"
	"github.com/airlock-project/airlock/cmd/internal/cliapp"
	"github.com/airlock-project/airlock/fault"
	"github.com/airlock-project/airlock/keys"
	"github.com/airlock-project/airlock/keys/keytest"
	"github.com/airlock-project/airlock/node"
)

func TestMain(m *testing.M) {
	testscript.Main(m, map[string]func(){
		"airlock-node": func() { os.Exit(cliapp.Exec(newApp())) },
	})
}

// TestScripts runs the CLI scenarios in testdata/*.txtar. Every scenario
// gets $WORK/vendor.pub.asc and $WORK/vendor.key, a fresh vendor key pair
// ("Acme Vendor"). Besides exitcode and mode, the scenarios have commands
// to make keys and packages and to talk to a real agent over its API:
//
//	mkkey [-expired] NAME          NAME.pub.asc and NAME.key, user ID NAME
//	revoke KEY OUT                 OUT: the public half of private key file
//	                               KEY, revoked by itself
//	mkpkg [-key KEY] [-tamper] VAR NAME@VERSION [REQUIRES]...
//	                               VAR.pkg (a plain file), VAR.damaged (the
//	                               same size, one byte changed) and VAR.ent
//	                               (an entitlement listing VAR.pkg, signed
//	                               with KEY, default vendor.key; -tamper
//	                               changes its payload after signing); sets
//	                               $VAR to the package's SHA-256
//	agent start DIR                runs airlock-node serve --dir DIR on a
//	                               free port until agent stop or the end;
//	                               sets $NODE_ADDR to its address and
//	                               $NODE_TOKEN to its bearer token
//	agent stop                     stops it with SIGINT; fails unless it
//	                               exits 0; its output becomes stdout/stderr
//	api [-token T] [-until RE] METHOD PATH [BODY|@FILE]
//	                               one request to the agent with its bearer
//	                               token (or T); -until repeats it until the
//	                               answer matches RE (30s at most). stdout:
//	                               "HTTP STATUS [CODE]", for an error answer
//	                               "airlock exit N" (the exit code airlock
//	                               gives that answer: cluster.APIError's
//	                               class), the X-Airlock-* headers, the body
func TestScripts(t *testing.T) {
	testscript.Run(t, testscript.Params{
		Dir: "testdata",
		Setup: func(env *testscript.Env) error {
			k, err := keys.Generate(keys.GenerateOptions{Name: "Acme Vendor", Now: time.Now().Add(-time.Hour)})
			if err != nil {
				return err
			}
			if err := keys.WritePublicFile(filepath.Join(env.WorkDir, "vendor.pub.asc"), k.Public()); err != nil {
				return err
			}
			return keys.WritePrivateFile(filepath.Join(env.WorkDir, "vendor.key"), k, nil)
		},
		Cmds: map[string]func(ts *testscript.TestScript, neg bool, args []string){
			"exitcode": cmdExitcode,
			"mode":     cmdMode,
			"mkkey":    cmdMkkey,
			"revoke":   cmdRevoke,
			"mkpkg":    cmdMkpkg,
			"agent":    cmdAgent,
			"api":      cmdAPI,
		},
	})
}

// cmdExitcode runs "exitcode N PROGRAM ARGS..." and checks that the program
// exits with code N; its output is kept for stdout/stderr checks.
func cmdExitcode(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) < 2 {
		ts.Fatalf("usage: exitcode N PROGRAM [ARGS...]")
	}
	want, err := strconv.Atoi(args[0])
	if err != nil {
		ts.Fatalf("exitcode: %v", err)
	}
	got := 0
	if err := ts.Exec(args[1], args[2:]...); err != nil {
		var ee *exec.ExitError
		if !errors.As(err, &ee) {
			ts.Fatalf("exitcode: %v", err)
		}
		got = ee.ExitCode()
	}
	if got != want {
		ts.Fatalf("%s exited with %d, want %d", args[1], got, want)
	}
}

// cmdMode checks "mode 0600 FILE": the file's permission bits.
func cmdMode(ts *testscript.TestScript, neg bool, args []string) {
	if len(args) != 2 {
		ts.Fatalf("usage: mode PERM FILE")
	}
	want, err := strconv.ParseUint(args[0], 8, 32)
	if err != nil {
		ts.Fatalf("mode: %v", err)
	}
	fi, err := os.Stat(ts.MkAbs(args[1]))
	if err != nil {
		ts.Fatalf("mode: %v", err)
	}
	if got := uint64(fi.Mode().Perm()); (got == want) == neg {
		ts.Fatalf("%s has mode %04o, want %s%04o", args[1], got, map[bool]string{true: "not ", false: ""}[neg], want)
	}
}

// cmdMkkey runs "mkkey [-expired] NAME": a vendor-like key pair NAME.key
// and NAME.pub.asc; -expired makes one that expired an hour ago.
func cmdMkkey(ts *testscript.TestScript, neg bool, args []string) {
	expired := len(args) > 0 && args[0] == "-expired"
	if expired {
		args = args[1:]
	}
	if neg || len(args) != 1 {
		ts.Fatalf("usage: mkkey [-expired] NAME")
	}
	o := keys.GenerateOptions{Name: args[0], Now: time.Now().Add(-time.Hour)}
	if expired {
		o.Now, o.Expiry = time.Now().Add(-2*time.Hour), time.Hour
	}
	k, err := keys.Generate(o)
	ts.Check(err)
	ts.Check(keys.WritePublicFile(ts.MkAbs(args[0]+".pub.asc"), k.Public()))
	ts.Check(keys.WritePrivateFile(ts.MkAbs(args[0]+".key"), k, nil))
}

// cmdRevoke runs "revoke KEY OUT": OUT is the public key of the private
// key file KEY with a revocation signature made by KEY.
func cmdRevoke(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 2 {
		ts.Fatalf("usage: revoke KEY OUT")
	}
	k, err := keys.ReadPrivateFile(ts.MkAbs(args[0]), nil)
	ts.Check(err)
	out, err := keytest.RevokedPublic(k)
	ts.Check(err)
	ts.Check(os.WriteFile(ts.MkAbs(args[1]), out, 0o644))
}

// cmdMkpkg runs "mkpkg [-key KEY] [-tamper] VAR NAME@VERSION [REQUIRES]...".
func cmdMkpkg(ts *testscript.TestScript, neg bool, args []string) {
	keyFile, tamper := "vendor.key", false
	for len(args) > 0 && strings.HasPrefix(args[0], "-") {
		switch {
		case args[0] == "-tamper":
			tamper, args = true, args[1:]
		case args[0] == "-key" && len(args) > 1:
			keyFile, args = args[1], args[2:]
		default:
			ts.Fatalf("mkpkg: unknown flag %s", args[0])
		}
	}
	if neg || len(args) < 2 {
		ts.Fatalf("usage: mkpkg [-key KEY] [-tamper] VAR NAME@VERSION [REQUIRES]...")
	}
	name, ver, ok := strings.Cut(args[1], "@")
	if !ok {
		ts.Fatalf("mkpkg: %q is not NAME@VERSION", args[1])
	}
	data := []byte(fmt.Sprintf("package %s %s\n", name, ver))
	v, err := catalog.ParseVersion(ver)
	ts.Check(err)
	p := catalog.Package{Name: name, Kind: catalog.KindProduct, Version: v, SHA256: catalog.Digest(sha256.Sum256(data)), Size: int64(len(data))}
	if name == "base" {
		p.Kind = catalog.KindBase
	}
	for _, r := range args[2:] {
		c, err := catalog.ParseConstraint(r)
		ts.Check(err)
		p.Requires = append(p.Requires, c)
	}
	id, err := catalog.NewKeyID()
	ts.Check(err)
	now := time.Now()
	e := catalog.Entitlement{Format: catalog.EntitlementFormat, Site: "plant-3", KeyID: id,
		Issued: now.Add(-10 * 24 * time.Hour), Expires: now.Add(-7 * 24 * time.Hour), Packages: []catalog.Package{p}}
	doc, err := e.Encode()
	ts.Check(err)
	k, err := keys.ReadPrivateFile(ts.MkAbs(keyFile), nil)
	ts.Check(err)
	var ent bytes.Buffer
	ts.Check(k.SignMessage(&ent, doc))
	armored := ent.Bytes()
	if tamper {
		armored = tamperMessage(ts, armored)
	}
	damaged := bytes.Clone(data)
	damaged[0] ^= 0x20
	ts.Check(os.WriteFile(ts.MkAbs(args[0]+".pkg"), data, 0o644))
	ts.Check(os.WriteFile(ts.MkAbs(args[0]+".damaged"), damaged, 0o644))
	ts.Check(os.WriteFile(ts.MkAbs(args[0]+".ent"), armored, 0o644))
	ts.Setenv(args[0], p.SHA256.String())
}

// tamperMessage changes the signed payload of an armored message (the
// site plant-3 becomes plant-4) without breaking its framing, so that only
// the signature check can notice.
func tamperMessage(ts *testscript.TestScript, armored []byte) []byte {
	blk, err := armor.Decode(bytes.NewReader(armored))
	ts.Check(err)
	raw, err := io.ReadAll(blk.Body)
	ts.Check(err)
	if !bytes.Contains(raw, []byte("plant-3")) {
		ts.Fatalf("tamper: payload not found in the signed message")
	}
	raw = bytes.Replace(raw, []byte("plant-3"), []byte("plant-4"), 1)
	var out bytes.Buffer
	w, err := armor.Encode(&out, blk.Type, nil)
	ts.Check(err)
	_, err = w.Write(raw)
	ts.Check(err)
	ts.Check(w.Close())
	return out.Bytes()
}

// scriptAgent is the airlock-node serve process of one scenario.
type scriptAgent struct {
	cmd    *exec.Cmd
	dir    string
	url    string
	stdout bytes.Buffer // after the first line; guarded by mu
	stderr bytes.Buffer
	mu     sync.Mutex
	exited chan struct{}
	client *http.Client
	token  string
}

// agents maps a running scenario to its agent (scenarios run in parallel).
var agents sync.Map // *testscript.TestScript -> *scriptAgent

// cmdAgent runs "agent start DIR" and "agent stop".
func cmdAgent(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) == 0 {
		ts.Fatalf("usage: agent start DIR | agent stop")
	}
	switch {
	case args[0] == "start" && len(args) == 2:
		startScriptAgent(ts, args[1])
	case args[0] == "stop" && len(args) == 1:
		v, ok := agents.LoadAndDelete(ts)
		if !ok {
			ts.Fatalf("agent stop: no agent running")
		}
		a := v.(*scriptAgent)
		ts.Check(a.cmd.Process.Signal(os.Interrupt))
		select {
		case <-a.exited:
		case <-time.After(30 * time.Second):
			a.cmd.Process.Kill()
			<-a.exited
			ts.Fatalf("airlock-node serve did not stop within 30s of SIGINT")
		}
		a.mu.Lock()
		fmt.Fprintf(ts.Stdout(), "%s", a.stdout.String())
		fmt.Fprintf(ts.Stderr(), "%s", a.stderr.String())
		a.mu.Unlock()
		if code := a.cmd.ProcessState.ExitCode(); code != 0 {
			ts.Fatalf("airlock-node serve exited with %d after SIGINT", code)
		}
	default:
		ts.Fatalf("usage: agent start DIR | agent stop")
	}
}

// lockedWriter serialises the writes of a child's output to a buffer.
type lockedWriter struct {
	mu *sync.Mutex
	b  *bytes.Buffer
}

func (w lockedWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.Write(p)
}

func startScriptAgent(ts *testscript.TestScript, dir string) {
	if _, ok := agents.Load(ts); ok {
		ts.Fatalf("agent start: an agent is already running")
	}
	bin, err := exec.LookPath("airlock-node") // put on PATH by testscript.Main
	ts.Check(err)
	a := &scriptAgent{dir: ts.MkAbs(dir), exited: make(chan struct{})}
	a.cmd = exec.Command(bin, "serve", "--dir", dir, "--listen", "127.0.0.1:0")
	a.cmd.Dir = ts.Getenv("WORK")
	a.cmd.Stderr = lockedWriter{&a.mu, &a.stderr}
	out, err := a.cmd.StdoutPipe()
	ts.Check(err)
	ts.Check(a.cmd.Start())
	first := make(chan string, 1)
	go func() {
		r := bufio.NewReader(out)
		l, _ := r.ReadString('\n')
		first <- l
		io.Copy(lockedWriter{&a.mu, &a.stdout}, io.MultiReader(strings.NewReader(l), r))
	}()
	go func() { a.cmd.Wait(); close(a.exited) }()
	ts.Defer(func() {
		agents.CompareAndDelete(ts, a)
		select {
		case <-a.exited:
		default:
			a.cmd.Process.Kill()
			<-a.exited
		}
	})
	select {
	case l := <-first:
		m := servingLine.FindStringSubmatch(l)
		if m == nil {
			<-a.exited
			ts.Fatalf("airlock-node serve did not start: %q\n%s", l, a.stderr.String())
		}
		a.url = m[1]
	case <-time.After(30 * time.Second):
		ts.Fatalf("airlock-node serve did not start within 30s")
	}
	certPEM, err := os.ReadFile(filepath.Join(a.dir, "tls", "cert.pem"))
	ts.Check(err)
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(certPEM)
	a.client = &http.Client{Timeout: 30 * time.Second,
		Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS13}}}
	tok, err := os.ReadFile(filepath.Join(a.dir, "token"))
	ts.Check(err)
	a.token = strings.TrimSpace(string(tok))
	u, err := url.Parse(a.url)
	ts.Check(err)
	ts.Setenv("NODE_ADDR", u.Host)
	ts.Setenv("NODE_TOKEN", a.token)
	agents.Store(ts, a)
}

// cmdAPI runs "api [-token T] [-until RE] METHOD PATH [BODY|@FILE]".
func cmdAPI(ts *testscript.TestScript, neg bool, args []string) {
	v, ok := agents.Load(ts)
	if !ok {
		ts.Fatalf("api: no agent running (agent start DIR)")
	}
	a := v.(*scriptAgent)
	token, until := a.token, (*regexp.Regexp)(nil)
	for len(args) > 1 && strings.HasPrefix(args[0], "-") {
		switch args[0] {
		case "-token":
			token = args[1]
		case "-until":
			until = regexp.MustCompile(args[1])
		default:
			ts.Fatalf("api: unknown flag %s", args[0])
		}
		args = args[2:]
	}
	if neg || len(args) < 2 || len(args) > 3 {
		ts.Fatalf("usage: api [-token T] [-until RE] METHOD PATH [BODY|@FILE]")
	}
	var body []byte
	if len(args) == 3 {
		body = []byte(args[2])
		if f, ok := strings.CutPrefix(args[2], "@"); ok {
			b, err := os.ReadFile(ts.MkAbs(f))
			ts.Check(err)
			body = b
		}
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		answer := a.call(ts, token, args[0], args[1], body)
		if until == nil || until.MatchString(answer) {
			fmt.Fprint(ts.Stdout(), answer)
			return
		}
		if time.Now().After(deadline) {
			ts.Fatalf("api: no answer matched %q within 30s; the last:\n%s", until, answer)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// call sends one request and describes the answer as cmdAPI prints it.
func (a *scriptAgent) call(ts *testscript.TestScript, token, method, path string, body []byte) string {
	req, err := http.NewRequest(method, a.url+path, bytes.NewReader(body))
	ts.Check(err)
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := a.client.Do(req)
	ts.Check(err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	ts.Check(err)
	var out strings.Builder
	fmt.Fprintf(&out, "HTTP %d", resp.StatusCode)
	if resp.StatusCode >= 400 {
		var e node.APIError
		if json.Unmarshal(b, &e) == nil && e.Code != "" {
			fmt.Fprintf(&out, " %s", e.Code)
		}
		err := &cluster.APIError{Node: "node", Op: method + " " + path, Status: resp.StatusCode, Code: e.Code, Message: e.Error}
		fmt.Fprintf(&out, "\nairlock exit %d", fault.Code(err))
	}
	out.WriteString("\n")
	var hdr []string
	for k := range resp.Header {
		if strings.HasPrefix(k, "X-Airlock-") {
			hdr = append(hdr, k+": "+resp.Header.Get(k))
		}
	}
	sort.Strings(hdr)
	for _, h := range hdr {
		out.WriteString(h + "\n")
	}
	out.Write(b)
	return out.String()
}
