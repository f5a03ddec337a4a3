package catalog

import (
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/airlock-project/airlock/fault"
)

// Digests of three made-up vendor files.
const (
	baseHex    = "174f274d35edcbf62df4f2761935b70d28172ee584c40baddac45986cd8b1aa4"
	productHex = "d4d9ff5a5a20d9d15a858d83e34aee090e6dddf794b78f9eaf62cc8d9bd90c94"
	hotfixHex  = "eda660b86a323682a664b46a9d7d38aab31786f8499d86753b339d1890cf511c"
)

func mustDigest(t testing.TB, s string) Digest {
	t.Helper()
	d, err := ParseDigest(s)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func mustConstraint(t testing.TB, s string) Constraint {
	t.Helper()
	c, err := ParseConstraint(s)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func productPackage(t testing.TB) Package {
	return Package{
		Name:     "product",
		Kind:     KindProduct,
		Version:  MustVersion("21.1.0"),
		SHA256:   mustDigest(t, productHex),
		Size:     123456,
		Requires: []Constraint{mustConstraint(t, "base >= 3.3.2"), mustConstraint(t, "product >= 20.4")},
		Settle:   Duration(24 * time.Hour),
		Reboot:   true,
	}
}

func TestPackageValidate(t *testing.T) {
	if err := productPackage(t).Validate(); err != nil {
		t.Fatalf("valid package: %v", err)
	}
	for _, tc := range []struct {
		name   string
		mutate func(*Package)
		ok     bool
	}{
		{"no requirements", func(p *Package) { p.Requires = nil }, true},
		{"zero size", func(p *Package) { p.Size = 0 }, true},
		{"max size", func(p *Package) { p.Size = MaxPackageSize }, true},
		{"no settle", func(p *Package) { p.Settle = 0 }, true},
		{"settle one year", func(p *Package) { p.Settle = Duration(365 * 24 * time.Hour) }, true},
		{"32 requirements", func(p *Package) { p.Requires = manyRequires(32) }, true},
		{"every kind", func(p *Package) { p.Kind = KindHotfix }, true},

		{"empty name", func(p *Package) { p.Name = "" }, false},
		{"bad name", func(p *Package) { p.Name = "Product" }, false},
		{"path name", func(p *Package) { p.Name = "../product" }, false},
		{"empty kind", func(p *Package) { p.Kind = "" }, false},
		{"unknown kind", func(p *Package) { p.Kind = "firmware" }, false},
		{"uppercase kind", func(p *Package) { p.Kind = "Base" }, false},
		{"no version", func(p *Package) { p.Version = Version{} }, false},
		{"no sha256", func(p *Package) { p.SHA256 = Digest{} }, false},
		{"negative size", func(p *Package) { p.Size = -1 }, false},
		{"size over limit", func(p *Package) { p.Size = MaxPackageSize + 1 }, false},
		{"33 requirements", func(p *Package) { p.Requires = manyRequires(33) }, false},
		{"zero requirement", func(p *Package) { p.Requires = append(p.Requires, Constraint{}) }, false},
		{"requirement without version", func(p *Package) { p.Requires[0].Version = Version{} }, false},
		{"requirement with bad name", func(p *Package) { p.Requires[0].Name = "Base" }, false},
		{"requirement with unknown op", func(p *Package) { p.Requires[0].Op = "~>" }, false},
		{"requirement without op", func(p *Package) { p.Requires[0].Op = "" }, false},
		{"negative settle", func(p *Package) { p.Settle = -1 }, false},
		{"settle over a year", func(p *Package) { p.Settle = Duration(365*24*time.Hour + 1) }, false},
	} {
		p := productPackage(t)
		tc.mutate(&p)
		err := p.Validate()
		if tc.ok {
			if err != nil {
				t.Errorf("%s: Validate = %v, want nil", tc.name, err)
			}
			continue
		}
		if !errors.Is(err, ErrPackage) || !errors.Is(err, fault.ErrVerification) {
			t.Errorf("%s: Validate = %v, want ErrPackage of the verification class", tc.name, err)
		}
	}
}

func manyRequires(n int) []Constraint {
	cs := make([]Constraint, n)
	for i := range cs {
		cs[i] = Constraint{Name: "base", Op: OpGE, Version: MustVersion("1")}
	}
	return cs
}

func TestKind(t *testing.T) {
	for i, k := range []Kind{KindBase, KindProduct, KindLicense, KindHotfix} {
		if k.Rank() != i {
			t.Errorf("%s.Rank() = %d, want %d", k, k.Rank(), i)
		}
		if got, err := ParseKind(string(k)); err != nil || got != k {
			t.Errorf("ParseKind(%q) = %q, %v", k, got, err)
		}
	}
	for _, s := range []string{"", "Base", "base ", "firmware", "hotfixes"} {
		if Kind(s).Rank() != -1 {
			t.Errorf("Kind(%q).Rank() = %d, want -1", s, Kind(s).Rank())
		}
		if _, err := ParseKind(s); !errors.Is(err, ErrPackage) {
			t.Errorf("ParseKind(%q): err = %v, want ErrPackage", s, err)
		}
	}
}

func TestPackageJSON(t *testing.T) {
	p := productPackage(t)
	if p.ID() != "product@21.1.0" || p.String() != "product@21.1.0 (d4d9ff5a5a20)" {
		t.Errorf("ID %q, String %q", p.ID(), p.String())
	}
	b, err := EncodeCanonical(p)
	if err != nil {
		t.Fatal(err)
	}
	// The field names are part of signed documents.
	want := `{"name":"product","kind":"product","version":"21.1.0","sha256":"` + productHex +
		`","size":123456,"requires":["base >= 3.3.2","product >= 20.4"],"settle":"24h0m0s","reboot":true}` + "\n"
	if string(b) != want {
		t.Errorf("Marshal =\n%s\nwant\n%s", b, want)
	}
	var q Package
	if err := json.Unmarshal(b, &q); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(p, q) {
		t.Errorf("round trip:\n%+v\nbecame\n%+v", p, q)
	}
}

func TestDurationJSON(t *testing.T) {
	type doc struct {
		D Duration `json:"d"`
	}
	for _, tc := range []struct {
		d    time.Duration
		text string
	}{
		{24 * time.Hour, "24h0m0s"},
		{0, "0s"},
		{90 * time.Minute, "1h30m0s"},
		{1500 * time.Millisecond, "1.5s"},
		{-time.Second, "-1s"},
	} {
		b, err := json.Marshal(doc{Duration(tc.d)})
		if err != nil {
			t.Fatal(err)
		}
		if want := `{"d":"` + tc.text + `"}`; string(b) != want {
			t.Errorf("Marshal(%v) = %s, want %s", tc.d, b, want)
		}
		var out doc
		if err := json.Unmarshal(b, &out); err != nil {
			t.Fatal(err)
		}
		if time.Duration(out.D) != tc.d {
			t.Errorf("round trip of %v gave %v", tc.d, time.Duration(out.D))
		}
	}
	// Other spellings that time.ParseDuration accepts.
	for in, want := range map[string]time.Duration{"24h": 24 * time.Hour, "1h30m": 90 * time.Minute, "0": 0, "250ms": 250 * time.Millisecond} {
		var d Duration
		if err := d.UnmarshalText([]byte(in)); err != nil || time.Duration(d) != want {
			t.Errorf("UnmarshalText(%q) = %v, %v; want %v", in, time.Duration(d), err, want)
		}
	}
	for _, in := range []string{"", "24", "abc", "1 h", "1d", strings.Repeat("1", 33) + "s", "9999999999999999999h"} {
		var d Duration
		if err := d.UnmarshalText([]byte(in)); !errors.Is(err, ErrDocument) {
			t.Errorf("UnmarshalText(%q) = %v, want ErrDocument", in, err)
		}
	}
	var out doc
	if err := json.Unmarshal([]byte(`{"d":86400}`), &out); err == nil {
		t.Error("a JSON number was accepted as a duration")
	}
}

func TestPackageEqual(t *testing.T) {
	base := Package{Name: "product", Kind: KindProduct, Version: MustVersion("22.1.0"), SHA256: Digest{1}, Size: 10,
		Requires: []Constraint{{Name: "base", Op: OpGE, Version: MustVersion("3.4.0")}}, Settle: Duration(time.Hour)}
	if !base.Equal(base) {
		t.Fatal("package not equal to itself")
	}
	empty := base
	empty.Requires = nil
	emptySlice := base
	emptySlice.Requires = []Constraint{}
	if !empty.Equal(emptySlice) {
		t.Error("nil and empty requires differ")
	}
	for name, mut := range map[string]func(*Package){
		"name":     func(p *Package) { p.Name = "base" },
		"kind":     func(p *Package) { p.Kind = KindHotfix },
		"version":  func(p *Package) { p.Version = MustVersion("22.1") },
		"digest":   func(p *Package) { p.SHA256 = Digest{2} },
		"size":     func(p *Package) { p.Size = 11 },
		"settle":   func(p *Package) { p.Settle = 0 },
		"reboot":   func(p *Package) { p.Reboot = true },
		"requires": func(p *Package) { p.Requires = []Constraint{{Name: "base", Op: OpGT, Version: MustVersion("3.4.0")}} },
		"no req":   func(p *Package) { p.Requires = nil },
	} {
		q := base
		q.Requires = append([]Constraint(nil), base.Requires...)
		mut(&q)
		if base.Equal(q) {
			t.Errorf("packages differing in %s compare equal", name)
		}
	}
}
