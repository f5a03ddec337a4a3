package catalog

import (
	"bytes"
	"errors"
	"maps"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/airlock-project/airlock/fault"
)

// testKeyID is the base32 of "airlock-test-id1".
const testKeyID KeyID = "mfuxe3dpmnvs25dfon2c22lege"

var (
	testIssued  = time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC)
	testExpires = time.Date(2026, 11, 25, 10, 0, 0, 0, time.UTC)
)

// goldenKey is the canonical encoding of testKey.
const goldenKey = `{"format":"airlock-download-key/v1","site":"plant-3","id":"mfuxe3dpmnvs25dfon2c22lege",` +
	`"issued":"2026-11-22T10:00:00Z","expires":"2026-11-25T10:00:00Z",` +
	`"nodes":[{"name":"node-a","installed":{"base":"3.3.2","product":"21.1.0"}},{"name":"node-b","installed":{"base":"3.3.2"}}]}` + "\n"

// testKey is a valid download key whose nodes are out of order and whose
// times are in another zone with a fraction of a second.
func testKey() DownloadKey {
	cet := time.FixedZone("CET", 3600)
	return DownloadKey{
		Format:  DownloadKeyFormat,
		Site:    "plant-3",
		ID:      testKeyID,
		Issued:  time.Date(2026, 11, 22, 11, 0, 0, 999999999, cet),
		Expires: time.Date(2026, 11, 25, 11, 0, 0, 1, cet),
		Nodes: []NodeInventory{
			{Name: "node-b", Installed: map[string]Version{"base": MustVersion("3.3.2")}},
			{Name: "node-a", Installed: map[string]Version{"product": MustVersion("21.1.0"), "base": MustVersion("3.3.2")}},
		},
	}
}

// goldenEntitlement is the canonical encoding of testEntitlement.
const goldenEntitlement = `{"format":"airlock-entitlement/v1","site":"plant-3","key_id":"mfuxe3dpmnvs25dfon2c22lege",` +
	`"issued":"2026-11-22T10:00:00Z","expires":"2026-11-25T10:00:00Z","packages":[` +
	`{"name":"product","kind":"product","version":"21.1.0","sha256":"` + productHex + `","size":123456,` +
	`"requires":["base >= 3.3.2","product >= 20.4"],"settle":"24h0m0s","reboot":true},` +
	`{"name":"base","kind":"base","version":"3.4.0","sha256":"` + baseHex + `","size":1000,` +
	`"requires":[],"settle":"0s","reboot":false}]}` + "\n"

// testEntitlement is a valid entitlement, times in another zone.
func testEntitlement(t testing.TB) Entitlement {
	est := time.FixedZone("EST", -5*3600)
	return Entitlement{
		Format:  EntitlementFormat,
		Site:    "plant-3",
		KeyID:   testKeyID,
		Issued:  time.Date(2026, 11, 22, 5, 0, 0, 500, est),
		Expires: time.Date(2026, 11, 25, 5, 0, 0, 0, est),
		Packages: []Package{
			productPackage(t),
			{Name: "base", Kind: KindBase, Version: MustVersion("3.4.0"), SHA256: mustDigest(t, baseHex), Size: 1000},
		},
	}
}

// wantErr fails unless err is sentinel and of the verification class.
func wantErr(t *testing.T, what string, err, sentinel error) {
	t.Helper()
	if err == nil {
		t.Errorf("%s: no error, want %v", what, sentinel)
		return
	}
	if !errors.Is(err, sentinel) || !errors.Is(err, fault.ErrVerification) {
		t.Errorf("%s: error %q is not %q of the verification class", what, err, sentinel)
	}
}

