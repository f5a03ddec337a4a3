package node

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/airlock-project/airlock/atomicfile"
	"github.com/airlock-project/airlock/catalog"
	"github.com/airlock-project/airlock/fault"
)

// certValidity is the lifetime of the node's self-signed certificate. It is
// pinned by fingerprint, so its expiry protects nothing; ten years keeps it
// out of the way.
const certValidity = 10 * 365 * 24 * time.Hour

// InitOptions are the parameters of RunInit.
type InitOptions struct {
	// Dir is the node directory to create (it may exist, empty or not, but
	// must not hold a node already).
	Dir string
	// Name is the node's name (catalog.ValidName).
	Name string
	// Role is primary, backup, traffic or management; empty means traffic.
	Role string
	// Region is optional (catalog.ValidName when set).
	Region string
	// Installed are the versions the node runs today.
	Installed map[string]catalog.Version
	// JSON prints the result as JSON instead of text.
	JSON bool
	// Now is the clock for the certificate; nil means time.Now.
	Now func() time.Time
}

// InitResult is what RunInit prints with JSON set.
type InitResult struct {
	Name        string `json:"name"`
	Dir         string `json:"dir"`
	Fingerprint string `json:"fingerprint"`
	TokenFile   string `json:"token_file"`
	Certificate string `json:"certificate"`
}

// ParseInstalled parses one --installed argument, "name=version". Its
// errors are of the usage class and name the argument.
func ParseInstalled(s string) (string, catalog.Version, error) {
	const want = "want NAME=VERSION, e.g. base=3.3.2"
	name, ver, ok := strings.Cut(s, "=")
	if !ok {
		return "", catalog.Version{}, fmt.Errorf("%w: --installed %q: %s", fault.ErrUsage, s, want)
	}
	name, ver = strings.TrimSpace(name), strings.TrimSpace(ver)
	if err := catalog.ValidName(name); err != nil {
		return "", catalog.Version{}, fmt.Errorf("%w: --installed %q: component %v", fault.ErrUsage, s, err)
	}
	v, err := catalog.ParseVersion(ver)
	if err != nil {
		return "", catalog.Version{}, fmt.Errorf("%w: --installed %q: %v", fault.ErrUsage, s, err)
	}
	return name, v, nil
}

