package main

// These tests read the instruments of each package through the
// OpenTelemetry SDK's ManualReader. They live here rather than in the
// core, whose module may depend on the metric API only.

import (
	"context"
	"errors"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/otel/attribute"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"

	"github.com/ringfence/ringfence/breaker"
	"github.com/ringfence/ringfence/fallback"
	"github.com/ringfence/ringfence/rollout"
)

func newReader(t *testing.T) (*sdkmetric.ManualReader, *sdkmetric.MeterProvider) {
	t.Helper()
	r := sdkmetric.NewManualReader()
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(r))
	t.Cleanup(func() { mp.Shutdown(context.Background()) })
	return r, mp
}

// points collects r and returns, for the instrument called name, each
// data point's value by its attributes (encoded as key=value,...).
func points(t *testing.T, r *sdkmetric.ManualReader, name string) map[string]float64 {
	t.Helper()
	var rm metricdata.ResourceMetrics
	require.NoError(t, r.Collect(context.Background(), &rm), "Collect")
	out := map[string]float64{}
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			if m.Name != name {
				continue
			}
			switch d := m.Data.(type) {
			case metricdata.Gauge[int64]:
				for _, p := range d.DataPoints {
					out[p.Attributes.Encoded(attribute.DefaultEncoder())] = float64(p.Value)
				}
			case metricdata.Gauge[float64]:
				for _, p := range d.DataPoints {
					out[p.Attributes.Encoded(attribute.DefaultEncoder())] = p.Value
				}
			case metricdata.Sum[int64]:
				for _, p := range d.DataPoints {
					out[p.Attributes.Encoded(attribute.DefaultEncoder())] = float64(p.Value)
				}
			default:
				t.Fatalf("instrument %s has data of type %T", name, m.Data)
			}
		}
	}
	return out
}

func TestBreakerStateIsReportedFromConstruction(t *testing.T) {
	r, mp := newReader(t)
	_, err := breaker.New(breaker.Settings{Name: "api", MeterProvider: mp})
	require.NoError(t, err, "New")
	assert.Equal(t, map[string]float64{
		"ringfence.breaker.name=api,state=closed":        1,
		"ringfence.breaker.name=api,state=half-open":     0,
		"ringfence.breaker.name=api,state=open":          0,
		"ringfence.breaker.name=api,state=forced-open":   0,
		"ringfence.breaker.name=api,state=forced-closed": 0,
	}, points(t, r, "ringfence.breaker.state"), "ringfence.breaker.state before any call")
}

func TestBreakerReportsCallsAndTransitions(t *testing.T) {
	r, mp := newReader(t)
	b, err := breaker.New(breaker.Settings{Name: "api", MeterProvider: mp})
	require.NoError(t, err, "New")
	ctx := context.Background()
	ok := func(context.Context) (int, error) { return 1, nil }
	_, _ = breaker.Do(ctx, b, ok)
	b.ForceOpen("maintenance")
	_, _ = breaker.Do(ctx, b, ok)
	b.Release()

	assert.Equal(t, map[string]float64{
		"outcome=success,ringfence.breaker.name=api":  1,
		"outcome=failure,ringfence.breaker.name=api":  0,
		"outcome=excluded,ringfence.breaker.name=api": 0,
		"outcome=rejected,ringfence.breaker.name=api": 1,
	}, points(t, r, "ringfence.breaker.calls"), "ringfence.breaker.calls")
	assert.Equal(t, map[string]float64{
		"from=closed,reason=forced_open,ringfence.breaker.name=api,to=forced-open": 1,
		"from=forced-open,reason=released,ringfence.breaker.name=api,to=closed":    1,
	}, points(t, r, "ringfence.breaker.transitions"), "ringfence.breaker.transitions")
}

func TestGroupReportsEachBreaker(t *testing.T) {
	r, mp := newReader(t)
	g, err := breaker.NewGroup(breaker.Settings{Name: "hosts", MeterProvider: mp}, breaker.GroupOptions{})
	require.NoError(t, err, "NewGroup")
	g.Get("a").ForceOpen("test")
	g.Get("b")
	state := points(t, r, "ringfence.breaker.state")
	assert.Equal(t, 1.0, state["ringfence.breaker.name=hosts/a,state=forced-open"], "state of hosts/a")
	assert.Equal(t, 1.0, state["ringfence.breaker.name=hosts/b,state=closed"], "state of hosts/b")
	assert.Len(t, state, 10, "points: five states of two breakers")
}

func TestOutboxReportsDepthUntilClosed(t *testing.T) {
	r, mp := newReader(t)
	dir := t.TempDir()
	o, err := fallback.OpenOutbox(dir, fallback.OutboxOptions{MeterProvider: mp})
	require.NoError(t, err, "OpenOutbox")
	ctx := context.Background()
	require.NoError(t, o.Enqueue(ctx, fallback.Item{Key: "a", Payload: []byte("1")}), "Enqueue a")
	require.NoError(t, o.Enqueue(ctx, fallback.Item{Key: "b", Payload: []byte("2")}), "Enqueue b")
	attr := "ringfence.outbox.dir=" + dir
	assert.Equal(t, map[string]float64{attr: 2}, points(t, r, "ringfence.outbox.depth"), "ringfence.outbox.depth")
	assert.Greater(t, points(t, r, "ringfence.outbox.oldest.age")[attr], 0.0, "ringfence.outbox.oldest.age")
	assert.Equal(t, map[string]float64{attr: 0}, points(t, r, "ringfence.outbox.unrecorded"), "ringfence.outbox.unrecorded")
	require.NoError(t, o.Close(), "Close")
	assert.Empty(t, points(t, r, "ringfence.outbox.depth"), "ringfence.outbox.depth after Close")
}

func TestRolloutReportsItsStateFromConstruction(t *testing.T) {
	r, mp := newReader(t)
	_, err := rollout.New(rollout.Plan{Name: "v2", MeterProvider: mp})
	require.NoError(t, err, "New")
	assert.Equal(t, map[string]float64{"ringfence.rollout.name=v2": 0}, points(t, r, "ringfence.rollout.stage.percent"), "stage percent")
	assert.Equal(t, 1.0, points(t, r, "ringfence.rollout.state")["ringfence.rollout.name=v2,state=pending"], "state pending")
}

func TestRolloutReportsHowStaleTheFleetEvidenceIs(t *testing.T) {
	r, mp := newReader(t)
	ro, err := rollout.New(rollout.Plan{Name: "v2", MeterProvider: mp,
		Evidence: func(context.Context, rollout.Evidence) (rollout.Evidence, error) {
			return rollout.Evidence{}, errors.New("fleet store unreachable")
		}})
	require.NoError(t, err, "New")
	require.NoError(t, ro.Start(context.Background()), "Start")
	assert.Equal(t, 0.0, points(t, r, "ringfence.rollout.evidence.staleness")["ringfence.rollout.name=v2"], "staleness before Evaluate")
	_, _ = ro.Evaluate()
	require.ErrorIs(t, ro.Err(), rollout.ErrEvidence, "Err after Evaluate")
	assert.Greater(t, points(t, r, "ringfence.rollout.evidence.staleness")["ringfence.rollout.name=v2"], 0.0, "staleness after a failed Evidence")
}
