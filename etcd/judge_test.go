package etcd

import (
	"context"
	"fmt"
	"log/slog"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/ringfence/ringfence/etcd/internal/etcdtest"
	"github.com/ringfence/ringfence/rollout"
)

// canaryKeys counts the keys of 200 that r sends to the canary.
func canaryKeys(r *rollout.Rollout) (n int) {
	for i := range 200 {
		if r.Variant(fmt.Sprint("key", i)) == rollout.Canary {
			n++
		}
	}
	return n
}

func TestRolloutJudgeFailsSafeWhenStale(t *testing.T) {
	srv := etcdtest.New(t)
	proxy := newProxy(t, srv)
	ctx := waitCtx(t)
	c := newClient(t, proxy.Endpoint())

	var electionLog, evidenceLog levels
	es, electionFresh := freshnessLog(quick())
	es.Logger = slog.New(&electionLog)
	e, err := NewEvaluator(ctx, c, "checkout", EvaluatorSettings{Settings: es, ID: "judge", LeaseTTL: 10 * time.Second})
	require.NoError(t, err)
	t.Cleanup(func() { e.Close() })
	fs, evidenceFresh := freshnessLog(quick())
	fs.Logger = slog.New(&evidenceLog)
	fe, err := NewFleetEvidence(ctx, c, "checkout", EvidenceSettings{Settings: fs, Instance: "judge", LeaseTTL: 10 * time.Second})
	require.NoError(t, err)
	t.Cleanup(func() { fe.Close() })
	awaitFreshness(t, electionFresh, false, "evaluator's first read")

	store, err := e.Campaign(ctx)
	require.NoError(t, err)
	plan := rollout.Plan{Name: "checkout", Interval: 50 * time.Millisecond,
		Stages: []rollout.Stage{{Percent: 50, Bake: time.Hour}, {Percent: 100}}}
	j, err := e.JudgeRollout(plan, store, fe)
	require.NoError(t, err)
	runCtx, stop := context.WithCancel(ctx)
	ran := make(chan error, 1)
	go func() { ran <- j.Run(runCtx) }()
	t.Cleanup(func() {
		stop()
		<-ran
	})
	for j.Judged().Status().State != rollout.Running {
		select {
		case <-ctx.Done():
			t.Fatal("the judged rollout did not start")
		case <-time.After(10 * time.Millisecond):
		}
	}
	require.Same(t, j.Judged(), j.Rollout(), "Rollout() while the view is fresh")
	require.Positive(t, canaryKeys(j.Rollout()), "canary keys while the view is fresh")

	proxy.Cut()
	cut := time.Now()
	awaitFreshness(t, electionFresh, true, "evaluator, proxy cut")
	awaitFreshness(t, evidenceFresh, true, "evidence, proxy cut")
	for j.Rollout() == j.Judged() {
		select {
		case <-ctx.Done():
			t.Fatal("the judge kept the judged rollout while its view was stale")
		case <-time.After(10 * time.Millisecond):
		}
	}
	assert.GreaterOrEqual(t, time.Since(cut), quick().StaleAfter, "the judge failed safe before the view's time to live")
	st := j.Rollout().Status()
	assert.Equal(t, rollout.RolledBack, st.State, "the stand-in while stale")
	assert.NotEmpty(t, st.Reason, "the stand-in says why")
	assert.Zero(t, canaryKeys(j.Rollout()), "canary keys while stale")
	assert.Equal(t, rollout.Running, j.Judged().Status().State, "the judged rollout while stale")
	for _, f := range []Freshness{e.Freshness(), fe.Freshness()} {
		assert.True(t, f.Stale, "Freshness().Stale while cut")
		assert.Error(t, f.Err, "Freshness().Err while cut")
		assert.False(t, f.Since.Before(cut), "Freshness().Since while cut")
	}

	proxy.Restore()
	awaitFreshness(t, electionFresh, false, "evaluator, proxy restored")
	for j.Rollout() != j.Judged() {
		select {
		case <-ctx.Done():
			t.Fatalf("the judge did not recover: evaluator %+v, evidence %+v", e.Freshness(), fe.Freshness())
		case <-time.After(10 * time.Millisecond):
		}
	}
	assert.Equal(t, rollout.Running, j.Rollout().Status().State, "the judged rollout once fresh again")
	assert.Positive(t, canaryKeys(j.Rollout()), "canary keys once fresh again")
	for _, f := range []Freshness{e.Freshness(), fe.Freshness()} {
		assert.False(t, f.Stale, "Freshness().Stale once fresh again")
		assert.NoError(t, f.Err, "Freshness().Err once fresh again")
	}
	want := []slog.Level{slog.LevelWarn, slog.LevelInfo}
	assert.Equal(t, want, electionLog.logged(), "the evaluator's stale and fresh lines")
	assert.Equal(t, want, evidenceLog.logged(), "the fleet evidence's stale and fresh lines")
}

