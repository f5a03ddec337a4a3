package repo

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"

	"github.com/airlock-project/airlock/catalog"
	"github.com/airlock-project/airlock/fault"
)

const testFP = "12:34:56:78:9A:BC:DE:F0:12:34:56:78:9A:BC:DE:F0:12:34:56:78:9A:BC:DE:F0:12:34:56:78:9A:BC:DE:F0"

func TestParseCertFingerprint(t *testing.T) {
	for _, tc := range []struct {
		in string
		ok bool
	}{
		{testFP, true},
		{strings.ToLower(strings.ReplaceAll(testFP, ":", "")), true},
		{" " + testFP + "\n", true},
		{testFP[:len(testFP)-3], false},
		{testFP + ":00", false},
		{strings.Replace(testFP, "12", "XY", 1), false},
		{"", false},
	} {
		f, err := ParseCertFingerprint(tc.in)
		if (err == nil) != tc.ok {
			t.Errorf("ParseCertFingerprint(%q): %v", tc.in, err)
			continue
		}
		if tc.ok && f.String() != testFP {
			t.Errorf("ParseCertFingerprint(%q) = %s", tc.in, f)
		}
		if !tc.ok && fault.Code(err) != fault.ExitUsage {
			t.Errorf("ParseCertFingerprint(%q): exit %d, want usage", tc.in, fault.Code(err))
		}
	}
	var f CertFingerprint
	if err := json.Unmarshal([]byte(`"`+testFP+`"`), &f); err != nil || f.String() != testFP {
		t.Errorf("JSON round trip: %s, %v", f, err)
	}
}

func testNode(name string) Node {
	fp, _ := ParseCertFingerprint(testFP)
	return Node{Name: name, URL: "https://127.0.0.1:9443", Token: strings.Repeat("ab", 32), Fingerprint: fp, Role: "primary", Region: "eu"}
}

func TestValidateNode(t *testing.T) {
	for _, tc := range []struct {
		name string
		edit func(*Node)
		want string
	}{
		{"ok", func(*Node) {}, ""},
		{"name", func(n *Node) { n.Name = "N 1" }, "node name"},
		{"role", func(n *Node) { n.Role = "chief" }, "--role"},
		{"region", func(n *Node) { n.Region = "e u" }, "--region"},
		{"http", func(n *Node) { n.URL = "http://127.0.0.1:9443" }, "--url"},
		{"path", func(n *Node) { n.URL = "https://127.0.0.1:9443/api" }, "--url"},
		{"userinfo", func(n *Node) { n.URL = "https://u:p@127.0.0.1:9443" }, "--url"},
		{"no host", func(n *Node) { n.URL = "https://" }, "--url"},
		{"empty token", func(n *Node) { n.Token = "" }, "token is empty"},
		{"token space", func(n *Node) { n.Token = "ab cd" }, "spaces"},
		{"long token", func(n *Node) { n.Token = strings.Repeat("a", maxTokenLen+1) }, "longer"},
		{"fingerprint", func(n *Node) { n.Fingerprint = CertFingerprint{} }, "fingerprint"},
	} {
		n := testNode("n1")
		tc.edit(&n)
		err := ValidateNode(n)
		if tc.want == "" {
			if err != nil {
				t.Errorf("%s: %v", tc.name, err)
			}
			continue
		}
		if err == nil || !strings.Contains(err.Error(), tc.want) || fault.Code(err) != fault.ExitUsage {
			t.Errorf("%s: %v, want a usage error about %q", tc.name, err, tc.want)
		}
	}
}

