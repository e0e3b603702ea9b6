//go:build !linux

package journal

import "os"

// datasync makes f's data durable; where fdatasync is not available it is
// fsync.
func datasync(f *os.File) error { return f.Sync() }
