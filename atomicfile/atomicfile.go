// Package atomicfile publishes files so that a reader, or a machine that
// loses power, sees either the old content or the whole new content: write
// to a temporary file in the same directory, fsync it, rename it into place,
// fsync the directory.
package atomicfile

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
)

// TempPrefix starts the name of every temporary file this package creates,
// so that a cleanup after a crash can recognise leftovers.
const TempPrefix = ".tmp-"

// File is a file being written; its content becomes visible at path only
// when Commit returns nil. Not safe for concurrent use.
type File struct {
	*os.File
	path      string
	perm      os.FileMode
	noReplace bool
	done      bool
}

// Create starts writing the file that Commit will publish at path with mode
// perm. The caller must call Commit or Abort.
func Create(path string, perm os.FileMode) (*File, error) {
	dir, base := filepath.Split(path)
	if dir == "" {
		dir = "."
	}
	f, err := os.CreateTemp(dir, TempPrefix+base+"-*")
	if err != nil {
		return nil, err
	}
	if err := f.Chmod(perm); err != nil {
		f.Close()
		os.Remove(f.Name())
		return nil, err
	}
	return &File{File: f, path: path, perm: perm}, nil
}

// NoReplace makes Commit fail with an error matching os.ErrExist instead of
// replacing a file already at the path.
func (f *File) NoReplace() *File { f.noReplace = true; return f }

// Commit flushes the data to stable storage and publishes it at the path.
func (f *File) Commit() error {
	if f.done {
		return errors.New("atomicfile: commit after commit or abort")
	}
	f.done = true
	tmp := f.Name()
	if err := f.Sync(); err != nil {
		f.File.Close()
		os.Remove(tmp)
		return fmt.Errorf("write %s: %w", f.path, err)
	}
	if err := f.File.Close(); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("write %s: %w", f.path, err)
	}
	if f.noReplace {
		// link(2) fails if the target exists, unlike rename(2).
		if err := os.Link(tmp, f.path); err != nil {
			os.Remove(tmp)
			return fmt.Errorf("write %s: %w", f.path, err)
		}
		os.Remove(tmp)
	} else if err := os.Rename(tmp, f.path); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("write %s: %w", f.path, err)
	}
	return SyncDir(filepath.Dir(f.path))
}

// Abort discards the file. It is safe to call after Commit (it does nothing).
func (f *File) Abort() error {
	if f.done {
		return nil
	}
	f.done = true
	f.File.Close()
	return os.Remove(f.Name())
}

// WriteFile publishes data at path atomically with mode perm.
func WriteFile(path string, data []byte, perm os.FileMode) error {
	return write(path, perm, false, func(w io.Writer) error { _, err := w.Write(data); return err })
}

// WriteNew is WriteFile but refuses (os.ErrExist) to replace an existing file.
func WriteNew(path string, data []byte, perm os.FileMode) error {
	return write(path, perm, true, func(w io.Writer) error { _, err := w.Write(data); return err })
}

func write(path string, perm os.FileMode, noReplace bool, fill func(io.Writer) error) error {
	f, err := Create(path, perm)
	if err != nil {
		return err
	}
	f.noReplace = noReplace
	if err := fill(f); err != nil {
		f.Abort()
		return fmt.Errorf("write %s: %w", path, err)
	}
	return f.Commit()
}

// SyncDir fsyncs a directory so that a rename or create in it is durable.
func SyncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("sync directory %s: %w", dir, err)
	}
	return nil
}
