package window

import (
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestSumCoversTheSpan(t *testing.T) {
	// A 10s window in 5 buckets of 2s: a count stays visible for at least
	// 8s and at most 10s after it was added.
	tests := []struct {
		name  string
		after time.Duration
		want  uint64
	}{
		{"a count is visible at once", 0, 3},
		{"a count is visible one bucket later", 2*time.Second + time.Millisecond, 3},
		{"a count is visible span minus one bucket later", 8*time.Second - time.Millisecond, 3},
		{"a count is gone one span later", 10*time.Second + time.Millisecond, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				w := New(10*time.Second, 5, 2)
				w.Add(0, 3)
				w.Add(1, 1)
				time.Sleep(tt.after)
				assert.Equal(t, tt.want, w.Sum(0), "Sum(0) after %v", tt.after)
			})
		})
	}
}

func TestCountsRollOutBucketByBucket(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		w := New(4*time.Second, 4, 1) // buckets of 1s, folded at 1s, 2s, ...
		// One count in each of four consecutive buckets: at 0s, then
		// half-way through the next three buckets.
		w.Add(0, 1)
		time.Sleep(500 * time.Millisecond)
		for range 3 {
			time.Sleep(time.Second)
			w.Add(0, 1)
		}
		assert.Equal(t, uint64(4), w.Sum(0), "Sum(0) at 3.5s")
		// The fold at 4s pushes out the bucket that held the count of 0s.
		time.Sleep(time.Second)
		assert.Equal(t, uint64(3), w.Sum(0), "Sum(0) at 4.5s")
		time.Sleep(time.Second)
		assert.Equal(t, uint64(2), w.Sum(0), "Sum(0) at 5.5s")
		time.Sleep(2 * time.Second)
		assert.Equal(t, uint64(0), w.Sum(0), "Sum(0) at 7.5s")
	})
}

func TestSingleBucketIsAFixedWindow(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		w := New(time.Second, 1, 1)
		assert.Equal(t, time.Second, w.Bucket(), "Bucket()")
		w.Add(0, 5)
		time.Sleep(999 * time.Millisecond)
		assert.Equal(t, uint64(5), w.Sum(0), "Sum(0) before the bucket ends")
		time.Sleep(2 * time.Millisecond)
		assert.Equal(t, uint64(0), w.Sum(0), "Sum(0) after the bucket ends")
	})
}

func TestTimerStopsWhenIdleAndRestarts(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		w := New(3*time.Second, 3, 1)
		require.Equal(t, uint32(0), w.ticking.Load(), "a new window must not tick")
		w.Add(0, 1)
		assert.Equal(t, uint32(1), w.ticking.Load(), "ticking after Add")
		time.Sleep(3*time.Second + time.Millisecond)
		synctest.Wait()
		assert.Equal(t, uint32(0), w.ticking.Load(), "ticking after an idle span")
		assert.Equal(t, uint64(0), w.Sum(0), "Sum(0) after an idle span")

		w.Add(0, 2)
		assert.Equal(t, uint32(1), w.ticking.Load(), "ticking after a new Add")
		time.Sleep(time.Second)
		synctest.Wait() // the fold due now runs on the timer's goroutine
		assert.Equal(t, uint64(2), w.Sum(0), "Sum(0) one bucket after the new Add")
	})
}

func TestBubbleEndsWithCountsLeft(t *testing.T) {
	// The test returns while the window still holds counts and its timer
	// is armed; the bubble must still end (the timer runs out the span).
	synctest.Test(t, func(t *testing.T) {
		w := New(time.Minute, 10, 1)
		w.Add(0, 1)
		assert.Equal(t, uint64(1), w.Sum(0), "Sum(0)")
	})
}

func TestReset(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		w := New(4*time.Second, 4, 2)
		w.Add(0, 1)
		time.Sleep(time.Second)
		// The fold is due at this very instant, on the timer's goroutine:
		// let it finish, so that Reset does not race it.
		synctest.Wait()
		w.Add(1, 2)
		w.Reset()
		assert.Equal(t, uint64(0), w.Sum(0), "Sum(0) after Reset")
		assert.Equal(t, uint64(0), w.Sum(1), "Sum(1) after Reset")
	})
}

func TestConcurrentAddsAreAllCounted(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		w := New(time.Minute, 6, 3)
		const goroutines, adds = 16, 1000
		var wg sync.WaitGroup
		for g := range goroutines {
			wg.Go(func() {
				for range adds {
					w.Add(g%3, 1)
				}
			})
		}
		wg.Wait()
		var total uint64
		for c := range 3 {
			total += w.Sum(c)
		}
		assert.Equal(t, uint64(goroutines*adds), total, "total of Sum(c) after concurrent adds")
	})
}

func TestConcurrentAddsAcrossTicks(t *testing.T) {
	// Adds and folds race; no count may be lost while it is inside the span.
	synctest.Test(t, func(t *testing.T) {
		w := New(time.Hour, 60, 1)
		var wg sync.WaitGroup
		for range 8 {
			wg.Go(func() {
				for range 100 {
					w.Add(0, 1)
					time.Sleep(10 * time.Second)
				}
			})
		}
		wg.Wait()
		// The first adds were made 990s ago, well inside the hour.
		assert.Equal(t, uint64(800), w.Sum(0), "Sum(0)")
	})
}

func TestStripeCount(t *testing.T) {
	tests := []struct{ procs, want int }{
		{1, 8}, {2, 16}, {3, 32}, {4, 32}, {8, 64}, {64, 64},
	}
	for _, tt := range tests {
		if got := stripeCount(tt.procs); got != tt.want {
			t.Errorf("stripeCount(%d) = %d, want %d", tt.procs, got, tt.want)
		}
	}
}

func TestNewRejectsBadArguments(t *testing.T) {
	tests := []struct {
		name              string
		span              time.Duration
		buckets, counters int
	}{
		{"no counters", time.Second, 1, 0},
		{"too many counters", time.Second, 1, MaxCounters + 1},
		{"no buckets", time.Second, 0, 1},
		{"a span shorter than its buckets", 3, 4, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			assert.Panics(t, func() { New(tt.span, tt.buckets, tt.counters) }, "New(%v, %d, %d)", tt.span, tt.buckets, tt.counters)
		})
	}
}
