//go:build unix

package journal

import (
	"errors"
	"fmt"
	"os"
	"syscall"
)

const noFollow = syscall.O_NOFOLLOW

// lockDir opens dir and takes an exclusive advisory lock on the directory
// itself, so that a second process (or a second Open in this one) cannot
// write the same log. Locking the directory rather than a file in it means
// no file can be deleted or replaced by a symlink to defeat the lock. The
// kernel releases it when the process dies. The returned handle is also
// used to sync the directory.
func lockDir(dir string) (*os.File, error) {
	d, err := os.OpenFile(dir, os.O_RDONLY|syscall.O_DIRECTORY|syscall.O_NOFOLLOW|syscall.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("journal: %w", err)
	}
	if err := syscall.Flock(int(d.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		d.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, fmt.Errorf("%w: %s", ErrLocked, dir)
		}
		return nil, fmt.Errorf("journal: lock %s: %w", dir, err)
	}
	return d, nil
}
