package node

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"io"
	"net/http"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"
)

func TestRunServe(t *testing.T) {
	v := newVendor(t, "Acme Vendor")
	dir := initNode(t, v, "base=3.3.2")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	pr, pw := io.Pipe()
	done := make(chan error, 1)
	go func() {
		done <- RunServe(ctx, ServeOptions{Dir: dir, Listen: "127.0.0.1:0"}, pw, io.Discard)
		pw.Close()
	}()
	lines := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(pr)
		for sc.Scan() {
			select {
			case lines <- sc.Text():
			default:
			}
		}
	}()
	var line string
	select {
	case line = <-lines:
	case err := <-done:
		t.Fatalf("RunServe returned %v before serving", err)
	case <-time.After(20 * time.Second):
		t.Fatal("RunServe did not start within 20s")
	}
	m := regexp.MustCompile(`^node n1 serving https://(\S+) \(certificate (\S+)\)$`).FindStringSubmatch(line)
	if m == nil {
		t.Fatalf("first line %q", line)
	}
	addr, fp := m[1], m[2]

	pemBytes, err := os.ReadFile(certPath(dir))
	if err != nil {
		t.Fatal(err)
	}
	blk, _ := pem.Decode(pemBytes)
	if CertFingerprint(blk.Bytes) != fp {
		t.Errorf("printed fingerprint %s is not the certificate's", fp)
	}
	cert, err := x509.ParseCertificate(blk.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	if !cert.NotAfter.After(time.Now().Add(9*365*24*time.Hour)) || cert.VerifyHostname("127.0.0.1") != nil || cert.VerifyHostname("n1") != nil || cert.VerifyHostname("localhost") != nil {
		t.Errorf("certificate: valid until %v, names %v %v", cert.NotAfter, cert.DNSNames, cert.IPAddresses)
	}
	pool := x509.NewCertPool()
	pool.AddCert(cert)

	// TLS 1.2 is refused.
	if c, err := tls.Dial("tcp", addr, &tls.Config{RootCAs: pool, MaxVersion: tls.VersionTLS12}); err == nil {
		c.Close()
		t.Error("a TLS 1.2 handshake succeeded")
	}
	// Plain HTTP gets nothing useful.
	if resp, err := http.Get("http://" + addr + "/v1/status"); err == nil {
		if resp.StatusCode == http.StatusOK {
			t.Error("plain HTTP was served")
		}
		resp.Body.Close()
	}
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, ServerName: "127.0.0.1"}}}
	tok, _ := os.ReadFile(tokenPath(dir))
	req, _ := http.NewRequest("GET", "https://"+addr+"/v1/status", nil)
	req.Header.Set("Authorization", "Bearer "+strings.TrimSpace(string(tok)))
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || resp.TLS.Version != tls.VersionTLS13 || !strings.Contains(string(body), `"base":"3.3.2"`) {
		t.Errorf("status over TLS: %d, version %x, %s", resp.StatusCode, resp.TLS.Version, body)
	}

	// A second agent on the same directory is refused while this one runs.
	if err := RunServe(context.Background(), ServeOptions{Dir: dir, Listen: "127.0.0.1:0"}, io.Discard, io.Discard); err == nil || !strings.Contains(err.Error(), "in use") {
		t.Errorf("second serve: %v, want 'in use'", err)
	}

	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("RunServe after cancel: %v", err)
		}
	case <-time.After(40 * time.Second):
		t.Fatal("RunServe did not stop after cancel")
	}
	if c, err := tls.Dial("tcp", addr, &tls.Config{RootCAs: pool}); err == nil {
		c.Close()
		t.Error("still listening after shutdown")
	}
}
