//go:build unix

package fallback

import (
	"context"
	"errors"
	"fmt"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/ringfence/ringfence/internal/journal"
	"github.com/ringfence/ringfence/retry"
)

// fullDisk returns options for an outbox in small segments whose writes go
// through faults.
func fullDisk(faults *journal.FaultFS) OutboxOptions {
	opts := fast
	opts.SegmentSize = 4096
	opts.fs = faults
	return opts
}

// pendingIn opens a copy of dir, as a process starting after a crash
// would find it, and returns the keys pending there in delivery order.
func pendingIn(t *testing.T, dir string) []string {
	t.Helper()
	o := openOutbox(t, copyDir(t, dir), fast)
	return drain(t, o)
}

func TestOutboxReplayDeliversOnAFullDiskAndFreesIt(t *testing.T) {
	ctx := context.Background()
	faults := new(journal.FaultFS)
	dir := t.TempDir()
	o := openOutbox(t, dir, fullDisk(faults))
	// A small disk that the outbox fills by itself.
	faults.LimitSpace(48 << 10)
	var keys []string
	for i := 0; ; i++ {
		require.Less(t, i, 10000, "items before the disk filled")
		k := fmt.Sprintf("k%04d", i)
		err := o.Enqueue(ctx, Item{Key: k, Stream: "s", Payload: make([]byte, 100)})
		if err != nil {
			require.ErrorIs(t, err, ErrDiskFull, "Enqueue %d", i)
			break
		}
		keys = append(keys, k)
	}
	require.Greater(t, len(o.j.Segments()), 5, "segments on the full disk")

	// The receiver is back: Replay delivers everything although it cannot
	// write a single delivery record at first, and gives the disk back as
	// it goes, without a reopen.
	assert.Equal(t, keys, drain(t, o), "delivered on a full disk, each once and in order")
	assert.Zero(t, o.Pending(), "Pending after Replay")
	assert.LessOrEqual(t, len(o.j.Segments()), 2, "segments after Replay")

	// The space is back for new work, with the same limit in force.
	require.NoError(t, o.Enqueue(ctx, item("s", "after")), "Enqueue after Replay freed the disk")
	assert.Zero(t, o.Stats().Unrecorded, "deliveries left unrecorded once a write succeeded")
	assert.Equal(t, []string{"after"}, pendingIn(t, dir), "pending after a crash now")
	require.NoError(t, o.Close())
	faults.LimitSpace(0)
	o = openOutbox(t, dir, fast)
	assert.Equal(t, []string{"after"}, drain(t, o), "pending after reopening")
}

func TestOutboxRecordsOwedDeliveriesBeforeAnythingLater(t *testing.T) {
	ctx := context.Background()
	faults := new(journal.FaultFS)
	dir := t.TempDir()
	o := openOutbox(t, dir, fullDisk(faults))
	enqueueAll(t, o, item("s", "a"), item("s", "b"), item("t", "c"))
	faults.FailWrite(syscall.ENOSPC)
	assert.Equal(t, []string{"a", "b", "c"}, drain(t, o), "delivered on a full disk")
	assert.Equal(t, 3, o.Stats().Unrecorded, "deliveries the full disk kept from being recorded")
	assert.Zero(t, o.Pending(), "Pending")
	// A crash now delivers them again: nothing is lost.
	assert.Equal(t, []string{"a", "b", "c"}, pendingIn(t, dir), "pending after a crash on the full disk")

	err := o.Enqueue(ctx, item("s", "d"))
	require.ErrorIs(t, err, ErrDiskFull, "Enqueue on the full disk")

	faults.FailWrite(nil)
	// A delivered key is free again. Its new item must not reach the disk
	// without the record of the old one's delivery: after a crash, the old
	// item would be pending beside the new one.
	again := Item{Key: "a", Stream: "s", Payload: []byte("second a")}
	require.NoError(t, o.Enqueue(ctx, again), "Enqueue of a delivered key once space is back")
	assert.Zero(t, o.Stats().Unrecorded, "unrecorded deliveries after a successful write")
	o2 := openOutbox(t, copyDir(t, dir), fast)
	var got []Item
	require.NoError(t, o2.Replay(ctx, func(_ context.Context, it Item) error {
		got = append(got, it)
		return nil
	}))
	require.Len(t, got, 1, "pending after a crash now: %v", got)
	assert.Equal(t, again.Payload, got[0].Payload, "the pending item is the new one")
	require.NoError(t, o.Close())
}

