package rollout_test

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/ringfence/ringfence/rollout"
)

// keyOf returns a key that r assigns to v.
func keyOf(t *testing.T, r *rollout.Rollout, v rollout.Variant) string {
	t.Helper()
	for i := range 100_000 {
		if k := fmt.Sprintf("key-%d", i); r.Variant(k) == v {
			return k
		}
	}
	t.Fatalf("no key gets %v", v)
	return ""
}

type calls struct{ baseline, canary atomic.Int32 }

func (c *calls) fns(baseErr, canErr error, baseVal, canVal string) (b, cn func(context.Context) (string, error)) {
	b = func(context.Context) (string, error) { c.baseline.Add(1); return baseVal, baseErr }
	cn = func(context.Context) (string, error) { c.canary.Add(1); return canVal, canErr }
	return b, cn
}

func started(t *testing.T, p rollout.Plan) *rollout.Rollout {
	t.Helper()
	r := newRollout(t, p)
	require.NoError(t, r.Start(t.Context()))
	return r
}

func TestDoRunsTheAssignedVariantAndRecordsIt(t *testing.T) {
	r := started(t, rollout.Plan{})
	var c calls
	errCanary := errors.New("canary broke")
	base, can := c.fns(nil, errCanary, "old", "new")

	v, err := rollout.Do(t.Context(), r, keyOf(t, r, rollout.Baseline), base, can)
	require.NoError(t, err)
	assert.Equal(t, "old", v, "Do for a baseline key")

	_, err = rollout.Do(t.Context(), r, keyOf(t, r, rollout.Canary), base, can)
	require.ErrorIs(t, err, errCanary)
	assert.Equal(t, int32(1), c.baseline.Load(), "baseline calls")
	assert.Equal(t, int32(1), c.canary.Load(), "canary calls")

	vd := r.Status().Verdict
	assert.Equal(t, uint64(1), vd.Baseline.Samples, "baseline samples")
	assert.Equal(t, uint64(0), vd.Baseline.Errors, "baseline errors")
	assert.Equal(t, uint64(1), vd.Canary.Samples, "canary samples")
	assert.Equal(t, uint64(1), vd.Canary.Errors, "canary errors")
}

func TestDoFallsBackToTheBaselineWhenAsked(t *testing.T) {
	r := started(t, rollout.Plan{FallbackToBaseline: true})
	var c calls
	base, can := c.fns(nil, errors.New("canary broke"), "old", "new")
	v, err := rollout.Do(t.Context(), r, keyOf(t, r, rollout.Canary), base, can)
	require.NoError(t, err)
	assert.Equal(t, "old", v, "Do for a failing canary key")
	vd := r.Status().Verdict
	assert.Equal(t, uint64(1), vd.Canary.Errors, "the failure counts against the canary")
	assert.Equal(t, uint64(0), vd.Baseline.Samples, "the fallback call is not a baseline sample")
}

func TestDoDoesNotRecordCallsTheCallerCanceled(t *testing.T) {
	r := started(t, rollout.Plan{})
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	_, err := rollout.Do(ctx, r, "k", func(ctx context.Context) (int, error) { return 0, ctx.Err() },
		func(ctx context.Context) (int, error) { return 0, ctx.Err() })
	require.ErrorIs(t, err, context.Canceled)
	vd := r.Status().Verdict
	assert.Zero(t, vd.Baseline.Samples+vd.Canary.Samples, "samples after a canceled call")
}

func TestShadowStages(t *testing.T) {
	plan := rollout.Plan{Stages: []rollout.Stage{{Percent: 50, Shadow: true}, {Percent: 100}}}
	tests := []struct {
		name           string
		baseErr        error
		canErr         error
		canVal         string
		wantCanaryErrs uint64
	}{
		{"a matching canary counts as a success", nil, nil, "same", 0},
		{"a differing canary counts as a mismatch", nil, nil, "different", 1},
		{"a failing canary counts as a failure", nil, errors.New("canary broke"), "", 1},
		{"a canary that succeeds where the baseline fails counts as a mismatch", errors.New("baseline broke"), nil, "same", 1},
		{"a failing canary counts even when the baseline fails too", errors.New("baseline broke"), errors.New("canary broke"), "", 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) { shadowCase(t, plan, tt.baseErr, tt.canErr, tt.canVal, tt.wantCanaryErrs) })
		})
	}
	t.Run("without an equality function only outcomes are compared", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			r := started(t, plan)
			var c calls
			base, can := c.fns(nil, nil, "same", "different")
			v, err := rollout.Do(t.Context(), r, keyOf(t, r, rollout.Canary), base, can)
			require.NoError(t, err)
			assert.Equal(t, "same", v, "Do in a shadow stage")
			synctest.Wait()
			assert.Zero(t, r.Status().Verdict.Canary.Errors, "canary errors")
		})
	})
	t.Run("mismatches roll the shadow stage back", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			r := started(t, plan)
			key := keyOf(t, r, rollout.Canary)
			for range 200 {
				rollout.DoCompare(t.Context(), r, key,
					func(context.Context) (int, error) { return 1, nil },
					func(context.Context) (int, error) { return 2, nil },
					func(a, b int) bool { return a == b })
			}
			synctest.Wait()
			observe(r, rollout.Baseline, 200, 0, 0)
			v, err := r.Evaluate()
			require.NoError(t, err)
			assert.Equal(t, rollout.Regressed, v.Outcome, "verdict")
			assert.Equal(t, rollout.RolledBack, r.Status().State, "state")
		})
	})
}

