package rollout_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/ringfence/ringfence/rollout"
)

func evidencePlan() rollout.Plan {
	return rollout.Plan{Name: "fleet", Stages: []rollout.Stage{{Percent: 10, MinSamples: 100}, {Percent: 100}},
		Judge: rollout.Judge{LatencyThreshold: 50 * time.Millisecond}}
}

// hostTraffic observes n calls from hosts prefix-0..prefix-(n-1), every
// tenth of them failing.
func hostTraffic(r *rollout.Rollout, prefix string, n int) {
	for i := range n {
		host := fmt.Sprintf("%s-%d", prefix, i)
		var err error
		if i%10 == 0 {
			err = errors.New("boom")
		}
		r.ObserveKey(host, r.Variant(host), err, time.Millisecond)
	}
}

func TestEvidenceMergesAcrossProcesses(t *testing.T) {
	a, b := started(t, evidencePlan()), started(t, evidencePlan())
	hostTraffic(a, "a", 500)
	hostTraffic(b, "b", 700)
	ea, eb := a.Evidence(), b.Evidence()
	require.NoError(t, ea.Validate(), "Validate of a process's evidence")

	var fleet rollout.Evidence
	require.NoError(t, fleet.Merge(ea), "Merge into empty evidence")
	require.NoError(t, fleet.Merge(eb), "Merge of a second process")

	judge := started(t, rollout.Plan{Name: "fleet", Stages: evidencePlan().Stages, Judge: evidencePlan().Judge,
		Evidence: func(context.Context, rollout.Evidence) (rollout.Evidence, error) { return fleet, nil }})
	v, err := judge.Evaluate()
	require.NoError(t, err)
	va, vb := a.Status().Verdict, b.Status().Verdict
	assert.Equal(t, va.Baseline.Samples+vb.Baseline.Samples, v.Baseline.Samples, "merged baseline samples")
	assert.Equal(t, va.Canary.Errors+vb.Canary.Errors, v.Canary.Errors, "merged canary errors")
	assert.Equal(t, uint64(1200), v.Baseline.Samples+v.Canary.Samples, "merged samples")
}

func TestEvidenceMergeRefusesOtherStages(t *testing.T) {
	base := started(t, evidencePlan()).Evidence()
	other := evidencePlan()
	other.Name = "other"
	advanced := started(t, evidencePlan())
	hostTraffic(advanced, "h", 3000)
	_, err := advanced.Evaluate()
	require.NoError(t, err)
	require.Equal(t, 1, advanced.Status().Stage, "the second rollout moved to its next stage")
	learnt := evidencePlan()
	learnt.Judge.LatencyThreshold = time.Second

	tests := []struct {
		name string
		o    rollout.Evidence
	}{
		{"of another rollout", started(t, other).Evidence()},
		{"of another stage", advanced.Evidence()},
		{"of another latency threshold", started(t, learnt).Evidence()},
		{"of another version", func() rollout.Evidence { e := base; e.Version = 9; return e }()},
		{"with more errors than calls", func() rollout.Evidence { e := base; e.Canary.Errors[3] = 1; return e }()},
	}
	for _, tt := range tests {
		t.Run("Merge refuses evidence "+tt.name, func(t *testing.T) {
			e := base
			err := e.Merge(tt.o)
			require.ErrorIs(t, err, rollout.ErrEvidence)
			assert.Equal(t, base, e, "evidence after a refused Merge")
		})
	}
	t.Run("Merge refuses a count that would overflow", func(t *testing.T) {
		e, o := base, base
		e.Baseline.Samples[0], o.Baseline.Samples[0] = 1<<63, 1<<63
		require.ErrorIs(t, e.Merge(o), rollout.ErrEvidence)
	})
}

func TestEvidenceJSON(t *testing.T) {
	r := started(t, evidencePlan())
	hostTraffic(r, "h", 800)
	e := r.Evidence()
	doc, err := json.Marshal(e)
	require.NoError(t, err)
	assert.Less(t, len(doc), 12_000, "encoded size")
	var back rollout.Evidence
	require.NoError(t, json.Unmarshal(doc, &back))
	assert.Equal(t, e, back, "evidence after a JSON round trip")

	require.Error(t, json.Unmarshal([]byte(`{"v":1,`), &back), "Unmarshal of a truncated document")
	for _, bad := range []struct{ name, doc string }{
		{"another version", `{"v":2}`},
		{"no version", `{}`},
		{"short counts", `{"v":1,"rollout":"fleet","salt":"fleet","stages":2,"stage":0,"ppm":100000,"baseline":{"n":[1]}}`},
	} {
		t.Run("Unmarshal refuses "+bad.name, func(t *testing.T) {
			got := back
			require.ErrorIs(t, json.Unmarshal([]byte(bad.doc), &got), rollout.ErrEvidence)
			assert.Equal(t, back, got, "evidence after a refused Unmarshal")
		})
	}
	t.Run("Unmarshal refuses counts that do not add up", func(t *testing.T) {
		var w map[string]any
		require.NoError(t, json.Unmarshal(doc, &w))
		w["canary"].(map[string]any)["e"].([]any)[0] = 1e12
		spoilt, err := json.Marshal(w)
		require.NoError(t, err)
		var got rollout.Evidence
		require.ErrorIs(t, json.Unmarshal(spoilt, &got), rollout.ErrEvidence)
	})
	t.Run("Unmarshal refuses a damaged sketch", func(t *testing.T) {
		var w map[string]any
		require.NoError(t, json.Unmarshal(doc, &w))
		w["canary"].(map[string]any)["a"] = "AAAA"
		spoilt, err := json.Marshal(w)
		require.NoError(t, err)
		var got rollout.Evidence
		require.ErrorIs(t, json.Unmarshal(spoilt, &got), rollout.ErrEvidence)
	})
}

