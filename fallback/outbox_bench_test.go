package fallback

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/time/rate"
)

// benchPayload is the payload size of benchmark items, a typical small
// write such as a JSON request body.
const benchPayload = 100

// benchBlock is how many items one op of the enqueue benchmarks stores,
// and how many syncs one op of the raw benchmarks makes, so that even a
// single op (-benchtime=1x) measures a steady rate. Compare the items/s
// and syncs/s metrics; ns/op covers a whole block.
const benchBlock = 256

// BenchmarkOutboxEnqueue measures durable enqueues: one producer waits for
// an fsync per item; 16 concurrent producers share them (group commit).
// Compare with BenchmarkRawWriteFsync on the same disk. The 16 producers
// are goroutines of our own rather than b.RunParallel, which would split
// b.N among them and, with -benchtime=1x, measure a single item.
func BenchmarkOutboxEnqueue(b *testing.B) {
	payload := make([]byte, benchPayload)
	for _, producers := range []int{1, 16} {
		b.Run(fmt.Sprintf("producers=%d", producers), func(b *testing.B) {
			o := openOutbox(b, b.TempDir(), OutboxOptions{})
			var n atomic.Int64
			b.ReportAllocs()
			for b.Loop() {
				var wg sync.WaitGroup
				for range producers {
					wg.Go(func() {
						for range benchBlock / producers {
							i := n.Add(1)
							err := o.Enqueue(context.Background(), Item{Key: strconv.FormatInt(i, 10), Stream: strconv.FormatInt(i%16, 10), Payload: payload})
							if err != nil {
								b.Error(err)
								return
							}
						}
					})
				}
				wg.Wait()
			}
			b.ReportMetric(float64(n.Load())/b.Elapsed().Seconds(), "items/s")
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(n.Load()), "ns/item")
		})
	}
}

// BenchmarkRawWriteFsync is the floor the outbox stands on: append one
// record-sized write to a file and fsync it, in a loop.
func BenchmarkRawWriteFsync(b *testing.B) {
	f, err := os.Create(filepath.Join(b.TempDir(), "raw"))
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	rec := make([]byte, benchPayload+40)
	b.ReportAllocs()
	for b.Loop() {
		for range benchBlock {
			if _, err := f.Write(rec); err != nil {
				b.Fatal(err)
			}
			if err := f.Sync(); err != nil {
				b.Fatal(err)
			}
		}
	}
	b.ReportMetric(float64(b.N*benchBlock)/b.Elapsed().Seconds(), "syncs/s")
}

// BenchmarkRawWriteFdatasync is the same loop with fdatasync, which is
// what the outbox calls on Linux.
func BenchmarkRawWriteFdatasync(b *testing.B) {
	f, err := os.Create(filepath.Join(b.TempDir(), "raw"))
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	rec := make([]byte, benchPayload+40)
	b.ReportAllocs()
	for b.Loop() {
		for range benchBlock {
			if _, err := f.Write(rec); err != nil {
				b.Fatal(err)
			}
			if err := rawDatasync(f); err != nil {
				b.Fatal(err)
			}
		}
	}
	b.ReportMetric(float64(b.N*benchBlock)/b.Elapsed().Seconds(), "syncs/s")
}

// BenchmarkRawWriteFsyncTwice stands in for a B+tree store such as bbolt,
// whose commit writes and syncs the data pages and then writes and syncs
// the meta page: two fsyncs per commit.
func BenchmarkRawWriteFsyncTwice(b *testing.B) {
	f, err := os.Create(filepath.Join(b.TempDir(), "raw"))
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	page := make([]byte, 4096)
	b.ReportAllocs()
	i := int64(0)
	for b.Loop() {
		for range benchBlock {
			i++
			if _, err := f.WriteAt(page, (i+1)*4096); err != nil {
				b.Fatal(err)
			}
			if err := f.Sync(); err != nil {
				b.Fatal(err)
			}
			if _, err := f.WriteAt(page[:64], 0); err != nil {
				b.Fatal(err)
			}
			if err := f.Sync(); err != nil {
				b.Fatal(err)
			}
		}
	}
	b.ReportMetric(float64(b.N*benchBlock)/b.Elapsed().Seconds(), "commits/s")
}

