package rollout_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/ringfence/ringfence/rollout"
)

// observe records n outcomes of v, the first errs of them failures, each
// taking latency.
func observe(r *rollout.Rollout, v rollout.Variant, n, errs int, latency time.Duration) {
	for i := range n {
		var err error
		if i < errs {
			err = errors.New("boom")
		}
		r.Observe(v, err, latency)
	}
}

// healthyTraffic records a batch of healthy traffic split by the current
// canary share: 1,000 calls, 1% of them failing on either side.
func healthyTraffic(r *rollout.Rollout) {
	share := r.Status().Percent / 100
	nc := int(1000 * share)
	observe(r, rollout.Canary, nc, nc/100, 10*time.Millisecond)
	observe(r, rollout.Baseline, 1000-nc, (1000-nc)/100, 10*time.Millisecond)
}

// stages are three rings that need 100 canary samples and bake an hour.
func stages() []rollout.Stage {
	return []rollout.Stage{
		{Percent: 10, Bake: time.Hour, MinSamples: 100},
		{Percent: 50, Bake: time.Hour, MinSamples: 100},
		{Percent: 100, Bake: time.Hour, MinSamples: 100},
	}
}

func newRollout(t *testing.T, p rollout.Plan) *rollout.Rollout {
	t.Helper()
	if p.Stages == nil {
		p.Stages = stages()
	}
	r, err := rollout.New(p)
	require.NoError(t, err)
	return r
}

func transitions(h []rollout.Event) []string {
	var out []string
	for _, e := range h {
		out = append(out, fmt.Sprintf("%v->%v@%v", e.From, e.To, e.Percent))
	}
	return out
}

func countCanary(r *rollout.Rollout, keys int) int {
	n := 0
	for i := range keys {
		if r.Variant(fmt.Sprintf("key-%d", i)) == rollout.Canary {
			n++
		}
	}
	return n
}

func TestPendingExposesNoKey(t *testing.T) {
	r := newRollout(t, rollout.Plan{})
	assert.Equal(t, 0, countCanary(r, 10_000), "canary keys before Start")
	assert.Equal(t, rollout.Pending, r.Status().State, "Status().State")
	v, err := r.Evaluate()
	require.NoError(t, err)
	assert.Equal(t, rollout.Gathering, v.Outcome, "Evaluate() outcome before Start")
	assert.Empty(t, r.History(), "History() before Start")
}

func TestValidationFailureRollsBackWithoutExposure(t *testing.T) {
	errShape := errors.New("content has 20 fields, interpreter expects 21")
	var r *rollout.Rollout
	exposedDuringValidation := -1
	r = newRollout(t, rollout.Plan{Validate: func(ctx context.Context) error {
		exposedDuringValidation = countCanary(r, 10_000)
		return errShape
	}})
	err := r.Start(t.Context())
	require.ErrorIs(t, err, rollout.ErrValidation)
	require.ErrorIs(t, err, errShape)
	assert.Equal(t, 0, exposedDuringValidation, "canary keys during validation")
	assert.Equal(t, 0, countCanary(r, 10_000), "canary keys after failed validation")
	st := r.Status()
	assert.Equal(t, rollout.RolledBack, st.State, "Status().State")
	assert.Contains(t, st.Reason, errShape.Error(), "Status().Reason")
	assert.Equal(t, []string{"pending->rolled-back@0"}, transitions(r.History()), "History()")
	require.NoError(t, r.Start(t.Context()), "a second Start does nothing")
	assert.Equal(t, rollout.RolledBack, r.Status().State, "state after a second Start")
}

