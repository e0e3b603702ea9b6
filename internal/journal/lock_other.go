//go:build !unix

package journal

import "os"

// lockDir does nothing where advisory file locks are not available; the
// caller must make sure only one process opens a directory.
func lockDir(dir string) (*os.File, error) { return nil, nil }
