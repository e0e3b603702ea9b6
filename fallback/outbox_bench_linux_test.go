//go:build linux

package fallback

import (
	"os"
	"syscall"
)

func rawDatasync(f *os.File) error { return syscall.Fdatasync(int(f.Fd())) }
