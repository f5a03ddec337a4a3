package blob

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"hash"
	"io"
	"os"
	"strings"
	"testing"

	"github.com/airlock-project/airlock/catalog"
	"github.com/airlock-project/airlock/fault"
)

func digestOf(b []byte) catalog.Digest { return catalog.Digest(sha256.Sum256(b)) }

func TestIngestCommitAbort(t *testing.T) {
	ctx := context.Background()
	s, err := Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	data := bytes.Repeat([]byte("airlock"), 1000)
	d := digestOf(data)

	p, err := s.Ingest(ctx, bytes.NewReader(data), d, int64(len(data)))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Stat(d); !errors.Is(err, ErrNotFound) {
		t.Fatalf("blob visible before commit: %v", err)
	}
	if err := p.Commit(); err != nil {
		t.Fatal(err)
	}
	if n, err := s.Stat(d); err != nil || n != int64(len(data)) {
		t.Fatalf("Stat = %d, %v", n, err)
	}
	if err := s.Verify(d, int64(len(data))); err != nil {
		t.Fatal(err)
	}
	// Same content again: committing is a no-op, not an error.
	if _, _, err := s.Put(ctx, bytes.NewReader(data), d, -1); err != nil {
		t.Fatalf("second put of same blob: %v", err)
	}
	// Abort leaves nothing.
	other := []byte("other")
	p, err = s.Ingest(ctx, bytes.NewReader(other), digestOf(other), 5)
	if err != nil {
		t.Fatal(err)
	}
	p.Abort()
	if _, err := s.Stat(digestOf(other)); !errors.Is(err, ErrNotFound) {
		t.Fatalf("aborted blob visible: %v", err)
	}
	assertOnly(t, s, d)
}

func TestIngestRefusesMismatch(t *testing.T) {
	ctx := context.Background()
	s, _ := Open(t.TempDir())
	data := []byte("payload")
	for name, tc := range map[string]struct {
		want catalog.Digest
		size int64
		err  error
	}{
		"wrong digest": {digestOf([]byte("x")), -1, ErrDigest},
		"too short":    {digestOf(data), 8, ErrSize},
		"too long":     {digestOf(data), 6, ErrSize},
	} {
		_, err := s.Ingest(ctx, bytes.NewReader(data), tc.want, tc.size)
		if !errors.Is(err, tc.err) || !errors.Is(err, fault.ErrVerification) {
			t.Errorf("%s: err %v, want %v", name, err, tc.err)
		}
	}
	assertOnly(t, s)
	if ents, _ := os.ReadDir(s.root); len(ents) != 0 {
		t.Errorf("refused ingests left %d entries (e.g. %s) in the store", len(ents), ents[0].Name())
	}
	if n, err := s.Clean(); err != nil || n != 0 {
		t.Errorf("Clean after refusals removed %d, %v", n, err)
	}
}

func TestUnknownDigestAndCorruption(t *testing.T) {
	ctx := context.Background()
	s, _ := Open(t.TempDir())
	data := []byte("content addressed")
	d, n, err := s.Put(ctx, bytes.NewReader(data), catalog.Digest{}, -1)
	if err != nil || d != digestOf(data) || n != int64(len(data)) {
		t.Fatalf("Put = %s %d %v", d.Short(), n, err)
	}
	assertOnly(t, s, d)
	// Corrupt it behind the store's back: Verify must notice.
	os.Chmod(s.Path(d), 0o644)
	os.WriteFile(s.Path(d), []byte("content addresseD"), 0o644)
	if err := s.Verify(d, -1); !errors.Is(err, ErrDigest) {
		t.Fatalf("Verify of corrupted blob: %v", err)
	}
}

func TestCleanAndStray(t *testing.T) {
	ctx := context.Background()
	s, _ := Open(t.TempDir())
	data := []byte("x")
	p, err := s.Ingest(ctx, bytes.NewReader(data), digestOf(data), 1)
	if err != nil {
		t.Fatal(err)
	}
	_ = p // simulate a crash: never committed nor aborted
	os.WriteFile(s.root+"/stray.txt", []byte("?"), 0o644)
	var strays []string
	s.Walk(func(d catalog.Digest, size int64, stray string) error {
		if stray != "" {
			strays = append(strays, stray)
		}
		return nil
	})
	if len(strays) != 1 || !strings.HasSuffix(strays[0], "stray.txt") {
		t.Errorf("strays = %v", strays)
	}
	if n, err := s.Clean(); err != nil || n != 1 {
		t.Errorf("Clean removed %d, %v; want 1", n, err)
	}
}

func assertOnly(t *testing.T, s *Store, want ...catalog.Digest) {
	t.Helper()
	var got []catalog.Digest
	s.Walk(func(d catalog.Digest, size int64, stray string) error {
		if stray == "" {
			got = append(got, d)
		}
		return nil
	})
	if len(got) != len(want) {
		t.Fatalf("store holds %d blobs, want %d", len(got), len(want))
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("store holds %s, want %s", got[i].Short(), want[i].Short())
		}
	}
}

// checkingReader stands for a bundle package reader: it fails instead of
// returning io.EOF unless what it yielded hashes to want.
type checkingReader struct {
	r    io.Reader
	h    hash.Hash
	want catalog.Digest
}

func (c *checkingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.h.Write(p[:n])
	if err == io.EOF && catalog.SumOf(c.h) != c.want {
		return n, fmt.Errorf("%w: stream does not hash to %s", ErrDigest, c.want.Short())
	}
	return n, err
}

func TestIngestVerified(t *testing.T) {
	ctx := context.Background()
	s, _ := Open(t.TempDir())
	data := bytes.Repeat([]byte("verified once"), 5000)
	d := digestOf(data)
	verifying := func(b []byte) io.Reader { return &checkingReader{r: bytes.NewReader(b), h: sha256.New(), want: d} }

	p, err := s.IngestVerified(ctx, verifying(data), d, int64(len(data)))
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Commit(); err != nil {
		t.Fatal(err)
	}
	if err := s.Verify(d, int64(len(data))); err != nil {
		t.Fatalf("stored blob: %v", err)
	}

	other, _ := Open(t.TempDir())
	bad := bytes.Clone(data)
	bad[100] ^= 1
	if _, err := other.IngestVerified(ctx, verifying(bad), d, int64(len(bad))); !errors.Is(err, ErrDigest) {
		t.Fatalf("tampered stream: %v, want the stream's digest error", err)
	}
	if _, err := other.IngestVerified(ctx, verifying(append(bytes.Clone(data), 'x')), d, int64(len(data))); !errors.Is(err, ErrSize) {
		t.Fatalf("long stream: %v, want ErrSize", err)
	}
	if _, err := other.IngestVerified(ctx, verifying(data), catalog.Digest{}, -1); err == nil {
		t.Fatal("IngestVerified without a digest accepted")
	}
	assertOnly(t, other)
	if ents, _ := os.ReadDir(other.root); len(ents) != 0 {
		t.Errorf("refused ingests left %d entries behind", len(ents))
	}
}
