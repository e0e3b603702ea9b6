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

// LatencyBuckets is the number of latency histogram buckets of an
// [ArmEvidence]: bucket i holds the calls whose latency is at most
// [LatencyBucketBound](i) and above the bound of bucket i-1.
const LatencyBuckets = histBuckets

// KeyBuckets is the number of key-hash buckets each variant's counts are
// kept in. A key's calls always land in the same bucket, so a bucket holds
// whole keys and the judge can measure how much keys differ from one
// another (see the package documentation, section "The judge").
// Observations made without a key are counted apart, in an extra bucket
// of index KeyBuckets.
const KeyBuckets = 32

// armBuckets is KeyBuckets plus the bucket of unkeyed observations.
const armBuckets = KeyBuckets + 1

// SketchWords is the number of 64-bit words of each key sketch of an
// [ArmEvidence]: SketchWords*64 slots, a key hashed to one of them.
const SketchWords = 64

const sketchSlots = SketchWords * 64

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

// LatencyBucketBound returns the largest latency counted in latency
// histogram bucket i, in [0, LatencyBuckets); the last bucket also holds
// every longer latency.
func LatencyBucketBound(i int) time.Duration { return histUpper(min(max(i, 0), histBuckets-1)) }

// cacheLine is the assumed size of a cache line.
const cacheLine = 64

// counts is one variant's counters in one shard, per key-hash bucket. Its
// size is a whole number of cache lines, so neighbouring counts never share
// one.
type counts struct {
	samples [armBuckets]atomic.Uint64
	errors  [armBuckets]atomic.Uint64
	slow    [armBuckets]atomic.Uint64 // calls above the latency threshold
	_       [(cacheLine - 3*armBuckets*8%cacheLine) % cacheLine]byte
	hist    [histBuckets]atomic.Uint64
	_       [(cacheLine - histBuckets*8%cacheLine) % cacheLine]byte
}

// shard is one stripe of a stage's counters, both variants.
type shard struct {
	v [2]counts
}

// sketch records which key slots of one variant were assigned (by Variant)
// and which reported (by a keyed Observe). A slot's bit is read before it
// is set, so a busy key costs a shared read, not a write.
type sketch struct {
	assigned [SketchWords]atomic.Uint64
	reported [SketchWords]atomic.Uint64
}

// stats are the counters of one stage; a new stage gets a new stats. The
// counters are striped over shards, and each goroutine adds to the shard of
// the processor it runs on (see internal/stripe), so goroutines on
// different processors do not write the same cache line. Readers sum the
// shards.
type stats struct {
	shards []shard        // len is a power of two
	picker *stripe.Picker // hands each processor its shard

	// ppm is the stage's canary share. The key sketches follow the keys in
	// two ranges of assignment positions: [0, width), all canary, and
	// [ppm, ppm+mirror), all baseline, up to mirrorFactor times as wide;
	// both are 0 when the stage has no baseline or no canary.
	ppm, width, mirror uint32
	keys               [2]sketch

	// lat is one more than the latency bucket above which a call is slow,
	// 0 while no threshold is set. latBase holds each bucket's samples at
	// the moment the threshold was set; it is written, under Rollout.mu,
	// before lat is stored, and never after.
	lat     atomic.Int32
	latBase [2][armBuckets]uint64

	// carried is the baseline's latency histogram of the earlier stages,
	// kept so that a new stage starts with a known latency threshold.
	carried [histBuckets]uint64
}

// newStats returns zeroed stats for a stage at ppm, with a shard count
// fitted to GOMAXPROCS.
func newStats(ppm uint32) *stats {
	n := shardCount(runtime.GOMAXPROCS(0))
	s := &stats{shards: make([]shard, n), picker: stripe.New(n), ppm: ppm}
	s.width, s.mirror = trackWidths(ppm)
	return s
}

// mirrorFactor is how much wider than the canary's the followed baseline
// range is, where there is room: a wider reference makes each silent canary
// key stronger evidence, so that a ring of ten keys that all go silent is
// caught in that ring.
const mirrorFactor = 4

