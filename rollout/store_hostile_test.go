//go:build unix

package rollout_test

import (
	"context"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/ringfence/ringfence/rollout"
)

func TestFileStoreRefusesAHostileStatePathAtOnce(t *testing.T) {
	dir := t.TempDir()
	fifo := filepath.Join(dir, "fifo")
	require.NoError(t, syscall.Mkfifo(fifo, 0o600))
	zero := filepath.Join(dir, "zero")
	require.NoError(t, os.Symlink("/dev/zero", zero))
	for name, path := range map[string]string{"a FIFO without a writer": fifo, "a symlink to /dev/zero": zero} {
		t.Run("Load reports "+name+" as corrupt", func(t *testing.T) {
			store, err := rollout.NewFileStore(path)
			require.NoError(t, err)
			done := make(chan error, 1)
			go func() {
				_, _, err := store.Load(context.Background())
				done <- err
			}()
			timer := time.NewTimer(5 * time.Second)
			defer timer.Stop()
			select {
			case err := <-done:
				require.ErrorIs(t, err, rollout.ErrCorruptState, "Load with %s", name)
			case <-timer.C:
				t.Fatalf("Load with %s did not return within 5s", name)
			}
		})
	}
}
