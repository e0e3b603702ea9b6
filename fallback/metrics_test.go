package fallback

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/otel/metric/noop"
	"golang.org/x/time/rate"

	"github.com/ringfence/ringfence/retry"
)

// The export of these counts through an OpenTelemetry SDK is tested in
// the examples/metrics module, which may depend on the SDK.

// logRecords returns a logger at level writing JSON into a buffer, and a
// function that decodes what it wrote, one map per record.
func logRecords(t *testing.T, level slog.Level) (*slog.Logger, func() []map[string]any) {
	t.Helper()
	var buf bytes.Buffer
	l := slog.New(slog.NewJSONHandler(&buf, &slog.HandlerOptions{Level: level}))
	return l, func() []map[string]any {
		var recs []map[string]any
		dec := json.NewDecoder(&buf)
		for dec.More() {
			var m map[string]any
			require.NoError(t, dec.Decode(&m), "decoding a log record")
			delete(m, "time")
			recs = append(recs, m)
		}
		return recs
	}
}

func TestSwitchLogsModeChanges(t *testing.T) {
	l, records := logRecords(t, slog.LevelDebug)
	sw, err := NewSwitch(context.Background(), "pricing-api", SwitchSettings{Logger: l})
	require.NoError(t, err, "NewSwitch")
	require.NoError(t, sw.Set(context.Background(), ModeManual, "", "incident 42"), "Set(manual)")
	require.NoError(t, sw.Set(context.Background(), ModeManual, "", "again"), "Set(manual) again")
	require.NoError(t, sw.Set(context.Background(), ModeAuto, "", "resolved"), "Set(auto)")
	assert.Equal(t, []map[string]any{
		{"level": "WARN", "msg": "fallback mode change", "switch": "pricing-api", "from": "auto", "to": "manual", "reason": "incident 42"},
		{"level": "INFO", "msg": "fallback mode change", "switch": "pricing-api", "from": "manual", "to": "auto", "reason": "resolved"},
	}, records(), "log records of Set")
}

func TestSwitchWithMeterProviderStarts(t *testing.T) {
	sw, err := NewSwitch(context.Background(), "pricing-api", SwitchSettings{MeterProvider: noop.NewMeterProvider()})
	require.NoError(t, err, "NewSwitch")
	require.NoError(t, sw.Set(context.Background(), ModeManual, "", "test"), "Set(manual)")
}

var errPricingDown = errors.New("pricing-api: unavailable")

func TestChainLogsFallbackAnswersAndFailuresAtDebug(t *testing.T) {
	l, records := logRecords(t, slog.LevelDebug)
	up := true
	primary := Primary("pricing-api", func(context.Context, string) (int, error) {
		if up {
			return 1, nil
		}
		return 0, errPricingDown
	})
	failing := Alternate("mirror", func(context.Context, string) (int, error) { return 0, errPricingDown })
	c, err := NewChain("price", ChainSettings{Logger: l}, primary, failing, Static[string]("zero", 0))
	require.NoError(t, err, "NewChain")
	bare, err := NewChain("price", ChainSettings{Logger: l}, primary, failing)
	require.NoError(t, err, "NewChain without static")
	ctx := context.Background()

	_, _, _ = c.Run(ctx, "a") // the primary answers: nothing to log
	up = false
	_, _, _ = c.Run(ctx, "a")
	_, _, _ = bare.Run(ctx, "a")
	assert.Equal(t, []map[string]any{
		{"level": "DEBUG", "msg": "fallback answer", "chain": "price", "step": "zero", "kind": "static"},
		{"level": "DEBUG", "msg": "fallback chain failed", "chain": "price", "mode": "auto", "error": errPricingDown.Error()},
	}, records(), "log records of Run")
}

func TestChainLogsNothingAboveDebug(t *testing.T) {
	l, records := logRecords(t, slog.LevelInfo)
	primary := Primary("pricing-api", func(context.Context, string) (int, error) { return 0, errPricingDown })
	c, err := NewChain("price", ChainSettings{Logger: l}, primary, Static[string]("zero", 0))
	require.NoError(t, err, "NewChain")
	_, _, _ = c.Run(context.Background(), "a")
	assert.Empty(t, records(), "log records at Info")
}

