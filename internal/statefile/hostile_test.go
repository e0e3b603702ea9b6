//go:build unix

package statefile

import (
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// loadWithin runs Load on a goroutine and fails the test if it does not
// return within d: a hostile path must never hang the caller.
func loadWithin(t *testing.T, f *File, d time.Duration) error {
	t.Helper()
	done := make(chan error, 1)
	go func() {
		_, _, err := f.Load()
		done <- err
	}()
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case err := <-done:
		return err
	case <-timer.C:
		t.Fatalf("Load(%s) did not return within %v", f.Path(), d)
		return nil
	}
}

func TestLoadRefusesWhatIsNotARegularFile(t *testing.T) {
	dir := t.TempDir()
	fifo := filepath.Join(dir, "fifo")
	require.NoError(t, syscall.Mkfifo(fifo, 0o600))
	zero := filepath.Join(dir, "zero")
	require.NoError(t, os.Symlink("/dev/zero", zero))
	random := filepath.Join(dir, "random")
	require.NoError(t, os.Symlink("/dev/urandom", random))
	real := filepath.Join(dir, "real")
	require.NoError(t, os.WriteFile(real, encode([]byte("x"), 1), 0o600))
	link := filepath.Join(dir, "link")
	require.NoError(t, os.Symlink(real, link))
	for name, path := range map[string]string{
		"a FIFO without a writer":          fifo,
		"a symlink to /dev/zero":           zero,
		"a symlink to /dev/urandom":        random,
		"a symlink to a valid record":      link,
		"a directory":                      dir,
		"a character device named plainly": "/dev/zero",
	} {
		t.Run("Load refuses "+name, func(t *testing.T) {
			f, err := New(path)
			require.NoError(t, err)
			require.ErrorIs(t, loadWithin(t, f, 5*time.Second), ErrCorrupt, "Load(%s)", path)
			_, err = f.Save([]byte("y"), 1)
			require.ErrorIs(t, err, ErrCorrupt, "Save over %s", path)
		})
	}
}

func TestLoadRefusesAnOversizedFileWithoutReadingIt(t *testing.T) {
	path := filepath.Join(t.TempDir(), "big")
	f, err := os.Create(path)
	require.NoError(t, err)
	// A sparse file: reading it whole would take a gigabyte of memory.
	require.NoError(t, f.Truncate(1<<30))
	require.NoError(t, f.Close())
	sf, err := New(path)
	require.NoError(t, err)
	var before, after runtimeMem
	before.read()
	require.ErrorIs(t, loadWithin(t, sf, 5*time.Second), ErrCorrupt, "Load of a 1 GiB file")
	after.read()
	require.Less(t, after.total-before.total, uint64(MaxSize), "bytes allocated by Load of a 1 GiB file")
}
