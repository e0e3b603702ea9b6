package fallback

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/cenkalti/backoff/v4"
	"github.com/ringfence/ringfence/breaker"
	"github.com/ringfence/ringfence/retry"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/time/rate"
)

// openOutbox opens an outbox in dir and closes it when the test ends.
func openOutbox(t testing.TB, dir string, opts OutboxOptions) *Outbox {
	t.Helper()
	o, err := OpenOutbox(dir, opts)
	require.NoError(t, err, "OpenOutbox(%q)", dir)
	o.jitter = 0
	t.Cleanup(func() { o.Close() })
	return o
}

// fast turns pacing off so tests that do not look at pacing run at once.
var fast = OutboxOptions{Rate: rate.Inf}

func enqueueAll(t testing.TB, o *Outbox, items ...Item) {
	t.Helper()
	for _, it := range items {
		require.NoError(t, o.Enqueue(context.Background(), it), "Enqueue(%q)", it.Key)
	}
}

// drain replays everything and returns the keys delivered, in order.
func drain(t testing.TB, o *Outbox) []string {
	t.Helper()
	var got []string
	err := o.Replay(context.Background(), func(_ context.Context, it Item) error {
		got = append(got, it.Key)
		return nil
	})
	require.NoError(t, err, "Replay")
	return got
}

func item(stream, key string) Item {
	return Item{Key: key, Stream: stream, Payload: []byte("payload of " + key)}
}

func TestOutboxDeliversEachStreamInEnqueueOrder(t *testing.T) {
	o := openOutbox(t, t.TempDir(), fast)
	var want []Item
	for i := range 30 {
		it := item(fmt.Sprintf("account-%d", i%3), fmt.Sprintf("k%02d", i))
		want = append(want, it)
	}
	enqueueAll(t, o, want...)
	assert.Equal(t, 30, o.Pending(), "Pending()")
	assert.Equal(t, 10, o.StreamPending("account-1"), "StreamPending(account-1)")
	assert.Equal(t, 0, o.StreamPending("nobody"), "StreamPending(nobody)")

	got := map[string][]string{}
	var seqs []uint64
	err := o.Replay(context.Background(), func(_ context.Context, it Item) error {
		got[it.Stream] = append(got[it.Stream], it.Key)
		seqs = append(seqs, it.Seq)
		assert.Equal(t, "payload of "+it.Key, string(it.Payload), "payload of %s", it.Key)
		assert.Equal(t, 1, it.Attempts, "Attempts of %s", it.Key)
		assert.False(t, it.Enqueued.IsZero(), "Enqueued of %s", it.Key)
		return nil
	})
	require.NoError(t, err, "Replay")
	for s := range 3 {
		stream := fmt.Sprintf("account-%d", s)
		var keys []string
		for i := s; i < 30; i += 3 {
			keys = append(keys, fmt.Sprintf("k%02d", i))
		}
		assert.Equal(t, keys, got[stream], "delivery order of %s", stream)
	}
	assert.True(t, slices.IsSorted(seqs), "Seq order %v", seqs)
	assert.Equal(t, 0, o.Pending(), "Pending() after Replay")
	assert.Equal(t, uint64(30), o.Stats().Delivered, "Stats().Delivered")
}

func TestOutboxEnqueueIsIdempotent(t *testing.T) {
	dir := t.TempDir()
	o := openOutbox(t, dir, fast)
	enqueueAll(t, o, item("s", "a"), item("s", "b"), item("s", "a"))
	assert.Equal(t, 2, o.Pending(), "Pending() after enqueuing a twice")

	require.NoError(t, o.Close())
	o = openOutbox(t, dir, fast)
	enqueueAll(t, o, item("s", "b"))
	assert.Equal(t, 2, o.Pending(), "Pending() after enqueuing b again after reopening")
	assert.Equal(t, []string{"a", "b"}, drain(t, o), "delivered keys")

	t.Run("a delivered key can be enqueued again", func(t *testing.T) {
		enqueueAll(t, o, item("s", "a"))
		assert.Equal(t, []string{"a"}, drain(t, o), "delivered keys")
	})
}

