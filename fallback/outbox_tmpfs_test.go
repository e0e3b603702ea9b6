//go:build linux

package fallback

import (
	"context"
	"errors"
	"fmt"
	"os"
	"syscall"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// smallDisk mounts a tmpfs of size bytes for the test and returns its
// path, or skips the test where mounting is not allowed.
func smallDisk(t *testing.T, size int) string {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("mounting a small tmpfs needs root; the injected full disks of the other tests still run")
	}
	dir := t.TempDir()
	if err := syscall.Mount("tmpfs", dir, "tmpfs", 0, fmt.Sprintf("size=%d,mode=0700", size)); err != nil {
		t.Skipf("cannot mount a tmpfs here (%v); the injected full disks of the other tests still run", err)
	}
	t.Cleanup(func() {
		if err := syscall.Unmount(dir, 0); err != nil {
			t.Errorf("unmount %s: %v", dir, err)
			syscall.Unmount(dir, syscall.MNT_DETACH)
		}
	})
	return dir
}

func TestOutboxOnARealFullDisk(t *testing.T) {
	ctx := context.Background()
	dir := smallDisk(t, 256<<10)
	opts := fast
	opts.SegmentSize = 16 << 10
	o, err := OpenOutbox(dir+"/outbox", opts)
	require.NoError(t, err)
	defer func() { o.Close() }()
	var keys []string
	for i := 0; ; i++ {
		require.Less(t, i, 100000, "items before the disk filled")
		k := fmt.Sprintf("k%05d", i)
		err := o.Enqueue(ctx, Item{Key: k, Stream: "s", Payload: make([]byte, 200)})
		if err != nil {
			require.ErrorIs(t, err, ErrDiskFull, "Enqueue %d on the full disk", i)
			require.True(t, errors.Is(err, syscall.ENOSPC), "Enqueue %d: %v", i, err)
			break
		}
		keys = append(keys, k)
	}
	require.Greater(t, len(keys), 500, "items stored before the disk filled")
	// Refused again, and the outbox still works.
	err = o.Enqueue(ctx, Item{Key: "refused", Stream: "s", Payload: make([]byte, 200)})
	require.ErrorIs(t, err, ErrDiskFull, "Enqueue on the full disk again")

	assert.Equal(t, keys, drain(t, o), "delivered on the full disk")
	require.NoError(t, o.Enqueue(ctx, item("s", "after")), "Enqueue after Replay freed the disk")
	require.NoError(t, o.Close(), "Close")
	o, err = OpenOutbox(dir+"/outbox", opts)
	require.NoError(t, err, "reopen")
	assert.Equal(t, []string{"after"}, drain(t, o), "pending after reopening")
	require.NoError(t, o.Close())
}

func TestOutboxOpensOnARealFullDiskAfterACrashInAMoveToANewSegment(t *testing.T) {
	ctx := context.Background()
	disk := smallDisk(t, 256<<10)
	dir := disk + "/outbox"
	keys := crashInAMove(t, dir, fast)
	// Another file takes every byte left.
	f, err := os.Create(disk + "/filler")
	require.NoError(t, err)
	for block := make([]byte, 4096); ; {
		if _, err := f.Write(block); err != nil {
			require.True(t, errors.Is(err, syscall.ENOSPC), "filling the disk: %v", err)
			break
		}
	}
	require.NoError(t, f.Close())

	o, err := OpenOutbox(dir, fast)
	require.NoError(t, err, "OpenOutbox on the full disk")
	defer func() { o.Close() }()
	err = o.Enqueue(ctx, Item{Key: "refused", Stream: "s", Payload: make([]byte, 4096)})
	require.ErrorIs(t, err, ErrDiskFull, "Enqueue on the full disk")
	require.NoError(t, os.Remove(disk+"/filler"))
	require.NoError(t, o.Enqueue(ctx, item("s", "after")), "Enqueue once there is room")
	assert.Equal(t, append(keys, "after"), drain(t, o), "delivered")
	require.NoError(t, o.Close())
}
