package rollout

import (
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
)

func TestHistogramBucketsCoverEveryLatency(t *testing.T) {
	prev := -1
	for _, d := range []time.Duration{0, 1, 2, 3, 4, 5, 7, 8, 100, time.Microsecond, time.Millisecond, time.Second, time.Minute, time.Hour} {
		i := histIndex(d)
		if i < prev || i >= histBuckets {
			t.Fatalf("histIndex(%v) = %d, want in [%d, %d)", d, i, prev, histBuckets)
		}
		prev = i
		if d < 1<<histMaxBits && histUpper(i) < d {
			t.Errorf("histUpper(histIndex(%v)) = %v, want >= %v", d, histUpper(i), d)
		}
		if i > 0 && d < 1<<histMaxBits && histUpper(i-1) >= d {
			t.Errorf("histUpper(histIndex(%v)-1) = %v, want < %v", d, histUpper(i-1), d)
		}
	}
	assert.Equal(t, histBuckets-1, histIndex(48*time.Hour), "histIndex of a latency beyond the last bucket")
}

func TestP99IsWithinABucketOfTheTruth(t *testing.T) {
	var s stats
	for i := 1; i <= 1000; i++ {
		s.observe(Canary, false, time.Duration(i)*time.Millisecond)
	}
	p99 := s.v[Canary].read().p99
	// The true p99 is 990ms; buckets are at most 25% wide.
	if p99 < 990*time.Millisecond || p99 > 1250*time.Millisecond {
		t.Errorf("p99 = %v, want in [990ms, 1.25s]", p99)
	}
}

func TestObserveAllocatesNothing(t *testing.T) {
	r := rolloutAt(t, Plan{}, 10_000)
	err := errors.New("boom")
	if n := testing.AllocsPerRun(100, func() { r.Observe(Canary, err, time.Millisecond) }); n != 0 {
		t.Errorf("Observe allocs = %v, want 0", n)
	}
	r.Observe(Variant(7), nil, 0)
	v := r.Status().Verdict
	assert.Equal(t, uint64(101), v.Canary.Samples+v.Baseline.Samples, "samples; an unknown variant is ignored")
}