func TestHealthyRolloutBakesEachStageAndIsPromoted(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var events []rollout.Event
		validated := false
		r := newRollout(t, rollout.Plan{
			Validate: func(context.Context) error { validated = true; return nil },
			OnEvent:  func(e rollout.Event) { events = append(events, e) },
		})
		require.NoError(t, r.Start(t.Context()))
		assert.True(t, validated, "Validate ran")
		st := r.Status()
		assert.Equal(t, rollout.Running, st.State, "state after Start")
		assert.Equal(t, 10.0, st.Percent, "percent after Start")
		assert.Equal(t, time.Hour, st.BakeLeft, "BakeLeft after Start")
		assert.InDelta(t, 1000, countCanary(r, 10_000), 150, "canary keys at 10%")

		// Samples alone do not advance a stage before its bake.
		for range 5 {
			healthyTraffic(r)
		}
		v, err := r.Evaluate()
		require.NoError(t, err)
		assert.Equal(t, rollout.Healthy, v.Outcome, "verdict with samples, before the bake")
		assert.Equal(t, 10.0, r.Status().Percent, "percent before the bake")

		time.Sleep(40 * time.Minute)
		assert.Equal(t, 20*time.Minute, r.Status().BakeLeft, "BakeLeft after 40 minutes")
		time.Sleep(20 * time.Minute)
		_, err = r.Evaluate()
		require.NoError(t, err)
		st = r.Status()
		assert.Equal(t, 50.0, st.Percent, "percent after the first bake")
		assert.Zero(t, st.Verdict.Canary.Samples, "a new stage starts counting afresh")

		// Bake time alone does not advance a stage without samples.
		time.Sleep(time.Hour)
		v, err = r.Evaluate()
		require.NoError(t, err)
		assert.Equal(t, rollout.Gathering, v.Outcome, "verdict without samples")
		assert.Equal(t, 50.0, r.Status().Percent, "percent without samples")

		for range 5 {
			healthyTraffic(r)
		}
		_, err = r.Evaluate()
		require.NoError(t, err)
		assert.Equal(t, 100.0, r.Status().Percent, "percent after the second stage")
		for range 5 {
			healthyTraffic(r)
		}
		time.Sleep(time.Hour)
		_, err = r.Evaluate()
		require.NoError(t, err)
		assert.Equal(t, rollout.Promoted, r.Status().State, "state after the last stage")
		assert.Equal(t, 10_000, countCanary(r, 10_000), "canary keys when promoted")

		want := []string{"pending->running@10", "running->running@50", "running->running@100", "running->promoted@100"}
		assert.Equal(t, want, transitions(r.History()), "History()")
		assert.Equal(t, want, transitions(events), "events delivered to OnEvent")
		for _, e := range r.History() {
			assert.Equal(t, "rollout", e.Rollout, "event rollout name")
			assert.NotEmpty(t, e.Reason, "event reason")
		}
		last := r.History()[3]
		assert.Equal(t, rollout.Healthy, last.Verdict.Outcome, "promotion verdict")
		assert.Equal(t, uint64(5000), last.Verdict.Canary.Samples, "promotion verdict canary samples")
	})
}

func TestRegressionsRollBack(t *testing.T) {
	tests := []struct {
		name  string
		judge rollout.Judge
		feed  func(r *rollout.Rollout)
		rule  rollout.Rule
	}{
		{
			name: "a canary failing five times as often is caught by the error-rate test",
			feed: func(r *rollout.Rollout) {
				observe(r, rollout.Baseline, 9000, 90, time.Millisecond)
				observe(r, rollout.Canary, 1000, 50, time.Millisecond)
			},
			rule: rollout.RuleErrorRate,
		},
		{
			name:  "a canary above the error ceiling is caught at once",
			judge: rollout.Judge{MaxErrorRate: 0.2},
			feed: func(r *rollout.Rollout) {
				observe(r, rollout.Baseline, 900, 0, time.Millisecond)
				observe(r, rollout.Canary, 100, 30, time.Millisecond)
			},
			rule: rollout.RuleErrorCeiling,
		},
		{
			name:  "a canary above the p99 ceiling is caught at once",
			judge: rollout.Judge{MaxP99: 100 * time.Millisecond},
			feed: func(r *rollout.Rollout) {
				observe(r, rollout.Baseline, 900, 0, 500*time.Millisecond)
				observe(r, rollout.Canary, 100, 0, 200*time.Millisecond)
			},
			rule: rollout.RuleP99Ceiling,
		},
		{
			name: "a canary whose calls are slower than the baseline's 99th percentile is caught by the latency test",
			feed: func(r *rollout.Rollout) {
				observe(r, rollout.Baseline, 2000, 0, 10*time.Millisecond)
				observe(r, rollout.Canary, 200, 0, 10*time.Millisecond)
				r.Evaluate() // learns the baseline's latency threshold
				observe(r, rollout.Baseline, 1800, 0, 10*time.Millisecond)
				observe(r, rollout.Canary, 200, 0, 50*time.Millisecond)
			},
			rule: rollout.RuleLatency,
		},
		{
			name: "a canary whose units went silent is caught",
			feed: func(r *rollout.Rollout) {
				observe(r, rollout.Baseline, 1000, 0, time.Millisecond)
				observe(r, rollout.Canary, 10, 0, time.Millisecond)
			},
			rule: rollout.RuleSilence,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				r := newRollout(t, rollout.Plan{Judge: tt.judge})
				require.NoError(t, r.Start(t.Context()))
				tt.feed(r)
				v, err := r.Evaluate()
				require.NoError(t, err)
				assert.Equal(t, rollout.Regressed, v.Outcome, "Evaluate() outcome")
				assert.Equal(t, tt.rule, v.Rule, "Evaluate() rule")
				st := r.Status()
				assert.Equal(t, rollout.RolledBack, st.State, "state")
				assert.Equal(t, 0, countCanary(r, 10_000), "canary keys after roll back")
				h := r.History()
				require.Len(t, h, 2)
				assert.Equal(t, tt.rule, h[1].Verdict.Rule, "roll back event rule")
				assert.Contains(t, h[1].Reason, string(tt.rule), "roll back event reason")
			})
		})
	}
}