func TestOutboxEnqueueConcurrentDuplicatesStoreOnce(t *testing.T) {
	o := openOutbox(t, t.TempDir(), fast)
	var wg sync.WaitGroup
	for p := range 8 {
		wg.Go(func() {
			for i := range 50 {
				assert.NoError(t, o.Enqueue(context.Background(), item("s", fmt.Sprintf("k%d", (i+p)%50))))
			}
		})
	}
	wg.Wait()
	got := drain(t, o)
	slices.Sort(got)
	assert.Equal(t, 50, len(slices.Compact(got)), "distinct keys delivered")
	assert.Equal(t, 50, len(got), "keys delivered")
}

func TestOutboxKeysWithTheSameHashStayApart(t *testing.T) {
	o := openOutbox(t, t.TempDir(), fast)
	o.hashKey = func(string) uint64 { return 42 }
	enqueueAll(t, o, item("s", "a"), item("s", "b"), item("s", "c"), item("s", "b"), item("s", "a"))
	assert.Equal(t, 3, o.Pending(), "Pending()")
	assert.Equal(t, []string{"a", "b", "c"}, drain(t, o), "delivered keys")
	enqueueAll(t, o, item("s", "c"), item("s", "a"), item("s", "c"))
	assert.Equal(t, []string{"c", "a"}, drain(t, o), "delivered keys after reuse")
}

func TestOutboxEnqueueRejects(t *testing.T) {
	o := openOutbox(t, t.TempDir(), OutboxOptions{MaxItemSize: 10})
	canceled, cancel := context.WithCancel(context.Background())
	cancel()
	tests := []struct {
		name string
		ctx  context.Context
		it   Item
		want error
	}{
		{"an empty key", context.Background(), Item{Stream: "s"}, ErrInvalidItem},
		{"an item over MaxItemSize", context.Background(), Item{Key: "k", Payload: make([]byte, 10)}, ErrInvalidItem},
		{"a cancelled context", canceled, Item{Key: "k"}, context.Canceled},
	}
	for _, tt := range tests {
		t.Run("rejects "+tt.name, func(t *testing.T) {
			err := o.Enqueue(tt.ctx, tt.it)
			require.ErrorIs(t, err, tt.want, "Enqueue(%+v)", tt.it)
			assert.Equal(t, 0, o.Pending(), "Pending()")
		})
	}
	require.NoError(t, o.Close())
	require.ErrorIs(t, o.Enqueue(context.Background(), Item{Key: "k"}), ErrClosed, "Enqueue after Close")
	require.ErrorIs(t, o.Replay(context.Background(), nil), ErrClosed, "Replay after Close")
	require.ErrorIs(t, o.Requeue("k"), ErrClosed, "Requeue after Close")
	_, err := o.DeadLetters(context.Background())
	require.ErrorIs(t, err, ErrClosed, "DeadLetters after Close")
	require.NoError(t, o.Close(), "second Close")
}

func TestOpenOutboxValidatesOptions(t *testing.T) {
	tests := []struct {
		name string
		opts OutboxOptions
	}{
		{"a negative SegmentSize", OutboxOptions{SegmentSize: -1}},
		{"a tiny SegmentSize", OutboxOptions{SegmentSize: 100}},
		{"a negative MaxItemSize", OutboxOptions{MaxItemSize: -1}},
		{"a huge MaxItemSize", OutboxOptions{MaxItemSize: 1 << 30}},
		{"a negative RetryInitial", OutboxOptions{RetryInitial: -time.Second}},
		{"a negative RetryMax", OutboxOptions{RetryMax: -time.Second}},
		{"RetryMax below RetryInitial", OutboxOptions{RetryInitial: time.Minute, RetryMax: time.Second}},
		{"a negative MaxAttempts", OutboxOptions{MaxAttempts: -1}},
		{"a negative Rate", OutboxOptions{Rate: -1}},
		{"a negative Burst", OutboxOptions{Burst: -1}},
	}
	for _, tt := range tests {
		t.Run("rejects "+tt.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "outbox")
			o, err := OpenOutbox(dir, tt.opts)
			require.Error(t, err, "OpenOutbox(%+v)", tt.opts)
			assert.Nil(t, o, "OpenOutbox(%+v)", tt.opts)
			_, statErr := os.Stat(dir)
			assert.True(t, errors.Is(statErr, os.ErrNotExist), "OpenOutbox(%+v) created %s", tt.opts, dir)
		})
	}
	t.Run("rejects an empty path", func(t *testing.T) {
		_, err := OpenOutbox("", OutboxOptions{})
		require.Error(t, err, "OpenOutbox(\"\")")
	})
}

