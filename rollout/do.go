package rollout

import (
	"context"
	"errors"
	"time"
)

// Do runs the variant r assigns to key, times it and records the outcome
// with Observe, and returns its result.
//
// A key assigned to the baseline runs baseline. A key assigned to the
// canary runs canary; if that fails and Plan.FallbackToBaseline is set, Do
// runs baseline for this call and returns its result, while the failure
// still counts against the canary. In a shadow stage a key assigned to the
// canary runs both at once (canary on a new goroutine, with the same ctx),
// Do waits for both, returns the baseline's result and counts a canary
// error, or a canary that succeeds where the baseline fails, against the
// canary; see [DoCompare] to compare the values too.
//
// A call that fails because ctx was canceled is not recorded.
func Do[T any](ctx context.Context, r *Rollout, key string, baseline, canary func(context.Context) (T, error)) (T, error) {
	return DoCompare(ctx, r, key, baseline, canary, nil)
}

// DoCompare is Do with an equality function for shadow stages: a canary
// result that equal reports different from the baseline's counts against
// the canary as ErrMismatch. A nil equal compares only success and
// failure. Outside shadow stages DoCompare is Do.
func DoCompare[T any](ctx context.Context, r *Rollout, key string, baseline, canary func(context.Context) (T, error), equal func(baseline, canary T) bool) (T, error) {
	if r.Variant(key) == Baseline {
		start := time.Now()
		v, err := baseline(ctx)
		r.recordCall(ctx, Baseline, err, time.Since(start))
		return v, err
	}
	if r.Shadow() {
		return shadow(ctx, r, baseline, canary, equal)
	}
	start := time.Now()
	v, err := canary(ctx)
	r.recordCall(ctx, Canary, err, time.Since(start))
	if err != nil && r.p.FallbackToBaseline && ctx.Err() == nil {
		return baseline(ctx)
	}
	return v, err
}

func shadow[T any](ctx context.Context, r *Rollout, baseline, canary func(context.Context) (T, error), equal func(baseline, canary T) bool) (T, error) {
	type result struct {
		v       T
		err     error
		latency time.Duration
	}
	done := make(chan result, 1)
	go func() {
		start := time.Now()
		v, err := canary(ctx)
		done <- result{v, err, time.Since(start)}
	}()
	bv, berr := baseline(ctx)
	c := <-done
	err := c.err
	switch {
	case err != nil:
	case berr != nil:
		err = ErrMismatch
	case equal != nil && !equal(bv, c.v):
		err = ErrMismatch
	}
	r.recordCall(ctx, Canary, err, c.latency)
	return bv, berr
}

// recordCall observes a call's outcome unless it failed because ctx was
// canceled by the caller.
func (r *Rollout) recordCall(ctx context.Context, v Variant, err error, latency time.Duration) {
	if err != nil && errors.Is(err, context.Canceled) && ctx.Err() != nil {
		return
	}
	r.Observe(v, err, latency)
}
