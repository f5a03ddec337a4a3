package keys

import (
	"bytes"
	"errors"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/airlock-project/airlock/fault"
)

// The fuzz targets use a fixed key (testdata/fuzz.key) so that corpus
// entries stay meaningful across runs and fuzzing workers.

var (
	fuzzNow  = time.Date(2026, 6, 1, 0, 0, 0, 0, time.UTC)
	fuzzData = "airlock manifest\n"
)

func fuzzKey(f *testing.F) (*PrivateKey, *TrustStore) {
	f.Helper()
	k, err := ReadPrivateFile("testdata/fuzz.key", nil)
	if err != nil {
		f.Fatal(err)
	}
	return at(k, fuzzNow), store(f, RoleCourier, k.Public())
}

// classified fails unless err is nil or of the verification class: on
// in-memory input every refusal must be a verification error, never an
// unclassified one.
func classified(t *testing.T, err error) {
	t.Helper()
	if err != nil && !errors.Is(err, fault.ErrVerification) {
		t.Fatalf("unclassified error: %v", err)
	}
}

// armorBinary armors input that starts with a packet header, so that the
// fuzzer mutates packets directly as well as their armor (binary input
// itself is refused before any parsing, as a unit test shows).
func armorBinary(t *testing.T, in []byte, blockType string) []byte {
	if len(in) == 0 || in[0]&0x80 == 0 {
		return in
	}
	var b bytes.Buffer
	if err := armorBytes(&b, blockType, in); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// mutations gives seeds derived from a valid input.
func mutations(valid []byte) [][]byte {
	s := string(valid)
	out := [][]byte{
		valid,
		nil,
		valid[:len(valid)/2],
		[]byte(strings.Replace(s, "\n\n", "\nComment: x\n\n", 1)),
		[]byte(strings.ReplaceAll(s, "\n", "\r\n")),
		append(append([]byte(nil), valid...), valid...),
	}
	flipped := append([]byte(nil), valid...)
	flipped[len(flipped)/2] ^= 0x01
	return append(out, flipped)
}

func FuzzReadPublic(f *testing.F) {
	k, _ := fuzzKey(f)
	armored := k.Public().Armored()
	for _, m := range mutations(armored) {
		f.Add(m)
	}
	f.Add(k.Public().raw)
	f.Add(relabeledPrivateSeed(f))
	var priv bytes.Buffer
	k.WriteArmored(&priv, nil)
	f.Add(priv.Bytes())
	f.Fuzz(func(t *testing.T, in []byte) {
		p, err := ReadPublic(bytes.NewReader(in))
		classified(t, err)
		if err != nil {
			if p != nil {
				t.Fatal("key returned with an error")
			}
			return
		}
		// What was accepted re-encodes to a key that reads the same.
		again, err := ReadPublic(bytes.NewReader(p.Armored()))
		if err != nil {
			t.Fatalf("re-reading an accepted key: %v", err)
		}
		if again.Fingerprint() != p.Fingerprint() || again.UserID() != p.UserID() || !again.Expires().Equal(p.Expires()) || again.Revoked() != p.Revoked() {
			t.Fatalf("round trip changed the key: %s %q -> %s %q", p.Fingerprint(), p.UserID(), again.Fingerprint(), again.UserID())
		}
	})
}

func relabeledPrivateSeed(f *testing.F) []byte {
	b, err := os.ReadFile("testdata/fuzz.key")
	if err != nil {
		f.Fatal(err)
	}
	return bytes.Replace(b, []byte("PRIVATE"), []byte("PUBLIC"), -1)
}

func FuzzVerifyDetached(f *testing.F) {
	k, ts := fuzzKey(f)
	var sig bytes.Buffer
	if err := k.SignDetached(&sig, strings.NewReader(fuzzData)); err != nil {
		f.Fatal(err)
	}
	for _, m := range mutations(sig.Bytes()) {
		f.Add(m)
	}
	body, _ := dearmor(sig.Bytes(), blockSignature, "seed", false)
	f.Add(body)
	f.Add(append(append([]byte(nil), body...), body...))
	var msg bytes.Buffer
	k.SignMessage(&msg, []byte(fuzzData))
	f.Add(msg.Bytes())
	f.Fuzz(func(t *testing.T, in []byte) {
		in = armorBinary(t, in, blockSignature)
		s, err := ts.VerifyDetached(RoleCourier, strings.NewReader(fuzzData), bytes.NewReader(in), Policy{Now: fuzzNow})
		classified(t, err)
		if err == nil && (s.Signer != k.Fingerprint() || s.Role != RoleCourier) {
			t.Fatalf("accepted a signature as %+v", s)
		}
		// No input verifies over other data.
		if _, err := ts.VerifyDetached(RoleCourier, strings.NewReader(fuzzData+"!"), bytes.NewReader(in), Policy{Now: fuzzNow}); err == nil {
			t.Fatal("signature verified over changed data")
		}
	})
}

func FuzzVerifyMessage(f *testing.F) {
	k, ts := fuzzKey(f)
	var msg bytes.Buffer
	if err := k.SignMessage(&msg, []byte(fuzzData)); err != nil {
		f.Fatal(err)
	}
	for _, m := range mutations(msg.Bytes()) {
		f.Add(m)
	}
	body, _ := dearmor(msg.Bytes(), blockMessage, "seed", false)
	f.Add(body)
	f.Add(compressedBody(f, body))
	var sig bytes.Buffer
	k.SignDetached(&sig, strings.NewReader(fuzzData))
	f.Add(sig.Bytes())
	f.Fuzz(func(t *testing.T, in []byte) {
		in = armorBinary(t, in, blockMessage)
		data, s, err := ts.VerifyMessage(RoleCourier, bytes.NewReader(in), Policy{Now: fuzzNow, MaxArmored: 1 << 16})
		classified(t, err)
		if err != nil {
			if data != nil {
				t.Fatal("data returned with an error")
			}
			return
		}
		// Only what the key signed can come out.
		if string(data) != fuzzData || s.Signer != k.Fingerprint() {
			t.Fatalf("accepted %q signed by %s", data, s.Signer)
		}
	})
}