// sameKey reports whether a and b are the same download key: times equal
// at the encoded precision, nodes equal regardless of order.
func sameKey(a, b DownloadKey) bool {
	if a.Format != b.Format || a.Site != b.Site || a.ID != b.ID ||
		!canonicalTime(a.Issued).Equal(canonicalTime(b.Issued)) ||
		!canonicalTime(a.Expires).Equal(canonicalTime(b.Expires)) ||
		len(a.Nodes) != len(b.Nodes) {
		return false
	}
	inv := func(k DownloadKey) map[string]map[string]string {
		m := map[string]map[string]string{}
		for _, n := range k.Nodes {
			m[n.Name] = map[string]string{}
			for c, v := range n.Installed {
				m[n.Name][c] = v.String()
			}
		}
		return m
	}
	return maps.EqualFunc(inv(a), inv(b), maps.Equal)
}

func TestDownloadKeyEncodeCanonical(t *testing.T) {
	k := testKey()
	b, err := k.Encode()
	if err != nil {
		t.Fatal(err)
	}
	if string(b) != goldenKey {
		t.Fatalf("Encode =\n%s\nwant\n%s", b, goldenKey)
	}
	// Encode leaves the caller's value alone.
	if k.Nodes[0].Name != "node-b" || k.Issued.Location().String() != "CET" || k.Issued.Nanosecond() == 0 {
		t.Error("Encode modified its receiver's nodes or times")
	}

	// The same key, spelled differently in memory, encodes to the same bytes.
	k2 := testKey()
	k2.Nodes[0], k2.Nodes[1] = k2.Nodes[1], k2.Nodes[0]
	k2.Nodes[0].Installed = map[string]Version{}
	k2.Nodes[0].Installed["base"] = MustVersion("3.3.2")
	k2.Nodes[0].Installed["product"] = MustVersion("21.1.0")
	k2.Issued, k2.Expires = testIssued, testExpires
	for i := 0; i < 10; i++ {
		b2, err := k2.Encode()
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(b, b2) {
			t.Fatalf("equal keys encode differently:\n%s\n%s", b, b2)
		}
	}

	// Decode(Encode(k)) is k.
	d, err := DecodeDownloadKey(b)
	if err != nil {
		t.Fatal(err)
	}
	if !sameKey(d, k) {
		t.Errorf("Decode(Encode(k)) = %+v, want %+v", d, k)
	}
	if d.Issued.Location() != time.UTC || !d.Issued.Equal(testIssued) || !d.Expires.Equal(testExpires) {
		t.Errorf("decoded times %v, %v; want %v, %v in UTC", d.Issued, d.Expires, testIssued, testExpires)
	}
	if d.Nodes[0].Name != "node-a" || d.Nodes[1].Name != "node-b" {
		t.Errorf("decoded nodes not sorted: %v", d.Nodes)
	}
	if b3, err := d.Encode(); err != nil || !bytes.Equal(b3, b) {
		t.Errorf("Encode(Decode(b)) = %s, %v; want\n%s", b3, err, b)
	}
}

func TestDownloadKeyEncodeEmpty(t *testing.T) {
	for _, nodes := range [][]NodeInventory{nil, {}} {
		k := testKey()
		k.Nodes = nodes
		b, err := k.Encode()
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Contains(b, []byte(`"nodes":[]`)) {
			t.Errorf("no nodes (%#v) encoded as %s; want \"nodes\":[]", nodes, b)
		}
		if _, err := DecodeDownloadKey(b); err != nil {
			t.Errorf("Decode(Encode(key without nodes)): %v", err)
		}
	}
	for _, inv := range []map[string]Version{nil, {}} {
		k := testKey()
		k.Nodes = []NodeInventory{{Name: "node-a", Installed: inv}}
		b, err := k.Encode()
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Contains(b, []byte(`"nodes":[{"name":"node-a","installed":{}}]`)) {
			t.Errorf("empty inventory (%#v) encoded as %s", inv, b)
		}
		d, err := DecodeDownloadKey(b)
		if err != nil {
			t.Fatalf("Decode(Encode(key with an empty inventory)): %v", err)
		}
		if b2, err := d.Encode(); err != nil || !bytes.Equal(b, b2) {
			t.Errorf("re-encoding gave %s, %v", b2, err)
		}
	}
}