func TestChainCountsAnswersByKind(t *testing.T) {
	up := true
	primary := Primary("pricing-api", func(context.Context, string) (int, error) {
		if up {
			return 1, nil
		}
		return 0, errPricingDown
	})
	c, err := NewChain("price", ChainSettings{MeterProvider: noop.NewMeterProvider()}, primary, Static[string]("zero", 0))
	require.NoError(t, err, "NewChain")
	bare, err := NewChain("bare", ChainSettings{MeterProvider: noop.NewMeterProvider()}, primary)
	require.NoError(t, err, "NewChain without fallbacks")
	ctx := context.Background()
	_, _, _ = c.Run(ctx, "a")
	up = false
	_, _, _ = c.Run(ctx, "a")
	_, _, _ = c.Run(ctx, "a")
	_, _, _ = bare.Run(ctx, "a")
	assert.Equal(t, uint64(1), c.obs.answers.Sum(int(KindPrimary)), "primary answers")
	assert.Equal(t, uint64(2), c.obs.answers.Sum(int(KindStatic)), "static answers")
	assert.Equal(t, uint64(0), c.obs.answers.Sum(0), "failed runs of the chain")
	assert.Equal(t, uint64(1), bare.obs.answers.Sum(0), "failed runs of the bare chain")
}

func TestChainWithoutObserversKeepsNone(t *testing.T) {
	c, err := NewChain("price", ChainSettings{}, Primary("pricing-api", benchPrimary))
	require.NoError(t, err, "NewChain")
	assert.Nil(t, c.obs, "observers without Logger and MeterProvider")
}

func TestOutboxLogsDeadLettersAtWarnAndFailuresAtDebug(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		l, records := logRecords(t, slog.LevelDebug)
		o := openOutbox(t, t.TempDir(), OutboxOptions{Rate: rate.Inf, RetryInitial: time.Second, Logger: l, MeterProvider: noop.NewMeterProvider()})
		enqueueAll(t, o, item("s", "a"))
		attempts := 0
		err := o.Replay(context.Background(), func(context.Context, Item) error {
			attempts++
			if attempts == 1 {
				return errPricingDown
			}
			return retry.Permanent(errPricingDown)
		})
		require.NoError(t, err, "Replay")
		dir := o.dir
		assert.Equal(t, []map[string]any{
			{"level": "DEBUG", "msg": "outbox delivery failed", "outbox": dir, "key": "a", "stream": "s", "attempt": 1.0, "error": errPricingDown.Error()},
			{"level": "WARN", "msg": "outbox dead letter", "outbox": dir, "key": "a", "stream": "s", "attempt": 2.0, "error": errPricingDown.Error()},
		}, records(), "log records of Replay")
		require.NoError(t, o.Close(), "Close")
	})
}

// BenchmarkMetricsChain compares, in one run, a chain whose primary
// answers with and without instruments (the no-op provider still makes
// the chain count every answer), next to the direct call.
func BenchmarkMetricsChain(b *testing.B) {
	ctx := context.Background()
	for _, bc := range []struct {
		name     string
		settings ChainSettings
	}{
		{"MetricsOff", ChainSettings{}},
		{"MetricsOn", ChainSettings{MeterProvider: noop.NewMeterProvider()}},
	} {
		c := newBenchChain(b, bc.settings, Static[string]("zero", 0))
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				_, _, _ = c.Run(ctx, "sku-1")
			}
		})
		b.Run(bc.name+"Parallel", func(b *testing.B) {
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					_, _, _ = c.Run(ctx, "sku-1")
				}
			})
		})
	}
	b.Run("Direct", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			_, _ = benchPrimary(ctx, "sku-1")
		}
	})
}

func TestSwitchLogsAnUnreadableStoreAtError(t *testing.T) {
	path := filepath.Join(t.TempDir(), "db.mode")
	require.NoError(t, os.WriteFile(path, []byte("RFS1 not a record at all"), 0o600), "WriteFile")
	store, err := NewFileModeStore(path)
	require.NoError(t, err, "NewFileModeStore")
	l, records := logRecords(t, slog.LevelDebug)
	_, err = NewSwitch(context.Background(), "db", SwitchSettings{Store: store, Initial: ModeManual, Logger: l})
	require.ErrorIs(t, err, ErrModeUnreadable, "NewSwitch")
	recs := records()
	require.Len(t, recs, 1, "log records of NewSwitch")
	assert.Equal(t, "ERROR", recs[0]["level"], "level")
	assert.Equal(t, "fallback mode unreadable", recs[0]["msg"], "msg")
	assert.Equal(t, "db", recs[0]["switch"], "switch")
	assert.Equal(t, "manual", recs[0]["mode"], "mode it starts in")
	assert.Equal(t, err.Error(), recs[0]["error"], "error")
}