// RunInit creates a node directory: a self-signed TLS certificate (ECDSA
// P-256; SANs 127.0.0.1, ::1, localhost and the node name), a random bearer
// token in D/token (mode 0600), the empty stores, and state.json with the
// installed versions. state.json is written last: a directory without it is
// not a node and init may be run again; a directory with it is refused
// (ErrInitialized), so a node's token and certificate never change behind
// the cluster's back. It prints the certificate's SHA-256 fingerprint, which
// the restricted side pins. Invalid options are usage errors.
func RunInit(ctx context.Context, o InitOptions, stdout, stderr io.Writer) error {
	if o.Dir == "" {
		return fmt.Errorf("%w: airlock-node init needs --dir", fault.ErrUsage)
	}
	if err := catalog.ValidName(o.Name); err != nil {
		return fmt.Errorf("%w: --name: node %v", fault.ErrUsage, err)
	}
	if o.Role == "" {
		o.Role = RoleTraffic
	}
	if !ValidRole(o.Role) {
		return fmt.Errorf("%w: --role %q: want primary, backup, traffic or management", fault.ErrUsage, o.Role)
	}
	if o.Region != "" {
		if err := catalog.ValidName(o.Region); err != nil {
			return fmt.Errorf("%w: --region: region %v", fault.ErrUsage, err)
		}
	}
	for n, v := range o.Installed {
		if err := catalog.ValidName(n); err != nil || v.IsZero() {
			return fmt.Errorf("%w: --installed %s: invalid name or version; want NAME=VERSION, e.g. base=3.3.2", fault.ErrUsage, n)
		}
	}
	if fi, err := os.Stat(o.Dir); err == nil && !fi.IsDir() {
		return fmt.Errorf("%w: --dir %s is a file, not a directory; choose another --dir", fault.ErrUsage, o.Dir)
	}
	if st, err := loadState(o.Dir); err == nil {
		return fmt.Errorf("%s: %w: it holds node %s; use another --dir, or remove the directory to start over (the node then gets a new token and certificate to pin)", o.Dir, ErrInitialized, st.Name)
	} else if se := (*stateError)(nil); errors.As(err, &se) {
		return fmt.Errorf("%s: %w: %s is unreadable (%s); use another --dir, or repair or remove %s", o.Dir, ErrInitialized, se.path, se.problem, se.path)
	} else if !errors.Is(err, ErrNotInitialized) {
		return fmt.Errorf("%s: %w: %s exists but cannot be read (%v); use another --dir, or repair or remove it", o.Dir, ErrInitialized, statePath(o.Dir), err)
	}
	now := time.Now
	if o.Now != nil {
		now = o.Now
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := os.MkdirAll(o.Dir, 0o700); err != nil {
		return fmt.Errorf("init node %s in %s: %w; choose another --dir", o.Name, o.Dir, err)
	}
	// Hold the directory's lock, as serve does, so that of two inits of
	// one directory the second writes nothing: not the first's token and
	// certificate over again.
	lf, err := os.OpenFile(filepath.Join(o.Dir, "lock"), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return fmt.Errorf("init node %s: lock %s: %w", o.Name, o.Dir, err)
	}
	defer lf.Close()
	if ok, err := lockFile(lf); err != nil {
		return fmt.Errorf("init node %s: lock %s: %w", o.Name, lf.Name(), err)
	} else if !ok {
		return fmt.Errorf("%w: another airlock-node holds %s (it holds %s); wait for it, or use another --dir", ErrInUse, o.Dir, lf.Name())
	}
	if _, err := os.Stat(statePath(o.Dir)); err == nil {
		return fmt.Errorf("%s: %w: another airlock-node init finished first; use another --dir", o.Dir, ErrInitialized)
	}
	for _, d := range []string{"tls", "vendor", "entitlements", "staging", "staged", "releases", "hooks"} {
		if err := os.MkdirAll(filepath.Join(o.Dir, d), 0o755); err != nil {
			return fmt.Errorf("init node %s: %w", o.Name, err)
		}
	}
	if err := os.Chmod(filepath.Join(o.Dir, "tls"), 0o700); err != nil {
		return fmt.Errorf("init node %s: %w", o.Name, err)
	}

	certPEM, keyPEM, fp, err := newCertificate(o.Name, now())
	if err != nil {
		return fmt.Errorf("init node %s: certificate: %w", o.Name, err)
	}
	if err := atomicfile.WriteFile(keyPath(o.Dir), keyPEM, 0o600); err != nil {
		return fmt.Errorf("init node %s: %w", o.Name, err)
	}
	if err := atomicfile.WriteFile(certPath(o.Dir), certPEM, 0o644); err != nil {
		return fmt.Errorf("init node %s: %w", o.Name, err)
	}
	var tok [32]byte
	if _, err := rand.Read(tok[:]); err != nil {
		return fmt.Errorf("init node %s: token: %w", o.Name, err)
	}
	if err := atomicfile.WriteFile(tokenPath(o.Dir), []byte(hex.EncodeToString(tok[:])+"\n"), 0o600); err != nil {
		return fmt.Errorf("init node %s: %w", o.Name, err)
	}

	st := &state{Format: stateFormat, Name: o.Name, Role: o.Role, Region: o.Region, Installed: map[string]catalog.Version{}, Jobs: []Job{}}
	for n, v := range o.Installed {
		st.Installed[n] = v
	}
	b, err := catalog.EncodeCanonical(st)
	if err != nil {
		return fmt.Errorf("init node %s: %w", o.Name, err)
	}
	if err := atomicfile.WriteNew(statePath(o.Dir), b, 0o644); err != nil {
		if errors.Is(err, fs.ErrExist) {
			return fmt.Errorf("%s: %w: another airlock-node init finished first; use another --dir", o.Dir, ErrInitialized)
		}
		return fmt.Errorf("init node %s: %w", o.Name, err)
	}

	if o.JSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(InitResult{Name: o.Name, Dir: o.Dir, Fingerprint: fp, TokenFile: tokenPath(o.Dir), Certificate: certPath(o.Dir)})
	}
	fmt.Fprintf(stdout, "initialised node %s in %s (role %s", o.Name, o.Dir, o.Role)
	if o.Region != "" {
		fmt.Fprintf(stdout, ", region %s", o.Region)
	}
	fmt.Fprintf(stdout, ")\n")
	fmt.Fprintf(stdout, "certificate SHA-256 fingerprint: %s\n", fp)
	fmt.Fprintf(stdout, "bearer token: %s (mode 0600; copy it to the admin host)\n", tokenPath(o.Dir))
	fmt.Fprintf(stdout, "pin it with: airlock node add %s --url https://ADDRESS:PORT --token-file TOKEN_FILE --fingerprint %s\n", o.Name, fp)
	fmt.Fprintf(stdout, "next: airlock-node trust --dir %s vendor.pub.asc, then airlock-node serve --dir %s --listen ADDRESS:PORT\n", o.Dir, o.Dir)
	return nil
}

func certPath(dir string) string  { return filepath.Join(dir, "tls", "cert.pem") }
func keyPath(dir string) string   { return filepath.Join(dir, "tls", "key.pem") }
func tokenPath(dir string) string { return filepath.Join(dir, "token") }

// newCertificate returns a self-signed certificate and key in PEM, and the
// certificate's fingerprint.
func newCertificate(name string, now time.Time) (certPEM, keyPEM []byte, fp string, err error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, "", err
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, nil, "", err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: name, Organization: []string{"airlock node"}},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(certValidity),
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		DNSNames:              []string{"localhost", name},
		IPAddresses:           []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, nil, "", err
	}
	kder, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, nil, "", err
	}
	certPEM = pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	keyPEM = pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder})
	return certPEM, keyPEM, CertFingerprint(der), nil
}

// CertFingerprint returns the SHA-256 fingerprint of a DER certificate as
// colon-separated uppercase hex pairs ("AB:CD:…", 95 characters), the form
// openssl prints and the cluster configuration pins.
func CertFingerprint(der []byte) string {
	sum := sha256.Sum256(der)
	h := strings.ToUpper(hex.EncodeToString(sum[:]))
	var b strings.Builder
	for i := 0; i < len(h); i += 2 {
		if i > 0 {
			b.WriteByte(':')
		}
		b.WriteString(h[i : i+2])
	}
	return b.String()
}

// certFingerprintFile returns the fingerprint of the certificate in D. A
// file that holds no PEM certificate is a *stateError.
func certFingerprintFile(dir string) (string, error) {
	b, err := os.ReadFile(certPath(dir))
	if err != nil {
		return "", fmt.Errorf("certificate: %w; restore it from a backup, or %s", err, startOver(dir))
	}
	blk, _ := pem.Decode(b)
	if blk == nil || blk.Type != "CERTIFICATE" {
		return "", &stateError{path: certPath(dir), problem: "no PEM certificate", next: "restore it from a backup, or " + startOver(dir)}
	}
	return CertFingerprint(blk.Bytes), nil
}
