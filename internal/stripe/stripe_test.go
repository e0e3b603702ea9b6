package stripe

import (
	"runtime"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
)

func TestNewRejectsCountsThatAreNotPowersOfTwo(t *testing.T) {
	for _, n := range []int{0, -1, 3, 6, 12} {
		assert.Panics(t, func() { New(n) }, "New(%d)", n)
	}
}

func TestStripesStayInRange(t *testing.T) {
	for _, n := range []int{1, 2, 8, 64} {
		p := New(n)
		var wg sync.WaitGroup
		for range 4 * runtime.GOMAXPROCS(0) {
			wg.Go(func() {
				for range 1000 {
					tok := p.Get()
					if s := tok.Stripe(); s < 0 || s >= n {
						t.Errorf("Stripe() = %d, want in [0, %d)", s, n)
					}
					p.Put(tok)
				}
			})
		}
		wg.Wait()
	}
}

func TestTokensMadeTogetherGetDifferentStripes(t *testing.T) {
	// Tokens held at the same time are made in turn and numbered in
	// order, so up to count of them never share a stripe.
	const n = 8
	p := New(n)
	held := make([]*Token, n)
	seen := map[int]bool{}
	for i := range held {
		held[i] = p.Get()
		seen[held[i].Stripe()] = true
	}
	assert.Len(t, seen, n, "distinct stripes among %d tokens held at once", n)
	for _, tok := range held {
		p.Put(tok)
	}
}

func BenchmarkGetPut(b *testing.B) {
	p := New(16)
	b.ReportAllocs()
	for b.Loop() {
		p.Put(p.Get())
	}
}

func BenchmarkGetPutParallel(b *testing.B) {
	p := New(16)
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			p.Put(p.Get())
		}
	})
}
