package verify

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"math/rand"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/klauspost/compress/zstd"

	"github.com/airlock-project/airlock/bundle"
	"github.com/airlock-project/airlock/catalog"
	"github.com/airlock-project/airlock/fault"
	"github.com/airlock-project/airlock/keys"
)

// fixture is a site, its vendor and courier, and a valid bundle of three
// packages from which every hostile case is derived.
type fixture struct {
	vendor, courier, site, mallory *keys.PrivateKey
	trust                          *keys.TrustStore
	ent                            catalog.Entitlement
	entArmored                     []byte
	manifest                       bundle.Manifest
	data                           map[catalog.Digest][]byte
	good                           []byte // written by bundle.Write
}

var testNow = time.Now().UTC().Truncate(time.Second)

func genKey(t testing.TB, name string, expiry time.Duration) *keys.PrivateKey {
	t.Helper()
	k, err := keys.Generate(keys.GenerateOptions{Name: name, Expiry: expiry, Now: testNow.Add(-time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func newFixture(t testing.TB) *fixture {
	t.Helper()
	f := &fixture{
		vendor:  genKey(t, "Acme Vendor", 0),
		courier: genKey(t, "Jane Courier", 0),
		site:    genKey(t, "plant-3", 0),
		mallory: genKey(t, "Mallory", 0),
		trust:   keys.NewTrustStore(),
		data:    map[catalog.Digest][]byte{},
	}
	for role, k := range map[keys.Role]*keys.PrivateKey{keys.RoleVendor: f.vendor, keys.RoleCourier: f.courier, keys.RoleSite: f.site} {
		if err := f.trust.Add(role, k.Public()); err != nil {
			t.Fatal(err)
		}
	}
	rng := rand.New(rand.NewSource(1))
	id, _ := catalog.NewKeyID()
	f.ent = catalog.Entitlement{Format: catalog.EntitlementFormat, Site: "plant-3", KeyID: id,
		Issued: testNow.Add(-time.Minute), Expires: testNow.Add(72 * time.Hour)}
	for i, spec := range []struct {
		name, kind, version string
		size                int
	}{{"base", "base", "3.4.0", 70_000}, {"product", "product", "22.1.0", 300_000}, {"license", "license", "1.1.0", 1_000}} {
		b := make([]byte, spec.size)
		if i%2 == 0 {
			rng.Read(b)
		} else {
			copy(b, bytes.Repeat([]byte(fmt.Sprintf("line %d of product\n", i)), spec.size))
		}
		d := catalog.Digest(sha256.Sum256(b))
		f.data[d] = b
		f.ent.Packages = append(f.ent.Packages, catalog.Package{Name: spec.name, Kind: catalog.Kind(spec.kind),
			Version: catalog.MustVersion(spec.version), SHA256: d, Size: int64(len(b)), Settle: catalog.Duration(time.Hour)})
	}
	f.entArmored = f.signEntitlement(t, f.vendor, f.ent)
	f.manifest = f.manifestFor(f.courier, f.entArmored, f.ent)
	f.good = f.write(t, f.courier, f.manifest, f.entArmored)
	return f
}

func (f *fixture) signEntitlement(t testing.TB, k *keys.PrivateKey, e catalog.Entitlement) []byte {
	t.Helper()
	payload, err := e.Encode()
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if err := k.SignMessage(&buf, payload); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func (f *fixture) manifestFor(courier *keys.PrivateKey, entArmored []byte, e catalog.Entitlement) bundle.Manifest {
	return bundle.Manifest{Format: bundle.ManifestFormat, ID: testBundleID, Created: testNow, Expires: e.Expires,
		Site: e.Site, KeyID: e.KeyID, Courier: courier.Fingerprint().String(),
		Entitlement: catalog.Digest(sha256.Sum256(entArmored)), Packages: e.Packages}
}

func (f *fixture) write(t testing.TB, signer bundle.Signer, m bundle.Manifest, entArmored []byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	open := func(p catalog.Package) (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(f.data[p.SHA256])), nil
	}
	if err := bundle.Write(context.Background(), &buf, m, signer, entArmored, open, bundle.WriteOptions{}); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// member is one raw tar entry of a hand-built (possibly hostile) bundle.
type member struct {
	name     string
	typeflag byte
	data     []byte
	size     int64 // header size if not len(data)
	link     string
}

// members returns the entries of the valid bundle, for mutation.
func (f *fixture) members(t testing.TB) []member {
	t.Helper()
	mb, err := f.manifest.Encode()
	if err != nil {
		t.Fatal(err)
	}
	var sig bytes.Buffer
	if err := f.courier.SignDetached(&sig, bytes.NewReader(mb)); err != nil {
		t.Fatal(err)
	}
	ms := []member{{name: "manifest.json", data: mb}, {name: "manifest.json.asc", data: sig.Bytes()}, {name: "entitlement.asc", data: f.entArmored}}
	for _, p := range f.manifest.Packages {
		ms = append(ms, member{name: "packages/" + p.SHA256.String(), data: f.data[p.SHA256]})
	}
	return ms
}

// rawBundle builds tar+zstd from entries exactly as given. endOfArchive
// controls the two zero blocks that close a tar stream.
func rawBundle(t testing.TB, ms []member, endOfArchive bool) []byte {
	t.Helper()
	var tbuf bytes.Buffer
	tw := tar.NewWriter(&tbuf)
	for _, m := range ms {
		tf := m.typeflag
		if tf == 0 {
			tf = tar.TypeReg
		}
		size := int64(len(m.data))
		if m.size != 0 {
			size = m.size
		}
		if tf != tar.TypeReg {
			size = 0
		}
		h := &tar.Header{Name: m.name, Typeflag: tf, Size: size, Mode: 0o644, ModTime: testNow, Linkname: m.link, Format: tar.FormatPAX}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if tf == tar.TypeReg {
			if size > int64(len(m.data)) {
				// Header claims more than we have: write the short data
				// and stop, leaving a stream that ends mid-member.
				tw.Write(m.data)
				return compress(t, tbuf.Bytes())
			}
			if _, err := tw.Write(m.data); err != nil {
				t.Fatal(err)
			}
		}
	}
	if endOfArchive {
		if err := tw.Close(); err != nil {
			t.Fatal(err)
		}
	} else {
		tw.Flush()
	}
	return compress(t, tbuf.Bytes())
}

func compress(t testing.TB, b []byte) []byte {
	t.Helper()
	var zbuf bytes.Buffer
	zw, err := zstd.NewWriter(&zbuf)
	if err != nil {
		t.Fatal(err)
	}
	zw.Write(b)
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return zbuf.Bytes()
}

func flip(b []byte, off int) []byte {
	c := bytes.Clone(b)
	c[off] ^= 0xff
	return c
}

func (f *fixture) policy() Policy {
	return Policy{Now: testNow, Site: "plant-3", Outstanding: func(id catalog.KeyID) error {
		if id != f.ent.KeyID {
			return fault.Policy("download key not outstanding")
		}
		return nil
	}}
}

// verifyAll runs VerifyBundle with a sink that records what it was given.
func (f *fixture) verifyAll(b []byte, pol Policy) (*Bundle, int, error) {
	delivered := 0
	sink := func(ctx context.Context, p catalog.Package, data io.Reader) error {
		if _, err := io.Copy(io.Discard, data); err != nil {
			return err
		}
		delivered++
		return nil
	}
	vb, err := VerifyBundle(context.Background(), bytes.NewReader(b), f.trust, pol, sink)
	return vb, delivered, err
}

func TestVerifyGoodBundle(t *testing.T) {
	f := newFixture(t)
	vb, n, err := f.verifyAll(f.good, f.policy())
	if err != nil {
		t.Fatalf("valid bundle refused: %v", err)
	}
	if n != 3 || len(vb.Manifest.Packages) != 3 || vb.Courier.Signer != f.courier.Fingerprint() {
		t.Fatalf("delivered %d packages, manifest %d, courier %s", n, len(vb.Manifest.Packages), vb.Courier.Signer)
	}
	if vb.Entitlement.Signature.Signer != f.vendor.Fingerprint() {
		t.Errorf("entitlement signer %s, want vendor", vb.Entitlement.Signature.Signer)
	}
	// The hand-built equivalent must verify too, so that every hostile case
	// below fails only because of its mutation.
	if _, _, err := f.verifyAll(rawBundle(t, f.members(t), true), f.policy()); err != nil {
		t.Fatalf("hand-built valid bundle refused: %v", err)
	}
}

// TestHostileBundles is the table of refused bundles: each must fail with
// the expected class (exit 3 or 4) and a specific error.
func TestHostileBundles(t *testing.T) {
	f := newFixture(t)
	good := f.members(t)
	with := func(mut func(ms []member) []member) []byte {
		ms := make([]member, len(good))
		copy(ms, good)
		return rawBundle(t, mut(ms), true)
	}
	resign := func(m bundle.Manifest, signer *keys.PrivateKey, entArmored []byte) []byte {
		return f.write(t, signer, m, entArmored)
	}
	otherSite := f.ent
	otherSite.Site = "plant-9"
	otherSiteArm := f.signEntitlement(t, f.vendor, otherSite)
	otherKey := f.ent
	otherKey.KeyID, _ = catalog.NewKeyID()
	otherKeyArm := f.signEntitlement(t, f.vendor, otherKey)

	type tc struct {
		name  string
		input []byte
		pol   *Policy
		class error // fault.ErrVerification or fault.ErrPolicy
		is    error // a specific error, or nil
	}
	var cases []tc
	add := func(name string, in []byte, class, is error) {
		cases = append(cases, tc{name: name, input: in, class: class, is: is})
	}
	V, P := fault.ErrVerification, fault.ErrPolicy

	add("empty input", nil, V, nil)
	add("random garbage", bytes.Repeat([]byte{0x5a, 0x17}, 4096), V, nil)
	add("plain tar without zstd", func() []byte {
		z, _ := zstd.NewReader(bytes.NewReader(f.good))
		defer z.Close()
		b, _ := io.ReadAll(z)
		return b
	}(), V, nil)
	for i, name := range []string{"manifest.json", "manifest.json.asc", "entitlement.asc"} {
		i := i
		add("byte flipped in "+name, with(func(ms []member) []member {
			ms[i].data = flip(ms[i].data, len(ms[i].data)/2)
			return ms
		}), V, nil)
	}
	for i := 3; i < len(good); i++ {
		i := i
		add(fmt.Sprintf("byte flipped in package %d", i-3), with(func(ms []member) []member {
			ms[i].data = flip(ms[i].data, len(ms[i].data)-1)
			return ms
		}), V, bundle.ErrDigest)
	}
	for _, frac := range []float64{0.01, 0.1, 0.3, 0.5, 0.7, 0.9, 0.99} {
		n := int(float64(len(f.good)) * frac)
		add(fmt.Sprintf("truncated at %.0f%% (%d bytes)", frac*100, n), f.good[:n], V, nil)
	}
	add("truncated by one byte", f.good[:len(f.good)-1], V, nil)
	add("byte flipped in compressed stream", flip(f.good, len(f.good)/2), V, nil)
	add("garbage appended after zstd", append(bytes.Clone(f.good), []byte("#!/bin/sh\nrm -rf /\n")...), V, nil)
	add("second zstd frame appended", append(bytes.Clone(f.good), compress(t, []byte("evil"))...), V, nil)
	add("extra member at end", with(func(ms []member) []member { return append(ms, member{name: "evil.sh", data: []byte("x")}) }), V, nil)
	add("extra member in the middle", with(func(ms []member) []member {
		return append(ms[:4], append([]member{{name: "packages/extra", data: []byte("x")}}, ms[4:]...)...)
	}), V, nil)
	add("missing package member", with(func(ms []member) []member { return ms[:len(ms)-1] }), V, nil)
	add("duplicated package member", with(func(ms []member) []member { return append(ms, ms[len(ms)-1]) }), V, nil)
	add("signature before manifest", with(func(ms []member) []member { ms[0], ms[1] = ms[1], ms[0]; return ms }), V, nil)
	add("packages reordered", with(func(ms []member) []member { ms[3], ms[4] = ms[4], ms[3]; return ms }), V, nil)
	add("missing entitlement", with(func(ms []member) []member { return append(ms[:2], ms[3:]...) }), V, nil)
	add("path traversal name", with(func(ms []member) []member { ms[3].name = "packages/../../etc/cron.d/x"; return ms }), V, nil)
	add("absolute name", with(func(ms []member) []member { ms[0].name = "/manifest.json"; return ms }), V, nil)
	add("symlink member", with(func(ms []member) []member {
		ms[3] = member{name: ms[3].name, typeflag: tar.TypeSymlink, link: "/etc/shadow"}
		return ms
	}), V, nil)
	add("hardlink member", with(func(ms []member) []member {
		ms[4] = member{name: ms[4].name, typeflag: tar.TypeLink, link: ms[3].name}
		return ms
	}), V, nil)
	add("character device member", with(func(ms []member) []member {
		ms[3] = member{name: ms[3].name, typeflag: tar.TypeChar}
		return ms
	}), V, nil)
	add("directory member", with(func(ms []member) []member {
		return append(ms[:3], append([]member{{name: "packages/", typeflag: tar.TypeDir}}, ms[3:]...)...)
	}), V, nil)
	add("header size larger than data", with(func(ms []member) []member {
		ms[len(ms)-1].size = int64(len(ms[len(ms)-1].data)) + 4096
		return ms
	}), V, nil)
	add("missing end-of-archive", rawBundle(t, good, false), V, nil)
	add("decompression bomb (1 GiB manifest)", func() []byte {
		// A manifest member that claims and holds 1 GiB of zeros: tiny
		// compressed, refused by its declared size before it is read.
		var tbuf bytes.Buffer
		zw, _ := zstd.NewWriter(&tbuf)
		tw := tar.NewWriter(zw)
		tw.WriteHeader(&tar.Header{Name: "manifest.json", Typeflag: tar.TypeReg, Size: 1 << 30, Mode: 0o644})
		zero := make([]byte, 1<<20)
		for i := 0; i < 1024; i++ {
			tw.Write(zero)
		}
		tw.Close()
		zw.Close()
		return tbuf.Bytes()
	}(), V, nil)

	// Signatures and trust.
	add("manifest re-signed by an untrusted key", resign(f.manifestFor(f.mallory, f.entArmored, f.ent), f.mallory, f.entArmored), V, keys.ErrUnknownSigner)
	add("manifest signed by the vendor (wrong role)", resign(f.manifestFor(f.vendor, f.entArmored, f.ent), f.vendor, f.entArmored), V, keys.ErrWrongRole)
	add("manifest names another courier", func() []byte {
		m := f.manifest
		m.Courier = f.mallory.Fingerprint().String()
		return resign(m, f.courier, f.entArmored)
	}(), V, ErrCourierMismatch)
	courierEnt := f.signEntitlement(t, f.courier, f.ent)
	add("entitlement signed by the courier (wrong role)", resign(f.manifestFor(f.courier, courierEnt, f.ent), f.courier, courierEnt), V, keys.ErrWrongRole)
	malloryEnt := f.signEntitlement(t, f.mallory, f.ent)
	add("entitlement signed by an untrusted key", resign(f.manifestFor(f.courier, malloryEnt, f.ent), f.courier, malloryEnt), V, keys.ErrUnknownSigner)
	add("entitlement swapped (digest differs)", with(func(ms []member) []member { ms[2].data = otherKeyArm; return ms }), V, ErrEntitlementDigest)
	add("manifest lists a package the entitlement does not", func() []byte {
		m := f.manifest
		m.Packages = append([]catalog.Package(nil), m.Packages...)
		m.Packages[2].Reboot = true // metadata differs from the vendor's
		return resign(m, f.courier, f.entArmored)
	}(), V, ErrInconsistent)
	add("manifest drops an entitled package", func() []byte {
		m := f.manifest
		m.Packages = m.Packages[:2]
		return resign(m, f.courier, f.entArmored)
	}(), V, ErrInconsistent)
	add("manifest and entitlement disagree on the key", func() []byte {
		m := f.manifestFor(f.courier, otherKeyArm, otherKey)
		m.KeyID = f.ent.KeyID
		return resign(m, f.courier, otherKeyArm)
	}(), V, ErrInconsistent)
	add("package content differs from signed digest", func() []byte {
		ms := append([]member(nil), good...)
		b := bytes.Clone(ms[4].data)
		b[0] ^= 1
		ms[4].data = b
		return rawBundle(t, ms, true)
	}(), V, bundle.ErrDigest)

	// Policy.
	add("entitlement for another site", resign(f.manifestFor(f.courier, otherSiteArm, otherSite), f.courier, otherSiteArm), P, ErrWrongSite)
	add("entitlement for another (not outstanding) key", resign(f.manifestFor(f.courier, otherKeyArm, otherKey), f.courier, otherKeyArm), P, nil)
	expired := f.ent
	expired.Issued, expired.Expires = testNow.Add(-96*time.Hour), testNow.Add(-24*time.Hour)
	expiredArm := f.signEntitlement(t, f.vendor, expired)
	expiredManifest := f.manifestFor(f.courier, expiredArm, expired)
	expiredManifest.Created = expired.Issued
	add("expired entitlement and bundle", resign(expiredManifest, f.courier, expiredArm), P, ErrExpired)

	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			pol := f.policy()
			if c.pol != nil {
				pol = *c.pol
			}
			_, delivered, err := f.verifyAll(c.input, pol)
			if err == nil {
				t.Fatalf("accepted (delivered %d packages)", delivered)
			}
			if !errors.Is(err, c.class) {
				t.Fatalf("error %q has exit code %d, want class %v", err, fault.Code(err), c.class)
			}
			if c.class == fault.ErrVerification && errors.Is(err, fault.ErrPolicy) {
				t.Fatalf("error %q is classed as policy, want verification", err)
			}
			if c.is != nil && !errors.Is(err, c.is) {
				t.Fatalf("error %q, want %v", err, c.is)
			}
			if c.class == fault.ErrPolicy && delivered > 0 {
				t.Fatalf("policy refusal after %d packages were delivered to the sink", delivered)
			}
		})
	}
	if len(cases) < 30 {
		t.Fatalf("only %d hostile cases", len(cases))
	}
}

func TestFutureAndExpiredSignatures(t *testing.T) {
	f := newFixture(t)
	// Verifying an hour before the signatures were made: they are from the
	// future beyond the skew.
	pol := f.policy()
	pol.Now = testNow.Add(-2 * time.Hour)
	_, _, err := f.verifyAll(f.good, pol)
	if !errors.Is(err, keys.ErrFutureSignature) {
		t.Fatalf("future-dated signature: %v", err)
	}
	// A courier key that expired before verification.
	short := genKey(t, "Short-lived Courier", 2*time.Hour)
	trust := keys.NewTrustStore()
	trust.Add(keys.RoleVendor, f.vendor.Public())
	trust.Add(keys.RoleCourier, short.Public())
	b := f.write(t, short, f.manifestFor(short, f.entArmored, f.ent), f.entArmored)
	pol = f.policy()
	pol.Now = testNow.Add(3 * time.Hour)
	_, err = VerifyBundle(context.Background(), bytes.NewReader(b), trust, pol, nil)
	if !errors.Is(err, keys.ErrKeyExpired) {
		t.Fatalf("expired courier key: %v", err)
	}
}

// TestWeakHashFromGPG has stock gpg sign the manifest with SHA-1, using the
// courier's own key: the signature is genuine but the hash is refused.
func TestWeakHashFromGPG(t *testing.T) {
	if _, err := exec.LookPath("gpg"); err != nil {
		t.Skip("gpg not installed")
	}
	f := newFixture(t)
	home, err := os.MkdirTemp("", "gpg")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(home)
	var priv bytes.Buffer
	if err := f.courier.WriteArmored(&priv, nil); err != nil {
		t.Fatal(err)
	}
	gpg := func(stdin []byte, args ...string) []byte {
		cmd := exec.Command("gpg", append([]string{"--homedir", home, "--batch", "--yes", "--pinentry-mode", "loopback", "--passphrase", ""}, args...)...)
		cmd.Stdin = bytes.NewReader(stdin)
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("gpg %v: %v", args, err)
		}
		return out
	}
	gpg(priv.Bytes(), "--import")
	ms := f.members(t)
	mpath := filepath.Join(home, "manifest.json")
	os.WriteFile(mpath, ms[0].data, 0o644)
	ms[1].data = gpg(nil, "--digest-algo", "SHA1", "--armor", "--detach-sign", "-o", "-", mpath)
	_, _, err = f.verifyAll(rawBundle(t, ms, true), f.policy())
	if !errors.Is(err, keys.ErrWeakHash) {
		t.Fatalf("SHA-1 signature: %v", err)
	}
	if !strings.Contains(err.Error(), "manifest.json.asc") {
		t.Errorf("error %q does not name the member", err)
	}
}

func TestVerifyDownloadKeyAndEntitlement(t *testing.T) {
	f := newFixture(t)
	id, _ := catalog.NewKeyID()
	dk := catalog.DownloadKey{Format: catalog.DownloadKeyFormat, Site: "plant-3", ID: id, Issued: testNow, Expires: testNow.Add(72 * time.Hour),
		Nodes: []catalog.NodeInventory{{Name: "n1", Installed: map[string]catalog.Version{"base": catalog.MustVersion("3.3.2")}}}}
	payload, err := dk.Encode()
	if err != nil {
		t.Fatal(err)
	}
	var signed bytes.Buffer
	if err := f.site.SignMessage(&signed, payload); err != nil {
		t.Fatal(err)
	}
	k, err := VerifyDownloadKey(signed.Bytes(), f.trust, Policy{Now: testNow})
	if err != nil {
		t.Fatal(err)
	}
	if k.ID != id || k.Nodes[0].Installed["base"].String() != "3.3.2" {
		t.Fatalf("decoded %+v", k.DownloadKey)
	}
	// The clock of the verifier is off: a clear policy error either way.
	if _, err := VerifyDownloadKey(signed.Bytes(), f.trust, Policy{Now: testNow.Add(100 * time.Hour)}); !errors.Is(err, ErrExpired) {
		t.Errorf("expired key: %v", err)
	}
	if _, err := VerifyDownloadKey(signed.Bytes(), f.trust, Policy{Now: testNow, Site: "plant-9"}); !errors.Is(err, ErrWrongSite) {
		t.Errorf("wrong site: %v", err)
	}
	// A download key signed by the courier is not a site's.
	var bad bytes.Buffer
	f.courier.SignMessage(&bad, payload)
	if _, err := VerifyDownloadKey(bad.Bytes(), f.trust, Policy{Now: testNow}); !errors.Is(err, keys.ErrWrongRole) {
		t.Errorf("courier-signed download key: %v", err)
	}

	e, err := VerifyEntitlement(f.entArmored, f.trust, f.policy())
	if err != nil {
		t.Fatal(err)
	}
	if err := Answers(e, k); !errors.Is(err, ErrKeyMismatch) {
		t.Errorf("entitlement for another key accepted as the answer: %v", err)
	}
	f.ent.KeyID = id
	e2, err := VerifyEntitlement(f.signEntitlement(t, f.vendor, f.ent), f.trust, Policy{Now: testNow})
	if err != nil {
		t.Fatal(err)
	}
	if err := Answers(e2, k); err != nil {
		t.Errorf("matching entitlement refused: %v", err)
	}
}

var testBundleID = func() string {
	id, err := bundle.NewBundleID()
	if err != nil {
		panic(err)
	}
	return id
}()