func TestJudgeRolloutRejectsBadArguments(t *testing.T) {
	srv := etcdtest.New(t)
	ctx := waitCtx(t)
	c := newClient(t, srv.Endpoints()...)
	e, err := NewEvaluator(ctx, c, "checkout", EvaluatorSettings{Settings: quick()})
	require.NoError(t, err)
	t.Cleanup(func() { e.Close() })
	fe, err := NewFleetEvidence(ctx, c, "checkout", EvidenceSettings{Settings: quick()})
	require.NoError(t, err)
	t.Cleanup(func() { fe.Close() })
	other, err := NewFleetEvidence(ctx, c, "search", EvidenceSettings{Settings: quick()})
	require.NoError(t, err)
	t.Cleanup(func() { other.Close() })
	fenced, err := e.Campaign(ctx)
	require.NoError(t, err)
	unfenced, err := NewRolloutStore(c, "checkout", quick())
	require.NoError(t, err)

	plan := rollout.Plan{Name: "checkout"}
	withStore := plan
	withStore.Store = unfenced
	for name, call := range map[string]func() (*RolloutJudge, error){
		"a plan with a Store": func() (*RolloutJudge, error) { return e.JudgeRollout(withStore, fenced, fe) },
		"another rollout":     func() (*RolloutJudge, error) { return e.JudgeRollout(rollout.Plan{Name: "search"}, fenced, fe) },
		"an unfenced store":   func() (*RolloutJudge, error) { return e.JudgeRollout(plan, unfenced, fe) },
		"no store":            func() (*RolloutJudge, error) { return e.JudgeRollout(plan, nil, fe) },
		"another's evidence":  func() (*RolloutJudge, error) { return e.JudgeRollout(plan, fenced, other) },
		"no evidence":         func() (*RolloutJudge, error) { return e.JudgeRollout(plan, fenced, nil) },
	} {
		_, err := call()
		assert.Error(t, err, "JudgeRollout with %s", name)
	}
}

func TestRolloutJudgeServesTheRolloutOnceItEnds(t *testing.T) {
	srv := etcdtest.New(t)
	proxy := newProxy(t, srv)
	ctx := waitCtx(t)
	c := newClient(t, proxy.Endpoint())
	e, err := NewEvaluator(ctx, c, "checkout", EvaluatorSettings{Settings: quick(), ID: "judge", LeaseTTL: 10 * time.Second})
	require.NoError(t, err)
	t.Cleanup(func() { e.Close() })
	fe, err := NewFleetEvidence(ctx, c, "checkout", EvidenceSettings{Settings: quick(), LeaseTTL: 10 * time.Second})
	require.NoError(t, err)
	t.Cleanup(func() { fe.Close() })
	store, err := e.Campaign(ctx)
	require.NoError(t, err)
	j, err := e.JudgeRollout(rollout.Plan{Name: "checkout", Interval: 50 * time.Millisecond,
		Stages: []rollout.Stage{{Percent: 50, Bake: time.Hour}, {Percent: 100}}}, store, fe)
	require.NoError(t, err)
	ran := make(chan error, 1)
	go func() { ran <- j.Run(ctx) }()
	for j.Judged().Status().State != rollout.Running {
		select {
		case <-ctx.Done():
			t.Fatal("the judged rollout did not start")
		case <-time.After(10 * time.Millisecond):
		}
	}

	proxy.Cut()
	for j.Rollout() == j.Judged() {
		select {
		case <-ctx.Done():
			t.Fatal("the judge kept the judged rollout while its view was stale")
		case <-time.After(10 * time.Millisecond):
		}
	}
	// The operator rolls back on the leader while etcd is unreachable: the
	// rollback takes effect though it cannot be saved, and ends Run.
	require.Error(t, j.Judged().Abort("operator: bad update"), "Abort while etcd is unreachable")
	select {
	case err := <-ran:
		require.NoError(t, err, "Run once the rollout ended")
	case <-ctx.Done():
		t.Fatal("Run did not return once the rollout ended")
	}
	assert.Same(t, j.Judged(), j.Rollout(), "Rollout() once the rollout ended")
	assert.Equal(t, rollout.RolledBack, j.Rollout().Status().State)
	proxy.Restore()
}
