//go:build unix

package journal

import (
	"errors"
	"os"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestFilesArePrivate(t *testing.T) {
	old := syscall.Umask(0o022)
	defer syscall.Umask(old)
	dir := filepath.Join(t.TempDir(), "log")
	j, _ := openJournal(t, dir, Options{SegmentSize: 4096})
	for range 20 {
		_, _, err := j.Append(1, make([]byte, 1000))
		require.NoError(t, err)
	}
	require.NoError(t, j.Close())
	st, err := os.Stat(dir)
	require.NoError(t, err)
	assert.Equal(t, os.FileMode(0o700), st.Mode().Perm(), "mode of the directory")
	for _, p := range segPaths(t, dir) {
		st, err := os.Stat(p)
		require.NoError(t, err)
		assert.Equal(t, os.FileMode(0o600), st.Mode().Perm(), "mode of %s", p)
	}
}

func TestTheLockCannotBeDefeated(t *testing.T) {
	dir := t.TempDir()
	target := filepath.Join(t.TempDir(), "target")
	require.NoError(t, os.Symlink(target, filepath.Join(dir, "LOCK")))
	j, _ := openJournal(t, dir, Options{})
	_, err := os.Lstat(target)
	assert.True(t, errors.Is(err, os.ErrNotExist), "Open followed the planted LOCK symlink: %v", err)
	require.NoError(t, os.Remove(filepath.Join(dir, "LOCK")))
	_, err = openErr(dir)
	require.ErrorIs(t, err, ErrLocked, "second Open after LOCK was deleted")
	require.NoError(t, j.Close())
	_, err = openErr(dir)
	require.NoError(t, err, "Open after Close")
}
