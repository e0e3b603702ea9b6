package retry_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"testing/synctest"
	"time"

	"github.com/cenkalti/backoff/v4"
	"github.com/ringfence/ringfence/retry"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

var errBoom = errors.New("boom")

// fixed returns a Rand that always yields r.
func fixed(r float64) func() float64 { return func() float64 { return r } }

// failing returns a function that fails its first n calls with err and then
// returns the number of the call, and a pointer to the call count.
func failing(n int, err error) (func(context.Context) (int, error), *int) {
	calls := 0
	return func(context.Context) (int, error) {
		calls++
		if calls <= n {
			return 0, err
		}
		return calls, nil
	}, &calls
}

// delayErr is an error that asks for a delay, as a breaker's open error does.
type delayErr struct{ d time.Duration }

func (e *delayErr) Error() string             { return "busy" }
func (e *delayErr) RetryAfter() time.Duration { return e.d }

func TestDoCountsAttempts(t *testing.T) {
	tests := []struct {
		name        string
		maxAttempts int
		failures    int
		wantCalls   int
		wantErr     bool
	}{
		{"zero MaxAttempts means three attempts", 0, 10, 3, true},
		{"one attempt means no retry", 1, 10, 1, true},
		{"five attempts are all used", 5, 10, 5, true},
		{"success on the second attempt stops retrying", 3, 1, 2, false},
		{"success on the last attempt is returned", 4, 3, 4, false},
		{"first-attempt success makes one call", 3, 0, 1, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				fn, calls := failing(tt.failures, errBoom)
				p := retry.Policy{MaxAttempts: tt.maxAttempts}
				v, err := retry.Do(context.Background(), p, fn)
				assert.Equal(t, tt.wantCalls, *calls, "calls of fn")
				if !tt.wantErr {
					require.NoError(t, err)
					assert.Equal(t, tt.wantCalls, v, "Do value")
					return
				}
				require.ErrorIs(t, err, errBoom)
				var re *retry.Error
				require.ErrorAs(t, err, &re)
				assert.Equal(t, tt.wantCalls, re.Attempts, "Error.Attempts")
			})
		})
	}
}

func TestDoWaitsExactBackoffWithPinnedJitter(t *testing.T) {
	ms := time.Millisecond
	tests := []struct {
		name  string
		p     retry.Policy
		waits []time.Duration
	}{
		{"midpoint jitter waits the plain exponential intervals",
			retry.Policy{Rand: fixed(0.5)},
			[]time.Duration{100 * ms, 200 * ms, 400 * ms, 800 * ms}},
		{"lowest jitter waits half of each interval",
			retry.Policy{Rand: fixed(0)},
			[]time.Duration{50 * ms, 100 * ms, 200 * ms, 400 * ms}},
		{"highest jitter waits one and a half intervals",
			retry.Policy{Rand: fixed(1)},
			[]time.Duration{150 * ms, 300 * ms, 600 * ms, 1200 * ms}},
		{"MaxInterval caps the interval",
			retry.Policy{Rand: fixed(0.5), MaxInterval: 300 * ms},
			[]time.Duration{100 * ms, 200 * ms, 300 * ms, 300 * ms}},
		{"MaxInterval caps the jittered wait too",
			retry.Policy{Rand: fixed(1), MaxInterval: 400 * ms},
			[]time.Duration{150 * ms, 300 * ms, 400 * ms, 400 * ms}},
		{"custom interval, multiplier and jitter combine",
			retry.Policy{Rand: fixed(0.25), InitialInterval: time.Second, Multiplier: 3, Jitter: 0.2},
			[]time.Duration{900 * ms, 2700 * ms, 8100 * ms, 9 * time.Second}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				var seen, slept []time.Duration
				last := time.Now()
				fn := func(context.Context) (int, error) {
					slept = append(slept, time.Since(last))
					last = time.Now()
					return 0, errBoom
				}
				p := tt.p
				p.MaxAttempts = len(tt.waits) + 1
				p.OnRetry = func(_ int, _ error, wait time.Duration) { seen = append(seen, wait) }
				_, err := retry.Do(context.Background(), p, fn)
				require.ErrorIs(t, err, errBoom)
				assert.Equal(t, tt.waits, seen, "waits passed to OnRetry")
				assert.Equal(t, tt.waits, slept[1:], "time between attempts")
			})
		})
	}
}

