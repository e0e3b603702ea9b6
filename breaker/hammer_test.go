package breaker

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestHammer sends 64 goroutines through one breaker while the dependency
// fails for a while and recovers. The breaker must trip, shield the
// dependency, recover, and report its changes as one unbroken chain.
func TestHammer(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var mu sync.Mutex
		var changes []State // from, to, from, to, ...
		b := mustNew(t, Settings{
			Name: "hammer", Window: 2 * time.Second, MinRequests: 20,
			ConsecutiveFailures: 5, OpenTimeout: 500 * time.Millisecond,
			MaxOpenTimeout: 2 * time.Second, HalfOpenRequests: 2, Ramp: time.Second,
			OnChange: func(c Change) {
				from, to := c.From, c.To
				mu.Lock()
				changes = append(changes, from, to)
				mu.Unlock()
			},
		})

		start := time.Now()
		const failFrom, failUntil, stop = time.Second, 4 * time.Second, 10 * time.Second
		failing := func() bool {
			d := time.Since(start)
			return d >= failFrom && d < failUntil
		}
		var reachedWhileFailing, calls, rejected atomic.Int64
		dependency := func(context.Context) (int, error) {
			calls.Add(1)
			down := failing()
			time.Sleep(10 * time.Millisecond)
			if down {
				reachedWhileFailing.Add(1)
				return 0, errDown
			}
			return 1, nil
		}

		var wg sync.WaitGroup
		errs := make(chan error, 64)
		for range 64 {
			wg.Go(func() {
				for time.Since(start) < stop {
					_, err := Do(context.Background(), b, dependency)
					switch {
					case err == nil, errors.Is(err, errDown):
					case errors.Is(err, ErrOpen):
						rejected.Add(1)
						time.Sleep(10 * time.Millisecond)
					default:
						errs <- err
						return
					}
				}
			})
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Errorf("Do() = %v, want nil, errDown or ErrOpen", err)
		}

		t.Logf("%d calls made, %d rejected, %d reached the failing dependency",
			calls.Load(), rejected.Load(), reachedWhileFailing.Load())
		assert.Equal(t, Closed, b.State(), "State() after recovery")
		assert.False(t, b.Snapshot().Ramping, "Snapshot().Ramping after recovery")
		assert.Positive(t, rejected.Load(), "rejected calls")
		// Unguarded, 64 callers would have sent 64*300 calls into the
		// 3s outage. The breaker lets through the calls in flight when it
		// trips and two probes per open wait.
		assert.Less(t, reachedWhileFailing.Load(), int64(300), "calls that reached the failing dependency (of %d)", calls.Load())

		mu.Lock()
		defer mu.Unlock()
		t.Logf("state changes: %v", changes)
		require.GreaterOrEqual(t, len(changes), 6, "state changes %v", changes)
		assert.Equal(t, []State{Closed, Open}, changes[:2], "first change")
		for i := 2; i < len(changes); i += 2 {
			assert.Equal(t, changes[i-1], changes[i], "change %d starts where change %d ended: %v", i/2, i/2-1, changes)
		}
		assert.Equal(t, Closed, changes[len(changes)-1], "last change ends in")
		assert.Contains(t, changes, HalfOpen, "changes")
	})
}
