package rollout_test

import (
	"math"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/ringfence/ringfence/rollout"
)

func TestNewRejectsInvalidPlans(t *testing.T) {
	last := rollout.Stage{Percent: 100}
	tests := []struct {
		name  string
		plan  rollout.Plan
		field string // the field the error must name
	}{
		{"a percent of zero", rollout.Plan{Stages: []rollout.Stage{{Percent: 0}, last}}, "Plan.Stages[0].Percent"},
		{"a negative percent", rollout.Plan{Stages: []rollout.Stage{{Percent: -1}, last}}, "Plan.Stages[0].Percent"},
		{"a percent above 100", rollout.Plan{Stages: []rollout.Stage{{Percent: 101}}}, "Plan.Stages[0].Percent"},
		{"a NaN percent", rollout.Plan{Stages: []rollout.Stage{{Percent: math.NaN()}, last}}, "Plan.Stages[0].Percent"},
		{"a percent finer than 0.0001", rollout.Plan{Stages: []rollout.Stage{{Percent: 0.00005}, last}}, "Plan.Stages[0].Percent"},
		{"a percent too small to reach one key in a million", rollout.Plan{Stages: []rollout.Stage{{Percent: 1e-11}, last}}, "Plan.Stages[0].Percent"},
		{"percents that do not increase", rollout.Plan{Stages: []rollout.Stage{{Percent: 10}, {Percent: 10}, last}}, "Plan.Stages[1].Percent"},
		{"percents that decrease", rollout.Plan{Stages: []rollout.Stage{{Percent: 10}, {Percent: 5}, last}}, "Plan.Stages[1].Percent"},
		{"a last stage below 100", rollout.Plan{Stages: []rollout.Stage{{Percent: 1}, {Percent: 50}}}, "Plan.Stages[1].Percent"},
		{"a negative bake", rollout.Plan{Stages: []rollout.Stage{{Percent: 1, Bake: -time.Second}, last}}, "Plan.Stages[0].Bake"},
		{"negative minimum samples", rollout.Plan{Stages: []rollout.Stage{{Percent: 1, MinSamples: -1}, last}}, "Plan.Stages[0].MinSamples"},
		{"a bake too long for its default deadline", rollout.Plan{Stages: []rollout.Stage{{Percent: 1, Bake: 1 << 62}, last}}, "Plan.Stages[0].Bake"},
		{"a deadline shorter than the bake", rollout.Plan{Stages: []rollout.Stage{{Percent: 1, Bake: time.Hour, Deadline: time.Minute}, last}}, "Plan.Stages[0].Deadline"},
		{"a fractional percent with Unleash bucketing", rollout.Plan{Bucketing: rollout.BucketingUnleash, Stages: []rollout.Stage{{Percent: 0.5}, last}}, "Plan.Stages[0].Percent"},
		{"an unknown bucketing", rollout.Plan{Bucketing: 7}, "Plan.Bucketing"},
		{"an unknown inconclusive action", rollout.Plan{OnInconclusive: 9}, "Plan.OnInconclusive"},
		{"an alpha above one half", rollout.Plan{Judge: rollout.Judge{Alpha: 0.7}}, "Plan.Judge.Alpha"},
		{"a negative minimum regression", rollout.Plan{Judge: rollout.Judge{MinRegression: -1}}, "Plan.Judge.MinRegression"},
		{"an error ceiling above 1", rollout.Plan{Judge: rollout.Judge{MaxErrorRate: 1.5}}, "Plan.Judge.MaxErrorRate"},
		{"a negative p99 ceiling", rollout.Plan{Judge: rollout.Judge{MaxP99: -time.Second}}, "Plan.Judge.MaxP99"},
		{"a latency quantile of one", rollout.Plan{Judge: rollout.Judge{LatencyQuantile: 1}}, "Plan.Judge.LatencyQuantile"},
		{"a negative latency threshold", rollout.Plan{Judge: rollout.Judge{LatencyThreshold: -time.Second}}, "Plan.Judge.LatencyThreshold"},
		{"a negative latency baseline minimum", rollout.Plan{Judge: rollout.Judge{LatencyMinBaseline: -1}}, "Plan.Judge.LatencyMinBaseline"},
		{"a negative shadow timeout", rollout.Plan{ShadowTimeout: -time.Second}, "Plan.ShadowTimeout"},
		{"a negative shadow concurrency", rollout.Plan{ShadowConcurrency: -1}, "Plan.ShadowConcurrency"},
		{"a default plan at 1 call per second", rollout.Plan{Traffic: rollout.Traffic{CallsPerSecond: 1}}, "Plan.Stages[0]"},
		{"a first ring holding no host", rollout.Plan{Traffic: rollout.Traffic{CallsPerSecond: 1000, Keys: 500}}, "Plan.Stages[0].Percent"},
		{"a negative traffic", rollout.Plan{Traffic: rollout.Traffic{CallsPerSecond: -1}}, "Plan.Traffic.CallsPerSecond"},
		{"negative guardrail samples", rollout.Plan{Judge: rollout.Judge{GuardrailMinSamples: -5}}, "Plan.Judge.GuardrailMinSamples"},
		{"a silence ratio of one", rollout.Plan{Judge: rollout.Judge{SilenceRatio: 1}}, "Plan.Judge.SilenceRatio"},
		{"a negative interval", rollout.Plan{Interval: -time.Second}, "Plan.Interval"},
		{"a negative checkpoint", rollout.Plan{Checkpoint: -time.Second}, "Plan.Checkpoint"},
	}
	for _, tt := range tests {
		t.Run("New rejects "+tt.name, func(t *testing.T) {
			r, err := rollout.New(tt.plan)
			require.ErrorIs(t, err, rollout.ErrPlan)
			assert.Nil(t, r, "New(%+v) rollout", tt.plan)
			assert.Contains(t, err.Error(), tt.field, "New error must name the field")
		})
	}
}

