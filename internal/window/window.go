// Package window counts events over a rolling span of time without locks.
//
// A [Window] keeps up to [MaxCounters] counters (requests, failures, slow
// calls, ...) over its span. The span is cut into buckets: the current
// bucket collects new counts, and each bucket period the current bucket is
// folded into a ring of completed buckets, pushing the oldest one out. A sum
// therefore covers between span-bucket and span of history.
//
// # Hot path
//
// [Window.Add] is one atomic add and one atomic load; it reads no clock and
// takes no lock. The current bucket is striped across several cache lines,
// and each goroutine adds to the stripe of the processor it runs on (see
// internal/stripe), so goroutines running on different processors do not
// write the same cache line. Sums read every stripe and every completed bucket; they are meant
// for the rarer decisions (a failure, a snapshot), not for every call.
//
// # Ticking
//
// Buckets are advanced by a timer ([time.AfterFunc]), not by reading the
// clock on each Add. The timer is armed by the first Add on an idle window,
// re-arms itself every bucket period, and stops itself once the whole window
// holds only zeros. So a window that is not counting owns no timer and no
// goroutine, and a dropped window becomes garbage at most one span after its
// last Add. Inside a testing/synctest bubble the timer runs on the bubble's
// fake clock; a bubble whose windows still hold counts when its test returns
// lets the timers run out the span (instantly, on the fake clock) and ends.
//
// # Precision
//
// Sums are not atomic snapshots: a Sum that runs while the bucket is being
// folded may briefly miss the bucket being folded, and two Sums of different
// counters may see different moments. An Add that races with the fold lands
// in the next bucket. These errors are bounded by one bucket's counts and
// last only for the fold itself.
package window

import (
	"math/bits"
	"runtime"
	"sync/atomic"
	"time"

	"github.com/ringfence/ringfence/internal/stripe"
)

// MaxCounters is the most counters one Window can keep.
const MaxCounters = 8

// cacheLine is the assumed size of a cache line; each stripe fills one.
const cacheLine = 64

// line is one cache line of counters for the current bucket.
type line struct {
	n [MaxCounters]atomic.Uint64
}

// Window counts events over a rolling span of time. The zero value is not
// usable; create one with [New]. A Window is safe for concurrent use.
type Window struct {
	_       [cacheLine]byte
	stripes []line         // current bucket, len is a power of two
	picker  *stripe.Picker // hands each processor its stripe
	_       [cacheLine]byte
	ticking atomic.Uint32 // 1 while the bucket timer is armed
	_       [cacheLine - 4]byte

	counters int
	bucket   time.Duration
	// ring holds the completed buckets, counters values per bucket, oldest
	// overwritten first. It is written only by the timer callback (and
	// Reset), and read by sums.
	ring []atomic.Uint64
	// next is the ring slot the next fold overwrites. It is touched only
	// by the timer callback, which never runs twice at once.
	next int
}

// New returns a window that keeps counters counters over span, cut into
// buckets buckets. counters must be in [1, MaxCounters], buckets at least 1
// and span at least one nanosecond per bucket; New panics otherwise, since
// its callers validate their settings first.
func New(span time.Duration, buckets, counters int) *Window {
	if counters < 1 || counters > MaxCounters || buckets < 1 || span < time.Duration(buckets) {
		panic("window: invalid arguments")
	}
	n := stripeCount(runtime.GOMAXPROCS(0))
	return &Window{
		stripes:  make([]line, n),
		picker:   stripe.New(n),
		counters: counters,
		bucket:   span / time.Duration(buckets),
		ring:     make([]atomic.Uint64, (buckets-1)*counters),
	}
}

// stripeCount picks how many stripes the current bucket gets for procs
// processors: several per processor, so that stripe numbers handed out
// again after a garbage collection empties the picker's pool rarely meet
// on one line, and a power of two, as the picker needs.
func stripeCount(procs int) int {
	n := 8 * procs
	n = min(max(n, 8), 64)
	return 1 << bits.Len(uint(n-1))
}

// Bucket returns the length of one bucket.
func (w *Window) Bucket() time.Duration { return w.bucket }

// Add adds delta to counter c, which must be in [0, counters). It arms the
// bucket timer if the window was idle.
func (w *Window) Add(c int, delta uint64) {
	t := w.picker.Get()
	w.stripes[t.Stripe()].n[c].Add(delta)
	w.picker.Put(t)
	if w.ticking.Load() == 0 {
		w.arm()
	}
}

// arm starts the bucket timer unless another goroutine did first.
func (w *Window) arm() {
	if w.ticking.CompareAndSwap(0, 1) {
		time.AfterFunc(w.bucket, w.tick)
	}
}

// tick folds the current bucket into the ring, then re-arms the timer, or
// stops ticking if the window holds nothing.
func (w *Window) tick() {
	w.fold()
	if !w.empty() {
		time.AfterFunc(w.bucket, w.tick)
		return
	}
	w.ticking.Store(0)
	// An Add that ran between the emptiness check and the store above saw
	// ticking set and did not arm; it is visible now, so check again.
	if !w.empty() && w.ticking.CompareAndSwap(0, 1) {
		time.AfterFunc(w.bucket, w.tick)
	}
}

// fold moves the current bucket into the ring slot of the oldest completed
// bucket. With a single bucket, it just clears the current one.
func (w *Window) fold() {
	for c := range w.counters {
		var v uint64
		for i := range w.stripes {
			v += w.stripes[i].n[c].Swap(0)
		}
		if len(w.ring) > 0 {
			w.ring[w.next*w.counters+c].Store(v)
		}
	}
	if len(w.ring) > 0 {
		w.next = (w.next + 1) % (len(w.ring) / w.counters)
	}
}

// empty reports whether every counter of every bucket is zero.
func (w *Window) empty() bool {
	for i := range w.ring {
		if w.ring[i].Load() != 0 {
			return false
		}
	}
	for i := range w.stripes {
		for c := range w.counters {
			if w.stripes[i].n[c].Load() != 0 {
				return false
			}
		}
	}
	return true
}

// Sum returns counter c summed over the window.
func (w *Window) Sum(c int) uint64 {
	var v uint64
	for i := range w.stripes {
		v += w.stripes[i].n[c].Load()
	}
	for i := c; i < len(w.ring); i += w.counters {
		v += w.ring[i].Load()
	}
	return v
}

// Reset sets every counter of every bucket to zero. Adds that race with
// Reset may survive it. A ticking window keeps ticking until its next tick
// finds it empty.
func (w *Window) Reset() {
	for i := range w.ring {
		w.ring[i].Store(0)
	}
	for i := range w.stripes {
		for c := range w.counters {
			w.stripes[i].n[c].Store(0)
		}
	}
}
