package retry_test

import (
	"context"
	"net/http"
	"testing"
	"testing/synctest"
	"time"

	"github.com/ringfence/ringfence/breaker"
	"github.com/ringfence/ringfence/retry"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// forcedErr is a rejection an operator ordered, with a delay estimate.
type forcedErr struct{}

func (forcedErr) Error() string             { return "forced" }
func (forcedErr) Forced() bool              { return true }
func (forcedErr) RetryAfter() time.Duration { return time.Second }

func TestDoStopsAtOnceOnAForcedError(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		calls := 0
		start := time.Now()
		_, err := retry.Do(context.Background(), pinned, func(context.Context) (int, error) {
			calls++
			return 0, forcedErr{}
		})
		require.ErrorIs(t, err, forcedErr{}, "Do error")
		assert.Equal(t, 1, calls, "attempts on a forced error")
		assert.Zero(t, time.Since(start), "time spent in Do")
	})
}

func TestRetryStopsAtOnceOnAForcedOpenBreaker(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := newBreaker(t, breaker.Settings{Name: "inventory", OpenTimeout: time.Second})
		b.ForceOpen("incident")
		dep, calls := failing(0, nil)
		start := time.Now()
		_, err := retry.Do(context.Background(), pinned, func(ctx context.Context) (int, error) {
			return breaker.Do(ctx, b, dep)
		})
		require.ErrorIs(t, err, breaker.ErrOpen, "Do error")
		var re *retry.Error
		require.ErrorAs(t, err, &re, "Do error")
		assert.Equal(t, 1, re.Attempts, "Error.Attempts on a forced-open breaker")
		assert.Zero(t, *calls, "calls of the dependency")
		assert.Zero(t, time.Since(start), "time spent in Do")
	})
}

func TestTransportStopsAtOnceOnAForcedOpenBreaker(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := &fakeBackend{steps: statuses(200)}
		g := newGroup(t, breaker.Settings{Name: "api", OpenTimeout: time.Second})
		g.Get("backend").ForceOpen("incident")
		rt := retry.Transport(breaker.Transport(f, g, breaker.TransportOptions{}), pinned)
		req, err := http.NewRequest(http.MethodGet, "http://backend/items", nil)
		require.NoError(t, err)
		start := time.Now()
		_, err = rt.RoundTrip(req)
		require.ErrorIs(t, err, breaker.ErrOpen, "RoundTrip error")
		var re *retry.Error
		require.ErrorAs(t, err, &re, "RoundTrip error")
		assert.Equal(t, 1, re.Attempts, "Error.Attempts on a forced-open breaker")
		assert.Zero(t, time.Since(start), "time spent in RoundTrip")
		calls, _ := f.counts()
		assert.Zero(t, calls, "calls to the backend")
	})
}