func TestNewAcceptsSensiblePlans(t *testing.T) {
	tests := []struct {
		name string
		plan rollout.Plan
		want []float64
	}{
		{"the zero plan uses the default rings", rollout.Plan{}, []float64{0.1, 1, 10, 50, 100}},
		{"the zero Unleash plan drops rings below 1%", rollout.Plan{Bucketing: rollout.BucketingUnleash}, []float64{1, 10, 50, 100}},
		{"a first ring of one key in ten thousand", rollout.Plan{Stages: []rollout.Stage{{Percent: 0.01}, {Percent: 100}}}, []float64{0.01, 100}},
		{"a first ring of one key in a million", rollout.Plan{Stages: []rollout.Stage{{Percent: 0.0001}, {Percent: 100}}}, []float64{0.0001, 100}},
		{"a single ring at 100%", rollout.Plan{Stages: []rollout.Stage{{Percent: 100}}}, []float64{100}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, err := rollout.New(tt.plan)
			require.NoError(t, err)
			var got []float64
			for _, s := range r.Stages() {
				got = append(got, s.Percent)
				assert.Equal(t, rollout.DefaultMinSamples, s.MinSamples, "default MinSamples")
				assert.GreaterOrEqual(t, s.Deadline, max(s.Bake, rollout.DefaultMinDeadline), "default Deadline")
			}
			assert.Equal(t, tt.want, got, "Stages() percents")
		})
	}
}

func TestGeometric(t *testing.T) {
	tests := []struct {
		name          string
		start, factor float64
		want          []float64
	}{
		{"powers of ten from 0.01%", 0.01, 10, []float64{0.01, 0.1, 1, 10, 100}},
		{"doubling from 5%", 5, 2, []float64{5, 10, 20, 40, 80, 100}},
		{"one ring from 100%", 100, 3, []float64{100}},
		{"factor 1.5 from one key in a million", 0.0001, 1.5, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			stages, err := rollout.Geometric(tt.start, tt.factor, time.Hour)
			require.NoError(t, err)
			var got []float64
			for _, s := range stages {
				got = append(got, s.Percent)
				assert.Equal(t, time.Hour, s.Bake, "Geometric bake")
			}
			if tt.want != nil {
				assert.Equal(t, tt.want, got, "Geometric(%v, %v) percents", tt.start, tt.factor)
			}
			assert.Equal(t, 100.0, got[len(got)-1], "last ring")
			_, err = rollout.New(rollout.Plan{Stages: stages})
			require.NoError(t, err, "New with Geometric(%v, %v)", tt.start, tt.factor)
		})
	}
	for _, bad := range []struct {
		start, factor float64
		bake          time.Duration
	}{{0, 2, 0}, {1e-11, 10, 0}, {101, 2, 0}, {1, 1, 0}, {1, math.Inf(1), 0}, {1, 2, -time.Second},
		{0.0001, 1 + 1e-12, 0}, {0.0001, 1.2, 0}} {
		_, err := rollout.Geometric(bad.start, bad.factor, bad.bake)
		require.ErrorIs(t, err, rollout.ErrPlan, "Geometric(%v, %v, %v)", bad.start, bad.factor, bad.bake)
	}
	t.Run("a bake whose default deadline overflows is refused by Geometric, naming the bake", func(t *testing.T) {
		_, err := rollout.Geometric(3, 1e300, 1<<62)
		require.ErrorIs(t, err, rollout.ErrPlan, "Geometric(3, 1e300, 1<<62)")
		assert.Contains(t, err.Error(), "bake", "Geometric error must name the bake")
		assert.NotContains(t, err.Error(), "Deadline must not be below", "Geometric error must not blame a field the caller never set")
	})
}
