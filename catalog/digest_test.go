package catalog

import (
	"crypto/sha256"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"testing/iotest"

	"github.com/airlock-project/airlock/fault"
)

// helloHex is the SHA-256 of "hello".
const helloHex = "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824"

func TestParseDigest(t *testing.T) {
	d, err := ParseDigest(helloHex)
	if err != nil {
		t.Fatal(err)
	}
	if d != Digest(sha256.Sum256([]byte("hello"))) {
		t.Errorf("ParseDigest(%s) = %x", helloHex, d[:])
	}
	if d.String() != helloHex || d.Short() != helloHex[:12] || d.IsZero() {
		t.Errorf("String %q, Short %q, IsZero %v", d.String(), d.Short(), d.IsZero())
	}

	for _, in := range []string{
		"",
		strings.ToUpper(helloHex), // uppercase refused
		"2C" + helloHex[2:],       // one uppercase digit pair
		helloHex[:63],             // too short
		helloHex + "0",            // too long
		helloHex[:62],             // 31 bytes
		helloHex + helloHex,       // sha512-sized
		"g" + helloHex[1:],        // non-hex
		" " + helloHex[1:],        // space
		helloHex[:63] + "\n",      // newline
		"0x" + helloHex[2:],       // prefix
		"sha256:" + helloHex[7:],  // algorithm prefix
		strings.Repeat("é", 32),   // 64 bytes, not hex
		"2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b982\xff", // invalid UTF-8
	} {
		d, err := ParseDigest(in)
		if err == nil {
			t.Errorf("ParseDigest(%q) = %s, want error", in, d)
			continue
		}
		if !errors.Is(err, ErrDigest) || !errors.Is(err, fault.ErrVerification) {
			t.Errorf("ParseDigest(%q) error %v: not ErrDigest of the verification class", in, err)
		}
		if !d.IsZero() {
			t.Errorf("ParseDigest(%q) returned a non-zero digest with an error", in)
		}
	}
}

func TestDigestJSON(t *testing.T) {
	type doc struct {
		D Digest `json:"d"`
	}
	in := doc{Digest(sha256.Sum256([]byte("hello")))}
	b, err := json.Marshal(in)
	if err != nil {
		t.Fatal(err)
	}
	if want := `{"d":"` + helloHex + `"}`; string(b) != want {
		t.Errorf("Marshal = %s, want %s", b, want)
	}
	var out doc
	if err := json.Unmarshal(b, &out); err != nil {
		t.Fatal(err)
	}
	if out != in {
		t.Errorf("round trip gave %s, want %s", out.D, in.D)
	}

	// The zero digest is refused both ways.
	if _, err := (Digest{}).MarshalText(); !errors.Is(err, ErrDigest) {
		t.Errorf("MarshalText of the zero digest: err = %v, want ErrDigest", err)
	}
	if _, err := json.Marshal(doc{}); !errors.Is(err, ErrDigest) {
		t.Errorf("json.Marshal of the zero digest: err = %v, want ErrDigest", err)
	}
	var d Digest
	if err := d.UnmarshalText([]byte(strings.Repeat("0", 64))); !errors.Is(err, ErrDigest) {
		t.Errorf("UnmarshalText of 64 zeros: err = %v, want ErrDigest", err)
	}
	for _, in := range []string{
		`{"d":"` + strings.Repeat("0", 64) + `"}`,
		`{"d":"` + strings.ToUpper(helloHex) + `"}`,
		`{"d":"` + helloHex[:10] + `"}`,
		`{"d":42}`,
	} {
		var out doc
		if err := json.Unmarshal([]byte(in), &out); err == nil {
			t.Errorf("Unmarshal(%s) = %s, want error", in, out.D)
		}
		if !out.D.IsZero() {
			t.Errorf("failed Unmarshal(%s) left %s", in, out.D)
		}
	}
}

func TestDigestReader(t *testing.T) {
	d, n, err := DigestReader(strings.NewReader("hello"))
	if err != nil {
		t.Fatal(err)
	}
	if d.String() != helloHex || n != 5 {
		t.Errorf("DigestReader(hello) = %s, %d", d, n)
	}
	h := sha256.New()
	h.Write([]byte("hello"))
	if SumOf(h) != d {
		t.Errorf("SumOf = %s, want %s", SumOf(h), d)
	}
	boom := errors.New("boom")
	if d, _, err := DigestReader(iotest.ErrReader(boom)); !errors.Is(err, boom) || !d.IsZero() {
		t.Errorf("DigestReader of a failing reader = %s, %v; want zero, boom", d, err)
	}
}