func TestSmallRegressionsAreNotWorthARollBack(t *testing.T) {
	r := newRollout(t, rollout.Plan{Stages: []rollout.Stage{{Percent: 50, MinSamples: 10}, {Percent: 100}}})
	require.NoError(t, r.Start(t.Context()))
	// 12% more errors than the baseline, on a great many calls.
	observe(r, rollout.Baseline, 200_000, 20_000, time.Millisecond)
	observe(r, rollout.Canary, 200_000, 22_400, time.Millisecond)
	v, err := r.Evaluate()
	require.NoError(t, err)
	assert.Less(t, v.LikelihoodRatio, v.Threshold, "the mixture is tuned to MinRegression and finds no evidence of it")
	assert.Equal(t, rollout.Running, r.Status().State, "state with a 12%% increase under a 50%% MinRegression")
	assert.Equal(t, 100.0, r.Status().Percent, "the healthy stage advanced")
}

func TestInconclusiveStages(t *testing.T) {
	tests := []struct {
		name   string
		action rollout.InconclusiveAction
		want   rollout.State
	}{
		{"a stage without samples by its deadline pauses by default", rollout.PauseOnInconclusive, rollout.Paused},
		{"a stage without samples by its deadline rolls back if the plan says so", rollout.RollBackOnInconclusive, rollout.RolledBack},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				r := newRollout(t, rollout.Plan{OnInconclusive: tt.action, Stages: []rollout.Stage{
					{Percent: 10, Bake: time.Hour, Deadline: 2 * time.Hour, MinSamples: 100}, {Percent: 100}}})
				require.NoError(t, r.Start(t.Context()))
				observe(r, rollout.Canary, 20, 0, time.Millisecond)
				observe(r, rollout.Baseline, 180, 0, time.Millisecond)
				time.Sleep(2*time.Hour - time.Second)
				_, err := r.Evaluate()
				require.NoError(t, err)
				assert.Equal(t, rollout.Running, r.Status().State, "state before the deadline")
				time.Sleep(time.Second)
				v, err := r.Evaluate()
				require.NoError(t, err)
				assert.Equal(t, rollout.Inconclusive, v.Outcome, "outcome at the deadline")
				assert.Equal(t, rollout.RuleDeadline, v.Rule, "rule at the deadline")
				assert.Equal(t, tt.want, r.Status().State, "state at the deadline")
				h := r.History()
				assert.Equal(t, rollout.Inconclusive, h[len(h)-1].Verdict.Outcome, "event verdict")
				assert.Equal(t, uint64(20), h[len(h)-1].Verdict.Canary.Samples, "event verdict samples")
			})
		})
	}
}

func TestPauseStopsTheBakeButNotTheJudge(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newRollout(t, rollout.Plan{})
		require.NoError(t, r.Start(t.Context()))
		healthyTraffic(r)
		time.Sleep(30 * time.Minute)
		require.NoError(t, r.Pause("investigating a ticket"))
		time.Sleep(10 * time.Hour)
		_, err := r.Evaluate()
		require.NoError(t, err)
		st := r.Status()
		assert.Equal(t, rollout.Paused, st.State, "state while paused")
		assert.Equal(t, 10.0, st.Percent, "a paused stage keeps its exposure")
		assert.Equal(t, 30*time.Minute, st.BakeLeft, "BakeLeft while paused")

		require.NoError(t, r.Resume("ticket unrelated"))
		time.Sleep(30 * time.Minute)
		_, err = r.Evaluate()
		require.NoError(t, err)
		assert.Equal(t, 50.0, r.Status().Percent, "percent after the rest of the bake")

		require.NoError(t, r.Pause("again"))
		observe(r, rollout.Baseline, 1000, 0, time.Millisecond)
		observe(r, rollout.Canary, 1000, 900, time.Millisecond)
		v, err := r.Evaluate()
		require.NoError(t, err)
		assert.Equal(t, rollout.Regressed, v.Outcome, "a paused stage is still judged")
		assert.Equal(t, rollout.RolledBack, r.Status().State, "state after a regression while paused")
	})
}