func TestDownloadKeyValidate(t *testing.T) {
	for _, tc := range []struct {
		name     string
		mutate   func(*DownloadKey)
		sentinel error
	}{
		{"empty format", func(k *DownloadKey) { k.Format = "" }, ErrFormat},
		{"other format", func(k *DownloadKey) { k.Format = "airlock-download-key/v2" }, ErrFormat},
		{"entitlement format", func(k *DownloadKey) { k.Format = EntitlementFormat }, ErrFormat},
		{"no site", func(k *DownloadKey) { k.Site = "" }, ErrDocument},
		{"bad site", func(k *DownloadKey) { k.Site = "Plant 3" }, ErrDocument},
		{"no id", func(k *DownloadKey) { k.ID = "" }, ErrDocument},
		{"uppercase id", func(k *DownloadKey) { k.ID = KeyID(strings.ToUpper(string(testKeyID))) }, ErrDocument},
		{"no issue time", func(k *DownloadKey) { k.Issued = time.Time{} }, ErrDocument},
		{"no expiry", func(k *DownloadKey) { k.Expires = time.Time{} }, ErrDocument},
		{"expires when issued", func(k *DownloadKey) { k.Expires = k.Issued }, ErrDocument},
		{"expires before issued", func(k *DownloadKey) { k.Issued, k.Expires = testExpires, testIssued }, ErrDocument},
		// Within one second: empty once truncated as encoded.
		{"sub-second window", func(k *DownloadKey) {
			k.Issued = testIssued.Add(100 * time.Millisecond)
			k.Expires = testIssued.Add(900 * time.Millisecond)
		}, ErrDocument},
		// Zero once truncated as encoded.
		{"issued in the zero second", func(k *DownloadKey) { k.Issued = time.Time{}.Add(time.Millisecond) }, ErrDocument},
		// Year 10000 in UTC: JSON cannot encode it.
		{"expires after 9999", func(k *DownloadKey) {
			k.Expires = time.Date(9999, 12, 31, 23, 0, 0, 0, time.FixedZone("", -2*3600))
		}, ErrDocument},
		{"duplicated node", func(k *DownloadKey) { k.Nodes = append(k.Nodes, NodeInventory{Name: "node-a"}) }, ErrDocument},
		{"unnamed node", func(k *DownloadKey) { k.Nodes = append(k.Nodes, NodeInventory{}) }, ErrDocument},
		{"bad node name", func(k *DownloadKey) { k.Nodes[0].Name = "../etc" }, ErrDocument},
		{"bad component name", func(k *DownloadKey) { k.Nodes[0].Installed["Base"] = MustVersion("1") }, ErrDocument},
		{"component without version", func(k *DownloadKey) { k.Nodes[0].Installed["license"] = Version{} }, ErrDocument},
		{"too many nodes", func(k *DownloadKey) {
			k.Nodes = nil
			for i := range maxNodes + 1 {
				k.Nodes = append(k.Nodes, NodeInventory{Name: "n" + strconv.Itoa(i)})
			}
		}, ErrDocument},
	} {
		k := testKey()
		tc.mutate(&k)
		wantErr(t, tc.name+": Validate", k.Validate(), tc.sentinel)
		b, err := k.Encode()
		wantErr(t, tc.name+": Encode", err, tc.sentinel)
		if b != nil {
			t.Errorf("%s: Encode returned bytes with an error", tc.name)
		}
	}

	k := testKey()
	k.Nodes = nil
	for i := range maxNodes {
		k.Nodes = append(k.Nodes, NodeInventory{Name: "n" + strconv.Itoa(i)})
	}
	if err := k.Validate(); err != nil {
		t.Errorf("%d nodes: %v", maxNodes, err)
	}
}

