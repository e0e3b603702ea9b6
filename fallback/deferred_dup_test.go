package fallback

import (
	"bytes"
	"context"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// dupQueue is shaped like an Outbox whose Enqueue reports ErrDuplicate for
// a different item under a key it already holds, as Outbox.ErrDuplicate
// documents. It stands in for the Outbox in the unit test of the chain's
// handling of that error; TestDeferredDuplicateKeyWithARealOutbox checks
// the same handling against the Outbox itself.
type dupQueue struct {
	mu    sync.Mutex
	items map[string]Item
}

func (q *dupQueue) Enqueue(_ context.Context, it Item) error {
	q.mu.Lock()
	defer q.mu.Unlock()
	if old, ok := q.items[it.Key]; ok {
		if old.Stream != it.Stream || !bytes.Equal(old.Payload, it.Payload) {
			return ErrDuplicate
		}
		return nil
	}
	q.items[it.Key] = it
	return nil
}

func (q *dupQueue) Pending() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return len(q.items)
}

func (q *dupQueue) StreamPending(stream string) int {
	q.mu.Lock()
	defer q.mu.Unlock()
	n := 0
	for _, it := range q.items {
		if it.Stream == stream {
			n++
		}
	}
	return n
}

// checkDuplicateHandling runs the chain's part of the duplicate-key story
// against q: v1 is deferred, a retry of v1 is accepted again, and v2 under
// the same key is reported as not stored.
func checkDuplicateHandling(t *testing.T, q outboxQueue) {
	t.Helper()
	l := newLedger()
	l.setDown(true)
	c, err := NewChain("put blob", ChainSettings{}, Primary("storage", l.apply),
		deferredStep("outbox", q, writeItem, acceptedReceipt),
		Static[write]("sorry", "try later"))
	require.NoError(t, err)
	ctx := context.Background()

	for range 2 {
		got, src, err := c.Run(ctx, write{ID: "x", Account: "blobs", Body: "v1"})
		require.NoError(t, err, "Run(x=v1)")
		assert.Equal(t, "accepted x", got)
		assert.Equal(t, KindDeferred, src.Kind, "Run(x=v1), a retry of the same write")
	}

	got, src, err := c.Run(ctx, write{ID: "x", Account: "blobs", Body: "v2"})
	require.ErrorIs(t, err, ErrDuplicate, "Run(x=v2) while x=v1 is pending")
	require.ErrorIs(t, err, ErrStreamPending, "Run(x=v2) queues behind x=v1 on its stream")
	assert.NotErrorIs(t, err, ErrAllFailed)
	var se *StepError
	require.ErrorAs(t, err, &se)
	assert.Empty(t, got)
	assert.Equal(t, Source{}, src, "Run(x=v2) must not report the write deferred")

	_, src, err = c.Run(ctx, write{ID: "x", Account: "other", Body: "v1"})
	require.ErrorIs(t, err, ErrDuplicate, "Run(x on another stream) while x is pending")
	require.ErrorIs(t, err, errDown, "Run(x on another stream) keeps the primary's error")
	assert.Equal(t, Source{}, src)
	assert.Equal(t, 1, q.Pending(), "items held")
}

func TestDeferredReportsADifferentWriteWithTheSameKey(t *testing.T) {
	checkDuplicateHandling(t, &dupQueue{items: map[string]Item{}})
}

func TestDeferredDuplicateKeyWithARealOutbox(t *testing.T) {
	o := openTestOutbox(t)
	probe := openTestOutbox(t)
	require.NoError(t, probe.Enqueue(context.Background(), Item{Key: "k", Payload: []byte("a")}))
	if err := probe.Enqueue(context.Background(), Item{Key: "k", Payload: []byte("b")}); err == nil {
		t.Skip("Outbox.Enqueue does not report ErrDuplicate yet")
	}
	checkDuplicateHandling(t, o)
}
