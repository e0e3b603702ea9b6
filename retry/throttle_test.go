package retry_test

import (
	"context"
	"testing"
	"testing/synctest"
	"time"

	"github.com/ringfence/ringfence/retry"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func newThrottle(t *testing.T, s retry.ThrottleSettings) *retry.Throttle {
	t.Helper()
	th, err := retry.NewThrottle(s)
	require.NoError(t, err)
	return th
}

// feed lets n requests through th (the Rand must admit them), counting
// accepted of them as accepted by the backend.
func feed(t *testing.T, th *retry.Throttle, n, accepted int) {
	t.Helper()
	for i := range n {
		require.NoError(t, th.Allow(), "Allow() while feeding request %d", i)
		th.Record(i < accepted)
	}
}

func TestThrottleRejectProbability(t *testing.T) {
	tests := []struct {
		name     string
		k        float64
		requests int
		accepts  int
		want     float64
	}{
		{"no traffic rejects nothing", 0, 0, 0, 0},
		{"a healthy backend rejects nothing", 0, 100, 100, 0},
		{"up to K requests per accept reject nothing", 0, 100, 50, 0},
		{"beyond K requests per accept rejects the excess share", 0, 100, 25, 50.0 / 101},
		{"a dead backend rejects almost everything", 0, 100, 0, 100.0 / 101},
		{"a larger K tolerates more refusals", 4, 100, 25, 0},
		{"K of one rejects any refusal share", 1, 10, 9, 1.0 / 11},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				th := newThrottle(t, retry.ThrottleSettings{K: tt.k, Rand: fixed(0.999999)})
				feed(t, th, tt.requests, tt.accepts)
				assert.InDelta(t, tt.want, th.RejectProbability(), 1e-12,
					"RejectProbability() after %d requests and %d accepts", tt.requests, tt.accepts)
			})
		})
	}
}

func TestThrottleRejectsWithThatProbability(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := 0.0
		th := newThrottle(t, retry.ThrottleSettings{Rand: func() float64 { return r }})
		r = 0.999999
		feed(t, th, 100, 25) // p = 50/101 ≈ 0.495

		r = 0.5
		assert.NoError(t, th.Allow(), "Allow() with a draw above p")
		r = 0.49
		assert.ErrorIs(t, th.Allow(), retry.ErrThrottled, "Allow() with a draw below p")
	})
}

func TestThrottleForgetsOutsideItsWindow(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		th := newThrottle(t, retry.ThrottleSettings{Window: 2 * time.Minute, Rand: fixed(0.999999)})
		feed(t, th, 100, 0)
		require.Greater(t, th.RejectProbability(), 0.9, "RejectProbability() right after refusals")

		time.Sleep(time.Minute)
		assert.Greater(t, th.RejectProbability(), 0.9, "RejectProbability() a minute later")

		feed(t, th, 50, 50) // recovery traffic, a minute after the refusals
		assert.InDelta(t, 50.0/151, th.RejectProbability(), 1e-12, "RejectProbability() with both in the window")

		time.Sleep(time.Minute + 6*time.Second) // the first minute's bucket has left the window
		assert.Equal(t, 0.0, th.RejectProbability(), "RejectProbability() once refusals left the window")

		time.Sleep(2 * time.Minute)
		feed(t, th, 1, 0)
		assert.InDelta(t, 1.0/2, th.RejectProbability(), 1e-12, "RejectProbability() after a quiet spell")
	})
}

func TestThrottleZeroValueUsesDefaults(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var th retry.Throttle
		for range 10 {
			require.NoError(t, th.Allow())
			th.Record(true)
		}
		assert.Equal(t, 0.0, th.RejectProbability(), "RejectProbability() of a healthy zero Throttle")
	})
}

func TestNewThrottleNamesTheField(t *testing.T) {
	tests := []struct {
		name  string
		s     retry.ThrottleSettings
		field string
	}{
		{"K below one", retry.ThrottleSettings{K: 0.5}, "K"},
		{"negative K", retry.ThrottleSettings{K: -2}, "K"},
		{"a window under a second", retry.ThrottleSettings{Window: time.Millisecond}, "Window"},
		{"a negative window", retry.ThrottleSettings{Window: -time.Minute}, "Window"},
	}
	for _, tt := range tests {
		t.Run("rejects "+tt.name, func(t *testing.T) {
			th, err := retry.NewThrottle(tt.s)
			require.ErrorIs(t, err, retry.ErrInvalidSettings)
			assert.Nil(t, th, "NewThrottle(%+v) throttle", tt.s)
			assert.Contains(t, err.Error(), "ThrottleSettings."+tt.field)
		})
	}
}

func TestDoWithThrottle(t *testing.T) {
	t.Run("a rejected first attempt never calls the function", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			th := newThrottle(t, retry.ThrottleSettings{Rand: fixed(0)})
			p := retry.Policy{MaxAttempts: 1, Throttle: th}
			fn, calls := failing(1000, errBoom)
			_, err := retry.Do(context.Background(), p, fn)
			require.ErrorIs(t, err, errBoom) // one refusal in one request: p = 1/2 from now on
			_, err = retry.Do(context.Background(), p, fn)
			require.ErrorIs(t, err, retry.ErrThrottled)
			var re *retry.Error
			require.ErrorAs(t, err, &re)
			assert.Equal(t, 0, re.Attempts, "Error.Attempts of a throttled call")
			assert.Equal(t, 1, *calls, "calls of fn")
		})
	})
	t.Run("a rejected retry keeps the last error", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			th := newThrottle(t, retry.ThrottleSettings{Rand: fixed(0)})
			fn, calls := failing(1000, errBoom)
			_, err := retry.Do(context.Background(), retry.Policy{Throttle: th}, fn)
			// The first attempt sees no history; its refusal makes p = 1/2.
			assert.Equal(t, 1, *calls, "calls of fn")
			require.ErrorIs(t, err, retry.ErrThrottled)
			require.ErrorIs(t, err, errBoom)
		})
	})
	t.Run("accepted outcomes include errors that are not retried", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			th := newThrottle(t, retry.ThrottleSettings{Rand: fixed(0)})
			p := retry.Policy{Throttle: th}
			for range 20 {
				_, err := retry.Do(context.Background(), p, func(context.Context) (int, error) {
					return 0, retry.Permanent(errBoom)
				})
				require.ErrorIs(t, err, errBoom)
				require.NotErrorIs(t, err, retry.ErrThrottled)
			}
			assert.Equal(t, 0.0, th.RejectProbability(), "RejectProbability() after answered requests")
		})
	})
}
