package retry_test

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"

	"github.com/ringfence/ringfence/retry"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestBudgetArithmetic(t *testing.T) {
	t.Run("a full budget of 10 tokens allows 5 retries", func(t *testing.T) {
		b, err := retry.NewBudget(0.1, 10)
		require.NoError(t, err)
		allowed := 0
		for range 100 {
			if b.AllowRetry() {
				allowed++
			}
		}
		assert.Equal(t, 5, allowed, "retries allowed from a full budget")
		assert.Equal(t, 5.0, b.Tokens(), "Tokens() after draining")
	})
	t.Run("ten successes at ratio 0.1 pay for one more retry", func(t *testing.T) {
		b, err := retry.NewBudget(0.1, 10)
		require.NoError(t, err)
		for b.AllowRetry() {
		}
		b.RecordSuccess() // 5.1 tokens: above half again
		assert.True(t, b.AllowRetry(), "AllowRetry() after one success lifts the budget above half")
		for range 9 {
			b.RecordSuccess()
		}
		assert.InDelta(t, 5.0, b.Tokens(), 1e-9, "Tokens() after 9 more successes")
		assert.False(t, b.AllowRetry(), "AllowRetry() at exactly half")
		b.RecordSuccess()
		assert.True(t, b.AllowRetry(), "AllowRetry() after the tenth success")
		assert.False(t, b.AllowRetry(), "AllowRetry() after spending the earned token")
	})
	t.Run("deposits stop at the maximum", func(t *testing.T) {
		b, err := retry.NewBudget(0.5, 4)
		require.NoError(t, err)
		for range 100 {
			b.RecordSuccess()
		}
		assert.Equal(t, 4.0, b.Tokens(), "Tokens() after many successes")
	})
	t.Run("the zero Budget uses the defaults", func(t *testing.T) {
		var b retry.Budget
		assert.Equal(t, float64(retry.DefaultBudgetMax), b.Tokens(), "Tokens() of the zero Budget")
		allowed := 0
		for b.AllowRetry() {
			allowed++
		}
		assert.Equal(t, retry.DefaultBudgetMax/2, allowed, "retries allowed by the zero Budget")
	})
}

func TestNewBudgetNamesTheArgument(t *testing.T) {
	tests := []struct {
		name      string
		ratio     float64
		maxTokens int
		arg       string
	}{
		{"ratio above one", 1.5, 10, "ratio"},
		{"negative ratio", -0.1, 10, "ratio"},
		{"ratio too small to count", 1e-9, 10, "ratio"},
		{"negative maxTokens", 0.1, -1, "maxTokens"},
		{"huge maxTokens", 0.1, 2_000_000, "maxTokens"},
	}
	for _, tt := range tests {
		t.Run("rejects "+tt.name, func(t *testing.T) {
			b, err := retry.NewBudget(tt.ratio, tt.maxTokens)
			require.ErrorIs(t, err, retry.ErrInvalidSettings)
			assert.Nil(t, b, "NewBudget(%v, %v) budget", tt.ratio, tt.maxTokens)
			assert.Contains(t, err.Error(), tt.arg)
		})
	}
}

// outage runs calls calls through Do with a 3-attempt policy, where fail
// decides whether each attempt fails, and returns the number of retries.
func outage(t *testing.T, b *retry.Budget, calls int, fail func(call, attempt int) bool) (retries, successes int) {
	t.Helper()
	p := retry.Policy{MaxAttempts: 3, Budget: b, Rand: fixed(0.5)}
	for call := range calls {
		attempt := 0
		_, err := retry.Do(context.Background(), p, func(context.Context) (int, error) {
			attempt++
			if attempt > 1 {
				retries++
			}
			if fail(call, attempt) {
				return 0, errBoom
			}
			return 0, nil
		})
		if err == nil {
			successes++
		}
	}
	return retries, successes
}

func TestBudgetBoundsRetriesInATotalOutage(t *testing.T) {
	const calls = 10_000
	const ratio = 0.1
	const maxTokens = 10
	allFail := func(int, int) bool { return true }
	synctest.Test(t, func(t *testing.T) {
		naive, _ := outage(t, nil, calls, allFail)
		assert.Equal(t, 2*calls, naive, "retries of a naive 3-attempt policy")

		b, err := retry.NewBudget(ratio, maxTokens)
		require.NoError(t, err)
		retries, _ := outage(t, b, calls, allFail)
		bound := int(ratio*calls) + maxTokens/2 + 1
		assert.LessOrEqual(t, retries, bound, "retries with a budget, want <= ratio*calls + max/2 + 1")
		// No call succeeds, so only the initial half-bucket is ever spent.
		assert.Equal(t, maxTokens/2, retries, "retries with a budget in a total outage")
	})
}

func TestBudgetUnderPartialFailure(t *testing.T) {
	const calls = 10_000
	const ratio = 0.1
	const maxTokens = 10
	tests := []struct {
		name       string
		every      int // every n-th call fails its first attempt
		allRetried bool
	}{
		{"five percent failing are all retried", 20, true},
		{"half failing are capped by the budget", 2, false},
		{"every call failing once is capped by the budget", 1, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				b, err := retry.NewBudget(ratio, maxTokens)
				require.NoError(t, err)
				fail := func(call, attempt int) bool { return attempt == 1 && call%tt.every == 0 }
				retries, successes := outage(t, b, calls, fail)
				failing := calls / tt.every
				bound := int(ratio*float64(successes)) + maxTokens/2 + 1
				assert.LessOrEqual(t, retries, bound, "retries, want <= ratio*successes + max/2 + 1")
				if tt.allRetried {
					assert.Equal(t, failing, retries, "retries when the budget suffices")
					assert.Equal(t, calls, successes, "successes when the budget suffices")
				} else {
					// The budget is used to the full: within one token of its bound.
					assert.GreaterOrEqual(t, retries, bound-2, "retries when the budget is short")
				}
			})
		})
	}
}

func TestBudgetIsSafeForConcurrentUse(t *testing.T) {
	b, err := retry.NewBudget(0.1, 100)
	require.NoError(t, err)
	var allowed atomic.Int64
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for range 1000 {
				if b.AllowRetry() {
					allowed.Add(1)
				}
			}
		})
	}
	wg.Wait()
	assert.Equal(t, int64(50), allowed.Load(), "retries allowed by concurrent callers")

	for range 8 {
		wg.Go(func() {
			for range 1000 {
				b.RecordSuccess()
			}
		})
	}
	wg.Wait()
	assert.Equal(t, 100.0, b.Tokens(), "Tokens() after concurrent successes")
}
