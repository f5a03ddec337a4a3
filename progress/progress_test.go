package progress

import (
	"bytes"
	"errors"
	"io"
	"strings"
	"testing"
)

func TestLinesReportsStartAndEnd(t *testing.T) {
	var out bytes.Buffer
	r := Lines(&out, 0)
	task := r.Start("product@23.1.0", 3<<20)
	if _, err := io.Copy(io.Discard, Reader(strings.NewReader(strings.Repeat("x", 3<<20)), task)); err != nil {
		t.Fatal(err)
	}
	task.Done(nil)
	failed := r.Start("base@3.4.0", 10)
	failed.Add(4)
	failed.Done(errors.New("boom"))
	r.Wait()
	got := out.String()
	for _, want := range []string{"product@23.1.0: done, 3.0 MiB of 3.0 MiB", "base@3.4.0: failed after 4 B"} {
		if !strings.Contains(got, want) {
			t.Errorf("output %q lacks %q", got, want)
		}
	}
}

func TestBytes(t *testing.T) {
	for n, want := range map[int64]string{0: "0 B", 1023: "1023 B", 1024: "1.0 KiB", 3 << 20: "3.0 MiB", 5 << 30: "5.0 GiB"} {
		if got := Bytes(n); got != want {
			t.Errorf("Bytes(%d) = %q, want %q", n, got, want)
		}
	}
}

func TestBarsDoNotBlock(t *testing.T) {
	var out bytes.Buffer
	r := Bars(&out)
	task := r.Start("x", 100)
	task.Add(100)
	task.Done(nil)
	r.Wait()
}

type volumeSource struct {
	io.Reader
	checked bool
}

func (v *volumeSource) CheckVolume() error {
	v.checked = true
	return errors.New("NAME.002 is damaged")
}

func TestReaderForwardsCheckVolume(t *testing.T) {
	src := &volumeSource{Reader: strings.NewReader("x")}
	r := Reader(src, Discard.Start("b", 1))
	vc, ok := r.(interface{ CheckVolume() error })
	if !ok {
		t.Fatal("progress reader hides CheckVolume")
	}
	if err := vc.CheckVolume(); err == nil || !src.checked {
		t.Fatalf("CheckVolume not forwarded: %v", err)
	}
}
