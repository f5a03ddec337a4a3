//go:build !unix

package node

import (
	"os"
	"os/exec"
)

// lockFile cannot lock on this platform; the agent is meant for Unix nodes.
func lockFile(*os.File) (bool, error) { return true, nil }

// ownProcessGroup leaves the default cancellation (kill the hook only).
func ownProcessGroup(*exec.Cmd) {}