func TestOutboxDeadLettersOnAFullDisk(t *testing.T) {
	ctx := context.Background()
	faults := new(journal.FaultFS)
	dir := t.TempDir()
	o := openOutbox(t, dir, fullDisk(faults))
	enqueueAll(t, o, item("s", "bad"), item("s", "good"))
	faults.FailWrite(syscall.ENOSPC)
	var delivered []string
	err := o.Replay(ctx, func(_ context.Context, it Item) error {
		if it.Key == "bad" {
			return retry.Permanent(errors.New("rejected"))
		}
		delivered = append(delivered, it.Key)
		return nil
	})
	require.NoError(t, err, "Replay on a full disk with a rejected item")
	assert.Equal(t, []string{"good"}, delivered, "delivered")
	dead, err := o.DeadLetters(ctx)
	require.NoError(t, err)
	require.Len(t, dead, 1, "dead letters")
	assert.Equal(t, "bad", dead[0].Item.Key, "dead letter")
	assert.Equal(t, 2, o.Stats().Unrecorded, "records owed")

	// Requeue needs a write: refused, and the dead letter stays.
	require.ErrorIs(t, o.Requeue("bad"), ErrDiskFull, "Requeue on a full disk")
	dead, err = o.DeadLetters(ctx)
	require.NoError(t, err)
	require.Len(t, dead, 1, "dead letters after a refused Requeue")
	assert.Zero(t, o.Pending(), "Pending after a refused Requeue")
	assert.Equal(t, []string{"bad", "good"}, pendingIn(t, dir), "pending after a crash on the full disk")

	faults.FailWrite(nil)
	require.NoError(t, o.Requeue("bad"), "Requeue once space is back")
	assert.Equal(t, 1, o.Pending(), "Pending after Requeue")
	assert.Equal(t, []string{"bad"}, pendingIn(t, dir), "pending after a crash now")
	require.NoError(t, o.Close())
}

func TestOutboxCompactionOnAFullDiskKeepsDeadLettersItCannotCopy(t *testing.T) {
	ctx := context.Background()
	faults := new(journal.FaultFS)
	dir := t.TempDir()
	o := openOutbox(t, dir, fullDisk(faults))
	enqueueAll(t, o, item("x", "bad"))
	err := o.Replay(ctx, func(context.Context, Item) error { return retry.Permanent(errors.New("rejected")) })
	require.NoError(t, err)
	var keys []string
	for i := range 120 {
		k := fmt.Sprintf("k%03d", i)
		keys = append(keys, k)
		enqueueAll(t, o, Item{Key: k, Stream: "s", Payload: make([]byte, 100)})
	}
	before := len(o.j.Segments())
	require.Greater(t, before, 3, "segments")
	// Freeing the first segment needs its dead letter copied forward, which
	// the full disk refuses: the segment stays, and so does the letter.
	faults.FailWrite(syscall.ENOSPC)
	assert.Equal(t, keys, drain(t, o), "delivered on a full disk")
	assert.Len(t, o.j.Segments(), before, "segments kept behind an uncopied dead letter")
	dead, err := o.DeadLetters(ctx)
	require.NoError(t, err, "DeadLetters after a refused copy")
	require.Len(t, dead, 1)
	assert.Equal(t, "bad", dead[0].Item.Key)

	faults.FailWrite(nil)
	require.NoError(t, o.Enqueue(ctx, item("s", "after")), "Enqueue once space is back")
	assert.Equal(t, []string{"after"}, drain(t, o), "Replay once space is back")
	assert.Len(t, o.j.Segments(), 1, "segments once the copy could be written")
	require.NoError(t, o.Close())
	o = openOutbox(t, dir, fast)
	dead, err = o.DeadLetters(ctx)
	require.NoError(t, err, "DeadLetters after reopening")
	require.Len(t, dead, 1, "dead letters after reopening")
	assert.Equal(t, "bad", dead[0].Item.Key)
	assert.Zero(t, o.Pending(), "Pending after reopening")
}

func TestOutboxCloseReportsDeliveriesAFullDiskKeptFromBeingRecorded(t *testing.T) {
	faults := new(journal.FaultFS)
	dir := t.TempDir()
	o := openOutbox(t, dir, fullDisk(faults))
	enqueueAll(t, o, item("s", "a"), item("s", "b"))
	faults.FailWrite(syscall.ENOSPC)
	assert.Equal(t, []string{"a", "b"}, drain(t, o), "delivered on a full disk")
	err := o.Close()
	require.ErrorIs(t, err, ErrDiskFull, "Close with unrecorded deliveries")
	require.ErrorIs(t, err, syscall.ENOSPC, "Close with unrecorded deliveries")
	assert.Contains(t, err.Error(), "2 deliveries", "Close's error")
	faults.FailWrite(nil)
	o = openOutbox(t, dir, fast)
	assert.Equal(t, []string{"a", "b"}, drain(t, o), "items after reopening: delivered again, at least once")
}

