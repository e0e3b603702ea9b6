//go:build !linux

package fallback

import "os"

func rawDatasync(f *os.File) error { return f.Sync() }
