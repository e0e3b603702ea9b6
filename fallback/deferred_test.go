package fallback

import (
	"context"
	"errors"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/time/rate"
)

// write is a request to a fake ledger.
type write struct {
	ID      string // idempotency key
	Account string // ordering scope
	Body    string
}

func writeItem(w write) (Item, error) {
	return Item{Key: w.ID, Stream: w.Account, Payload: []byte(w.Body)}, nil
}

func acceptedReceipt(w write) string { return "accepted " + w.ID }

// ledger is a fake dependency that applies writes, and can be down.
type ledger struct {
	mu      sync.Mutex
	down    bool
	calls   int
	applied map[string][]string // account -> write IDs in the order applied
}

func newLedger() *ledger { return &ledger{applied: make(map[string][]string)} }

func (l *ledger) setDown(down bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.down = down
}

func (l *ledger) apply(_ context.Context, w write) (string, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.calls++
	if l.down {
		return "", errDown
	}
	l.applied[w.Account] = append(l.applied[w.Account], w.ID)
	return "applied " + w.ID, nil
}

// deliver applies an item replayed from the outbox.
func (l *ledger) deliver(ctx context.Context, it Item) error {
	_, err := l.apply(ctx, write{ID: it.Key, Account: it.Stream, Body: string(it.Payload)})
	return err
}

func (l *ledger) state() (calls int, applied map[string][]string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	applied = make(map[string][]string, len(l.applied))
	for k, v := range l.applied {
		applied[k] = append([]string(nil), v...)
	}
	return l.calls, applied
}

func openTestOutbox(t *testing.T) *Outbox {
	t.Helper()
	o, err := OpenOutbox(t.TempDir(), OutboxOptions{Rate: rate.Inf})
	require.NoError(t, err)
	t.Cleanup(func() { assert.NoError(t, o.Close()) })
	return o
}

func newWriteChain(t *testing.T, sw *Switch, l *ledger, o *Outbox, before ...Step[write, string]) *Chain[write, string] {
	t.Helper()
	steps := append(before, Deferred("outbox", o, writeItem, acceptedReceipt))
	c, err := NewChain("post", ChainSettings{Switch: sw}, Primary("ledger", l.apply), steps...)
	require.NoError(t, err)
	return c
}

func TestDeferredAcceptsWritesWhileThePrimaryIsDown(t *testing.T) {
	l, o := newLedger(), openTestOutbox(t)
	c := newWriteChain(t, nil, l, o)
	l.setDown(true)

	got, src, err := c.Run(context.Background(), write{ID: "w1", Account: "A", Body: "+10"})
	require.NoError(t, err, "Run(w1) while the ledger is down")
	assert.Equal(t, "accepted w1", got)
	assert.Equal(t, Source{Step: "outbox", Kind: KindDeferred}, src)
	assert.Equal(t, 1, o.StreamPending("A"))

	l.setDown(false)
	require.NoError(t, o.Replay(context.Background(), l.deliver))
	_, applied := l.state()
	assert.Equal(t, []string{"w1"}, applied["A"], "writes applied once replayed")
	assert.Zero(t, o.Pending())
}

func TestDeferredInManualMode(t *testing.T) {
	l, o := newLedger(), openTestOutbox(t)
	c := newWriteChain(t, newSwitchT(t, ModeManual), l, o)
	got, src, err := c.Run(context.Background(), write{ID: "w1", Account: "A"})
	require.NoError(t, err)
	assert.Equal(t, "accepted w1", got)
	assert.Equal(t, Source{Step: "outbox", Kind: KindDeferred, Mode: ModeManual}, src)
	calls, _ := l.state()
	assert.Zero(t, calls, "calls that reached the ledger in manual mode")
	assert.Equal(t, 1, o.Pending())
}

