package retry_test

import (
	"context"
	"testing"
	"time"

	"github.com/ringfence/ringfence/breaker"
	"github.com/ringfence/ringfence/retry"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// The failure paths allocate the *Error they return, and nothing else.
func TestFailurePathsAllocateOnlyTheError(t *testing.T) {
	ctx := context.Background()
	b := newBreaker(t, breaker.Settings{ConsecutiveFailures: 1, OpenTimeout: time.Hour})
	_, _ = breaker.Do(ctx, b, func(context.Context) (int, error) { return 0, errBoom })
	require.Equal(t, breaker.Open, b.State(), "State() after a failure")
	guarded := func(ctx context.Context) (int, error) {
		return breaker.Do(ctx, b, func(context.Context) (int, error) { return 1, nil })
	}
	allocs := testing.AllocsPerRun(100, func() { _, _ = retry.Do(ctx, retry.Policy{}, guarded) })
	assert.LessOrEqual(t, allocs, 1.0, "allocations of retry.Do over an open breaker")

	fail := func(context.Context) (int, error) { return 0, errBoom }
	allocs = testing.AllocsPerRun(100, func() { _, _ = retry.Do(ctx, retry.Policy{MaxAttempts: 1}, fail) })
	assert.LessOrEqual(t, allocs, 1.0, "allocations of retry.Do over a failing function")

	final := func(context.Context) (int, error) { return 0, retry.Permanent(errBoom) }
	allocs = testing.AllocsPerRun(100, func() { _, _ = retry.Do(ctx, retry.Policy{}, final) })
	assert.LessOrEqual(t, allocs, 2.0, "allocations of retry.Do over a permanent error (the wrapper and the *Error)")
}
