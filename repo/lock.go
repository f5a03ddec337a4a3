package repo

import (
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"syscall"
	"time"

	"github.com/airlock-project/airlock/atomicfile"
)

// Holder describes the process that holds the repository's write lock, as
// written to airlock.lock. The lock itself is bbolt's lock on airlock.db;
// this file only says who holds it.
type Holder struct {
	PID     int       `json:"pid"`
	Command string    `json:"command"`
	Host    string    `json:"host,omitempty"`
	Since   time.Time `json:"since"`
}

// maxHolderSize bounds what readHolder reads of airlock.lock.
const maxHolderSize = 4 << 10

// writeHolder records this process in airlock.lock. Failing to write it
// costs only a less precise message to another process, so it is logged,
// not returned.
func writeHolder(dir, command string, now time.Time, log *slog.Logger) *Holder {
	host, _ := os.Hostname()
	if command == "" {
		command = "airlock"
	}
	h := &Holder{PID: os.Getpid(), Command: command, Host: host, Since: now.UTC().Truncate(time.Second)}
	data, err := json.Marshal(h)
	if err == nil {
		err = atomicfile.WriteFile(filepath.Join(dir, LockFile), append(data, '\n'), 0o644)
	}
	if err != nil {
		log.Warn("cannot record the lock holder", "file", filepath.Join(dir, LockFile), "err", err)
		return nil
	}
	return h
}

// readHolder returns the holder recorded in airlock.lock, or nil if there is
// none, it cannot be read, or its process no longer exists (a stale file
// left by a process that was killed).
func readHolder(dir string) *Holder {
	f, err := os.Open(filepath.Join(dir, LockFile))
	if err != nil {
		return nil
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxHolderSize))
	if err != nil {
		return nil
	}
	var h Holder
	if json.Unmarshal(data, &h) != nil || h.PID <= 0 || !alive(h.PID) {
		return nil
	}
	return &h
}

// alive reports whether a process with this pid exists (on this host).
func alive(pid int) bool {
	p, err := os.FindProcess(pid)
	if err != nil {
		return false
	}
	err = p.Signal(syscall.Signal(0))
	return err == nil || errors.Is(err, syscall.EPERM)
}

// removeHolder deletes airlock.lock if it still names h.
func removeHolder(dir string, h *Holder) {
	path := filepath.Join(dir, LockFile)
	data, err := os.ReadFile(path)
	if err != nil {
		return
	}
	var cur Holder
	if json.Unmarshal(data, &cur) == nil && cur.PID == h.PID && cur.Since.Equal(h.Since) {
		os.Remove(path)
	}
}
