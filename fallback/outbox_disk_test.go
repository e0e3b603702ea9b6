//go:build unix

package fallback

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/ringfence/ringfence/internal/journal"
	"github.com/ringfence/ringfence/retry"
)

func TestOutboxEnqueueRefusesADifferentItemWithAStoredKey(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	o := openOutbox(t, dir, fast)
	enqueueAll(t, o, Item{Key: "x", Stream: "blobs", Payload: []byte("v1")})
	for name, it := range map[string]Item{
		"another payload": {Key: "x", Stream: "blobs", Payload: []byte("v2")},
		"another stream":  {Key: "x", Stream: "other", Payload: []byte("v1")},
		"no payload":      {Key: "x", Stream: "blobs"},
	} {
		require.ErrorIs(t, o.Enqueue(ctx, it), ErrDuplicate, "Enqueue with %s", name)
	}
	require.NoError(t, o.Enqueue(ctx, Item{Key: "x", Stream: "blobs", Payload: []byte("v1")}), "Enqueue of the same item again")
	assert.Equal(t, 1, o.Pending(), "Pending")

	// A dead letter keeps its key too, across a reopen.
	enqueueAll(t, o, Item{Key: "d", Payload: []byte("bad")})
	require.NoError(t, o.Replay(ctx, func(_ context.Context, it Item) error {
		if it.Key == "d" {
			return retry.Permanent(errors.New("rejected"))
		}
		return nil
	}))
	require.NoError(t, o.Close())
	o = openOutbox(t, dir, fast)
	require.ErrorIs(t, o.Enqueue(ctx, Item{Key: "d", Payload: []byte("good")}), ErrDuplicate, "Enqueue over a dead letter")
	require.NoError(t, o.Enqueue(ctx, Item{Key: "d", Payload: []byte("bad")}), "Enqueue of the dead letter again")
	dead, err := o.DeadLetters(ctx)
	require.NoError(t, err)
	require.Len(t, dead, 1)
	assert.Equal(t, "bad", string(dead[0].Item.Payload), "dead letter payload")
	// Once delivered, the key is free again.
	require.NoError(t, o.Enqueue(ctx, Item{Key: "x", Payload: []byte("v3")}), "Enqueue after delivery")
}

func TestOutboxAcknowledgesNothingAfterAFailedSync(t *testing.T) {
	ctx := context.Background()
	faults := new(journal.FaultFS)
	dir := t.TempDir()
	opts := fast
	opts.fs = faults
	o := openOutbox(t, dir, opts)
	durable := item("s", "durable")
	enqueueAll(t, o, durable)
	faults.FailSync(syscall.EIO)
	lost := item("s", "lost")
	require.ErrorIs(t, o.Enqueue(ctx, lost), syscall.EIO, "Enqueue while fsync fails")
	faults.FailSync(nil)
	require.ErrorIs(t, o.Enqueue(ctx, lost), syscall.EIO, "retried Enqueue after the failed fsync")
	require.ErrorIs(t, o.Enqueue(ctx, durable), syscall.EIO, "retried Enqueue of an item stored before the failure")
	require.ErrorIs(t, o.Enqueue(ctx, item("s", "new")), syscall.EIO, "Enqueue of a new item after the failure")
	require.Error(t, o.Close(), "Close after a failed fsync")

	// Reopening reads what is really on disk and works again.
	o = openOutbox(t, dir, fast)
	enqueueAll(t, o, item("s", "after"))
	assert.Contains(t, drain(t, o), "durable", "items after reopening")
}