func TestDeferredWritesDoNotOvertake(t *testing.T) {
	l, o := newLedger(), openTestOutbox(t)
	alt := newDep("alternate", nil)
	c := newWriteChain(t, nil, l, o, Alternate("replica", func(ctx context.Context, w write) (string, error) {
		return alt.call(ctx, w.ID)
	}))
	alt.set("", errAltDown)
	ctx := context.Background()

	l.setDown(true)
	_, src, err := c.Run(ctx, write{ID: "w1", Account: "A"})
	require.NoError(t, err)
	require.Equal(t, KindDeferred, src.Kind, "Run(w1) while the ledger is down")

	l.setDown(false)
	alt.set("alternate", nil)
	callsBefore, _ := l.state()
	altBefore := alt.calls.Load()
	got, src, err := c.Run(ctx, write{ID: "w2", Account: "A"})
	require.NoError(t, err)
	assert.Equal(t, "accepted w2", got)
	assert.Equal(t, KindDeferred, src.Kind, "Run(w2) on a stream with a write waiting")
	calls, _ := l.state()
	assert.Equal(t, callsBefore, calls, "calls that reached the ledger for w2")
	assert.Equal(t, altBefore, alt.calls.Load(), "calls that reached the replica for w2")

	got, src, err = c.Run(ctx, write{ID: "w3", Account: "B"})
	require.NoError(t, err)
	assert.Equal(t, "applied w3", got, "Run(w3) on another stream goes to the ledger")
	assert.Equal(t, KindPrimary, src.Kind)

	require.NoError(t, o.Replay(ctx, l.deliver))
	_, src, err = c.Run(ctx, write{ID: "w4", Account: "A"})
	require.NoError(t, err)
	assert.Equal(t, KindPrimary, src.Kind, "Run(w4) once the stream has drained")

	_, applied := l.state()
	assert.Equal(t, map[string][]string{"A": {"w1", "w2", "w4"}, "B": {"w3"}}, applied)
}

func TestDeferredInPrimaryModeRefusesToOvertake(t *testing.T) {
	l, o := newLedger(), openTestOutbox(t)
	sw := newSwitchT(t, ModeAuto)
	c := newWriteChain(t, sw, l, o)
	ctx := context.Background()

	l.setDown(true)
	_, _, err := c.Run(ctx, write{ID: "w1", Account: "A"})
	require.NoError(t, err)
	l.setDown(false)
	require.NoError(t, sw.Set(ctx, ModePrimary, "test", "diagnose"))
	callsBefore, _ := l.state()

	_, src, err := c.Run(ctx, write{ID: "w2", Account: "A"})
	require.ErrorIs(t, err, ErrStreamPending, "Run(w2) in primary mode behind a waiting write")
	assert.Equal(t, Source{Mode: ModePrimary}, src)
	calls, _ := l.state()
	assert.Equal(t, callsBefore, calls, "calls that reached the ledger")
	assert.Equal(t, 1, o.Pending(), "nothing more is enqueued in primary mode")

	_, src, err = c.Run(ctx, write{ID: "w3", Account: "B"})
	require.NoError(t, err, "Run(w3) in primary mode on a stream with nothing waiting")
	assert.Equal(t, KindPrimary, src.Kind)
}

func TestDeferredPrimaryModeNeverEnqueues(t *testing.T) {
	l, o := newLedger(), openTestOutbox(t)
	c := newWriteChain(t, newSwitchT(t, ModePrimary), l, o)
	l.setDown(true)
	_, _, err := c.Run(context.Background(), write{ID: "w1", Account: "A"})
	require.ErrorIs(t, err, errDown)
	assert.Zero(t, o.Pending())
}

func TestDeferredSameKeyIsStoredOnce(t *testing.T) {
	l, o := newLedger(), openTestOutbox(t)
	c := newWriteChain(t, nil, l, o)
	l.setDown(true)
	for range 3 {
		got, src, err := c.Run(context.Background(), write{ID: "w1", Account: "A"})
		require.NoError(t, err)
		assert.Equal(t, "accepted w1", got)
		assert.Equal(t, KindDeferred, src.Kind)
	}
	assert.Equal(t, 1, o.Pending())
}

