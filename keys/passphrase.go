package keys

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strings"
)

// ReadPassphraseFile reads the passphrase in the file at path, given with
// a --passphrase-file flag: the file's content without the line end that
// ends it (LF or CRLF). An empty
// path means no passphrase (nil, nil). A missing, empty or non-regular
// file is an error matching ErrPassphraseFile (a usage error); one that
// cannot be read is an operational error. The messages name the flag and
// the file.
func ReadPassphraseFile(path string) ([]byte, error) {
	if path == "" {
		return nil, nil
	}
	if fi, err := os.Stat(path); err == nil && !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("%w: --passphrase-file %s is not a regular file; give the file that holds the passphrase", ErrPassphraseFile, path)
	}
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("%w: --passphrase-file %s does not exist; give the file that holds the passphrase", ErrPassphraseFile, path)
	}
	if err != nil {
		var pe *fs.PathError
		if errors.As(err, &pe) {
			err = pe.Err // the path is named already
		}
		return nil, fmt.Errorf("--passphrase-file %s: %w; give the file that holds the passphrase", path, err)
	}
	line := strings.TrimRight(string(b), "\r\n")
	if line == "" {
		return nil, fmt.Errorf("%w: --passphrase-file %s is empty; put the passphrase on its first line", ErrPassphraseFile, path)
	}
	return []byte(line), nil
}
