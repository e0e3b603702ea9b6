package breaker

import (
	"context"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/otel/metric/noop"
)

// The export of these counts through an OpenTelemetry SDK is tested in
// the examples/metrics module, which may depend on the SDK.

func TestMetricsAreOffWithoutMeterProvider(t *testing.T) {
	b, err := New(Settings{Name: "off"})
	require.NoError(t, err, "New")
	assert.Nil(t, b.m, "meters without MeterProvider")
	_, _ = Do(context.Background(), b, benchOK)
	g, err := NewGroup(Settings{Name: "off"}, GroupOptions{})
	require.NoError(t, err, "NewGroup")
	assert.Nil(t, g.Get("k").m, "group member meters without MeterProvider")
}

func TestMetricsCountEveryOutcome(t *testing.T) {
	b, err := New(Settings{Name: "on", MeterProvider: noop.NewMeterProvider()})
	require.NoError(t, err, "New")
	ctx := context.Background()
	fail := func(context.Context) (int, error) { return 0, errBench }
	_, _ = Do(ctx, b, benchOK)
	_, _ = Do(ctx, b, benchOK)
	_, _ = Do(ctx, b, fail)
	_, _ = Do(ctx, b, func(context.Context) (int, error) { return 0, context.Canceled })
	p, err := b.Allow(ctx)
	require.NoError(t, err, "Allow")
	p.Done(ctx, nil)
	b.ForceOpen("test")
	_, err = Do(ctx, b, benchOK)
	require.ErrorIs(t, err, ErrOpen, "Do on a forced-open breaker")
	_, err = b.Allow(ctx)
	require.ErrorIs(t, err, ErrOpen, "Allow on a forced-open breaker")

	want := [numOutcomes]uint64{3, 1, 1, 2}
	for o := range numOutcomes {
		assert.Equal(t, want[o], b.m.counts.Sum(o), "count of outcome %s", outcomeNames[o])
	}
}

func TestGroupMembersCountApart(t *testing.T) {
	g, err := NewGroup(Settings{Name: "g", MeterProvider: noop.NewMeterProvider()}, GroupOptions{})
	require.NoError(t, err, "NewGroup")
	ctx := context.Background()
	_, _ = Do(ctx, g.Get("a"), benchOK)
	_, _ = Do(ctx, g.Get("a"), benchOK)
	_, _ = Do(ctx, g.Get("b"), benchOK)
	assert.Equal(t, uint64(2), g.Get("a").m.counts.Sum(int(success)), "successes of g/a")
	assert.Equal(t, uint64(1), g.Get("b").m.counts.Sum(int(success)), "successes of g/b")
}

func TestReasonClassIsBounded(t *testing.T) {
	for reason, want := range map[string]string{
		"5 consecutive failures":     "consecutive_failures",
		"failure ratio 12/20":        "failure_ratio",
		"forced open: maintenance":   "forced_open",
		"forced closed: known noise": "forced_closed",
		"open wait over":             "open_wait_over",
		"probe failed":               "probe_failed",
		"probe timed out":            "probe_timed_out",
		"probes succeeded":           "probes_succeeded",
		"released":                   "released",
		"something new":              "other",
	} {
		if got := reasonClass(reason); got != want {
			t.Errorf("reasonClass(%q) = %q, want %q", reason, got, want)
		}
	}
}

// The benchmarks below compare, in one run, the closed and open paths
// with and without instruments. "On" uses the no-op provider, which still
// makes the breaker count every call: collection is not on the call path.

func newMeteredBench(b *testing.B, on bool) *Breaker {
	s := Settings{Name: "bench"}
	if on {
		s.MeterProvider = noop.NewMeterProvider()
	}
	br, err := New(s)
	if err != nil {
		b.Fatalf("New() error = %v", err)
	}
	return br
}

func benchMetrics(b *testing.B, run func(b *testing.B, br *Breaker)) {
	for _, on := range []bool{false, true} {
		name := "MetricsOff"
		if on {
			name = "MetricsOn"
		}
		b.Run(name, func(b *testing.B) { run(b, newMeteredBench(b, on)) })
	}
}

func BenchmarkMetricsDoClosed(b *testing.B) {
	benchMetrics(b, func(b *testing.B, br *Breaker) {
		ctx := context.Background()
		b.ReportAllocs()
		for b.Loop() {
			_, _ = Do(ctx, br, benchOK)
		}
	})
}

func BenchmarkMetricsDoClosedParallel(b *testing.B) {
	benchMetrics(b, func(b *testing.B, br *Breaker) {
		ctx := context.Background()
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				_, _ = Do(ctx, br, benchOK)
			}
		})
	})
}

func BenchmarkMetricsDoOpen(b *testing.B) {
	benchMetrics(b, func(b *testing.B, br *Breaker) {
		br.ForceOpen("benchmark")
		ctx := context.Background()
		b.ReportAllocs()
		for b.Loop() {
			_, _ = Do(ctx, br, benchOK)
		}
	})
}

func BenchmarkMetricsDoOpenParallel(b *testing.B) {
	benchMetrics(b, func(b *testing.B, br *Breaker) {
		br.ForceOpen("benchmark")
		ctx := context.Background()
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				_, _ = Do(ctx, br, benchOK)
			}
		})
	})
}

func TestMetricsCountConcurrentCallsExactly(t *testing.T) {
	b, err := New(Settings{Name: "hammer", MeterProvider: noop.NewMeterProvider(), ConsecutiveFailures: 1 << 30, MinRequests: 1 << 30})
	require.NoError(t, err, "New")
	const goroutines, calls = 8, 500
	ctx := context.Background()
	var wg sync.WaitGroup
	for g := range goroutines {
		wg.Go(func() {
			for i := range calls {
				if (g+i)%2 == 0 {
					_, _ = Do(ctx, b, benchOK)
				} else {
					_, _ = Do(ctx, b, func(context.Context) (int, error) { return 0, errBench })
				}
			}
		})
	}
	wg.Wait()
	assert.Equal(t, uint64(goroutines*calls/2), b.m.counts.Sum(int(success)), "successes")
	assert.Equal(t, uint64(goroutines*calls/2), b.m.counts.Sum(int(failure)), "failures")
}