func TestDecodeDownloadKeyStrict(t *testing.T) {
	if _, err := DecodeDownloadKey([]byte(goldenKey)); err != nil {
		t.Fatalf("golden key: %v", err)
	}
	r := func(old, new string) string {
		if !strings.Contains(goldenKey, old) {
			t.Fatalf("golden key lacks %q", old)
		}
		return strings.Replace(goldenKey, old, new, 1)
	}
	const id = string(testKeyID)
	const nodeA = `{"name":"node-a","installed":{"base":"3.3.2","product":"21.1.0"}}`
	for _, tc := range []struct {
		name     string
		doc      string
		sentinel error
	}{
		{"empty input", "", ErrDocument},
		{"not JSON", "download key", ErrDocument},
		{"JSON null", "null", ErrDocument},
		{"JSON array", "[" + goldenKey + "]", ErrDocument},
		{"empty object", "{}", ErrDocument},
		{"truncated", goldenKey[:len(goldenKey)/2], ErrDocument},
		{"unknown top-level field", r(`"site":`, `"comment":"hi","site":`), ErrDocument},
		{"unknown field in a node", r(`{"name":"node-b",`, `{"name":"node-b","os":"linux",`), ErrDocument},
		{"missing format", r(`"format":"airlock-download-key/v1",`, ``), ErrDocument},
		{"missing site", r(`"site":"plant-3",`, ``), ErrDocument},
		{"missing id", r(`"id":"mfuxe3dpmnvs25dfon2c22lege",`, ``), ErrDocument},
		{"missing issued", r(`"issued":"2026-11-22T10:00:00Z",`, ``), ErrDocument},
		{"missing expires", r(`"expires":"2026-11-25T10:00:00Z",`, ``), ErrDocument},
		{"missing nodes", r(`,"nodes":[`+nodeA+`,{"name":"node-b","installed":{"base":"3.3.2"}}]`, ``), ErrDocument},
		{"null format", r(`"format":"airlock-download-key/v1"`, `"format":null`), ErrDocument},
		{"null site", r(`"site":"plant-3"`, `"site":null`), ErrDocument},
		{"null id", r(`"id":"mfuxe3dpmnvs25dfon2c22lege"`, `"id":null`), ErrDocument},
		{"null issued", r(`"issued":"2026-11-22T10:00:00Z"`, `"issued":null`), ErrDocument},
		{"null expires", r(`"expires":"2026-11-25T10:00:00Z"`, `"expires":null`), ErrDocument},
		{"null nodes", r(`"nodes":[`+nodeA+`,{"name":"node-b","installed":{"base":"3.3.2"}}]`, `"nodes":null`), ErrDocument},
		{"null node", r(nodeA, `null`), ErrDocument},
		{"null version in inventory", r(`"product":"21.1.0"`, `"product":null`), ErrDocument},
		{"wrong format", r(`airlock-download-key/v1`, `airlock-download-key/v2`), ErrFormat},
		{"entitlement format", r(`airlock-download-key/v1`, EntitlementFormat), ErrFormat},
		{"format with space", r(`airlock-download-key/v1`, `airlock-download-key/v1 `), ErrFormat},
		{"trailing object", goldenKey + "{}", ErrDocument},
		{"trailing garbage", goldenKey + "x", ErrDocument},
		{"second document", goldenKey + goldenKey, ErrDocument},
		{"oversize", goldenKey + strings.Repeat(" ", MaxDocumentSize+1-len(goldenKey)), ErrTooLarge},
		{"far oversize", strings.Repeat("[", 2*MaxDocumentSize), ErrTooLarge},
		{"invalid key id", r(id, "not-a-key-id"), ErrDocument},
		{"uppercase key id", r(id, strings.ToUpper(id)), ErrDocument},
		{"key id with a newline", r(id, id[:10]+`\n`+id[10:]), ErrDocument},
		{"expires before issued", r(`"expires":"2026-11-25T10:00:00Z"`, `"expires":"2026-11-21T10:00:00Z"`), ErrDocument},
		{"expires when issued", r(`"expires":"2026-11-25T10:00:00Z"`, `"expires":"2026-11-22T10:00:00Z"`), ErrDocument},
		{"expires in the same second", r(`"expires":"2026-11-25T10:00:00Z"`, `"expires":"2026-11-22T10:00:00.9Z"`), ErrDocument},
		{"time not RFC 3339", r(`"issued":"2026-11-22T10:00:00Z"`, `"issued":"22 Nov 2026"`), ErrDocument},
		{"time as a number", r(`"issued":"2026-11-22T10:00:00Z"`, `"issued":1795341600`), ErrDocument},
		{"duplicated node", r(nodeA, nodeA+","+nodeA), ErrDocument},
		{"bad node name", r(`"node-a"`, `"Node-A"`), ErrDocument},
		{"bad component name", r(`"product":`, `"Product":`), ErrDocument},
		{"bad version", r(`"21.1.0"`, `"21.01.0"`), ErrDocument},
		{"site as a number", r(`"site":"plant-3"`, `"site":3`), ErrDocument},
		{"duplicate top-level key", r(`"site":"plant-3",`, `"site":"plant-3","site":"plant-4",`), ErrDocument},
		{"duplicate key differing in case", r(`"site":"plant-3",`, `"site":"plant-3","Site":"plant-4",`), ErrDocument},
		{"duplicate key by Unicode folding", r(`"site":"plant-3",`, `"site":"plant-3","ſite":"plant-4",`), ErrDocument},
		{"duplicate key in a node", r(`{"name":"node-b",`, `{"name":"node-b","name":"node-c",`), ErrDocument},
		{"duplicate component", r(`"product":"21.1.0"`, `"product":"21.1.0","product":"22.0"`), ErrDocument},
	} {
		k, err := DecodeDownloadKey([]byte(tc.doc))
		wantErr(t, tc.name, err, tc.sentinel)
		if err != nil && (k.Format != "" || k.Nodes != nil) {
			t.Errorf("%s: a partial key was returned with the error", tc.name)
		}
	}

	// White space after the object is not trailing data, up to the limit.
	for _, doc := range []string{goldenKey + " \n\t\r", goldenKey + strings.Repeat(" ", MaxDocumentSize-len(goldenKey))} {
		if _, err := DecodeDownloadKey([]byte(doc)); err != nil {
			t.Errorf("key followed by white space (%d bytes): %v", len(doc), err)
		}
	}

	// Any valid spelling decodes to the key whose canonical encoding is golden.
	loose := `{ "nodes": [ {"installed": {"base": "3.3.2"}, "name": "node-b"}, {"name": "node-a", "installed": {"product": "21.1.0", "base": "3.3.2"}} ],
		"expires": "2026-11-25T11:00:00.123+01:00", "issued": "2026-11-22T05:00:00.5-05:00",
		"id": "mfuxe3dpmnvs25dfon2c22lege", "site": "plant-3", "format": "airlock-download-key/v1" }`
	k, err := DecodeDownloadKey([]byte(loose))
	if err != nil {
		t.Fatal(err)
	}
	if b, err := k.Encode(); err != nil || string(b) != goldenKey {
		t.Errorf("canonical encoding of a loose spelling = %s, %v; want\n%s", b, err, goldenKey)
	}
}

