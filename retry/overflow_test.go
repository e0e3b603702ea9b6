package retry_test

import (
	"context"
	"math"
	"testing"
	"testing/synctest"
	"time"

	"github.com/ringfence/ringfence/retry"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// With very many attempts left, the remaining retries could wait longer than
// a Duration can hold; a short requested delay must still be honoured.
func TestDoHonoursRetryAfterWithVeryManyAttempts(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		fn, calls := failing(1, &delayErr{time.Second})
		start := time.Now()
		v, err := retry.Do(context.Background(), retry.Policy{MaxAttempts: 1_000_000_000, Rand: fixed(0.5)}, fn)
		require.NoError(t, err, "Do with MaxAttempts 1e9")
		assert.Equal(t, 2, v, "Do value")
		assert.Equal(t, 2, *calls, "calls of fn")
		assert.Equal(t, time.Second, time.Since(start), "time spent in Do")
	})
}

// A wait at or near the largest Duration must stay there, not wrap around
// to no wait at all.
func TestDoWaitDoesNotOverflow(t *testing.T) {
	tests := []struct {
		name string
		r    float64
	}{
		{"without jitter", 0.5},
		{"with jitter upwards", 0.99},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			var waits []time.Duration
			p := retry.Policy{
				MaxAttempts:     2,
				InitialInterval: math.MaxInt64,
				MaxInterval:     math.MaxInt64,
				Rand:            fixed(tt.r),
				OnRetry: func(_ int, _ error, wait time.Duration) {
					waits = append(waits, wait)
					cancel() // do not actually wait
				},
			}
			fn, _ := failing(1, errBoom)
			_, err := retry.Do(ctx, p, fn)
			require.ErrorIs(t, err, context.Canceled)
			assert.Equal(t, []time.Duration{math.MaxInt64}, waits, "waits passed to OnRetry")
		})
	}
}

// A Rand that breaks its contract by returning NaN must not make a wait
// negative: the draw counts as 0, the shortest jittered wait.
func TestDoWaitWithNaNRandIsNotNegative(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var waits []time.Duration
	p := retry.Policy{
		MaxAttempts: 2,
		Rand:        fixed(math.NaN()),
		OnRetry: func(_ int, _ error, wait time.Duration) {
			waits = append(waits, wait)
			cancel()
		},
	}
	fn, _ := failing(1, errBoom)
	_, err := retry.Do(ctx, p, fn)
	require.ErrorIs(t, err, context.Canceled)
	assert.Equal(t, []time.Duration{50 * time.Millisecond}, waits, "waits passed to OnRetry")
}
