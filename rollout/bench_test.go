package rollout

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"testing"
	"time"
)

const benchKey = "0123456789abcdef" // 16 bytes

func BenchmarkVariant(b *testing.B) {
	r := rolloutAt(b, Plan{Salt: "checkout-v2"}, 10_000)
	b.ReportAllocs()
	for b.Loop() {
		r.Variant(benchKey)
	}
}

func BenchmarkVariantParallel(b *testing.B) {
	r := rolloutAt(b, Plan{Salt: "checkout-v2"}, 10_000)
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			r.Variant(benchKey)
		}
	})
}

func BenchmarkVariantUnleash(b *testing.B) {
	r := rolloutAt(b, Plan{Salt: "checkout-v2", Bucketing: BucketingUnleash}, 10_000)
	b.ReportAllocs()
	for b.Loop() {
		r.Variant(benchKey)
	}
}

// BenchmarkFNV64a is the standard library's FNV-1a over the same key, for
// comparison with the assignment hash.
func BenchmarkFNV64a(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		h := fnv.New64a()
		h.Write([]byte(benchKey))
		_ = h.Sum64()
	}
}

var errBench = errors.New("bench")

func BenchmarkObserveKey(b *testing.B) {
	r := rolloutAt(b, Plan{}, 10_000)
	b.ReportAllocs()
	for b.Loop() {
		r.ObserveKey(benchKey, Canary, nil, 3*time.Millisecond)
	}
}

// benchKeys are distinct 16-byte keys, so that parallel goroutines observe
// different keys, as a fleet's callers do.
var benchKeys = func() []string {
	out := make([]string, 1024)
	for i := range out {
		out[i] = fmt.Sprintf("host-%011d", i)
	}
	return out
}()

func BenchmarkObserveKeyParallel(b *testing.B) {
	r := rolloutAt(b, Plan{}, 10_000)
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		for pb.Next() {
			var err error
			if i%100 == 0 {
				err = errBench
			}
			r.ObserveKey(benchKeys[i&1023], Variant(i&1), err, time.Duration(i)*time.Microsecond)
			i++
		}
	})
}

// BenchmarkObserveKeyParallelOneKey is ObserveKeyParallel with every
// goroutine observing the same key.
func BenchmarkObserveKeyParallelOneKey(b *testing.B) {
	r := rolloutAt(b, Plan{}, 10_000)
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			r.ObserveKey(benchKey, Canary, nil, 3*time.Millisecond)
		}
	})
}

func BenchmarkObserve(b *testing.B) {
	r := rolloutAt(b, Plan{}, 10_000)
	b.ReportAllocs()
	for b.Loop() {
		r.Observe(Canary, nil, 3*time.Millisecond)
	}
}

func BenchmarkObserveParallel(b *testing.B) {
	r := rolloutAt(b, Plan{}, 10_000)
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		for pb.Next() {
			var err error
			if i%100 == 0 {
				err = errBench
			}
			r.Observe(Variant(i&1), err, time.Duration(i)*time.Microsecond)
			i++
		}
	})
}

func direct(context.Context) (int, error) { return 42, nil }

// BenchmarkDirectCall is the call Do wraps, made directly.
func BenchmarkDirectCall(b *testing.B) {
	ctx := context.Background()
	fn := direct
	b.ReportAllocs()
	for b.Loop() {
		fn(ctx)
	}
}

func BenchmarkDo(b *testing.B) {
	r := rolloutAt(b, Plan{}, 100_000)
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		Do(ctx, r, benchKey, direct, direct)
	}
}

func BenchmarkDoParallel(b *testing.B) {
	r := rolloutAt(b, Plan{}, 100_000)
	ctx := context.Background()
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			Do(ctx, r, benchKey, direct, direct)
		}
	})
}

// BenchmarkEvaluate is one judge evaluation of a stage with realistic
// counts: a million baseline calls, ten thousand canary calls, latencies
// spread over the histogram.
func BenchmarkEvaluate(b *testing.B) {
	r, err := New(Plan{Stages: []Stage{{Percent: 1, Bake: time.Hour}, {Percent: 100}}})
	if err != nil {
		b.Fatal(err)
	}
	if err := r.Start(context.Background()); err != nil {
		b.Fatal(err)
	}
	// Spread the counts over every shard and key bucket, as many busy
	// goroutines and keys would, with a latency threshold set and key
	// sketches a quarter full.
	s := r.stats.Load()
	s.setLatency(60)
	shards := uint64(len(s.shards))
	for v, n := range [2]uint64{1_000_000, 10_000} {
		for i := range s.shards {
			c := &s.shards[i].v[v]
			for b := range armBuckets {
				c.samples[b].Store(n / shards / armBuckets)
				c.errors[b].Store(n / 100 / shards / armBuckets * uint64(1+b%3) / 2)
				c.slow[b].Store(n / 100 / shards / armBuckets)
			}
			for j := range histBuckets / 2 {
				c.hist[j+20].Store(n / histBuckets * 2 / shards)
			}
		}
		for w := range SketchWords {
			s.keys[v].assigned[w].Store(0x1111_1111_1111_1111)
			s.keys[v].reported[w].Store(0x1111_1111_1111_1110)
		}
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := r.Evaluate(); err != nil {
			b.Fatal(err)
		}
	}
}
