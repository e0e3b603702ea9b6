//go:build unix

package statefile

import (
	"errors"
	"os"
	"syscall"
)

// openFlags opens the state path without following a symlink at its last
// element and without blocking on a FIFO or a device, so that Load can
// look at what it opened before reading a byte.
const openFlags = os.O_RDONLY | syscall.O_NOFOLLOW | syscall.O_NONBLOCK | syscall.O_CLOEXEC

// isSymlinkErr reports whether err is what opening a symlink with
// O_NOFOLLOW returns.
func isSymlinkErr(err error) bool {
	var pe *os.PathError
	return errors.As(err, &pe) && pe.Err == syscall.ELOOP
}
