package retry_test

import (
	"context"
	"errors"
	"testing"
	"testing/synctest"
	"time"

	"github.com/ringfence/ringfence/breaker"
	"github.com/ringfence/ringfence/retry"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// These tests check the recommended order: retry outside, breaker inside.

func newBreaker(t *testing.T, s breaker.Settings) *breaker.Breaker {
	t.Helper()
	b, err := breaker.New(s)
	require.NoError(t, err)
	return b
}

func TestRetryAroundBreakerCountsEveryAttempt(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := newBreaker(t, breaker.Settings{Name: "inventory"})
		dep, calls := failing(2, errBoom)
		v, err := retry.Do(context.Background(), pinned, func(ctx context.Context) (int, error) {
			return breaker.Do(ctx, b, dep)
		})
		require.NoError(t, err)
		assert.Equal(t, 3, v, "Do value")
		assert.Equal(t, 3, *calls, "calls of the dependency")
		sn := b.Snapshot()
		assert.Equal(t, breaker.Closed, sn.State, "breaker state")
		assert.EqualValues(t, 3, sn.Requests, "requests the breaker counted")
		assert.EqualValues(t, 2, sn.Failures, "failures the breaker counted")
	})
}

func TestRetryStopsWhenTheBreakerOpensForLong(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := newBreaker(t, breaker.Settings{Name: "inventory", ConsecutiveFailures: 2, OpenTimeout: 30 * time.Second})
		dep, calls := failing(1000, errBoom)
		start := time.Now()
		_, err := retry.Do(context.Background(), retry.Policy{MaxAttempts: 4, Rand: fixed(0.5)},
			func(ctx context.Context) (int, error) { return breaker.Do(ctx, b, dep) })
		// Attempts at 0 and 100ms fail and open the breaker; the attempt at
		// 300ms is rejected with a wait of about 30s, more than the one
		// retry left could wait (10s), so Do gives up at once.
		assert.Equal(t, 2, *calls, "calls of the dependency")
		assert.Equal(t, 300*time.Millisecond, time.Since(start), "time spent in Do")
		require.ErrorIs(t, err, breaker.ErrOpen)
		var oe *breaker.OpenError
		require.ErrorAs(t, err, &oe)
		var re *retry.Error
		require.ErrorAs(t, err, &re)
		assert.Equal(t, 3, re.Attempts, "Error.Attempts")
	})
}

func TestRetryWaitsOutABriefOpenBreaker(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := newBreaker(t, breaker.Settings{Name: "inventory", ConsecutiveFailures: 2, OpenTimeout: 2 * time.Second})
		dep, calls := failing(2, errBoom)
		var waitedForBreaker bool
		p := retry.Policy{MaxAttempts: 5, Rand: fixed(0.5), OnRetry: func(n int, err error, wait time.Duration) {
			var oe *breaker.OpenError
			if errors.As(err, &oe) && oe.RetryAfter() > 0 {
				waitedForBreaker = true
				assert.Equal(t, oe.RetryAfter(), wait, "wait after rejection %d", n)
			}
		}}
		v, err := retry.Do(context.Background(), p, func(ctx context.Context) (int, error) {
			return breaker.Do(ctx, b, dep)
		})
		require.NoError(t, err)
		assert.Equal(t, 3, v, "Do value: the probe's result")
		assert.Equal(t, 3, *calls, "calls of the dependency")
		assert.True(t, waitedForBreaker, "Do waited for the breaker's RetryAfter")
		assert.Equal(t, breaker.Closed, b.State(), "breaker state after the probe")
	})
}
