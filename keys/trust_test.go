package keys

import (
	"bytes"
	"errors"
	"strings"
	"testing"

	"github.com/airlock-project/airlock/fault"
)

func TestTrustStore(t *testing.T) {
	a := newKey(t, "Vendor A", 0).Public()
	b := newKey(t, "Courier B", 0).Public()
	c := newKey(t, "Courier C", 0).Public()
	ts := NewTrustStore()
	if len(ts.List()) != 0 {
		t.Fatal("new store not empty")
	}
	for _, e := range []Trusted{{RoleVendor, a}, {RoleCourier, b}, {RoleCourier, c}} {
		if err := ts.Add(e.Role, e.Key); err != nil {
			t.Fatal(err)
		}
	}
	list := ts.List()
	if len(list) != 3 || list[0].Role != RoleCourier || list[1].Role != RoleCourier || list[2].Role != RoleVendor || list[2].Key != a {
		t.Fatalf("list %+v", list)
	}
	if list[0].Key.Fingerprint().String() > list[1].Key.Fingerprint().String() {
		t.Error("couriers not sorted by fingerprint")
	}

	if e, ok := ts.Lookup(b.Fingerprint()); !ok || e.Role != RoleCourier || e.Key != b {
		t.Errorf("lookup %+v %v", e, ok)
	}

	err := ts.Add(RoleVendor, b)
	if !errors.Is(err, ErrTrustConflict) || !errors.Is(err, fault.ErrUsage) || !strings.Contains(err.Error(), "already trusted as courier") {
		t.Fatalf("second role: %v", err)
	}
	if e, _ := ts.Lookup(b.Fingerprint()); e.Role != RoleCourier {
		t.Error("a refused Add changed the role")
	}
	if err := ts.Add(RoleCourier, b); err != nil {
		t.Fatalf("re-adding with the same role: %v", err)
	}
	if len(ts.List()) != 3 {
		t.Error("re-adding duplicated the key")
	}
	if err := ts.Add("root", c); !errors.Is(err, ErrRole) {
		t.Errorf("bad role: %v", err)
	}
	if err := ts.Add(RoleSite, nil); err == nil {
		t.Error("nil key added")
	}

	k := newKey(t, "Courier D", 0)
	if err := ts.Add(RoleCourier, k.Public()); err != nil {
		t.Fatal(err)
	}
	sig := detached(t, k, "d")
	if _, err := ts.VerifyDetached(RoleCourier, strings.NewReader("d"), bytes.NewReader(sig), Policy{}); err != nil {
		t.Fatal(err)
	}
	if !ts.Remove(k.Fingerprint()) {
		t.Fatal("Remove of a trusted key reported false")
	}
	if ts.Remove(k.Fingerprint()) {
		t.Error("second Remove reported true")
	}
	if _, ok := ts.Lookup(k.Fingerprint()); ok {
		t.Error("removed key still found")
	}
	_, err = ts.VerifyDetached(RoleCourier, strings.NewReader("d"), bytes.NewReader(sig), Policy{})
	wantErr(t, err, ErrUnknownSigner)
	// After removal, the key may be trusted for another role.
	if err := ts.Add(RoleSite, k.Public()); err != nil {
		t.Fatal(err)
	}
}

func TestParseRole(t *testing.T) {
	for in, want := range map[string]Role{"vendor": RoleVendor, "site": RoleSite, " Courier ": RoleCourier} {
		if r, err := ParseRole(in); err != nil || r != want {
			t.Errorf("ParseRole(%q) = %q, %v", in, r, err)
		}
	}
	for _, in := range []string{"", "admin", "vendors", "\x1b"} {
		_, err := ParseRole(in)
		if !errors.Is(err, ErrRole) || !errors.Is(err, fault.ErrUsage) || !strings.Contains(err.Error(), "vendor, site, courier") {
			t.Errorf("ParseRole(%q): %v", in, err)
		}
	}
}

func TestFingerprint(t *testing.T) {
	const hexFP = "7F3A0B12C4D5E6F708192A3B4C5D6E7F80918273"
	want, err := ParseFingerprint(hexFP)
	if err != nil {
		t.Fatal(err)
	}
	if want.String() != hexFP {
		t.Errorf("String %s", want)
	}
	if want.KeyID() != 0x4C5D6E7F80918273 {
		t.Errorf("KeyID %X", want.KeyID())
	}
	for _, in := range []string{
		strings.ToLower(hexFP),
		"7F3A 0B12 C4D5 E6F7 0819  2A3B 4C5D 6E7F 8091 8273",
		"7f:3a:0b:12:c4:d5:e6:f7:08:19:2a:3b:4c:5d:6e:7f:80:91:82:73",
	} {
		if got, err := ParseFingerprint(in); err != nil || got != want {
			t.Errorf("ParseFingerprint(%q) = %s, %v", in, got, err)
		}
	}
	for _, in := range []string{"", hexFP[:39], hexFP + "0", strings.Replace(hexFP, "7", "g", 1), "0x" + hexFP[2:]} {
		if _, err := ParseFingerprint(in); !errors.Is(err, ErrFingerprint) || !errors.Is(err, fault.ErrUsage) {
			t.Errorf("ParseFingerprint(%q): %v", in, err)
		}
	}
	text, err := want.MarshalText()
	if err != nil || string(text) != hexFP {
		t.Fatalf("MarshalText %s %v", text, err)
	}
	var back Fingerprint
	if err := back.UnmarshalText([]byte(strings.ToLower(hexFP))); err != nil || back != want {
		t.Fatalf("UnmarshalText %s %v", back, err)
	}
	if err := back.UnmarshalText([]byte("zz")); err == nil {
		t.Error("UnmarshalText accepted junk")
	}
	if !(Fingerprint{}).IsZero() || want.IsZero() {
		t.Error("IsZero")
	}
}
