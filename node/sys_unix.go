//go:build unix

package node

import (
	"errors"
	"os"
	"os/exec"
	"syscall"
)

// lockFile takes an exclusive, non-blocking lock on f; it reports false if
// another process holds it. The kernel releases it when the process dies.
func lockFile(f *os.File) (bool, error) {
	err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
	if errors.Is(err, syscall.EWOULDBLOCK) {
		return false, nil
	}
	return err == nil, err
}

// ownProcessGroup runs a hook in its own process group and makes a
// cancellation kill the whole group, so that a timed-out hook's children
// do not outlive it.
func ownProcessGroup(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error {
		if cmd.Process == nil {
			return nil
		}
		return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	}
}
