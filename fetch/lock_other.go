//go:build !linux

package fetch

import "os"

// lockFile creates path; without flock, two runs sharing a cache are not
// detected on this platform.
func lockFile(path string) (func(), error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, err
	}
	return func() { f.Close() }, nil
}

// dropCached does nothing on this platform.
func dropCached(string) {}