func TestOperatorControls(t *testing.T) {
	type step struct {
		control string
		wantErr error
		state   rollout.State
	}
	tests := []struct {
		name  string
		steps []step
	}{
		{"pause and resume", []step{{"pause", nil, rollout.Paused}, {"pause", rollout.ErrTransition, rollout.Paused}, {"resume", nil, rollout.Running}, {"resume", rollout.ErrTransition, rollout.Running}}},
		{"promote goes straight to 100%", []step{{"promote", nil, rollout.Promoted}, {"abort", rollout.ErrTransition, rollout.Promoted}, {"pause", rollout.ErrTransition, rollout.Promoted}}},
		{"promote from paused", []step{{"pause", nil, rollout.Paused}, {"promote", nil, rollout.Promoted}}},
		{"abort goes to 0%", []step{{"abort", nil, rollout.RolledBack}, {"promote", rollout.ErrTransition, rollout.RolledBack}, {"resume", rollout.ErrTransition, rollout.RolledBack}}},
		{"abort from paused", []step{{"pause", nil, rollout.Paused}, {"abort", nil, rollout.RolledBack}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := newRollout(t, rollout.Plan{})
			require.NoError(t, r.Start(t.Context()))
			for _, s := range tt.steps {
				var err error
				switch s.control {
				case "pause":
					err = r.Pause("operator " + s.control)
				case "resume":
					err = r.Resume("operator " + s.control)
				case "promote":
					err = r.Promote("operator " + s.control)
				case "abort":
					err = r.Abort("operator " + s.control)
				}
				if s.wantErr != nil {
					require.ErrorIs(t, err, s.wantErr, "%s", s.control)
				} else {
					require.NoError(t, err, "%s", s.control)
					assert.Equal(t, "operator "+s.control, r.Status().Reason, "reason after %s", s.control)
				}
				assert.Equal(t, s.state, r.Status().State, "state after %s", s.control)
			}
			switch r.Status().State {
			case rollout.Promoted:
				assert.Equal(t, 10_000, countCanary(r, 10_000), "canary keys when promoted")
			case rollout.RolledBack:
				assert.Equal(t, 0, countCanary(r, 10_000), "canary keys when rolled back")
			}
		})
	}
	t.Run("abort before start never exposes a key", func(t *testing.T) {
		r := newRollout(t, rollout.Plan{})
		require.NoError(t, r.Abort("change cancelled"))
		require.NoError(t, r.Start(t.Context()))
		assert.Equal(t, rollout.RolledBack, r.Status().State, "state")
		assert.Equal(t, 0, countCanary(r, 10_000), "canary keys")
	})
	t.Run("pause before start is refused", func(t *testing.T) {
		r := newRollout(t, rollout.Plan{})
		require.ErrorIs(t, r.Pause("early"), rollout.ErrTransition)
	})
}

func TestOnEventRunsOutsideTheLockAndInOrder(t *testing.T) {
	var (
		mu     sync.Mutex
		seen   []string
		states []rollout.State
	)
	var r *rollout.Rollout
	r = newRollout(t, rollout.Plan{OnEvent: func(e rollout.Event) {
		// Calling back into the rollout must not deadlock.
		states = append(states, r.Status().State)
		if e.To == rollout.Running && e.From == rollout.Pending {
			require.NoError(t, r.Pause("paused from the callback"))
		}
		mu.Lock()
		seen = append(seen, fmt.Sprintf("%v->%v", e.From, e.To))
		mu.Unlock()
	}})
	require.NoError(t, r.Start(t.Context()))
	require.NoError(t, r.Abort("done"))
	assert.Equal(t, []string{"pending->running", "running->paused", "paused->rolled-back"}, seen, "events")
	assert.Len(t, states, 3, "callbacks")
}