// trackWidths returns the widths of the followed canary and baseline
// ranges of a stage at ppm.
func trackWidths(ppm uint32) (canary, baseline uint32) {
	if ppm == 0 || ppm >= Buckets {
		return 0, 0
	}
	w := min(ppm, Buckets-ppm)
	return w, min(mirrorFactor*w, Buckets-ppm)
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

// keyBucket returns the key-hash bucket of a key's hash: its low bits,
// which the assignment (the top 32 bits) does not use.
func keyBucket(h uint64) int { return int(h & (KeyBuckets - 1)) }

// slot returns the sketch slot of a key's hash.
func slot(h uint64) (word int, bit uint64) {
	s := (h >> 5) & (sketchSlots - 1)
	return int(s >> 6), 1 << (s & 63)
}

// tracked returns the variant whose key sketch follows assignment
// position pos, if any.
func (s *stats) tracked(pos uint32) (Variant, bool) {
	switch {
	case pos < s.width:
		return Canary, true
	case pos >= s.ppm && pos-s.ppm < s.mirror:
		return Baseline, true
	}
	return Baseline, false
}

func setBit(w *[SketchWords]atomic.Uint64, h uint64) {
	i, bit := slot(h)
	if w[i].Load()&bit == 0 {
		w[i].Or(bit)
	}
}

// assigned notes that the key at pos with hash h was assigned a variant.
func (s *stats) assigned(pos uint32, h uint64) {
	if v, ok := s.tracked(pos); ok {
		setBit(&s.keys[v].assigned, h)
	}
}

// observe counts one call of variant v in key bucket b.
func (s *stats) observe(v Variant, b int, failed bool, latency time.Duration) {
	t := s.picker.Get()
	c := &s.shards[t.Stripe()].v[v&1]
	c.samples[b].Add(1)
	if failed {
		c.errors[b].Add(1)
	}
	i := histIndex(latency)
	c.hist[i].Add(1)
	if l := s.lat.Load(); l > 0 && int32(i) >= l {
		c.slow[b].Add(1)
	}
	s.picker.Put(t)
}

// observeKey counts one call of variant v by the key at pos with hash h.
func (s *stats) observeKey(v Variant, pos uint32, h uint64, failed bool, latency time.Duration) {
	s.observe(v, keyBucket(h), failed, latency)
	if tv, ok := s.tracked(pos); ok && tv == v {
		setBit(&s.keys[v].reported, h)
	}
}

// read returns the stage's counters of variant v summed over the shards.
// It is not an atomic snapshot, but every count it reads is at most the
// samples it reads: Observe adds a call's sample first, and read loads the
// samples last.
func (s *stats) read(v Variant, a *ArmEvidence) {
	lat := s.lat.Load()
	for i := range s.shards {
		c := &s.shards[i].v[v&1]
		for b := range armBuckets {
			a.Slow[b] += c.slow[b].Load()
			a.Errors[b] += c.errors[b].Load()
		}
		for j := range c.hist {
			a.Latency[j] += c.hist[j].Load()
		}
		for b := range armBuckets {
			a.Samples[b] += c.samples[b].Load()
		}
	}
	if lat > 0 {
		for b := range armBuckets {
			a.Judged[b] = a.Samples[b] - s.latBase[v&1][b]
		}
	} else {
		a.Slow = [armBuckets]uint64{}
	}
	k := &s.keys[v&1]
	for i := range k.assigned {
		a.Assigned[i] = k.assigned[i].Load()
		a.Reported[i] = k.reported[i].Load()
	}
}

// load adds the counts of a to variant v's first shard, as when a stored
// record is resumed. The stats must not be in use yet.
func (s *stats) load(v Variant, a *ArmEvidence) {
	c := &s.shards[0].v[v&1]
	for b := range armBuckets {
		c.samples[b].Add(a.Samples[b])
		c.errors[b].Add(a.Errors[b])
		c.slow[b].Add(a.Slow[b])
		s.latBase[v&1][b] = a.Samples[b] - a.Judged[b]
	}
	for j := range c.hist {
		c.hist[j].Add(a.Latency[j])
	}
	k := &s.keys[v&1]
	for i := range k.assigned {
		k.assigned[i].Store(a.Assigned[i])
		k.reported[i].Store(a.Reported[i])
	}
}

// setLatency sets the latency threshold to bucket idx: from now on a call
// slower than histUpper(idx) is slow. It snapshots the samples so that the
// calls judged against the threshold are known. Rollout.mu must be held,
// and lat must still be 0.
func (s *stats) setLatency(idx int) {
	for v := range 2 {
		var a ArmEvidence
		for i := range s.shards {
			c := &s.shards[i].v[v]
			for b := range armBuckets {
				a.Samples[b] += c.samples[b].Load()
			}
		}
		s.latBase[v] = a.Samples
	}
	s.lat.Store(int32(idx) + 1)
}

// quantileBucket returns the histogram bucket holding the observation of
// rank ceil(q*total), and false when hist is empty.
func quantileBucket(hist *[histBuckets]uint64, q float64) (int, bool) {
	var total uint64
	for _, n := range hist {
		total += n
	}
	if total == 0 {
		return 0, false
	}
	rank := uint64(q*float64(total) + 0.999999)
	rank = min(max(rank, 1), total)
	var cum uint64
	for i, n := range hist {
		cum += n
		if cum >= rank {
			return i, true
		}
	}
	return histBuckets - 1, true
}
