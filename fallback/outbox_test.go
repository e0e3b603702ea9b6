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
	"time"

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
			return Permanent(errors.New("rejected"))
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