func TestOutboxReopenKeepsEverything(t *testing.T) {
	dir := t.TempDir()
	o := openOutbox(t, dir, OutboxOptions{Rate: rate.Inf, SegmentSize: 4096})
	var keys []string
	for i := range 200 {
		keys = append(keys, fmt.Sprintf("k%03d", i))
		enqueueAll(t, o, item("s", keys[i]))
	}
	// Deliver the first 50 and dead-letter the 51st.
	n := 0
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	err := o.Replay(ctx, func(_ context.Context, it Item) error {
		n++
		switch {
		case n <= 50:
			return nil
		case n == 51:
			return retry.Permanent(errors.New("rejected"))
		}
		cancel()
		return errors.New("unavailable")
	})
	require.ErrorIs(t, err, context.Canceled, "Replay")
	require.NoError(t, o.Close())

	o = openOutbox(t, dir, fast)
	assert.Equal(t, 149, o.Pending(), "Pending() after reopening")
	dl, err := o.DeadLetters(context.Background())
	require.NoError(t, err, "DeadLetters")
	require.Len(t, dl, 1, "DeadLetters")
	assert.Equal(t, "k050", dl[0].Item.Key, "dead letter key")
	assert.Equal(t, "rejected", dl[0].Reason, "dead letter reason")
	assert.Equal(t, keys[51:], drain(t, o), "delivered after reopening")
}

func TestOutboxReplayRetriesAFailingItemWithBackoff(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		o := openOutbox(t, t.TempDir(), OutboxOptions{Rate: rate.Inf, RetryInitial: time.Second, RetryMax: 4 * time.Second})
		enqueueAll(t, o, item("s", "a"), item("s", "b"))
		start := time.Now()
		var got []string
		var at []time.Duration
		errDown := errors.New("service unavailable")
		err := o.Replay(context.Background(), func(_ context.Context, it Item) error {
			at = append(at, time.Since(start))
			if it.Key == "a" && it.Attempts <= 4 {
				return errDown
			}
			got = append(got, fmt.Sprintf("%s@%d", it.Key, it.Attempts))
			return nil
		})
		require.NoError(t, err, "Replay")
		assert.Equal(t, []string{"a@5", "b@1"}, got, "deliveries")
		// Waits of 1s, 2s, 4s, 4s (capped) between the five attempts on a.
		want := []time.Duration{0, time.Second, 3 * time.Second, 7 * time.Second, 11 * time.Second, 11 * time.Second}
		assert.Equal(t, want, at, "attempt times")
		s := o.Stats()
		assert.Equal(t, uint64(4), s.Failures, "Stats().Failures")
		assert.Equal(t, uint64(2), s.Delivered, "Stats().Delivered")
		require.ErrorIs(t, s.LastError, errDown, "Stats().LastError")
	})
}

// delayError is a delivery failure that asks for a delay, as a server's
// Retry-After or an open breaker does.
type delayError time.Duration

func (e delayError) Error() string             { return "retry later" }
func (e delayError) RetryAfter() time.Duration { return time.Duration(e) }

func TestOutboxReplayWaitsAtLeastTheDelayAnErrorAsksFor(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		o := openOutbox(t, t.TempDir(), OutboxOptions{Rate: rate.Inf, RetryInitial: time.Second, RetryMax: 4 * time.Second})
		enqueueAll(t, o, item("s", "a"))
		start := time.Now()
		var at []time.Duration
		err := o.Replay(context.Background(), func(_ context.Context, it Item) error {
			at = append(at, time.Since(start))
			switch it.Attempts {
			case 1:
				return delayError(30 * time.Second) // longer than the backoff: honoured
			case 2:
				return delayError(time.Millisecond) // shorter than the backoff: the backoff wins
			}
			return nil
		})
		require.NoError(t, err, "Replay")
		want := []time.Duration{0, 30 * time.Second, 32 * time.Second}
		assert.Equal(t, want, at, "attempt times")
	})
}

