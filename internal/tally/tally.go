// Package tally keeps cumulative counters that every call adds to and
// that a metrics reader sums now and then.
//
// A [Counters] holds up to [Max] counters, striped across cache lines so
// that goroutines running at the same time rarely write the same line. An
// Add is one atomic add on the caller's stripe; a Sum reads every stripe
// and is meant for collection, not for the call path. Counts only grow.
//
// The stripe follows the goroutine, not the processor: it is a hash of
// the address of the caller's stack, which differs between goroutines
// that live at the same time. That costs a nanosecond, where picking the
// processor's stripe through a pool (internal/stripe, as internal/window
// does) costs tens; a goroutine that moves between processors keeps its
// stripe, and two goroutines share one only by chance.
package tally

import (
	"math/bits"
	"runtime"
	"sync/atomic"
	"unsafe"
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
	lines []line
	shift uint // 64 - log2(len(lines))
}

// New returns zeroed counters, striped for the current GOMAXPROCS.
func New() *Counters {
	n := stripes(runtime.GOMAXPROCS(0))
	return &Counters{lines: make([]line, n), shift: uint(64 - bits.TrailingZeros(uint(n)))}
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
	t.lines[t.stripe()].n[c].Add(delta)
}

// stripe returns the calling goroutine's stripe: a Fibonacci hash of its
// stack address above the smallest stack size (2 KiB), so that goroutines
// whose stacks differ land on stripes that differ too. The address is
// never dereferenced, and the local does not escape.
func (t *Counters) stripe() uint64 {
	var local byte
	return (uint64(uintptr(unsafe.Pointer(&local))>>11) * 0x9E3779B97F4A7C15) >> t.shift
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