func TestOutboxUnderConcurrentUseOnASmallDisk(t *testing.T) {
	// Producers fill a small disk while Replay drains it: every item
	// acknowledged is delivered exactly once, in its stream's order, and
	// the refused ones get in as Replay frees space.
	ctx := context.Background()
	faults := new(journal.FaultFS)
	dir := t.TempDir()
	o := openOutbox(t, dir, fullDisk(faults))
	faults.LimitSpace(24 << 10)
	const producers, each = 4, 150
	var mu sync.Mutex
	delivered := make(map[string][]string) // stream → keys in delivery order
	// The receiver comes back only once the disk is full.
	full := make(chan struct{})
	var fullOnce sync.Once
	deliver := func(_ context.Context, it Item) error {
		<-full
		mu.Lock()
		delivered[it.Stream] = append(delivered[it.Stream], it.Key)
		mu.Unlock()
		return nil
	}
	var wg sync.WaitGroup
	var refused atomic.Int64
	var stopped atomic.Bool // Replay failed: producers give up
	for p := range producers {
		wg.Go(func() {
			stream := fmt.Sprintf("p%d", p)
			for i := range each {
				it := Item{Key: fmt.Sprintf("%s-%03d", stream, i), Stream: stream, Payload: make([]byte, 100)}
				for try := 0; ; try++ {
					err := o.Enqueue(ctx, it)
					if err == nil {
						break
					}
					if !errors.Is(err, ErrDiskFull) || stopped.Load() {
						t.Errorf("Enqueue(%s): %v after %d tries", it.Key, err, try)
						fullOnce.Do(func() { close(full) })
						return
					}
					refused.Add(1)
					fullOnce.Do(func() { close(full) })
					runtime.Gosched()
				}
			}
		})
	}
	done := make(chan struct{})
	replayed := make(chan error, 1)
	go func() {
		for {
			if err := o.Replay(ctx, deliver); err != nil {
				stopped.Store(true)
				replayed <- err
				return
			}
			select {
			case <-done:
				replayed <- o.Replay(ctx, deliver)
				return
			default:
				runtime.Gosched()
			}
		}
	}()
	wg.Wait()
	close(done)
	require.NoError(t, <-replayed, "Replay")
	assert.Positive(t, refused.Load(), "Enqueues refused by the full disk")
	for p := range producers {
		stream := fmt.Sprintf("p%d", p)
		var want []string
		for i := range each {
			want = append(want, fmt.Sprintf("%s-%03d", stream, i))
		}
		assert.Equal(t, want, delivered[stream], "stream %s delivered", stream)
	}
	assert.Zero(t, o.Pending(), "Pending")
	require.NoError(t, o.Close(), "Close")
	faults.LimitSpace(0)
	assert.Empty(t, drain(t, openOutbox(t, dir, fast)), "pending after reopening")
}

func TestOutboxOpensALogWithManySeqsAFullDiskUndid(t *testing.T) {
	// Items a full disk undid leave their seqs unused, so the index of a
	// segment can span more seqs than it holds items; sizing the index on
	// open must allow for that.
	ctx := context.Background()
	faults := new(journal.FaultFS)
	dir := t.TempDir()
	o := openOutbox(t, dir, fullDisk(faults))
	var keys []string
	add := func(k string) {
		keys = append(keys, k)
		enqueueAll(t, o, Item{Key: k, Stream: "s", Payload: make([]byte, 100)})
	}
	for i := range 5 {
		add(fmt.Sprintf("a%d", i))
	}
	faults.FailWrite(syscall.ENOSPC)
	for i := range 300 {
		require.ErrorIs(t, o.Enqueue(ctx, item("s", fmt.Sprintf("refused%d", i))), ErrDiskFull)
	}
	faults.FailWrite(nil)
	for i := 0; len(o.j.Segments()) < 2; i++ {
		add(fmt.Sprintf("b%03d", i))
	}
	require.NoError(t, o.Close())
	o = openOutbox(t, dir, fast)
	assert.Equal(t, keys, drain(t, o), "delivered after reopening")
}