func TestOutboxReplayDoesNotCountABreakersRejectionsAsAttempts(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		// The receiver sits behind a breaker that an operator forced open:
		// its rejections never reach the receiver, so they must not use up
		// the item's attempts and send it to the dead letters.
		br, err := breaker.New(breaker.Settings{Name: "receiver", OpenTimeout: 10 * time.Second})
		require.NoError(t, err)
		br.ForceOpen("maintenance")
		o := openOutbox(t, t.TempDir(), OutboxOptions{Rate: rate.Inf, RetryInitial: time.Second, RetryMax: 4 * time.Second, MaxAttempts: 2})
		enqueueAll(t, o, item("s", "a"))
		start := time.Now()
		rejected := 0
		var delivered []string
		err = o.Replay(context.Background(), func(ctx context.Context, it Item) error {
			if rejected == 5 {
				br.Release()
			}
			_, err := breaker.Do(ctx, br, func(context.Context) (struct{}, error) {
				delivered = append(delivered, fmt.Sprintf("%s@%d", it.Key, it.Attempts))
				return struct{}{}, nil
			})
			if errors.Is(err, breaker.ErrOpen) {
				rejected++
			}
			return err
		})
		require.NoError(t, err, "Replay")
		assert.Equal(t, []string{"a@1"}, delivered, "deliveries that reached the receiver")
		assert.Equal(t, 5, rejected, "rejections by the breaker")
		// A forced-open breaker promises no moment (its RetryAfter is
		// zero), so each rejection waits the outbox's own backoff:
		// 1s, 2s, 4s, 4s, 4s.
		assert.Equal(t, 15*time.Second, time.Since(start), "time until delivery")
		dead, err := o.DeadLetters(context.Background())
		require.NoError(t, err, "DeadLetters")
		assert.Empty(t, dead, "dead letters")
	})
}

func TestOutboxReplayPacesDeliveries(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		o := openOutbox(t, t.TempDir(), OutboxOptions{Rate: 10, Burst: 2})
		for i := range 12 {
			enqueueAll(t, o, item("s", fmt.Sprint(i)))
		}
		start := time.Now()
		drain(t, o)
		// Two go at once, the other ten at 100ms intervals.
		assert.Equal(t, time.Second, time.Since(start), "time to deliver 12 items at 10/s with burst 2")
	})
}

func TestOutboxReplayWithASlowReceiverDeliversItemsEnqueuedMeanwhile(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		o := openOutbox(t, t.TempDir(), fast)
		enqueueAll(t, o, item("s", "k00"))
		var got []string
		done := make(chan error)
		go func() {
			done <- o.Replay(context.Background(), func(_ context.Context, it Item) error {
				time.Sleep(time.Second)
				got = append(got, it.Key)
				return nil
			})
		}()
		for i := 1; i < 10; i++ {
			time.Sleep(500 * time.Millisecond)
			enqueueAll(t, o, item("s", fmt.Sprintf("k%02d", i)))
		}
		require.NoError(t, <-done, "Replay")
		want := []string{"k00", "k01", "k02", "k03", "k04", "k05", "k06", "k07", "k08", "k09"}
		assert.Equal(t, want, got, "deliveries")
		assert.Equal(t, 0, o.Pending(), "Pending()")
	})
}