func TestFleetEvidenceFailuresKeepTheStage(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		fail := true
		var seen rollout.Evidence
		p := evidencePlan()
		p.Evidence = func(_ context.Context, local rollout.Evidence) (rollout.Evidence, error) {
			seen = local
			if fail {
				return rollout.Evidence{}, errors.New("fleet store unreachable")
			}
			return local, nil
		}
		r := started(t, p)
		hostTraffic(r, "h", 3000)
		time.Sleep(time.Minute)
		_, err := r.Evaluate()
		require.NoError(t, err)
		st := r.Status()
		assert.Equal(t, 0, st.Stage, "stage while the fleet's evidence is missing")
		assert.Equal(t, rollout.Running, st.State, "state while the fleet's evidence is missing")
		require.ErrorIs(t, st.Err, rollout.ErrEvidence)
		assert.Contains(t, st.Err.Error(), "since", "the error says since when")
		assert.NotZero(t, seen.Canary.Samples[0]+seen.Baseline.Samples[0]+seen.Baseline.Samples[1], "Plan.Evidence gets the local evidence")

		// A local regression still rolls back while the fleet is unreachable.
		bad := started(t, p)
		for i := range 3000 {
			host := fmt.Sprintf("x-%d", i)
			v := bad.Variant(host)
			var err error
			if v == rollout.Canary {
				err = errors.New("boom")
			}
			bad.ObserveKey(host, v, err, time.Millisecond)
		}
		bad.Evaluate()
		assert.Equal(t, rollout.RolledBack, bad.Status().State, "a local regression while the fleet is unreachable")

		fail = false
		_, err = r.Evaluate()
		require.NoError(t, err)
		st = r.Status()
		assert.NoError(t, st.Err, "Err once the fleet's evidence is back")
		assert.Equal(t, 1, st.Stage, "stage once the fleet's evidence is back")
	})
	t.Run("evidence of another stage is refused", func(t *testing.T) {
		p := evidencePlan()
		other := started(t, rollout.Plan{Name: "other", Stages: p.Stages}).Evidence()
		p.Evidence = func(context.Context, rollout.Evidence) (rollout.Evidence, error) { return other, nil }
		r := started(t, p)
		hostTraffic(r, "h", 3000)
		r.Evaluate()
		require.ErrorIs(t, r.Err(), rollout.ErrEvidence)
		assert.Equal(t, 0, r.Status().Stage, "stage after evidence of another rollout")
	})
}

func TestResumeRestoresKeyedEvidence(t *testing.T) {
	store := &memStore{}
	p := evidencePlan()
	p.Store = store
	first := started(t, p)
	hostTraffic(first, "h", 500)
	require.NoError(t, first.Pause("restart"))
	want := first.Evidence()

	second := newRollout(t, p)
	require.NoError(t, second.Start(t.Context()))
	assert.Equal(t, want, second.Evidence(), "evidence after a restart")
}

// memStore is a Store in memory.
type memStore struct {
	rec     rollout.Record
	version uint64
}

func (m *memStore) Load(context.Context) (rollout.Record, uint64, error) {
	if m.version == 0 {
		return rollout.Record{}, 0, rollout.ErrNoState
	}
	return m.rec, m.version, nil
}

func (m *memStore) Save(_ context.Context, r rollout.Record, expect uint64) (uint64, error) {
	if expect != m.version {
		return 0, rollout.ErrConflict
	}
	m.rec = r
	m.version++
	return m.version, nil
}