func TestOutboxOnAFullDisk(t *testing.T) {
	ctx := context.Background()
	faults := new(journal.FaultFS)
	dir := t.TempDir()
	opts := OutboxOptions{Rate: fast.Rate, SegmentSize: 4096, fs: faults}
	o := openOutbox(t, dir, opts)
	var keys []string
	for i := range 100 {
		k := fmt.Sprintf("k%03d", i)
		keys = append(keys, k)
		enqueueAll(t, o, Item{Key: k, Payload: make([]byte, 100)})
	}
	faults.FailWrite(syscall.ENOSPC)
	for range 3 {
		err := o.Enqueue(ctx, item("s", "full"))
		require.ErrorIs(t, err, ErrDiskFull, "Enqueue on a full disk")
		require.ErrorIs(t, err, syscall.ENOSPC, "Enqueue on a full disk")
	}
	assert.Equal(t, len(keys), o.Pending(), "Pending after refused items")
	faults.FailWrite(nil)
	// Space is back: the same outbox stores again, the refused item too.
	require.NoError(t, o.Enqueue(ctx, item("s", "later")), "Enqueue once space is back, before a reopen")
	require.NoError(t, o.Enqueue(ctx, item("s", "full")), "retried Enqueue of the refused item")
	require.NoError(t, o.Enqueue(ctx, item("s", "later")), "idempotent Enqueue after the recovery")
	require.NoError(t, o.Close(), "Close after recovering")
	keys = append(keys, "full")

	t.Run("reopening once space is back keeps every acknowledged item", func(t *testing.T) {
		o := openOutbox(t, copyDir(t, dir), opts)
		enqueueAll(t, o, item("s", "later"))
		assert.Equal(t, append(keys[:len(keys)-1:len(keys)-1], "later", "full"), drain(t, o), "delivered")
	})
	t.Run("opening on a full disk frees delivered segments", func(t *testing.T) {
		d := copyDir(t, dir)
		o := openOutbox(t, d, OutboxOptions{Rate: fast.Rate, SegmentSize: 4096})
		// Deliver everything, then stop before Replay compacts.
		rctx, cancel := context.WithCancel(ctx)
		n := 0
		_ = o.Replay(rctx, func(context.Context, Item) error {
			if n++; n == len(keys)+1 { // and "later"
				cancel()
			}
			return nil
		})
		cancel()
		require.NoError(t, o.Close())
		before := len(segmentFiles(t, d))
		// Replay frees segments as it moves on; the last one it delivered
		// from is left for the next compaction.
		require.GreaterOrEqual(t, before, 2, "segments before compaction")
		faults.FailWrite(syscall.ENOSPC)
		defer faults.FailWrite(nil)
		o = openOutbox(t, d, opts)
		assert.Zero(t, o.Pending(), "Pending")
		assert.Len(t, segmentFiles(t, d), 1, "segments after opening on a full disk (%d before)", before)
	})
}

func TestOutboxFilesArePrivate(t *testing.T) {
	old := syscall.Umask(0o022)
	defer syscall.Umask(old)
	dir := filepath.Join(t.TempDir(), "outbox")
	o := openOutbox(t, dir, OutboxOptions{Rate: fast.Rate, SegmentSize: 4096})
	for i := range 50 {
		enqueueAll(t, o, Item{Key: strconv.Itoa(i), Payload: make([]byte, 100)})
	}
	st, err := os.Stat(dir)
	require.NoError(t, err)
	assert.Equal(t, os.FileMode(0o700), st.Mode().Perm(), "mode of the outbox directory")
	entries, err := os.ReadDir(dir)
	require.NoError(t, err)
	for _, e := range entries {
		info, err := e.Info()
		require.NoError(t, err)
		assert.Equal(t, os.FileMode(0o600), info.Mode().Perm(), "mode of %s", e.Name())
	}
}

func TestOutboxLockIgnoresAPlantedSymlinkAndADeletedFile(t *testing.T) {
	dir := t.TempDir()
	target := filepath.Join(t.TempDir(), "victim")
	require.NoError(t, os.Symlink(target, filepath.Join(dir, "LOCK")))
	o := openOutbox(t, dir, fast)
	_, err := os.Lstat(target)
	assert.ErrorIs(t, err, os.ErrNotExist, "OpenOutbox created the target of a planted LOCK symlink")
	require.NoError(t, os.Remove(filepath.Join(dir, "LOCK")))
	_, err = OpenOutbox(dir, fast)
	require.ErrorIs(t, err, ErrInUse, "second OpenOutbox after LOCK was deleted")
	require.NoError(t, o.Close())
}

