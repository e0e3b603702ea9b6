//go:build unix

package fallback

import (
	"context"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestNewSwitchFailsSafeOnAHostileStatePath(t *testing.T) {
	dir := t.TempDir()
	fifo := filepath.Join(dir, "fifo")
	require.NoError(t, syscall.Mkfifo(fifo, 0o600))
	zero := filepath.Join(dir, "zero")
	require.NoError(t, os.Symlink("/dev/zero", zero))
	for name, path := range map[string]string{"a FIFO without a writer": fifo, "a symlink to /dev/zero": zero} {
		t.Run("the switch starts in its initial mode with "+name, func(t *testing.T) {
			store, err := NewFileModeStore(path)
			require.NoError(t, err)
			type result struct {
				sw  *Switch
				err error
			}
			done := make(chan result, 1)
			go func() {
				sw, err := NewSwitch(context.Background(), "api", SwitchSettings{Store: store, Initial: ModeManual})
				done <- result{sw, err}
			}()
			timer := time.NewTimer(5 * time.Second)
			defer timer.Stop()
			select {
			case r := <-done:
				require.ErrorIs(t, r.err, ErrModeUnreadable, "NewSwitch with %s", name)
				require.NotNil(t, r.sw)
				assert.Equal(t, ModeManual, r.sw.Mode(), "Mode")
			case <-timer.C:
				t.Fatalf("NewSwitch with %s did not return within 5s", name)
			}
		})
	}
}
