package catalog

import (
	"bytes"
	"strings"
	"testing"
)

func FuzzParseVersion(f *testing.F) {
	for _, s := range []string{
		"0", "3.4", "3.4.0", "3.10.0", "21.1.0", "4294967295", "4294967296", "1.2.3.4.5.6.7.8",
		"1.2.3.4.5.6.7.8.9", "01", "1..2", "", ".", "-1", "+1", " 1", "1e3", "١", "0.0.0.0",
		"123456789.123456789.123456789.123456789.123456789.123456789.1234",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		v, err := ParseVersion(s)
		if err != nil {
			if !v.IsZero() {
				t.Fatalf("ParseVersion(%q) returned %q with an error", s, v)
			}
			return
		}
		if v.String() != s || v.IsZero() {
			t.Fatalf("ParseVersion(%q).String() = %q", s, v)
		}
		if strings.Trim(s, "0123456789.") != "" || len(s) > maxVersionLen {
			t.Fatalf("ParseVersion accepted %q", s)
		}
		w, err := ParseVersion(v.String())
		if err != nil {
			t.Fatalf("ParseVersion(%q) ok, but not its String: %v", s, err)
		}
		if w.String() != v.String() || w.Compare(v) != 0 || v.Compare(w) != 0 || v.Less(w) {
			t.Fatalf("re-parse of %q differs", s)
		}
		// Appending a zero component changes the spelling, not the value.
		if len(v.parts) < maxVersionParts && len(s) < maxVersionLen-1 {
			z := MustVersion(s + ".0")
			if z.Compare(v) != 0 || z.key() != v.key() {
				t.Fatalf("%s.0 != %s", s, s)
			}
		}
		b, err := v.MarshalText()
		if err != nil || string(b) != s {
			t.Fatalf("MarshalText(%q) = %q, %v", s, b, err)
		}
	})
}

func FuzzParseConstraint(f *testing.F) {
	for _, s := range []string{
		"base >= 3.3.2", "base>=3.3.2", "product > 21", "a<=1", "a < 1.0", "license = 2", "x != 0",
		"base >== 1", "=> 1", "base => 1", "base", ">= 1", "base >= ", "Base >= 1", "  base  !=  1  ",
		"base\t>=\n1", "a..b >= 1", "base >= 01",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		c, err := ParseConstraint(s)
		if err != nil {
			return
		}
		if !c.complete() {
			t.Fatalf("ParseConstraint(%q) = %#v: incomplete", s, c)
		}
		c2, err := ParseConstraint(c.String())
		if err != nil {
			t.Fatalf("ParseConstraint(%q) ok, but not its String %q: %v", s, c, err)
		}
		if c2.Name != c.Name || c2.Op != c.Op || c2.Version.String() != c.Version.String() || c2.String() != c.String() {
			t.Fatalf("re-parse of %q: %q became %q", s, c, c2)
		}
		b, err := c.MarshalText()
		if err != nil || string(b) != c.String() {
			t.Fatalf("MarshalText(%q) = %q, %v", c, b, err)
		}
		// Allows agrees with the operator on the constraint's own version.
		if c.Allows(c.Version) != (c.Op == OpGE || c.Op == OpLE || c.Op == OpEQ) {
			t.Fatalf("%q.Allows(%s) = %v", c, c.Version, c.Allows(c.Version))
		}
	})
}

func FuzzParseDigest(f *testing.F) {
	f.Add(helloHex)
	f.Add(strings.ToUpper(helloHex))
	f.Add(strings.Repeat("0", 64))
	f.Add(helloHex[:63] + "g")
	f.Fuzz(func(t *testing.T, s string) {
		d, err := ParseDigest(s)
		if err != nil {
			return
		}
		if d.String() != s {
			t.Fatalf("ParseDigest(%q).String() = %q", s, d)
		}
		var u Digest
		err = u.UnmarshalText([]byte(s))
		if d.IsZero() != (err != nil) || (err == nil && u != d) {
			t.Fatalf("UnmarshalText(%q) = %s, %v", s, u, err)
		}
	})
}

func FuzzParseKeyID(f *testing.F) {
	f.Add(string(testKeyID))
	f.Add("aaaaaaaaaaaaaaaaaaaaaaaaab")
	f.Add(strings.ToUpper(string(testKeyID)))
	f.Add(string(testKeyID[:10]) + "\n" + string(testKeyID[10:]))
	f.Fuzz(func(t *testing.T, s string) {
		k, err := ParseKeyID(s)
		if err != nil {
			return
		}
		// One id, one spelling.
		b, err := keyIDEncoding.DecodeString(strings.ToUpper(s))
		if err != nil || len(b) != 16 || string(k) != s || strings.ToLower(keyIDEncoding.EncodeToString(b)) != s {
			t.Fatalf("ParseKeyID accepted %q", s)
		}
	})
}