func TestOutboxReplayStopsWhenCancelled(t *testing.T) {
	t.Run("while an item is being delivered", func(t *testing.T) {
		o := openOutbox(t, t.TempDir(), fast)
		enqueueAll(t, o, item("s", "a"), item("s", "b"), item("s", "c"))
		ctx, cancel := context.WithCancel(context.Background())
		err := o.Replay(ctx, func(ctx context.Context, it Item) error {
			if it.Key == "b" {
				cancel()
				return ctx.Err()
			}
			return nil
		})
		require.ErrorIs(t, err, context.Canceled, "Replay")
		assert.Equal(t, 2, o.Pending(), "Pending() after cancel")
		assert.Equal(t, uint64(0), o.Stats().Failures, "Stats().Failures")
		assert.Equal(t, []string{"b", "c"}, drain(t, o), "delivered afterwards")
	})
	t.Run("while waiting to retry", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			o := openOutbox(t, t.TempDir(), OutboxOptions{Rate: rate.Inf, RetryInitial: time.Hour, RetryMax: time.Hour})
			enqueueAll(t, o, item("s", "a"))
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			start := time.Now()
			err := o.Replay(ctx, func(context.Context, Item) error { return errors.New("down") })
			require.ErrorIs(t, err, context.DeadlineExceeded, "Replay")
			assert.Equal(t, time.Minute, time.Since(start), "Replay returned after")
			assert.Equal(t, 1, o.Pending(), "Pending()")
		})
	})
	t.Run("while waiting for the rate limiter", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			o := openOutbox(t, t.TempDir(), OutboxOptions{Rate: rate.Every(time.Hour)})
			enqueueAll(t, o, item("s", "a"), item("s", "b"))
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			var got []string
			err := o.Replay(ctx, func(_ context.Context, it Item) error {
				got = append(got, it.Key)
				return nil
			})
			require.ErrorIs(t, err, context.DeadlineExceeded, "Replay")
			assert.Equal(t, []string{"a"}, got, "deliveries")
			assert.Equal(t, 1, o.Pending(), "Pending()")
		})
	})
}

func TestOutboxAllowsOneReplayAtATime(t *testing.T) {
	o := openOutbox(t, t.TempDir(), fast)
	enqueueAll(t, o, item("s", "a"))
	err := o.Replay(context.Background(), func(ctx context.Context, it Item) error {
		require.ErrorIs(t, o.Replay(ctx, nil), ErrReplayRunning, "nested Replay")
		assert.True(t, o.Stats().Replaying, "Stats().Replaying")
		assert.Equal(t, 1, o.Stats().InFlight, "Stats().InFlight")
		return nil
	})
	require.NoError(t, err, "Replay")
	assert.False(t, o.Stats().Replaying, "Stats().Replaying after Replay")
}

func TestOutboxDeadLetters(t *testing.T) {
	tests := []struct {
		name string
		opts OutboxOptions
		fail error
	}{
		{"a Permanent error", fast, retry.Permanent(errors.New("rejected"))},
		{"a backoff.Permanent error", fast, backoff.Permanent(errors.New("rejected"))},
		{"MaxAttempts failures", OutboxOptions{Rate: rate.Inf, MaxAttempts: 3}, errors.New("rejected")},
	}
	for _, tt := range tests {
		t.Run("are made by "+tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				dir := t.TempDir()
				o := openOutbox(t, dir, tt.opts)
				enqueueAll(t, o, item("x", "a"), item("x", "b"), item("y", "c"))
				var got []string
				deliver := func(_ context.Context, it Item) error {
					if it.Key == "b" {
						return tt.fail
					}
					got = append(got, it.Key)
					return nil
				}
				require.NoError(t, o.Replay(context.Background(), deliver), "Replay")
				assert.Equal(t, []string{"a", "c"}, got, "deliveries")
				assert.Equal(t, 0, o.Pending(), "Pending()")
				assert.Equal(t, 0, o.StreamPending("x"), "StreamPending(x)")
				s := o.Stats()
				assert.Equal(t, 1, s.Dead, "Stats().Dead")
				assert.Equal(t, uint64(1), s.DeadLettered, "Stats().DeadLettered")

				// The dead letter is kept across a restart, blocks its key,
				// and can be requeued.
				require.NoError(t, o.Close())
				o = openOutbox(t, dir, tt.opts)
				dl, err := o.DeadLetters(context.Background())
				require.NoError(t, err, "DeadLetters")
				require.Len(t, dl, 1, "DeadLetters")
				assert.Equal(t, "b", dl[0].Item.Key, "dead letter key")
				assert.Equal(t, "x", dl[0].Item.Stream, "dead letter stream")
				assert.Equal(t, "payload of b", string(dl[0].Item.Payload), "dead letter payload")
				assert.Equal(t, "rejected", dl[0].Reason, "dead letter reason")
				enqueueAll(t, o, item("x", "b"))
				assert.Equal(t, 0, o.Pending(), "Pending() after enqueuing a dead key")

				enqueueAll(t, o, item("x", "d"))
				require.NoError(t, o.Requeue("b"), "Requeue(b)")
				require.ErrorIs(t, o.Requeue("b"), ErrNoDeadLetter, "Requeue(b) again")
				require.ErrorIs(t, o.Requeue("zzz"), ErrNoDeadLetter, "Requeue(zzz)")
				assert.Equal(t, 2, o.StreamPending("x"), "StreamPending(x) after Requeue")
				dl, err = o.DeadLetters(context.Background())
				require.NoError(t, err, "DeadLetters")
				assert.Empty(t, dl, "DeadLetters after Requeue")

				require.NoError(t, o.Close())
				o = openOutbox(t, dir, tt.opts)
				assert.Equal(t, []string{"d", "b"}, drain(t, o), "deliveries after Requeue and reopening")
			})
		})
	}
}