func TestOutboxDuplicateEnqueueDoesNotHoldUpOthers(t *testing.T) {
	ctx := context.Background()
	faults := new(journal.FaultFS)
	opts := fast
	opts.fs = faults
	o := openOutbox(t, t.TempDir(), opts)
	enqueueAll(t, o, item("s", "stored"))
	release := make(chan struct{})
	var once sync.Once
	unhold := func() {
		faults.HoldReads(nil)
		once.Do(func() { close(release) })
	}
	defer unhold() // before the Outbox's Close, even if the test fails
	faults.HoldReads(release)
	dup := make(chan error, 1)
	go func() { dup <- o.Enqueue(ctx, item("s", "stored")) }()
	// While the duplicate waits for its read, a new item goes through.
	done := make(chan error, 1)
	go func() { done <- o.Enqueue(ctx, item("s", "new")) }()
	timer := time.NewTimer(10 * time.Second)
	defer timer.Stop()
	select {
	case err := <-done:
		require.NoError(t, err, "Enqueue of a new item while a duplicate reads")
	case <-timer.C:
		t.Fatal("Enqueue of a new item waited for a duplicate's disk read")
	}
	unhold()
	require.NoError(t, <-dup, "duplicate Enqueue")
}

// TestOutboxOpensABigBacklogUnderALowDescriptorLimit reopens a backlog of
// hundreds of segments in a child process whose RLIMIT_NOFILE is 64.
func TestOutboxOpensABigBacklogUnderALowDescriptorLimit(t *testing.T) {
	if dir := os.Getenv("RINGFENCE_OUTBOX_NOFILE_DIR"); dir != "" {
		lim := syscall.Rlimit{Cur: 64, Max: 64}
		require.NoError(t, syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim))
		o, err := OpenOutbox(dir, OutboxOptions{Rate: fast.Rate, SegmentSize: 4096})
		require.NoError(t, err, "OpenOutbox with RLIMIT_NOFILE 64")
		want, _ := strconv.Atoi(os.Getenv("RINGFENCE_OUTBOX_NOFILE_ITEMS"))
		require.Equal(t, want, o.Pending(), "Pending")
		n := 0
		require.NoError(t, o.Replay(context.Background(), func(context.Context, Item) error { n++; return nil }))
		require.Equal(t, want, n, "items delivered")
		require.NoError(t, o.Close())
		return
	}
	dir := t.TempDir()
	o := openOutbox(t, dir, OutboxOptions{Rate: fast.Rate, SegmentSize: 4096})
	const items = 10000
	fillOutbox(t, o, "n", items)
	require.NoError(t, o.Close())
	segs := len(segmentFiles(t, dir))
	require.Greater(t, segs, 200, "segments in the backlog")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^TestOutboxOpensABigBacklogUnderALowDescriptorLimit$")
	cmd.Env = append(childEnv(), "RINGFENCE_OUTBOX_NOFILE_DIR="+dir, "RINGFENCE_OUTBOX_NOFILE_ITEMS="+strconv.Itoa(items))
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, "child with RLIMIT_NOFILE 64 and %d segments:\n%s", segs, out)
}

func TestOutboxStaysStoppedAfterAWriteErrorOtherThanAFullDisk(t *testing.T) {
	ctx := context.Background()
	faults := new(journal.FaultFS)
	dir := t.TempDir()
	opts := fast
	opts.fs = faults
	o := openOutbox(t, dir, opts)
	enqueueAll(t, o, item("s", "durable"))
	faults.FailWrite(syscall.EIO)
	err := o.Enqueue(ctx, item("s", "lost"))
	require.ErrorIs(t, err, syscall.EIO, "Enqueue while writes fail")
	assert.NotErrorIs(t, err, ErrDiskFull, "Enqueue while writes fail")
	faults.FailWrite(nil)
	require.ErrorIs(t, o.Enqueue(ctx, item("s", "new")), syscall.EIO, "Enqueue after the failed write")
	require.Error(t, o.Close(), "Close after a failed write")
	o = openOutbox(t, dir, fast)
	assert.Equal(t, []string{"durable"}, drain(t, o), "items after reopening")
}
