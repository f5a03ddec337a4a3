package catalog

import (
	"bytes"
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestEntitlementEncodeCanonical(t *testing.T) {
	e := testEntitlement(t)
	b, err := e.Encode()
	if err != nil {
		t.Fatal(err)
	}
	if string(b) != goldenEntitlement {
		t.Fatalf("Encode =\n%s\nwant\n%s", b, goldenEntitlement)
	}
	// Encode leaves the caller's value alone.
	if e.Packages[1].Requires != nil || e.Issued.Location().String() != "EST" {
		t.Error("Encode modified its receiver")
	}

	// Equal entitlements encode to equal bytes.
	e2 := testEntitlement(t)
	e2.Issued, e2.Expires = testIssued, testExpires
	e2.Packages[1].Requires = []Constraint{}
	for i := 0; i < 10; i++ {
		b2, err := e2.Encode()
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(b, b2) {
			t.Fatalf("equal entitlements encode differently:\n%s\n%s", b, b2)
		}
	}

	// Decode(Encode(e)) is e. Package order is kept: it is the vendor's.
	d, err := DecodeEntitlement(b)
	if err != nil {
		t.Fatal(err)
	}
	if d.Format != e.Format || d.Site != e.Site || d.KeyID != e.KeyID ||
		d.Issued.Location() != time.UTC || !d.Issued.Equal(testIssued) || !d.Expires.Equal(testExpires) {
		t.Errorf("Decode(Encode(e)) header = %+v", d)
	}
	if !reflect.DeepEqual(d.Packages, e2.Packages) {
		t.Errorf("Decode(Encode(e)) packages =\n%+v\nwant\n%+v", d.Packages, e2.Packages)
	}
	if b3, err := d.Encode(); err != nil || !bytes.Equal(b3, b) {
		t.Errorf("Encode(Decode(b)) = %s, %v", b3, err)
	}

	// No packages at all: an empty list, which decodes.
	for _, ps := range [][]Package{nil, {}} {
		e := testEntitlement(t)
		e.Packages = ps
		b, err := e.Encode()
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Contains(b, []byte(`"packages":[]`)) {
			t.Errorf("no packages (%#v) encoded as %s", ps, b)
		}
		if _, err := DecodeEntitlement(b); err != nil {
			t.Errorf("Decode(Encode(entitlement without packages)): %v", err)
		}
	}
}

func TestEntitlementValidate(t *testing.T) {
	for _, tc := range []struct {
		name     string
		mutate   func(*Entitlement)
		sentinel error
	}{
		{"other format", func(e *Entitlement) { e.Format = "airlock-entitlement/v0" }, ErrFormat},
		{"download key format", func(e *Entitlement) { e.Format = DownloadKeyFormat }, ErrFormat},
		{"bad site", func(e *Entitlement) { e.Site = "" }, ErrDocument},
		{"bad key id", func(e *Entitlement) { e.KeyID = testKeyID[:25] }, ErrDocument},
		{"expires before issued", func(e *Entitlement) { e.Issued, e.Expires = e.Expires, e.Issued }, ErrDocument},
		{"sub-second window", func(e *Entitlement) { e.Expires = e.Issued.Add(time.Nanosecond) }, ErrDocument},
		{"no issue time", func(e *Entitlement) { e.Issued = time.Time{} }, ErrDocument},
		{"invalid package", func(e *Entitlement) { e.Packages[0].Kind = "firmware" }, ErrPackage},
		{"package with bad requirement", func(e *Entitlement) { e.Packages[0].Requires[0].Op = "=>" }, ErrPackage},
		{"same package twice", func(e *Entitlement) { e.Packages = append(e.Packages, e.Packages[0]) }, ErrDocument},
		{"same digest twice", func(e *Entitlement) {
			p := e.Packages[0]
			p.Name = "product-copy"
			e.Packages = append(e.Packages, p)
		}, ErrDocument},
		{"same name@version twice", func(e *Entitlement) {
			p := e.Packages[1]
			p.SHA256 = mustDigest(t, hotfixHex)
			e.Packages = append(e.Packages, p)
		}, ErrDocument},
		{"same version spelled twice", func(e *Entitlement) {
			p := e.Packages[1] // base@3.4.0
			p.Version, p.SHA256 = MustVersion("3.4"), mustDigest(t, hotfixHex)
			e.Packages = append(e.Packages, p)
		}, ErrDocument},
	} {
		e := testEntitlement(t)
		tc.mutate(&e)
		wantErr(t, tc.name+": Validate", e.Validate(), tc.sentinel)
		_, err := e.Encode()
		wantErr(t, tc.name+": Encode", err, tc.sentinel)
	}

	// Different versions of one component are fine: an upgrade path.
	e := testEntitlement(t)
	p := e.Packages[1]
	p.Version, p.SHA256 = MustVersion("3.4.1"), mustDigest(t, hotfixHex)
	e.Packages = append(e.Packages, p)
	if err := e.Validate(); err != nil {
		t.Errorf("two versions of base: %v", err)
	}
}

func TestDecodeEntitlementStrict(t *testing.T) {
	if _, err := DecodeEntitlement([]byte(goldenEntitlement)); err != nil {
		t.Fatalf("golden entitlement: %v", err)
	}
	r := func(old, new string) string {
		if !strings.Contains(goldenEntitlement, old) {
			t.Fatalf("golden entitlement lacks %q", old)
		}
		return strings.Replace(goldenEntitlement, old, new, 1)
	}
	const id = string(testKeyID)
	i := strings.Index(goldenEntitlement, `{"name":"base"`)
	basePkg := goldenEntitlement[i : len(goldenEntitlement)-3]
	if !strings.HasSuffix(basePkg, `"reboot":false}`) {
		t.Fatalf("bad test setup: %s", basePkg)
	}
	for _, tc := range []struct {
		name     string
		doc      string
		sentinel error
	}{
		{"empty input", "", ErrDocument},
		{"JSON string", `"entitlement"`, ErrDocument},
		{"unknown top-level field", r(`"site":`, `"urls":[],"site":`), ErrDocument},
		{"unknown field in a package", r(`"reboot":false`, `"reboot":false,"url":"http://x"`), ErrDocument},
		{"unknown field in the first package", r(`{"name":"product",`, `{"name":"product","signature":"x",`), ErrDocument},
		{"missing format", r(`"format":"airlock-entitlement/v1",`, ``), ErrDocument},
		{"missing site", r(`"site":"plant-3",`, ``), ErrDocument},
		{"missing key_id", r(`"key_id":"`+id+`",`, ``), ErrDocument},
		{"missing issued", r(`"issued":"2026-11-22T10:00:00Z",`, ``), ErrDocument},
		{"missing expires", r(`"expires":"2026-11-25T10:00:00Z",`, ``), ErrDocument},
		{"missing packages", `{"format":"airlock-entitlement/v1","site":"plant-3","key_id":"` + id + `","issued":"2026-11-22T10:00:00Z","expires":"2026-11-25T10:00:00Z"}`, ErrDocument},
		{"key id under the download key's name", r(`"key_id":`, `"id":`), ErrDocument},
		{"null format", r(`"format":"airlock-entitlement/v1"`, `"format":null`), ErrDocument},
		{"null key_id", r(`"key_id":"`+id+`"`, `"key_id":null`), ErrDocument},
		{"null issued", r(`"issued":"2026-11-22T10:00:00Z"`, `"issued":null`), ErrDocument},
		{"null packages", `{"format":"airlock-entitlement/v1","site":"plant-3","key_id":"` + id + `","issued":"2026-11-22T10:00:00Z","expires":"2026-11-25T10:00:00Z","packages":null}`, ErrDocument},
		{"null package", r(basePkg, `null`), ErrPackage},
		{"package without sha256", r(`,"sha256":"`+baseHex+`"`, ``), ErrPackage},
		{"package with null sha256", r(`"sha256":"`+baseHex+`"`, `"sha256":null`), ErrPackage},
		{"package without version", r(`"version":"3.4.0",`, ``), ErrPackage},
		{"package with null version", r(`"version":"3.4.0"`, `"version":null`), ErrPackage},
		{"package with null requirement", r(`"requires":[]`, `"requires":[null]`), ErrPackage},
		{"package with uppercase sha256", r(baseHex, strings.ToUpper(baseHex)), ErrDocument},
		{"package with zero sha256", r(baseHex, strings.Repeat("0", 64)), ErrDocument},
		{"package with bad constraint", r(`"base >= 3.3.2"`, `"base >== 3.3.2"`), ErrDocument},
		{"package with bad kind", r(`"kind":"base"`, `"kind":"firmware"`), ErrPackage},
		{"package with negative size", r(`"size":1000`, `"size":-1000`), ErrPackage},
		{"package with fractional size", r(`"size":1000`, `"size":1000.5`), ErrDocument},
		{"package with numeric settle", r(`"settle":"0s"`, `"settle":0`), ErrDocument},
		{"wrong format", r(EntitlementFormat, "airlock-entitlement/v2"), ErrFormat},
		{"download key format", r(EntitlementFormat, DownloadKeyFormat), ErrFormat},
		{"trailing data", goldenEntitlement + "[]", ErrDocument},
		{"oversize", goldenEntitlement + strings.Repeat("\n", MaxDocumentSize+1-len(goldenEntitlement)), ErrTooLarge},
		{"duplicate package", r(basePkg, basePkg+","+basePkg), ErrDocument},
		{"duplicate package, version spelled differently", r(basePkg,
			basePkg+","+strings.NewReplacer(`"3.4.0"`, `"3.4"`, baseHex, hotfixHex).Replace(basePkg)), ErrDocument},
		{"invalid key id", r(id, id[:25]), ErrDocument},
		{"key id with padding", r(id, id+"======"), ErrDocument},
		{"expires before issued", r(`"expires":"2026-11-25T10:00:00Z"`, `"expires":"2026-11-22T09:59:59Z"`), ErrDocument},
		{"duplicate key", r(`"packages":[`, `"packages":[],"packages":[`), ErrDocument},
		{"duplicate key in a package", r(`"reboot":false`, `"reboot":false,"REBOOT":true`), ErrDocument},
	} {
		e, err := DecodeEntitlement([]byte(tc.doc))
		wantErr(t, tc.name, err, tc.sentinel)
		if err != nil && (e.Format != "" || e.Packages != nil) {
			t.Errorf("%s: a partial entitlement was returned with the error", tc.name)
		}
	}
}