func TestKeyID(t *testing.T) {
	seen := map[KeyID]bool{}
	for i := 0; i < 1000; i++ {
		id, err := NewKeyID()
		if err != nil {
			t.Fatal(err)
		}
		if len(id) != 26 || strings.ToLower(string(id)) != string(id) {
			t.Fatalf("NewKeyID() = %q: want 26 lowercase characters", id)
		}
		if p, err := ParseKeyID(string(id)); err != nil || p != id {
			t.Fatalf("ParseKeyID(NewKeyID() = %q) = %q, %v", id, p, err)
		}
		if seen[id] {
			t.Fatalf("NewKeyID returned %q twice in %d draws", id, i+1)
		}
		seen[id] = true
	}

	const canonical = "aaaaaaaaaaaaaaaaaaaaaaaaae" // 16 bytes, last 2 bits zero
	if _, err := ParseKeyID(canonical); err != nil {
		t.Errorf("ParseKeyID(%q): %v", canonical, err)
	}
	id := string(testKeyID)
	for _, in := range []string{
		"",
		id[:25],
		id + "a",
		strings.ToUpper(id),
		"M" + id[1:],
		id[:25] + "1", // not in the base32 alphabet
		id[:25] + "0",
		id[:25] + "8",
		id[:25] + "=",
		id + "======",
		id[:10] + "\n" + id[10:], // the base32 decoder skips newlines
		id[:10] + "\r\n" + id[10:],
		id[:25] + "\n",
		"aaaaaaaaaaaaaaaaaaaaaaaaab", // non-zero trailing bits: a second spelling of ...aaa
		"aaaaaaaaaaaaaaaaaaaaaaaaad",
		" " + id[1:],
		strings.Repeat("a", 32),
	} {
		k, err := ParseKeyID(in)
		wantErr(t, "ParseKeyID("+strconv.Quote(in)+")", err, ErrDocument)
		if k != "" {
			t.Errorf("ParseKeyID(%q) = %q with an error", in, k)
		}
		var u KeyID
		if err := u.UnmarshalText([]byte(in)); err == nil || u != "" {
			t.Errorf("UnmarshalText(%q) = %q, %v", in, u, err)
		}
	}
}

