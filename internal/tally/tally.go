// Package tally keeps cumulative counters that every call adds to and
// that a metrics reader sums now and then.
//
// A [Counters] holds up to [Max] counters, striped across cache lines the
// way internal/window stripes its current bucket (see internal/stripe), so
// that goroutines on different processors rarely write the same line. An
// Add is one atomic add on the caller's stripe; a Sum reads every stripe
// and is meant for collection, not for the call path. Counts only grow.
package tally

import (
	"math/bits"
	"runtime"
	"sync/atomic"

	"github.com/ringfence/ringfence/internal/stripe"
)

// Max is the most counters one Counters can keep.
const Max = 8

// line is one cache line of counters.
type line struct {
	n [Max]atomic.Uint64
}

// Counters is a set of cumulative counters. The zero value is not usable;
// create one with [New]. Counters is safe for concurrent use.
type Counters struct {
	lines  []line
	picker *stripe.Picker
}

// New returns zeroed counters, striped for the current GOMAXPROCS.
func New() *Counters {
	n := stripes(runtime.GOMAXPROCS(0))
	return &Counters{lines: make([]line, n), picker: stripe.New(n)}
}

// stripes returns a power of two, a few per processor, at most 32: enough
// that stripe numbers handed out again after a garbage collection rarely
// meet on one line, and small enough that many counters stay cheap.
func stripes(procs int) int {
	n := min(max(4*procs, 4), 32)
	return 1 << bits.Len(uint(n-1))
}

// Add adds delta to counter c, which must be in [0, Max).
func (t *Counters) Add(c int, delta uint64) {
	tok := t.picker.Get()
	t.lines[tok.Stripe()].n[c].Add(delta)
	t.picker.Put(tok)
}

// Sum returns the total of counter c, which must be in [0, Max). Adds
// that race with it may or may not be included.
func (t *Counters) Sum(c int) uint64 {
	var v uint64
	for i := range t.lines {
		v += t.lines[i].n[c].Load()
	}
	return v
}