func TestRunDrivesTheRolloutAndStopsWithItsContext(t *testing.T) {
	t.Run("Run promotes a healthy rollout and returns nil", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			r := newRollout(t, rollout.Plan{Interval: time.Minute})
			require.NoError(t, r.Start(t.Context()))
			done := make(chan error)
			go func() { done <- r.Run(t.Context()) }()
			// Traffic arrives between Run's evaluations, never at the same
			// instant, so each batch is split by the share it is fed to.
			time.Sleep(30 * time.Second)
			for r.Status().State == rollout.Running {
				healthyTraffic(r)
				time.Sleep(10 * time.Minute)
			}
			require.NoError(t, <-done)
			require.Equal(t, rollout.Promoted, r.Status().State, "state after Run returned")
			// Three stages of an hour each, evaluated every minute.
			assert.Equal(t, 3*time.Hour, r.History()[3].Time.Sub(r.History()[0].Time), "time to promotion")
		})
	})
	t.Run("Run returns the context's error when it is canceled", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			r := newRollout(t, rollout.Plan{})
			ctx, cancel := context.WithCancel(t.Context())
			done := make(chan error)
			go func() { done <- r.Run(ctx) }()
			time.Sleep(time.Hour)
			synctest.Wait()
			cancel()
			require.ErrorIs(t, <-done, context.Canceled)
			assert.Equal(t, rollout.Pending, r.Status().State, "Run does not start the rollout")
		})
	})
}

func TestAbortDuringValidation(t *testing.T) {
	var r *rollout.Rollout
	r = newRollout(t, rollout.Plan{Validate: func(context.Context) error {
		require.ErrorIs(t, r.Pause("no"), rollout.ErrTransition)
		require.NoError(t, r.Abort("change withdrawn while validating"))
		return nil
	}})
	require.ErrorIs(t, r.Start(t.Context()), rollout.ErrTransition)
	assert.Equal(t, rollout.RolledBack, r.Status().State, "state")
	assert.Equal(t, 0, countCanary(r, 10_000), "canary keys")
}

func TestResumingAnInconclusiveStageGivesItAFreshDeadline(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newRollout(t, rollout.Plan{Stages: []rollout.Stage{
			{Percent: 10, Bake: time.Hour, Deadline: 2 * time.Hour, MinSamples: 100}, {Percent: 100}}})
		require.NoError(t, r.Start(t.Context()))
		time.Sleep(2 * time.Hour)
		v, err := r.Evaluate()
		require.NoError(t, err)
		require.Equal(t, rollout.Inconclusive, v.Outcome, "outcome at the deadline")
		require.Equal(t, rollout.Paused, r.Status().State, "state at the deadline")

		require.NoError(t, r.Resume("traffic is back"))
		_, err = r.Evaluate()
		require.NoError(t, err)
		assert.Equal(t, rollout.Running, r.Status().State, "state right after Resume")
		for range 3 {
			healthyTraffic(r)
		}
		time.Sleep(time.Minute)
		_, err = r.Evaluate()
		require.NoError(t, err)
		assert.Equal(t, 100.0, r.Status().Percent, "percent once the samples are in")
	})
}

func TestConcurrentUse(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newRollout(t, rollout.Plan{Interval: time.Minute})
		require.NoError(t, r.Start(t.Context()))
		ctx, cancel := context.WithCancel(t.Context())
		var wg sync.WaitGroup
		wg.Go(func() { r.Run(ctx) })
		for g := range 4 {
			wg.Go(func() {
				for i := range 2000 {
					rollout.Do(ctx, r, fmt.Sprintf("g%d-%d", g, i),
						func(context.Context) (int, error) { return 1, nil },
						func(context.Context) (int, error) { return 2, nil })
					if i%100 == 0 {
						time.Sleep(time.Minute)
						r.Status()
						r.History()
					}
				}
			})
		}
		wg.Go(func() {
			time.Sleep(5 * time.Minute)
			r.Pause("a look")
			time.Sleep(5 * time.Minute)
			r.Resume("fine")
		})
		time.Sleep(time.Hour)
		cancel()
		wg.Wait()
		st := r.Status()
		assert.Contains(t, []rollout.State{rollout.Running, rollout.Promoted}, st.State, "state after concurrent use")
		assert.NoError(t, st.Err, "Status().Err")
	})
}

func TestEventsFromManyGoroutinesAreAllDeliveredInHistoryOrder(t *testing.T) {
	var (
		mu  sync.Mutex
		got []rollout.Event
	)
	r := newRollout(t, rollout.Plan{OnEvent: func(e rollout.Event) {
		mu.Lock()
		got = append(got, e)
		mu.Unlock()
	}})
	require.NoError(t, r.Start(t.Context()))
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for range 200 {
				r.Pause("p")
				r.Resume("r")
			}
		})
	}
	wg.Wait()
	mu.Lock()
	defer mu.Unlock()
	assert.Equal(t, r.History(), got, "delivered events")
}