func TestDeferredItemErrorStopsTheChain(t *testing.T) {
	errEncode := errors.New("cannot encode")
	badItem := func(w write) (Item, error) {
		if w.Body == "bad" {
			return Item{}, errEncode
		}
		return writeItem(w)
	}
	setup := func(t *testing.T) (*ledger, *Outbox, *Chain[write, string], *dep) {
		l, o := newLedger(), openTestOutbox(t)
		last := newDep("form", nil)
		c, err := NewChain("post", ChainSettings{}, Primary("ledger", l.apply),
			Deferred("outbox", o, badItem, acceptedReceipt),
			Manual("form", func(ctx context.Context, w write) (string, error) { return last.call(ctx, w.ID) }))
		require.NoError(t, err)
		return l, o, c, last
	}
	t.Run("when the deferred step builds the item", func(t *testing.T) {
		l, o, c, last := setup(t)
		l.setDown(true)
		_, _, err := c.Run(context.Background(), write{ID: "w1", Account: "A", Body: "bad"})
		require.ErrorIs(t, err, errEncode)
		require.ErrorIs(t, err, errDown)
		assert.NotErrorIs(t, err, ErrAllFailed)
		assert.Zero(t, last.calls.Load(), "later steps are not tried")
		assert.Zero(t, o.Pending())
	})
	t.Run("when the outbox holds writes and the item is built first", func(t *testing.T) {
		l, o, c, last := setup(t)
		l.setDown(true)
		_, _, err := c.Run(context.Background(), write{ID: "w1", Account: "A"})
		require.NoError(t, err)
		l.setDown(false)
		callsBefore, _ := l.state()
		_, _, err = c.Run(context.Background(), write{ID: "w2", Account: "A", Body: "bad"})
		require.ErrorIs(t, err, errEncode)
		var se *StepError
		require.ErrorAs(t, err, &se)
		assert.Equal(t, KindDeferred, se.Kind)
		calls, _ := l.state()
		assert.Equal(t, callsBefore, calls, "calls that reached the ledger")
		assert.Zero(t, last.calls.Load())
		assert.Equal(t, 1, o.Pending(), "only the first write waits")
	})
}

func TestDeferredEnqueueFailureFallsThrough(t *testing.T) {
	l, o := newLedger(), openTestOutbox(t)
	c, err := NewChain("post", ChainSettings{}, Primary("ledger", l.apply),
		Deferred[write, string]("outbox", o, writeItem, nil), Static[write]("sorry", "try later"))
	require.NoError(t, err)
	l.setDown(true)
	require.NoError(t, o.Close())

	got, src, err := c.Run(context.Background(), write{ID: "w1", Account: "A"})
	require.NoError(t, err)
	assert.Equal(t, "try later", got, "Run(w1) with a closed outbox")
	assert.Equal(t, KindStatic, src.Kind)

	c2, err := NewChain("post", ChainSettings{}, Primary("ledger", l.apply), Deferred[write, string]("outbox", o, writeItem, nil))
	require.NoError(t, err)
	_, _, err = c2.Run(context.Background(), write{ID: "w1", Account: "A"})
	require.ErrorIs(t, err, ErrClosed)
	require.ErrorIs(t, err, ErrAllFailed)
}

func TestDeferredNilAcceptedGivesZero(t *testing.T) {
	l, o := newLedger(), openTestOutbox(t)
	c, err := NewChain("post", ChainSettings{}, Primary("ledger", l.apply), Deferred[write, string]("outbox", o, writeItem, nil))
	require.NoError(t, err)
	l.setDown(true)
	got, src, err := c.Run(context.Background(), write{ID: "w1", Account: "A"})
	require.NoError(t, err)
	assert.Empty(t, got)
	assert.Equal(t, KindDeferred, src.Kind)
}

func TestNewChainRejectsBadDeferredSteps(t *testing.T) {
	l, o := newLedger(), openTestOutbox(t)
	tests := []struct {
		name  string
		steps []Step[write, string]
	}{
		{"a second deferred step", []Step[write, string]{
			Deferred[write, string]("one", o, writeItem, nil), Deferred[write, string]("two", o, writeItem, nil)}},
		{"a deferred step without an outbox", []Step[write, string]{Deferred[write, string]("outbox", nil, writeItem, nil)}},
		{"a deferred step without an item function", []Step[write, string]{Deferred[write, string]("outbox", o, nil, nil)}},
	}
	for _, tt := range tests {
		t.Run("rejects "+tt.name, func(t *testing.T) {
			c, err := NewChain("post", ChainSettings{}, Primary("ledger", l.apply), tt.steps...)
			require.Error(t, err)
			assert.Nil(t, c)
		})
	}
}