func TestDoJitterStaysInsideItsBounds(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		p := retry.Policy{MaxAttempts: 6, MaxInterval: time.Hour}
		for range 200 {
			attempt := 0
			p.OnRetry = func(n int, _ error, wait time.Duration) {
				attempt = n
				interval := 100 * time.Millisecond << (n - 1)
				lo, hi := interval/2, interval*3/2
				if wait < lo || wait > hi {
					t.Errorf("wait after attempt %d = %v, want in [%v, %v]", n, wait, lo, hi)
				}
			}
			_, err := retry.Do(context.Background(), p, func(context.Context) (int, error) { return 0, errBoom })
			require.ErrorIs(t, err, errBoom)
			assert.Equal(t, 5, attempt, "last retried attempt")
		}
	})
}

func TestDoStopsBeforeTheDeadline(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 250*time.Millisecond)
		defer cancel()
		fn, calls := failing(10, errBoom)
		start := time.Now()
		_, err := retry.Do(ctx, retry.Policy{MaxAttempts: 10, Rand: fixed(0.5)}, fn)
		// Attempts at 0 and 100ms; the next wait (200ms) would end past 250ms.
		assert.Equal(t, 2, *calls, "calls of fn")
		assert.Equal(t, 100*time.Millisecond, time.Since(start), "time spent in Do")
		require.ErrorIs(t, err, errBoom)
		require.ErrorIs(t, err, context.DeadlineExceeded)
		assert.NoError(t, ctx.Err(), "Do returned before the deadline")
	})
}

func TestDoReturnsWhenCanceledDuringAWait(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		time.AfterFunc(30*time.Millisecond, cancel)
		fn, calls := failing(10, errBoom)
		start := time.Now()
		_, err := retry.Do(ctx, retry.Policy{Rand: fixed(0.5)}, fn)
		assert.Equal(t, 1, *calls, "calls of fn")
		assert.Equal(t, 30*time.Millisecond, time.Since(start), "time spent in Do")
		require.ErrorIs(t, err, context.Canceled)
		require.ErrorIs(t, err, errBoom)
	})
}

func TestDoHonoursMaxElapsed(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		fn, calls := failing(10, errBoom)
		p := retry.Policy{MaxAttempts: 10, MaxElapsed: 250 * time.Millisecond, Rand: fixed(0.5)}
		_, err := retry.Do(context.Background(), p, fn)
		// Attempts at 0 and 100ms; a third would start at 300ms.
		assert.Equal(t, 2, *calls, "calls of fn")
		require.ErrorIs(t, err, errBoom)
	})
}

func TestDoHonoursRetryAfterFromErrors(t *testing.T) {
	tests := []struct {
		name      string
		delay     time.Duration
		timeout   time.Duration
		wantCalls int
		wantWait  time.Duration
		deadline  bool
	}{
		{"a delay longer than the backoff sets the wait", 2 * time.Second, 0, 2, 2 * time.Second, false},
		{"a delay shorter than the backoff leaves the backoff", 10 * time.Millisecond, 0, 2, 100 * time.Millisecond, false},
		{"a negative delay is ignored", -time.Second, 0, 2, 100 * time.Millisecond, false},
		{"a delay longer than the remaining retries could wait is not retried", 21 * time.Second, 0, 1, 0, false},
		{"a delay past the deadline is not retried", 3 * time.Second, 2 * time.Second, 1, 0, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				ctx := context.Background()
				if tt.timeout > 0 {
					var cancel context.CancelFunc
					ctx, cancel = context.WithTimeout(ctx, tt.timeout)
					defer cancel()
				}
				busy := &delayErr{tt.delay}
				fn, calls := failing(1, busy)
				start := time.Now()
				_, err := retry.Do(ctx, retry.Policy{Rand: fixed(0.5)}, fn)
				assert.Equal(t, tt.wantCalls, *calls, "calls of fn")
				assert.Equal(t, tt.wantWait, time.Since(start), "time spent in Do")
				if tt.wantCalls == 2 {
					require.NoError(t, err)
					return
				}
				var got *delayErr
				require.ErrorAs(t, err, &got)
				assert.Equal(t, tt.deadline, errors.Is(err, context.DeadlineExceeded), "errors.Is(err, context.DeadlineExceeded)")
			})
		})
	}
}

func TestDoDoesNotRetryFinalErrors(t *testing.T) {
	tests := []struct {
		name string
		err  error
		p    retry.Policy
	}{
		{"a Permanent error", retry.Permanent(errBoom), retry.Policy{}},
		{"a wrapped Permanent error", fmt.Errorf("get: %w", retry.Permanent(errBoom)), retry.Policy{}},
		{"a backoff Permanent error", backoff.Permanent(errBoom), retry.Policy{}},
		{"context.Canceled", fmt.Errorf("%w: %w", errBoom, context.Canceled), retry.Policy{}},
		{"an error IsRetryable rejects", errBoom, retry.Policy{IsRetryable: func(err error) bool { return !errors.Is(err, errBoom) }}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				fn, calls := failing(10, tt.err)
				_, err := retry.Do(context.Background(), tt.p, fn)
				assert.Equal(t, 1, *calls, "calls of fn")
				require.ErrorIs(t, err, errBoom)
				var re *retry.Error
				require.ErrorAs(t, err, &re)
				assert.Equal(t, 1, re.Attempts, "Error.Attempts")
			})
		})
	}
}