func TestOutboxOldest(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		o := openOutbox(t, t.TempDir(), fast)
		_, ok, err := o.Oldest()
		require.NoError(t, err, "Oldest")
		assert.False(t, ok, "Oldest() of an empty outbox reports an item")
		assert.Equal(t, time.Duration(0), o.OldestAge(), "OldestAge() of an empty outbox")

		first := time.Now()
		enqueueAll(t, o, item("s", "a"))
		time.Sleep(time.Minute)
		enqueueAll(t, o, item("s", "b"))
		time.Sleep(time.Minute)
		got, ok, err := o.Oldest()
		require.NoError(t, err, "Oldest")
		assert.True(t, ok, "Oldest() reports no item")
		assert.True(t, got.Equal(first), "Oldest() = %v, want %v", got, first)
		assert.Equal(t, 2*time.Minute, o.OldestAge(), "OldestAge()")

		n := 0
		ctx, cancel := context.WithCancel(context.Background())
		_ = o.Replay(ctx, func(context.Context, Item) error {
			if n++; n == 2 {
				cancel()
				return ctx.Err()
			}
			return nil
		})
		cancel()
		assert.Equal(t, time.Minute, o.OldestAge(), "OldestAge() after delivering the first item")
	})
}

func TestOutboxCompactionDeletesDeliveredSegments(t *testing.T) {
	dir := t.TempDir()
	o := openOutbox(t, dir, OutboxOptions{Rate: rate.Inf, SegmentSize: 4096})
	for i := range 500 {
		enqueueAll(t, o, Item{Key: fmt.Sprintf("k%03d", i), Stream: "s", Payload: make([]byte, 100)})
	}
	before := o.Stats()
	require.Greater(t, before.Segments, 10, "segments after 500 items of 100 bytes")
	err := o.Replay(context.Background(), func(_ context.Context, it Item) error {
		if it.Key == "k007" || it.Key == "k123" {
			return retry.Permanent(errors.New("rejected"))
		}
		return nil
	})
	require.NoError(t, err, "Replay")
	after := o.Stats()
	assert.Less(t, after.Segments, 3, "segments after delivering everything (were %d)", before.Segments)
	assert.Less(t, after.Bytes, before.Bytes/10, "bytes after delivering everything")
	segs, err := filepath.Glob(filepath.Join(dir, "*.seg"))
	require.NoError(t, err)
	assert.Equal(t, after.Segments, len(segs), "segment files in %s", dir)

	require.NoError(t, o.Close())
	o = openOutbox(t, dir, fast)
	dl, err := o.DeadLetters(context.Background())
	require.NoError(t, err, "DeadLetters")
	var keys []string
	for _, d := range dl {
		keys = append(keys, d.Item.Key)
		assert.Len(t, d.Item.Payload, 100, "payload of dead letter %s", d.Item.Key)
	}
	assert.Equal(t, []string{"k007", "k123"}, keys, "dead letters kept through compaction")
	assert.Equal(t, 0, o.Pending(), "Pending()")
}

