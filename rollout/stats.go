package rollout

import (
	"math/bits"
	"runtime"
	"sync/atomic"
	"time"

	"github.com/ringfence/ringfence/internal/stripe"
)

// histBuckets is the number of latency buckets: four per power of two from
// 4ns up to 2^40ns (about 18 minutes); longer latencies land in the last.
const (
	histMaxBits = 40
	histBuckets = 4*(histMaxBits-2) + 4
)

// histIndex returns the latency bucket of d: values below 4ns have a
// bucket each, and each power of two above is cut into four.
func histIndex(d time.Duration) int {
	if d <= 0 {
		return 0
	}
	ns := uint64(d)
	b := bits.Len64(ns)
	if b <= 2 {
		return int(ns)
	}
	if b > histMaxBits {
		return histBuckets - 1
	}
	sub := (ns >> (b - 3)) & 3
	return 4*(b-2) + int(sub)
}

// histUpper returns the largest latency that falls in bucket i.
func histUpper(i int) time.Duration {
	if i < 4 {
		return time.Duration(i)
	}
	b := i/4 + 2
	sub := uint64(i % 4)
	return time.Duration((5+sub)<<(b-3) - 1)
}

// cacheLine is the assumed size of a cache line.
const cacheLine = 64

// counts is one variant's counters in one shard. Its size is a whole
// number of cache lines, so neighbouring counts never share one.
type counts struct {
	samples atomic.Uint64
	errors  atomic.Uint64
	_       [cacheLine - 16]byte
	hist    [histBuckets]atomic.Uint64
	_       [(cacheLine - histBuckets*8%cacheLine) % cacheLine]byte
}

// shard is one stripe of a stage's counters, both variants.
type shard struct {
	v [2]counts
}

// stats are the counters of one stage; a new stage gets a new stats. The
// counters are striped over shards, and each goroutine adds to the shard of
// the processor it runs on (see internal/stripe), so goroutines on
// different processors do not write the same cache line. Readers sum the
// shards.
type stats struct {
	shards []shard        // len is a power of two
	picker *stripe.Picker // hands each processor its shard
}

// newStats returns zeroed stats with a shard count fitted to GOMAXPROCS.
func newStats() *stats {
	n := shardCount(runtime.GOMAXPROCS(0))
	return &stats{shards: make([]shard, n), picker: stripe.New(n)}
}

// shardCount picks how many shards a stage's counters get for procs
// processors: a few per processor, so that shard numbers handed out again
// after a garbage collection empties the picker's pool rarely meet, few
// enough that a reader summing them stays cheap, and a power of two, as
// the picker needs.
func shardCount(procs int) int {
	n := min(max(4*procs, 4), 32)
	return 1 << bits.Len(uint(n-1))
}

func (s *stats) observe(v Variant, failed bool, latency time.Duration) {
	t := s.picker.Get()
	c := &s.shards[t.Stripe()].v[v&1]
	c.samples.Add(1)
	if failed {
		c.errors.Add(1)
	}
	c.hist[histIndex(latency)].Add(1)
	s.picker.Put(t)
}

// add adds samples and errors of variant v without latencies, as when a
// stored record is resumed.
func (s *stats) add(v Variant, samples, errors uint64) {
	c := &s.shards[0].v[v&1]
	c.samples.Add(samples)
	c.errors.Add(errors)
}

// counts returns the samples and errors of variant v summed over the
// shards.
func (s *stats) counts(v Variant) (samples, errors uint64) {
	for i := range s.shards {
		c := &s.shards[i].v[v&1]
		samples += c.samples.Load()
		errors += c.errors.Load()
	}
	return samples, errors
}

// snapshot is a point-in-time reading of one variant's counters.
type snapshot struct {
	samples, errors uint64
	p99             time.Duration
}

// read returns variant v's counters summed over the shards. It is not an
// atomic snapshot: observations that race with it may be counted in some
// figures and not yet in others.
func (s *stats) read(v Variant) snapshot {
	var out snapshot
	var hist [histBuckets]uint64
	var total uint64
	for i := range s.shards {
		c := &s.shards[i].v[v&1]
		n := c.samples.Load()
		out.samples += n
		out.errors += c.errors.Load()
		if n == 0 {
			// Observe counts the sample before its latency, so a shard
			// without samples has an empty histogram (or one that races
			// with this read, which may miss it anyway); most shards are
			// unused when few goroutines observe.
			continue
		}
		for j := range hist {
			hist[j] += c.hist[j].Load()
		}
	}
	for _, n := range hist {
		total += n
	}
	if total == 0 {
		return out
	}
	// The p99 is the upper bound of the bucket holding the observation of
	// rank ceil(0.99*total).
	rank := (total*99 + 99) / 100
	var cum uint64
	for i, n := range hist {
		cum += n
		if cum >= rank {
			out.p99 = histUpper(i)
			break
		}
	}
	return out
}
