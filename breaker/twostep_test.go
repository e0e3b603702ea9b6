package breaker

import (
	"context"
	"errors"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestAllowCountsLikeDo(t *testing.T) {
	errExcused := errors.New("excused")
	cases := []struct {
		name       string
		err        error
		cancel     bool
		wantFails  uint64
		wantCalls  uint64
		wantConsec uint64
	}{
		{name: "a nil error counts as a success", err: nil, wantCalls: 1},
		{name: "an error counts as a failure", err: errDown, wantCalls: 1, wantFails: 1, wantConsec: 1},
		{name: "an error IsFailure excuses counts as a success", err: errExcused, wantCalls: 1},
		{name: "context.Canceled is not counted", err: context.Canceled},
		{name: "any error under a canceled context is not counted", err: errDown, cancel: true},
		{name: "context.DeadlineExceeded counts as a failure", err: context.DeadlineExceeded, wantCalls: 1, wantFails: 1, wantConsec: 1},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			b := mustNew(t, Settings{IsFailure: func(err error) bool { return err != errExcused }})
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			p, err := b.Allow(ctx)
			require.NoError(t, err, "Allow")
			if c.cancel {
				cancel()
			}
			p.Done(ctx, c.err)
			sn := b.Snapshot()
			assert.Equal(t, c.wantCalls, sn.Requests, "Snapshot().Requests")
			assert.Equal(t, c.wantFails, sn.Failures, "Snapshot().Failures")
			assert.Equal(t, c.wantConsec, sn.ConsecutiveFailures, "Snapshot().ConsecutiveFailures")
		})
	}
}

func TestAllowTripsAndRejects(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := mustNew(t, Settings{ConsecutiveFailures: 3, OpenTimeout: time.Second})
		ctx := context.Background()
		for range 3 {
			p, err := b.Allow(ctx)
			require.NoError(t, err, "Allow while closed")
			p.Done(ctx, errDown)
		}
		require.Equal(t, Open, b.State(), "State() after 3 failures")

		p, err := b.Allow(ctx)
		var oe *OpenError
		require.ErrorAs(t, err, &oe, "Allow while open")
		assert.Equal(t, Permit{}, p, "Allow while open returns the zero Permit")
		p.Done(ctx, nil) // does nothing
		assert.Equal(t, Open, b.State(), "State() after Done on the zero Permit")

		time.Sleep(time.Second)
		synctest.Wait()
		probe, err := b.Allow(ctx)
		require.NoError(t, err, "Allow after the open wait")
		_, err = b.Allow(ctx)
		require.ErrorIs(t, err, ErrOpen, "second Allow while the only probe is out")
		probe.Done(ctx, nil)
		assert.Equal(t, Closed, b.State(), "State() after the probe succeeded")
	})
}

func TestAllowWithDoneContext(t *testing.T) {
	b := mustNew(t, Settings{})
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	p, err := b.Allow(ctx)
	require.ErrorIs(t, err, context.Canceled, "Allow with a canceled context")
	assert.Equal(t, Permit{}, p, "Allow with a canceled context returns the zero Permit")
}

func TestDoneCountsSlowCalls(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := mustNew(t, Settings{SlowCall: time.Second})
		ctx := context.Background()
		p, err := b.Allow(ctx)
		require.NoError(t, err, "Allow")
		time.Sleep(time.Second)
		p.Done(ctx, nil)
		sn := b.Snapshot()
		assert.Equal(t, uint64(1), sn.SlowCalls, "Snapshot().SlowCalls")
		assert.Equal(t, uint64(1), sn.Failures, "Snapshot().Failures")
	})
}

func TestDoneWhenIsFailurePanics(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := mustNew(t, Settings{OpenTimeout: time.Second, IsFailure: func(error) bool { panic("judge") }})
		ctx := context.Background()
		b.ForceOpen("test")
		b.Release()
		for range 5 {
			p, err := b.Allow(ctx)
			require.NoError(t, err, "Allow")
			assert.Panics(t, func() { p.Done(ctx, errDown) }, "Done with a panicking IsFailure")
		}
		assert.Equal(t, Open, b.State(), "State() after 5 panicking judgements")
	})
}

func TestAllowAllocatesNothing(t *testing.T) {
	b := mustNew(t, Settings{})
	ctx := context.Background()
	allocs := testing.AllocsPerRun(100, func() {
		p, _ := b.Allow(ctx)
		p.Done(ctx, nil)
	})
	assert.Zero(t, allocs, "Allow and Done allocations while closed")
	b.ForceOpen("test")
	allocs = testing.AllocsPerRun(100, func() {
		p, _ := b.Allow(ctx)
		p.Done(ctx, nil)
	})
	assert.Zero(t, allocs, "Allow allocations while open")
}