// fillOutbox enqueues n items with many producers, so that building a big
// backlog takes a few fsyncs rather than n.
func fillOutbox(tb testing.TB, o *Outbox, prefix string, n int) {
	tb.Helper()
	payload := make([]byte, benchPayload)
	const producers = 128
	var next atomic.Int64
	var wg sync.WaitGroup
	for range producers {
		wg.Go(func() {
			for {
				i := next.Add(1)
				if i > int64(n) {
					return
				}
				err := o.Enqueue(context.Background(), Item{Key: prefix + strconv.FormatInt(i, 10), Stream: strconv.FormatInt(i%64, 10), Payload: payload})
				if err != nil {
					tb.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
}

// BenchmarkOutboxReplay measures delivery with pacing off and a receiver
// that does nothing: reading records back and appending their delivery
// records. One op delivers 10,000 items.
func BenchmarkOutboxReplay(b *testing.B) {
	const n = 10_000
	o := openOutbox(b, b.TempDir(), OutboxOptions{Rate: rate.Inf})
	deliver := func(context.Context, Item) error { return nil }
	b.ReportAllocs()
	round := 0
	for b.Loop() {
		b.StopTimer()
		round++
		fillOutbox(b, o, fmt.Sprintf("r%d-", round), n)
		b.StartTimer()
		if err := o.Replay(context.Background(), deliver); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N*n)/b.Elapsed().Seconds(), "items/s")
}

// benchItemsEnv sets the backlog of BenchmarkOutboxPeakHeap; the default
// keeps one run short, RINGFENCE_OUTBOX_BENCH_ITEMS=1000000 shows a
// million.
const benchItemsEnv = "RINGFENCE_OUTBOX_BENCH_ITEMS"

func heapInuse() uint64 {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapInuse
}

// BenchmarkOutboxPeakHeap builds a backlog of pending items and reports
// the heap in use with the backlog held (after reopening the outbox, so
// the index is rebuilt from disk) and the peak heap while replaying it.
func BenchmarkOutboxPeakHeap(b *testing.B) {
	n := 100_000
	if s := os.Getenv(benchItemsEnv); s != "" {
		v, err := strconv.Atoi(s)
		if err != nil || v <= 0 {
			b.Fatalf("%s=%q is not a positive count", benchItemsEnv, s)
		}
		n = v
	}
	b.Run(fmt.Sprintf("items=%d", n), func(b *testing.B) {
		for b.Loop() {
			dir := b.TempDir()
			o, err := OpenOutbox(dir, OutboxOptions{Rate: rate.Inf})
			if err != nil {
				b.Fatal(err)
			}
			fillOutbox(b, o, "k", n)
			if err := o.Close(); err != nil {
				b.Fatal(err)
			}

			base := heapInuse()
			start := time.Now()
			o, err = OpenOutbox(dir, OutboxOptions{Rate: rate.Inf})
			if err != nil {
				b.Fatal(err)
			}
			open := time.Since(start)
			if o.Pending() != n {
				b.Fatalf("Pending() = %d, want %d", o.Pending(), n)
			}
			held := heapInuse()
			peak := held
			count := 0
			err = o.Replay(context.Background(), func(context.Context, Item) error {
				if count++; count%(n/20) == 0 {
					peak = max(peak, heapInuse())
				}
				return nil
			})
			if err != nil {
				b.Fatal(err)
			}
			o.Close()
			b.ReportMetric(float64(held-base)/(1<<20), "pending-heap-MB")
			b.ReportMetric(float64(held-base)/float64(n), "heap-B/item")
			b.ReportMetric(float64(peak-base)/(1<<20), "replay-peak-heap-MB")
			b.ReportMetric(open.Seconds(), "open-s")
		}
	})
}
