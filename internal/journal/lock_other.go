//go:build !unix

package journal

import (
	"fmt"
	"os"
)

const noFollow = 0

// lockDir opens dir without locking it, where advisory locks are not
// available; the caller must make sure only one process opens a directory.
func lockDir(dir string) (*os.File, error) {
	d, err := os.Open(dir)
	if err != nil {
		return nil, fmt.Errorf("journal: %w", err)
	}
	return d, nil
}
