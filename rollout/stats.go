package rollout

import (
	"math/bits"
	"sync/atomic"
	"time"
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

// counts is one variant's counters for one stage. It fills whole cache
// lines so the two variants do not share one.
type counts struct {
	samples atomic.Uint64
	errors  atomic.Uint64
	_       [48]byte
	hist    [histBuckets]atomic.Uint64
}

// stats are the counters of one stage; a new stage gets a new stats.
type stats struct {
	v [2]counts
}

func (s *stats) observe(v Variant, failed bool, latency time.Duration) {
	c := &s.v[v&1]
	c.samples.Add(1)
	if failed {
		c.errors.Add(1)
	}
	c.hist[histIndex(latency)].Add(1)
}

// snapshot is a point-in-time reading of one variant's counters.
type snapshot struct {
	samples, errors uint64
	p99             time.Duration
}

func (c *counts) read() snapshot {
	s := snapshot{samples: c.samples.Load(), errors: c.errors.Load()}
	var hist [histBuckets]uint64
	var total uint64
	for i := range hist {
		hist[i] = c.hist[i].Load()
		total += hist[i]
	}
	if total == 0 {
		return s
	}
	// The p99 is the upper bound of the bucket holding the observation of
	// rank ceil(0.99*total).
	rank := (total*99 + 99) / 100
	var cum uint64
	for i, n := range hist {
		cum += n
		if cum >= rank {
			s.p99 = histUpper(i)
			break
		}
	}
	return s
}
