package retry

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"testing"
	"testing/synctest"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/otel/metric/noop"
)

// The export of these counts through an OpenTelemetry SDK is tested in
// the examples/metrics module, which may depend on the SDK.

var errFlaky = errors.New("flaky")

func TestMetricsCountRetriesAndDenials(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		m, err := NewMetrics(noop.NewMeterProvider(), "api")
		require.NoError(t, err, "NewMetrics")
		// A budget of one token: the first call may retry once, the
		// second is refused.
		b, err := NewBudget(0.1, 1)
		require.NoError(t, err, "NewBudget")
		p := Policy{MaxAttempts: 3, Budget: b, Metrics: m}
		fail := func(context.Context) (int, error) { return 0, errFlaky }
		_, err = Do(context.Background(), p, fail)
		require.ErrorIs(t, err, ErrBudgetExhausted, "first Do")
		_, err = Do(context.Background(), p, fail)
		require.ErrorIs(t, err, ErrBudgetExhausted, "second Do")
		assert.Equal(t, uint64(1), m.counts.Sum(countRetries), "retries")
		assert.Equal(t, uint64(2), m.counts.Sum(countBudgetExhausted), "retries refused by the budget")
		assert.Equal(t, uint64(0), m.counts.Sum(countThrottled), "retries refused by the throttle")
	})
}

func TestNewMetricsNeedsAProvider(t *testing.T) {
	_, err := NewMetrics(nil, "api")
	require.ErrorIs(t, err, ErrInvalidSettings, "NewMetrics(nil)")
}

func TestPolicyLogsRetriesAtDebug(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var buf bytes.Buffer
		l := slog.New(slog.NewJSONHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug}))
		p := Policy{MaxAttempts: 2, Logger: l, Rand: func() float64 { return 0.5 }}
		_, err := Do(context.Background(), p, func(context.Context) (int, error) { return 0, errFlaky })
		require.ErrorIs(t, err, errFlaky, "Do")
		var rec map[string]any
		require.NoError(t, json.Unmarshal(buf.Bytes(), &rec), "decoding %q", buf.String())
		delete(rec, "time")
		assert.Equal(t, map[string]any{
			"level": "DEBUG", "msg": "retry", "attempt": 1.0,
			"wait": float64(DefaultInitialInterval), "error": "flaky",
		}, rec, "log record of the retry")
	})
}

func TestPolicyLogsNothingAboveDebug(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var buf bytes.Buffer
		l := slog.New(slog.NewJSONHandler(&buf, &slog.HandlerOptions{Level: slog.LevelInfo}))
		b, err := NewBudget(0.1, 1)
		require.NoError(t, err, "NewBudget")
		p := Policy{MaxAttempts: 3, Budget: b, Logger: l}
		for range 3 {
			_, _ = Do(context.Background(), p, func(context.Context) (int, error) { return 0, errFlaky })
		}
		assert.Empty(t, buf.String(), "log records at Info")
	})
}

// BenchmarkMetricsDoOneRetry compares, in one run, a call that succeeds
// on its second attempt with and without Metrics (the no-op provider
// still makes the policy count).
func BenchmarkMetricsDoOneRetry(b *testing.B) {
	m, err := NewMetrics(noop.NewMeterProvider(), "bench")
	if err != nil {
		b.Fatal(err)
	}
	for _, bc := range []struct {
		name string
		m    *Metrics
	}{{"MetricsOff", nil}, {"MetricsOn", m}} {
		b.Run(bc.name, func(b *testing.B) {
			p := Policy{MaxAttempts: 2, InitialInterval: 1, MaxInterval: 1, Metrics: bc.m}
			ctx := context.Background()
			b.ReportAllocs()
			for b.Loop() {
				n := 0
				_, _ = Do(ctx, p, func(context.Context) (int, error) {
					if n++; n == 1 {
						return 0, errFlaky
					}
					return n, nil
				})
			}
		})
	}
}
