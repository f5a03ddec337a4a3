package keys

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/airlock-project/airlock/fault"
)

func TestReadPassphraseFile(t *testing.T) {
	dir := t.TempDir()
	file := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	for _, tc := range []struct {
		name, path, want, err string
	}{
		{"no flag", "", "", ""},
		{"LF", file("lf", "s3cret pass\n"), "s3cret pass", ""},
		{"CRLF", file("crlf", "s3cret\r\n"), "s3cret", ""},
		{"no line end", file("none", "s3cret"), "s3cret", ""},
		{"empty", file("empty", "\n"), "", "is empty; put the passphrase on its first line"},
		{"missing", filepath.Join(dir, "nothere"), "", "does not exist; give the file that holds the passphrase"},
		{"directory", dir, "", "is not a regular file"},
	} {
		got, err := ReadPassphraseFile(tc.path)
		switch {
		case tc.err == "" && (err != nil || string(got) != tc.want):
			t.Errorf("%s: got %q, %v; want %q", tc.name, got, err, tc.want)
		case tc.err != "" && (!errors.Is(err, ErrPassphraseFile) || fault.Code(err) != fault.ExitUsage ||
			!strings.Contains(err.Error(), "--passphrase-file "+tc.path+" "+tc.err)):
			t.Errorf("%s: error %v, want ErrPassphraseFile %q", tc.name, err, tc.err)
		}
	}
}