func TestOutboxCloseWhileBusy(t *testing.T) {
	dir := t.TempDir()
	o := openOutbox(t, dir, fast)
	enqueueAll(t, o, item("s", "first"))
	started := make(chan struct{})
	release := make(chan struct{})
	replayErr := make(chan error)
	go func() {
		replayErr <- o.Replay(context.Background(), func(_ context.Context, it Item) error {
			if it.Key == "first" {
				close(started)
				<-release
			}
			return nil
		})
	}()
	<-started
	var wg sync.WaitGroup
	var mu sync.Mutex
	var acked []string
	for p := range 4 {
		wg.Go(func() {
			for i := range 25 {
				key := fmt.Sprintf("%d-%d", p, i)
				err := o.Enqueue(context.Background(), item(fmt.Sprint(p), key))
				if err != nil {
					assert.ErrorIs(t, err, ErrClosed, "Enqueue(%s) during Close", key)
					continue
				}
				mu.Lock()
				acked = append(acked, key)
				mu.Unlock()
			}
		})
	}
	require.NoError(t, o.Close(), "Close")
	close(release)
	wg.Wait()
	require.ErrorIs(t, <-replayErr, ErrClosed, "Replay after Close")

	o = openOutbox(t, dir, fast)
	stored := keysOf(pendingItems(t, o))
	for _, k := range acked {
		assert.Contains(t, stored, k, "acknowledged item after Close and reopening")
	}
}

func TestOpenOutboxRefusesADirectoryInUse(t *testing.T) {
	dir := t.TempDir()
	o := openOutbox(t, dir, fast)
	_, err := OpenOutbox(dir, fast)
	require.ErrorIs(t, err, ErrInUse, "second OpenOutbox(%q)", dir)
	require.NoError(t, o.Close())
	o = openOutbox(t, dir, fast)
	enqueueAll(t, o, item("s", "a"))
	assert.Equal(t, 1, o.Pending(), "Pending() after reopening")
}

func TestOutboxReplayHoldsBackOnlyTheFailingStream(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		o := openOutbox(t, t.TempDir(), OutboxOptions{Rate: rate.Inf, RetryInitial: time.Second, RetryMax: time.Second})
		enqueueAll(t, o, item("x", "x1"), item("y", "y1"), item("x", "x2"), item("y", "y2"))
		start := time.Now()
		type delivery struct {
			Key string
			At  time.Duration
		}
		var got []delivery
		enqueuedLater := false
		err := o.Replay(context.Background(), func(_ context.Context, it Item) error {
			if it.Key == "x1" && it.Attempts < 3 {
				return errors.New("account x is locked")
			}
			got = append(got, delivery{it.Key, time.Since(start)})
			if it.Key == "y2" && !enqueuedLater {
				// Items enqueued while x is held back: y3 goes at once,
				// x3 waits behind x1 and x2.
				enqueuedLater = true
				go func() {
					assert.NoError(t, o.Enqueue(context.Background(), item("x", "x3")))
					assert.NoError(t, o.Enqueue(context.Background(), item("y", "y3")))
				}()
			}
			return nil
		})
		require.NoError(t, err, "Replay")
		want := []delivery{
			{"y1", 0}, {"y2", 0}, {"y3", 0},
			{"x1", 2 * time.Second}, {"x2", 2 * time.Second}, {"x3", 2 * time.Second},
		}
		assert.Equal(t, want, got, "deliveries")
		assert.Equal(t, uint64(2), o.Stats().Failures, "Stats().Failures")
	})
}

func TestOutboxDefaultOptions(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		o := openOutbox(t, t.TempDir(), OutboxOptions{})
		assert.Equal(t, OutboxOptions{
			SegmentSize:  DefaultOutboxSegmentSize,
			MaxItemSize:  DefaultOutboxMaxItemSize,
			RetryInitial: DefaultOutboxRetryInitial,
			RetryMax:     DefaultOutboxRetryMax,
			Rate:         DefaultOutboxRate,
			Burst:        1,
		}, o.opts, "resolved OutboxOptions{}")
		for i := range 101 {
			enqueueAll(t, o, item("s", fmt.Sprint(i)))
		}
		start := time.Now()
		drain(t, o)
		assert.Equal(t, time.Second, time.Since(start), "time to deliver 101 items at the default rate")
	})
}