func shadowCase(t *testing.T, plan rollout.Plan, baseErr, canErr error, canVal string, wantCanaryErrs uint64) {
	{
		{
			r := started(t, plan)
			require.True(t, r.Shadow(), "Shadow() in a shadow stage")
			require.True(t, r.Status().Shadow, "Status().Shadow in a shadow stage")
			var c calls
			base, can := c.fns(baseErr, canErr, "same", canVal)
			v, err := rollout.DoCompare(t.Context(), r, keyOf(t, r, rollout.Canary), base, can,
				func(a, b string) bool { return a == b })
			assert.Equal(t, "same", v, "the caller gets the baseline's result")
			assert.Equal(t, baseErr, err, "the caller gets the baseline's error")
			synctest.Wait()
			assert.Equal(t, int32(1), c.baseline.Load(), "baseline calls")
			assert.Equal(t, int32(1), c.canary.Load(), "canary calls")
			vd := r.Status().Verdict
			assert.Equal(t, uint64(1), vd.Canary.Samples, "canary samples")
			assert.Equal(t, wantCanaryErrs, vd.Canary.Errors, "canary errors")
			assert.Zero(t, vd.Baseline.Samples, "a shadowed key's baseline call is not a baseline sample")
		}
	}
}

type ctxKey struct{}

func TestShadowsRunDetached(t *testing.T) {
	plan := rollout.Plan{Stages: []rollout.Stage{{Percent: 50, Shadow: true}, {Percent: 100}},
		ShadowTimeout: time.Second, ShadowConcurrency: 2}
	base := func(context.Context) (int, error) { return 1, nil }

	t.Run("the caller does not wait for a slow canary", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			r := started(t, plan)
			release := make(chan struct{})
			start := time.Now()
			v, err := rollout.Do(t.Context(), r, keyOf(t, r, rollout.Canary), base, func(context.Context) (int, error) {
				<-release
				return 1, nil
			})
			require.NoError(t, err)
			assert.Equal(t, 1, v, "Do result")
			assert.Zero(t, time.Since(start), "time the caller waited")
			close(release)
			synctest.Wait()
			assert.Equal(t, uint64(1), r.Status().Verdict.Canary.Samples, "canary samples once it answered")
		})
	})
	t.Run("a canary panic is recovered and counted", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			r := started(t, plan)
			v, err := rollout.Do(t.Context(), r, keyOf(t, r, rollout.Canary), base, func(context.Context) (int, error) {
				panic("canary bug")
			})
			require.NoError(t, err)
			assert.Equal(t, 1, v, "Do result")
			synctest.Wait()
			assert.Equal(t, uint64(1), r.Status().Verdict.Canary.Errors, "canary errors after a panic")
		})
	})
	t.Run("the canary keeps the caller's values but not its cancellation", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			r := started(t, plan)
			ctx, cancel := context.WithCancel(context.WithValue(t.Context(), ctxKey{}, "trace-7"))
			var got any
			var canceled error
			rollout.Do(ctx, r, keyOf(t, r, rollout.Canary), base, func(ctx context.Context) (int, error) {
				time.Sleep(100 * time.Millisecond)
				got, canceled = ctx.Value(ctxKey{}), ctx.Err()
				return 1, nil
			})
			cancel()
			synctest.Wait()
			time.Sleep(200 * time.Millisecond)
			synctest.Wait()
			assert.Equal(t, "trace-7", got, "value seen by the canary")
			assert.NoError(t, canceled, "the canary's context after the caller canceled")
			assert.Zero(t, r.Status().Verdict.Canary.Errors, "canary errors")
		})
	})
	t.Run("a canary past its timeout counts as failed", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			r := started(t, plan)
			rollout.Do(t.Context(), r, keyOf(t, r, rollout.Canary), base, func(ctx context.Context) (int, error) {
				<-ctx.Done()
				return 0, ctx.Err()
			})
			time.Sleep(2 * time.Second)
			synctest.Wait()
			vd := r.Status().Verdict
			assert.Equal(t, uint64(1), vd.Canary.Errors, "canary errors after its timeout")
			assert.GreaterOrEqual(t, vd.Canary.P99, time.Second, "canary latency")
		})
	})
	t.Run("shadows beyond the concurrency bound are skipped", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			r := started(t, plan)
			key := keyOf(t, r, rollout.Canary)
			release := make(chan struct{})
			var ran atomic.Int32
			for range 5 {
				v, err := rollout.Do(t.Context(), r, key, base, func(context.Context) (int, error) {
					ran.Add(1)
					<-release
					return 1, nil
				})
				require.NoError(t, err)
				assert.Equal(t, 1, v, "Do result")
			}
			synctest.Wait()
			assert.Equal(t, int32(2), ran.Load(), "canaries running at once")
			close(release)
			synctest.Wait()
			assert.Equal(t, uint64(2), r.Status().Verdict.Canary.Samples, "canary samples")
		})
	})
}
