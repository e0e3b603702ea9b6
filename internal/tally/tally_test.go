package tally

import (
	"runtime"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/stretchr/testify/assert"

	"github.com/ringfence/ringfence/internal/stripe"
)

func TestSumAddsEveryStripe(t *testing.T) {
	c := New()
	const goroutines, adds = 8, 1000
	var wg sync.WaitGroup
	for range goroutines {
		wg.Go(func() {
			for range adds {
				c.Add(0, 1)
				c.Add(Max-1, 2)
			}
		})
	}
	wg.Wait()
	assert.Equal(t, uint64(goroutines*adds), c.Sum(0), "Sum(0)")
	assert.Equal(t, uint64(0), c.Sum(1), "Sum(1)")
	assert.Equal(t, uint64(2*goroutines*adds), c.Sum(Max-1), "Sum(Max-1)")
}

func TestStripesArePowersOfTwo(t *testing.T) {
	for procs, want := range map[int]int{1: 4, 2: 8, 3: 16, 8: 32, 64: 32} {
		if got := stripes(procs); got != want {
			t.Errorf("stripes(%d) = %d, want %d", procs, got, want)
		}
	}
}

func BenchmarkAdd(b *testing.B) {
	c := New()
	b.ReportAllocs()
	for b.Loop() {
		c.Add(0, 1)
	}
}

func BenchmarkAddParallel(b *testing.B) {
	c := New()
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			c.Add(0, 1)
		}
	})
}

// BenchmarkAtomicAddParallel is the yardstick: one shared atomic counter.
func BenchmarkAtomicAddParallel(b *testing.B) {
	var n atomicCounter
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			n.v.Add(1)
		}
	})
}

type atomicCounter struct{ v atomic.Uint64 }

func TestGoroutinesSpreadOverStripes(t *testing.T) {
	c := New()
	const goroutines = 64
	seen := make(chan uint64, goroutines)
	var ready, wg sync.WaitGroup
	ready.Add(goroutines)
	hold := make(chan struct{})
	for range goroutines {
		wg.Go(func() {
			seen <- c.stripe()
			ready.Done()
			<-hold // keep the stacks alive until every goroutine has one
		})
	}
	ready.Wait()
	close(hold)
	wg.Wait()
	close(seen)
	used := map[uint64]bool{}
	for s := range seen {
		if s >= uint64(len(c.lines)) {
			t.Fatalf("stripe() = %d, want below %d", s, len(c.lines))
		}
		used[s] = true
	}
	// 64 goroutines over at most 32 stripes: hashing at random would
	// leave about a tenth of them unused; half is far out.
	assert.GreaterOrEqual(t, len(used), len(c.lines)/2, "stripes used by %d goroutines", goroutines)
}

// pooled is Counters striped through internal/stripe's per-processor
// token pool, as internal/window is: the yardstick for the stack hash.
type pooled struct {
	lines  []line
	picker *stripe.Picker
}

func (t *pooled) Add(c int, delta uint64) {
	tok := t.picker.Get()
	t.lines[tok.Stripe()].n[c].Add(delta)
	t.picker.Put(tok)
}

func newPooled() *pooled {
	n := stripes(runtime.GOMAXPROCS(0))
	return &pooled{lines: make([]line, n), picker: stripe.New(n)}
}

func BenchmarkPooledAdd(b *testing.B) {
	c := newPooled()
	b.ReportAllocs()
	for b.Loop() {
		c.Add(0, 1)
	}
}

func BenchmarkPooledAddParallel(b *testing.B) {
	c := newPooled()
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			c.Add(0, 1)
		}
	})
}
