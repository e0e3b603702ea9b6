package rollout

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/otel/metric/noop"
)

// The export of these counts through an OpenTelemetry SDK is tested in
// the examples/metrics module, which may depend on the SDK.

func TestRolloutLogsTransitions(t *testing.T) {
	var buf bytes.Buffer
	l := slog.New(slog.NewJSONHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug}))
	r, err := New(Plan{Name: "search-v2", Logger: l, Stages: []Stage{{Percent: 5, MinSamples: 100}, {Percent: 100}}})
	require.NoError(t, err, "New")
	require.NoError(t, r.Start(context.Background()), "Start")
	require.NoError(t, r.Pause("looking"), "Pause")
	require.NoError(t, r.Abort("not today"), "Abort")

	var got []map[string]any
	dec := json.NewDecoder(&buf)
	for dec.More() {
		var m map[string]any
		require.NoError(t, dec.Decode(&m), "decoding a log record")
		delete(m, "time")
		got = append(got, m)
	}
	rec := func(level, from, to string, percent float64, reason string) map[string]any {
		return map[string]any{"level": level, "msg": "rollout transition", "rollout": "search-v2",
			"from": from, "to": to, "stage": 0.0, "percent": percent, "reason": reason,
			"outcome": "gathering", "rule": ""}
	}
	assert.Equal(t, []map[string]any{
		rec("INFO", "pending", "running", 5, "started"),
		rec("WARN", "running", "paused", 5, "looking"),
		rec("WARN", "paused", "rolled-back", 0, "not today"),
	}, got, "log records of the rollout")
}

func TestRolloutCountsVerdicts(t *testing.T) {
	r, err := New(Plan{Name: "search-v2", MeterProvider: noop.NewMeterProvider(),
		Stages: []Stage{{Percent: 50, MinSamples: 100}, {Percent: 100, MinSamples: 100}}})
	require.NoError(t, err, "New")
	_, _ = r.Evaluate() // pending: not judged, not counted
	require.NoError(t, r.Start(context.Background()), "Start")
	_, _ = r.Evaluate() // no samples yet: gathering
	for i := range 2000 {
		key := fmt.Sprintf("user-%d", i)
		r.ObserveKey(key, r.Variant(key), nil, time.Millisecond)
	}
	_, _ = r.Evaluate() // healthy, advances
	assert.Equal(t, uint64(1), r.obs.verdicts[Gathering][0].Load(), "gathering verdicts")
	assert.Equal(t, uint64(1), r.obs.verdicts[Healthy][0].Load(), "healthy verdicts")
}

func TestVerdictOfAnUnknownRuleCountsAsOther(t *testing.T) {
	var o rolloutObs
	o.verdict(Verdict{Outcome: Regressed, Rule: "future-rule"})
	o.verdict(Verdict{Outcome: Regressed, Rule: RuleLatency})
	assert.Equal(t, uint64(1), o.verdicts[Regressed][len(rules)-1].Load(), "regressed by other")
	assert.Equal(t, uint64(1), o.verdicts[Regressed][2].Load(), "regressed by latency")
}

// BenchmarkMetricsObserve shows that instruments add nothing to Observe,
// in one run with and without them.
func BenchmarkMetricsObserve(b *testing.B) {
	for _, bc := range []struct {
		name string
		p    Plan
	}{{"MetricsOff", Plan{}}, {"MetricsOn", Plan{MeterProvider: noop.NewMeterProvider()}}} {
		r := rolloutAt(b, bc.p, 10_000)
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				r.Observe(Canary, nil, 3*time.Millisecond)
			}
		})
		b.Run(bc.name+"Parallel", func(b *testing.B) {
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					r.Observe(Canary, nil, 3*time.Millisecond)
				}
			})
		})
	}
}