func TestCheckTraffic(t *testing.T) {
	rep, err := rollout.CheckTraffic(rollout.Plan{}, rollout.Traffic{CallsPerSecond: 100})
	require.NoError(t, err)
	assert.True(t, rep.Viable, "the default plan at 100 calls/s")
	assert.InDelta(t, 23.1, rep.NeededCallsPerSecond, 0.1, "traffic the default plan needs")

	// With 10,000 hosts the first ring holds 10 of them, give or take 3:
	// a ring short of hosts must still gather its samples. The default
	// plan is viable at the traffic its documentation states.
	for _, rate := range []float64{70, 100} {
		rep, err = rollout.CheckTraffic(rollout.Plan{}, rollout.Traffic{CallsPerSecond: rate, Keys: 10_000})
		require.NoError(t, err)
		assert.True(t, rep.Viable, "the default plan at %v calls/s over 10,000 hosts", rate)
		assert.InDelta(t, 10, rep.Stages[0].Keys, 1e-9, "hosts in the first ring")
		assert.InDelta(t, 63, rep.NeededCallsPerSecond, 0.5, "traffic the default plan needs over 10,000 hosts")
	}
	rep, err = rollout.CheckTraffic(rollout.Plan{}, rollout.Traffic{CallsPerSecond: 40, Keys: 10_000})
	require.NoError(t, err)
	assert.False(t, rep.Viable, "the default plan at 40 calls/s over 10,000 hosts")
	first := rep.FirstViablePercent
	stages := rollout.DefaultStages()
	stages[0].Percent = first
	if first >= 1 {
		stages = append(stages[:1], stages[2:]...)
	}
	_, err = rollout.New(rollout.Plan{Stages: stages, Traffic: rollout.Traffic{CallsPerSecond: 40, Keys: 10_000}})
	require.NoError(t, err, "New with the first ring CheckTraffic suggests over 10,000 hosts (%v%%)", first)

	rep, err = rollout.CheckTraffic(rollout.Plan{}, rollout.Traffic{CallsPerSecond: 1})
	require.NoError(t, err)
	assert.False(t, rep.Viable, "the default plan at 1 call/s")
	assert.False(t, rep.Stages[0].Viable, "its first ring")
	assert.Equal(t, 2.3149, rep.FirstViablePercent, "smallest viable first ring at 1 call/s")
	_, err = rollout.New(rollout.Plan{Stages: []rollout.Stage{{Percent: 2.3149, Bake: 30 * time.Minute, Deadline: 6 * time.Hour}, {Percent: 100}}, Traffic: rollout.Traffic{CallsPerSecond: 1}})
	require.NoError(t, err, "New with the first ring CheckTraffic suggests")

	_, err = rollout.CheckTraffic(rollout.Plan{}, rollout.Traffic{})
	require.ErrorIs(t, err, rollout.ErrPlan)
}

func TestEmptyRingPausesAndSaysSo(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		p := rollout.Plan{Stages: []rollout.Stage{{Percent: 0.01, Deadline: time.Hour}, {Percent: 100}},
			OnInconclusive: rollout.RollBackOnInconclusive}
		r := started(t, p)
		for range 61 {
			for i := range 50 { // 50 hosts: none lands in a ring of one in ten thousand
				host := fmt.Sprintf("host-%d", i)
				v := r.Variant(host)
				require.Equal(t, rollout.Baseline, v, "Variant(%q)", host)
				r.ObserveKey(host, v, nil, time.Millisecond)
			}
			time.Sleep(time.Minute)
			r.Evaluate()
		}
		st := r.Status()
		assert.Equal(t, rollout.Paused, st.State, "state of an empty ring past its deadline")
		h := r.History()
		assert.Equal(t, rollout.RuleEmptyRing, h[len(h)-1].Verdict.Rule, "rule")
		assert.Contains(t, st.Reason, "no key assigned", "reason")
	})
}

func TestObserveKeyAllocatesNothing(t *testing.T) {
	r := started(t, evidencePlan())
	err := errors.New("boom")
	if n := testing.AllocsPerRun(100, func() { r.ObserveKey("host-1", rollout.Canary, err, time.Millisecond) }); n != 0 {
		t.Errorf("ObserveKey allocs = %v, want 0", n)
	}
	if n := testing.AllocsPerRun(100, func() { r.Variant("host-1") }); n != 0 {
		t.Errorf("Variant allocs = %v, want 0", n)
	}
}

func TestEvidenceCarriesAcrossStagesAndRestarts(t *testing.T) {
	store := &memStore{}
	p := rollout.Plan{Name: "carry", Store: store,
		Stages: []rollout.Stage{{Percent: 10, MinSamples: 100}, {Percent: 50, MinSamples: 100}, {Percent: 100}}}
	first := started(t, p)
	// A canary somewhat worse than the baseline: not enough to roll back
	// in the first ring.
	for i := range 2000 {
		host := fmt.Sprintf("h-%d", i)
		v := first.Variant(host)
		var err error
		if (v == rollout.Canary && i%25 == 0) || i%100 == 0 {
			err = errors.New("boom")
		}
		first.ObserveKey(host, v, err, time.Millisecond)
	}
	end, err := first.Evaluate()
	require.NoError(t, err)
	require.Equal(t, 1, first.Status().Stage, "the first ring advanced")
	require.Greater(t, end.LikelihoodRatio, 1.0, "the first ring's evidence against the canary")
	assert.InDelta(t, end.LikelihoodRatio, first.Status().Verdict.LikelihoodRatio, 1e-9*end.LikelihoodRatio,
		"the next stage starts from the first ring's ratio")

	second := newRollout(t, p)
	require.NoError(t, second.Start(t.Context()))
	assert.InDelta(t, end.LikelihoodRatio, second.Status().Verdict.LikelihoodRatio, 1e-9*end.LikelihoodRatio,
		"the carried ratio after a restart")
}