func TestNodeRegistry(t *testing.T) {
	e := newEnv(t)
	r := e.open()
	defer r.Close()
	if nodes, err := r.Nodes(); err != nil || len(nodes) != 0 {
		t.Fatalf("a new repository has nodes %v, %v", nodes, err)
	}
	if inv, err := r.NodeInventory(); err != nil || len(inv) != 0 {
		t.Fatalf("inventory %v, %v", inv, err)
	}
	n2 := testNode("n2")
	n2.URL += "/"
	if old, err := r.AddNode(n2); err != nil || old != nil {
		t.Fatalf("AddNode: %v, %v", old, err)
	}
	if _, err := r.AddNode(testNode("n1")); err != nil {
		t.Fatal(err)
	}
	seen := NodeSeen{At: e.clock(), Clock: e.clock(), Role: "backup", Installed: map[string]catalog.Version{"base": catalog.MustVersion("3.3.2")}}
	if err := r.RecordSeen(map[string]NodeSeen{"n2": seen, "gone": seen}); err != nil {
		t.Fatal(err)
	}
	nodes, err := r.Nodes()
	if err != nil || len(nodes) != 2 || nodes[0].Name != "n1" || nodes[1].Name != "n2" {
		t.Fatalf("Nodes = %+v, %v", nodes, err)
	}
	if nodes[1].URL != "https://127.0.0.1:9443" || nodes[1].Token != n2.Token || nodes[1].Seen == nil || nodes[1].Seen.Role != "backup" || nodes[0].Seen != nil {
		t.Errorf("stored %+v", nodes)
	}
	inv, err := r.NodeInventory()
	if err != nil || len(inv) != 2 || inv[1].Installed["base"].String() != "3.3.2" || inv[0].Installed == nil {
		t.Errorf("inventory %+v, %v", inv, err)
	}
	b, _ := json.Marshal(nodes)
	if bytes.Contains(b, []byte(n2.Token)) {
		t.Errorf("the JSON form of a node carries its token: %s", b)
	}

	// Re-adding replaces; the replaced entry is returned.
	n2b := testNode("n2")
	n2b.Fingerprint[0] ^= 0xff
	old, err := r.AddNode(n2b)
	if err != nil || old == nil || old.Fingerprint.String() != testFP {
		t.Fatalf("replace: %+v, %v", old, err)
	}
	if _, err := r.RemoveNode("n9"); fault.Code(err) != fault.ExitUsage {
		t.Errorf("remove of an unknown node: %v", err)
	}
	if n, err := r.RemoveNode("n1"); err != nil || n.Name != "n1" {
		t.Fatalf("remove: %+v, %v", n, err)
	}
	if nodes, _ := r.Nodes(); len(nodes) != 1 || nodes[0].Fingerprint == old.Fingerprint {
		t.Errorf("after remove and replace: %+v", nodes)
	}
	log, err := r.AuditLog()
	if err != nil {
		t.Fatal(err)
	}
	var actions []string
	for _, en := range log {
		actions = append(actions, en.Action)
		if bytes.Contains(en.Details, []byte(n2.Token)) {
			t.Errorf("audit entry %d carries a token", en.Seq)
		}
	}
	if got := strings.Join(actions, " "); !strings.HasSuffix(got, "node.add node.add node.add node.remove") {
		t.Errorf("audit actions %s", got)
	}
	if _, err := r.VerifyAudit(); err != nil {
		t.Error(err)
	}
	r.Close()
	e.mustCheck()
}

func TestPackageEntitlement(t *testing.T) {
	e := newEnv(t)
	key := e.issue()
	res := e.importBundle(e.bundle(key, "base@3.4.0", "product@22.1.0"), ImportOptions{})
	r := e.openRO()
	defer r.Close()
	p, ent, err := r.PackageEntitlement(res.Packages[1].SHA256)
	if err != nil {
		t.Fatal(err)
	}
	if p.ID() != "product@22.1.0" || !bytes.HasPrefix(ent, []byte("-----BEGIN PGP MESSAGE-----")) {
		t.Errorf("package %s, entitlement %.40q", p.ID(), ent)
	}
	if _, _, err := r.PackageEntitlement(catalog.Digest{1}); fault.Code(err) != fault.ExitUsage {
		t.Errorf("unknown digest: %v", err)
	}
}