func TestPermanentIsTransparent(t *testing.T) {
	assert.NoError(t, retry.Permanent(nil), "Permanent(nil)")
	err := retry.Permanent(&delayErr{time.Second})
	var d *delayErr
	require.ErrorAs(t, err, &d)
	assert.Equal(t, "busy", err.Error(), "Permanent(err).Error()")
}

func TestIsPermanent(t *testing.T) {
	tests := []struct {
		name string
		err  error
		want bool
	}{
		{"nil", nil, false},
		{"a plain error", errBoom, false},
		{"Permanent", retry.Permanent(errBoom), true},
		{"Permanent wrapped again", fmt.Errorf("deliver: %w", retry.Permanent(errBoom)), true},
		{"backoff.Permanent", backoff.Permanent(errBoom), true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := retry.IsPermanent(tt.err); got != tt.want {
				t.Errorf("IsPermanent(%v) = %v, want %v", tt.err, got, tt.want)
			}
		})
	}
}

func TestDoReportsRetriesToOnRetry(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var attempts []int
		fn, _ := failing(3, errBoom)
		p := retry.Policy{MaxAttempts: 5, OnRetry: func(n int, err error, _ time.Duration) {
			assert.ErrorIs(t, err, errBoom)
			attempts = append(attempts, n)
		}}
		v, err := retry.Do(context.Background(), p, fn)
		require.NoError(t, err)
		assert.Equal(t, 4, v, "Do value")
		assert.Equal(t, []int{1, 2, 3}, attempts, "attempt numbers passed to OnRetry")
	})
}

func TestValidateNamesTheField(t *testing.T) {
	tests := []struct {
		field string
		p     retry.Policy
	}{
		{"MaxAttempts", retry.Policy{MaxAttempts: -1}},
		{"InitialInterval", retry.Policy{InitialInterval: -time.Second}},
		{"MaxInterval", retry.Policy{MaxInterval: -time.Second}},
		{"MaxInterval", retry.Policy{MaxInterval: 50 * time.Millisecond}},
		{"Multiplier", retry.Policy{Multiplier: 0.5}},
		{"Jitter", retry.Policy{Jitter: 1.5}},
		{"Jitter", retry.Policy{Jitter: -0.1}},
		{"MaxElapsed", retry.Policy{MaxElapsed: -time.Second}},
	}
	for _, tt := range tests {
		t.Run("rejects a bad "+tt.field, func(t *testing.T) {
			err := tt.p.Validate()
			require.ErrorIs(t, err, retry.ErrInvalidSettings)
			assert.Contains(t, err.Error(), "Policy."+tt.field)
			called := false
			_, derr := retry.Do(context.Background(), tt.p, func(context.Context) (int, error) {
				called = true
				return 0, nil
			})
			assert.Equal(t, err, derr, "Do with an invalid Policy")
			assert.False(t, called, "Do called fn with an invalid Policy")
		})
	}
	t.Run("accepts the zero Policy", func(t *testing.T) {
		assert.NoError(t, retry.Policy{}.Validate())
	})
}

func TestDoStopsWhenTheBudgetIsSpent(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b, err := retry.NewBudget(0.1, 2) // one retry while full
		require.NoError(t, err)
		p := retry.Policy{Budget: b}
		fn, calls := failing(10, errBoom)
		_, err = retry.Do(context.Background(), p, fn)
		assert.Equal(t, 2, *calls, "calls of fn")
		require.ErrorIs(t, err, retry.ErrBudgetExhausted)
		require.ErrorIs(t, err, errBoom)
	})
}

func TestDoDoesNotAllocateWhenTheFirstAttemptSucceeds(t *testing.T) {
	ctx := context.Background()
	p := retry.Policy{Budget: new(retry.Budget)}
	fn := func(context.Context) (int, error) { return 1, nil }
	allocs := testing.AllocsPerRun(100, func() {
		if _, err := retry.Do(ctx, p, fn); err != nil {
			t.Fatal(err)
		}
	})
	assert.Equal(t, 0.0, allocs, "allocations per Do")
}
