//go:build linux

package journal

import (
	"os"
	"syscall"
)

// datasync makes f's data durable with fdatasync(2): it writes the data
// and the metadata needed to read it back (the file's size when it grew),
// and skips the timestamps that fsync would also write.
func datasync(f *os.File) error {
	for {
		err := syscall.Fdatasync(int(f.Fd()))
		if err != syscall.EINTR {
			if err != nil {
				return &os.PathError{Op: "fdatasync", Path: f.Name(), Err: err}
			}
			return nil
		}
	}
}