// crashInAMove fills an outbox in dir until it starts a third segment,
// closes it, and leaves the files as a crash in that move would: the
// second segment with its seal cut off, the third holding only its
// header. The second segment's records end on a 4 KiB boundary, so the
// seal would need a new block of the disk. It returns the keys still
// pending.
func crashInAMove(t *testing.T, dir string, opts OutboxOptions) []string {
	t.Helper()
	const page = 4096
	opts.SegmentSize = 3 * page
	o := openOutbox(t, dir, opts)
	var keys []string
	lastSize := func() int64 {
		segs := segmentFiles(t, dir)
		info, err := os.Stat(segs[len(segs)-1])
		require.NoError(t, err)
		return info.Size()
	}
	add := func(payload int64) int64 {
		before := lastSize()
		k := fmt.Sprintf("k%04d", len(keys))
		enqueueAll(t, o, Item{Key: k, Stream: "s", Payload: make([]byte, payload)})
		keys = append(keys, k)
		return lastSize() - before
	}
	overhead := add(100) - 100
	for len(o.j.Segments()) < 2 || lastSize() < 2*page-1024 {
		add(100)
	}
	add(2*page - lastSize() - overhead)
	require.Equal(t, int64(2*page), lastSize(), "second segment's records end on a block boundary")
	add(2 * page) // does not fit: starts the third segment
	require.NoError(t, o.Close())
	segs := segmentFiles(t, dir)
	require.Len(t, segs, 3)
	info, err := os.Stat(segs[1])
	require.NoError(t, err)
	require.NoError(t, os.Truncate(segs[1], info.Size()-journal.RecordHeaderSize-4), "cut the seal off")
	require.NoError(t, os.Truncate(segs[2], journal.SegmentHeaderSize), "empty the new segment")
	return keys[:len(keys)-1] // the item that made the third segment goes with it
}

func TestOutboxOpensOnAFullDiskAfterACrashInAMoveToANewSegment(t *testing.T) {
	// The crash came after the next segment was made and before the one
	// before it was sealed; then the disk filled. The service must start,
	// refuse new work with ErrDiskFull, and deliver what is queued.
	ctx := context.Background()
	faults := new(journal.FaultFS)
	dir := t.TempDir()
	keys := crashInAMove(t, dir, fast)
	faults.LimitSpace(filesSize(t, dir))
	opts := fullDisk(faults)
	opts.SegmentSize = 3 * 4096 // as crashInAMove made them
	o := openOutbox(t, dir, opts)
	err := o.Enqueue(ctx, item("s", "refused"))
	require.ErrorIs(t, err, ErrDiskFull, "Enqueue on the full disk")
	assert.Equal(t, keys, drain(t, o), "delivered on the full disk")
	require.NoError(t, o.Enqueue(ctx, item("s", "after")), "Enqueue after Replay freed the disk")
	require.NoError(t, o.Close())
	faults.LimitSpace(0)
	o = openOutbox(t, dir, fast)
	assert.Equal(t, []string{"after"}, drain(t, o), "pending after reopening")
}

func TestOutboxReplayFreesAFullDiskWhoseCurrentSegmentIsFull(t *testing.T) {
	// Every record must start a new segment, which the full disk refuses,
	// so the segment records are appended to runs ahead of the segments
	// on disk while each refused batch is pending. Replay must still free
	// the delivered segments. (Reopening with a smaller SegmentSize makes
	// every append need a new segment; so does a segment filled to its
	// size as the disk filled.) Whether a refused batch is pending when
	// Replay compacts is timing: before the fix twenty runs of twelve
	// rounds all failed.
	ctx := context.Background()
	for round := range 12 {
		dir := t.TempDir()
		big := fast
		big.SegmentSize = 3 * 4096
		o := openOutbox(t, dir, big)
		var keys []string
		for i := 0; len(o.j.Segments()) < 2 || o.j.Size() < 5*4096; i++ {
			k := fmt.Sprintf("k%04d", i)
			enqueueAll(t, o, Item{Key: k, Stream: "s", Payload: make([]byte, 100)})
			keys = append(keys, k)
		}
		require.NoError(t, o.Close())

		faults := new(journal.FaultFS)
		faults.LimitSpace(filesSize(t, dir))
		o = openOutbox(t, dir, fullDisk(faults))
		assert.Equal(t, keys, drain(t, o), "round %d: delivered on the full disk", round)
		assert.NotContains(t, o.j.Segments(), uint32(1), "round %d: segments after Replay", round)
		require.NoError(t, o.Enqueue(ctx, item("s", "after")), "round %d: Enqueue after Replay freed the disk", round)
		assert.Zero(t, o.Stats().Unrecorded, "round %d: deliveries left unrecorded once a write succeeded", round)
		require.NoError(t, o.Close())
	}
}

// filesSize returns the bytes of the regular files in dir.
func filesSize(t *testing.T, dir string) int64 {
	t.Helper()
	entries, err := os.ReadDir(dir)
	require.NoError(t, err)
	var n int64
	for _, e := range entries {
		info, err := e.Info()
		require.NoError(t, err)
		if info.Mode().IsRegular() {
			n += info.Size()
		}
	}
	return n
}