func TestOutboxUnderConcurrentUse(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		dir := t.TempDir()
		o := openOutbox(t, dir, OutboxOptions{Rate: rate.Inf, SegmentSize: 4096, RetryInitial: time.Millisecond, RetryMax: time.Millisecond})
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		var mu sync.Mutex
		delivered := map[string]int{}
		var wg, producers sync.WaitGroup
		for p := range 4 {
			producers.Go(func() {
				for i := range 150 {
					assert.NoError(t, o.Enqueue(ctx, Item{Key: fmt.Sprintf("%d-%d", p, i), Stream: fmt.Sprint(p), Payload: make([]byte, 50)}))
				}
			})
		}
		// Replay keeps running; every 7th attempt fails for good and every
		// other 7th fails for now.
		wg.Go(func() {
			n := 0
			for ctx.Err() == nil {
				err := o.Replay(ctx, func(_ context.Context, it Item) error {
					n++
					switch n % 7 {
					case 3:
						return retry.Permanent(errors.New("rejected"))
					case 5:
						return errors.New("try again")
					}
					mu.Lock()
					delivered[it.Key]++
					mu.Unlock()
					return nil
				})
				if err != nil {
					assert.ErrorIs(t, err, context.Canceled, "Replay")
				}
				time.Sleep(time.Millisecond)
			}
		})
		// An operator keeps requeuing the dead letters.
		wg.Go(func() {
			for ctx.Err() == nil {
				dl, err := o.DeadLetters(ctx)
				if err != nil {
					assert.ErrorIs(t, err, context.Canceled, "DeadLetters")
					return
				}
				for _, d := range dl {
					assert.NoError(t, o.Requeue(d.Item.Key), "Requeue(%s)", d.Item.Key)
				}
				_, _, err = o.Oldest()
				assert.NoError(t, err, "Oldest")
				time.Sleep(time.Millisecond)
			}
		})
		producers.Wait()
		for o.Pending() > 0 || o.Stats().Dead > 0 {
			time.Sleep(10 * time.Millisecond)
		}
		cancel()
		wg.Wait()
		for p := range 4 {
			for i := range 150 {
				key := fmt.Sprintf("%d-%d", p, i)
				assert.Equal(t, 1, delivered[key], "deliveries of %s", key)
			}
		}
		require.NoError(t, o.Close())
		o = openOutbox(t, dir, fast)
		assert.Equal(t, 0, o.Pending(), "Pending() after reopening")
	})
}

func TestOutboxCompactionKeepsARequeuedDeadLetter(t *testing.T) {
	dir := t.TempDir()
	o := openOutbox(t, dir, OutboxOptions{Rate: rate.Inf, SegmentSize: 4096})
	reject := func(_ context.Context, it Item) error {
		if it.Key == "a" {
			return retry.Permanent(errors.New("rejected"))
		}
		return nil
	}
	enqueueAll(t, o, item("s", "a"))
	require.NoError(t, o.Replay(context.Background(), reject), "Replay")
	require.NoError(t, o.Requeue("a"), "Requeue(a)")
	// Dead again, now from a requeue record; then enough traffic that its
	// segment is compacted away and it is copied forward.
	require.NoError(t, o.Replay(context.Background(), reject), "Replay")
	for i := range 200 {
		enqueueAll(t, o, Item{Key: fmt.Sprint(i), Payload: make([]byte, 100)})
	}
	require.NoError(t, o.Replay(context.Background(), reject), "Replay")
	require.NoError(t, o.Close())

	o = openOutbox(t, dir, fast)
	dl, err := o.DeadLetters(context.Background())
	require.NoError(t, err, "DeadLetters")
	require.Len(t, dl, 1, "DeadLetters")
	assert.Equal(t, "a", dl[0].Item.Key, "dead letter key")
	assert.Less(t, o.Stats().Segments, 3, "Stats().Segments")
}