// documentSeeds returns valid and hostile documents to start fuzzing from.
func documentSeeds(golden string) []string {
	return []string{
		golden,
		strings.TrimSpace(golden),
		golden + "{}",
		golden[:len(golden)/2],
		strings.ToUpper(golden),
		strings.Replace(golden, `"site":`, `"site":"x","Site":`, 1),
		strings.Replace(golden, `"2026-11-25T10:00:00Z"`, `"2026-11-22T10:00:00.5Z"`, 1),
		strings.Replace(golden, `"2026-11-25T10:00:00Z"`, `"9999-12-31T23:00:00-02:00"`, 1),
		strings.Replace(golden, `"2026-11-22T10:00:00Z"`, `"0001-01-01T00:00:00.5Z"`, 1),
		strings.Replace(golden, `"3.3.2"`, `null`, 1),
		strings.Replace(golden, `"3.4.0"`, `null`, 1),
		strings.Replace(golden, `"requires":[]`, `"requires":null`, 1),
		strings.Replace(golden, `"requires":[]`, `"requires":[null]`, 1),
		`{"nodes":[],"packages":[]}`,
		"null", "[]", "{}", `{"a":{"a":[{"a":1}]}}`,
	}
}

func FuzzDecodeDownloadKey(f *testing.F) {
	for _, s := range documentSeeds(goldenKey) {
		f.Add([]byte(s))
	}
	f.Add([]byte(strings.Replace(goldenKey, `"nodes":[`, `"nodes":[],"x":[`, 1)))
	f.Add([]byte(`{"format":"airlock-download-key/v1","site":"s","id":"aaaaaaaaaaaaaaaaaaaaaaaaae","issued":"2026-01-01T00:00:00Z","expires":"2026-01-02T00:00:00Z","nodes":[]}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		k, err := DecodeDownloadKey(b)
		if err != nil {
			return
		}
		if err := k.Validate(); err != nil {
			t.Fatalf("decoded key does not validate: %v", err)
		}
		enc, err := k.Encode()
		if err != nil {
			t.Fatalf("decoded key does not encode: %v\n%s", err, b)
		}
		k2, err := DecodeDownloadKey(enc)
		if err != nil {
			t.Fatalf("Encode output does not decode: %v\n%s", err, enc)
		}
		enc2, err := k2.Encode()
		if err != nil || !bytes.Equal(enc, enc2) {
			t.Fatalf("encoding is not stable (%v):\n%s\n%s", err, enc, enc2)
		}
		if !sameKey(k, k2) {
			t.Fatalf("Decode(Encode(k)) != k:\n%+v\n%+v", k, k2)
		}
	})
}

func FuzzDecodeEntitlement(f *testing.F) {
	for _, s := range documentSeeds(goldenEntitlement) {
		f.Add([]byte(s))
	}
	f.Add([]byte(`{"format":"airlock-entitlement/v1","site":"s","key_id":"aaaaaaaaaaaaaaaaaaaaaaaaae","issued":"2026-01-01T00:00:00Z","expires":"2026-01-02T00:00:00Z","packages":[]}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		e, err := DecodeEntitlement(b)
		if err != nil {
			return
		}
		if err := e.Validate(); err != nil {
			t.Fatalf("decoded entitlement does not validate: %v", err)
		}
		enc, err := e.Encode()
		if err != nil {
			t.Fatalf("decoded entitlement does not encode: %v\n%s", err, b)
		}
		e2, err := DecodeEntitlement(enc)
		if err != nil {
			t.Fatalf("Encode output does not decode: %v\n%s", err, enc)
		}
		enc2, err := e2.Encode()
		if err != nil || !bytes.Equal(enc, enc2) {
			t.Fatalf("encoding is not stable (%v):\n%s\n%s", err, enc, enc2)
		}
		if len(e2.Packages) != len(e.Packages) {
			t.Fatalf("Decode(Encode(e)) has %d packages, want %d", len(e2.Packages), len(e.Packages))
		}
		for i := range e.Packages {
			if e.Packages[i].ID() != e2.Packages[i].ID() || e.Packages[i].SHA256 != e2.Packages[i].SHA256 {
				t.Fatalf("package %d: %s became %s", i, e.Packages[i], e2.Packages[i])
			}
		}
	})
}