func TestDecodeStrict(t *testing.T) {
	type item struct {
		A string `json:"a"`
	}
	type doc struct {
		Name  string            `json:"name"`
		Items []item            `json:"items"`
		Tags  map[string]string `json:"tags"`
	}
	req := []string{"name", "items"}
	ok := []string{
		`{"name":"x","items":[]}`,
		`{"name":"x","items":[{"a":"1"},{"a":"1"}]}`,        // same key in different objects
		`{"name":"name","items":[],"tags":{"name":"name"}}`, // keys repeated as values and at other depths
		`{"name":"x","items":[{"a":"a"}],"tags":{"a":"b","b":"a"}}`,
		`{"name":"x","items":[]}` + " \n",
	}
	for _, in := range ok {
		var d doc
		if err := DecodeStrict([]byte(in), &d, req); err != nil {
			t.Errorf("DecodeStrict(%s): %v", in, err)
		}
	}
	var d doc
	if err := DecodeStrict([]byte(`{"name":"x","items":[{"a":"1"}],"tags":{"k":"v"}}`), &d, req); err != nil ||
		d.Name != "x" || len(d.Items) != 1 || d.Items[0].A != "1" || d.Tags["k"] != "v" {
		t.Errorf("DecodeStrict = %+v, %v", d, err)
	}
	for _, in := range []string{
		`{"name":"x"}`,
		`{"name":"x","items":null}`,
		`{"name":"x","items":[],"other":1}`,
		`{"name":"x","items":[{"a":"1","b":"2"}]}`,
		`{"name":"x","name":"y","items":[]}`,
		`{"name":"x","NAME":"y","items":[]}`,
		`{"name":"x","items":[{"a":"1","A":"2"}]}`,
		`{"name":"x","items":[],"tags":{"k":"v","k":"w"}}`,
		`{"name":"x","items":[]}{}`,
		`{"name":"x","items":[]`,
	} {
		var d doc
		wantErr(t, "DecodeStrict("+in+")", DecodeStrict([]byte(in), &d, req), ErrDocument)
	}
}

func TestFoldKey(t *testing.T) {
	for _, tc := range []struct {
		a, b string
		same bool
	}{
		{"site", "SITE", true},
		{"site", "Site", true},
		{"site", "ſite", true},      // U+017F LATIN SMALL LETTER LONG S
		{"kind", "\u212aind", true}, // U+212A KELVIN SIGN
		{"key_id", "KEY_ID", true},
		{"key_id", "keyid", false},
		{"key_id", "key-id", false},
		{"a", "b", false},
		{"é", "É", true},
	} {
		if got := foldKey(tc.a) == foldKey(tc.b); got != tc.same {
			t.Errorf("foldKey(%q) == foldKey(%q): %v, want %v", tc.a, tc.b, got, tc.same)
		}
	}
}
