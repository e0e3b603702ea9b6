package rollout

import (
	"errors"
	"sync"
	"testing"
	"time"
	"unsafe"

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
	s := newStats(10_000)
	for i := 1; i <= 1000; i++ {
		s.observe(Canary, KeyBuckets, false, time.Duration(i)*time.Millisecond)
	}
	var a ArmEvidence
	s.read(Canary, &a)
	p99 := figures(&a).P99
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

func TestObserveCountsExactlyFromManyGoroutines(t *testing.T) {
	r := rolloutAt(t, Plan{}, 10_000)
	const goroutines, calls = 16, 1000
	var wg sync.WaitGroup
	for g := range goroutines {
		wg.Go(func() {
			for i := range calls {
				var err error
				if i%10 == 0 {
					err = errors.New("boom")
				}
				r.Observe(Variant(g&1), err, time.Duration(i)*time.Millisecond)
			}
		})
	}
	wg.Wait()
	v := r.Status().Verdict
	for _, c := range []struct {
		name      string
		got, want uint64
	}{
		{"baseline samples", v.Baseline.Samples, goroutines / 2 * calls},
		{"baseline errors", v.Baseline.Errors, goroutines / 2 * calls / 10},
		{"canary samples", v.Canary.Samples, goroutines / 2 * calls},
		{"canary errors", v.Canary.Errors, goroutines / 2 * calls / 10},
	} {
		assert.Equal(t, c.want, c.got, "Status().Verdict %s after concurrent Observe", c.name)
	}
	// The latencies are 0..999ms in every goroutine, so the p99 is 990ms
	// give or take a bucket, wherever the observations landed.
	if p99 := v.Canary.P99; p99 < 990*time.Millisecond || p99 > 1250*time.Millisecond {
		t.Errorf("Status().Verdict.Canary.P99 = %v, want in [990ms, 1.25s]", p99)
	}
	s := r.stats.Load()
	var hist uint64
	for i := range s.shards {
		for j := range histBuckets {
			hist += s.shards[i].v[Canary].hist[j].Load()
		}
	}
	assert.Equal(t, uint64(goroutines/2*calls), hist, "canary latencies in the histogram")
}

func TestShardsFillWholeCacheLines(t *testing.T) {
	if size := unsafe.Sizeof(counts{}); size%cacheLine != 0 {
		t.Errorf("Sizeof(counts{}) = %d, want a multiple of %d", size, cacheLine)
	}
	for _, procs := range []int{1, 2, 3, 4, 8, 64, 1024} {
		n := shardCount(procs)
		if n < 1 || n&(n-1) != 0 || n > 32 {
			t.Errorf("shardCount(%d) = %d, want a power of two in [1, 32]", procs, n)
		}
	}
}
