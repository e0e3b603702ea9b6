package rollout

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// ErrPanic is the error recorded against the canary when a shadow call of
// it panics; Do recovers the panic.
var ErrPanic = errors.New("rollout: canary panicked")

// Do runs the variant r assigns to key, times it and records the outcome
// with ObserveKey, and returns its result.
//
// A key assigned to the baseline runs baseline. A key assigned to the
// canary runs canary; if that fails and Plan.FallbackToBaseline is set, Do
// runs baseline for this call and returns its result, while the failure
// still counts against the canary.
//
// In a shadow stage a key assigned to the canary runs baseline and returns
// its result at once; the canary runs detached, on a goroutine of its own
// that may outlive the call: with a context that keeps ctx's values but
// not its cancellation or deadline (context.WithoutCancel), bounded by
// Plan.ShadowTimeout, with a panic recovered and counted as ErrPanic. At
// most Plan.ShadowConcurrency shadow calls run at once; a call beyond that
// runs no shadow and records nothing. A canary error, a canary that outlives
// its timeout, or a canary that succeeds where the baseline fails counts
// against the canary; see [DoCompare] to compare the values too. The
// goroutine ends when the canary returns (a canary that ignores its
// context's deadline keeps its slot until it does).
//
// A call that fails because ctx was canceled is not recorded.
func Do[T any](ctx context.Context, r *Rollout, key string, baseline, canary func(context.Context) (T, error)) (T, error) {
	return DoCompare(ctx, r, key, baseline, canary, nil)
}

// DoCompare is Do with an equality function for shadow stages: a canary
// result that equal reports different from the baseline's counts against
// the canary as ErrMismatch. A nil equal compares only success and
// failure. equal runs on the shadow's goroutine. Outside shadow stages
// DoCompare is Do.
func DoCompare[T any](ctx context.Context, r *Rollout, key string, baseline, canary func(context.Context) (T, error), equal func(baseline, canary T) bool) (T, error) {
	h := r.p.hash.sum(key)
	route := r.route.Load()
	ppm := uint32(route)
	v, pos, s := Baseline, uint32(0), r.stats.Load()
	switch {
	case ppm >= Buckets:
		v, pos = Canary, r.position(key, h)
	case ppm > 0:
		v, pos, s = r.assign(ppm, key, h)
	}
	if v == Baseline {
		start := time.Now()
		res, err := baseline(ctx)
		r.recordCall(ctx, ctx, s, Baseline, pos, h, err, time.Since(start))
		return res, err
	}
	if route&shadowBit != 0 {
		return shadow(ctx, r, s, pos, h, baseline, canary, equal)
	}
	start := time.Now()
	res, err := canary(ctx)
	r.recordCall(ctx, ctx, s, Canary, pos, h, err, time.Since(start))
	if err != nil && r.p.FallbackToBaseline && ctx.Err() == nil {
		return baseline(ctx)
	}
	return res, err
}

// baselineResult is the baseline's outcome, handed to a shadow.
type baselineResult[T any] struct {
	v   T
	err error
}

func shadow[T any](ctx context.Context, r *Rollout, s *stats, pos uint32, h uint64, baseline, canary func(context.Context) (T, error), equal func(baseline, canary T) bool) (T, error) {
	select {
	case r.p.shadowSlots <- struct{}{}:
	default:
		// Too many shadows in flight: serve the baseline, judge nothing.
		return baseline(ctx)
	}
	base := make(chan baselineResult[T], 1)
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), r.p.ShadowTimeout)
	go func() {
		defer func() { <-r.p.shadowSlots }()
		defer cancel()
		start := time.Now()
		cv, err := runShadow(sctx, canary)
		latency := time.Since(start)
		if err == nil && sctx.Err() != nil {
			err = sctx.Err() // answered, but after its timeout
		}
		b, ok := <-base
		switch {
		case err != nil:
		case !ok:
			return // the baseline panicked: nothing to compare with
		case b.err != nil && !(errors.Is(b.err, context.Canceled) && ctx.Err() != nil):
			err = ErrMismatch
		case equal != nil && !equal(b.v, cv):
			err = ErrMismatch
		}
		r.recordCall(ctx, sctx, s, Canary, pos, h, err, latency)
	}()
	sent := false
	defer func() {
		if !sent {
			close(base)
		}
	}()
	bv, berr := baseline(ctx)
	base <- baselineResult[T]{bv, berr}
	sent = true
	return bv, berr
}

// runShadow calls canary, turning a panic into an error wrapping ErrPanic.
func runShadow[T any](ctx context.Context, canary func(context.Context) (T, error)) (v T, err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("%w: %v", ErrPanic, p)
		}
	}()
	return canary(ctx)
}

// recordCall counts a call's outcome in s unless it failed because
// callCtx, the context the caller passed, was canceled; runCtx is the
// context the call ran with.
func (r *Rollout) recordCall(callCtx, runCtx context.Context, s *stats, v Variant, pos uint32, h uint64, err error, latency time.Duration) {
	if err != nil && errors.Is(err, context.Canceled) && runCtx.Err() != nil && callCtx.Err() != nil {
		return
	}
	s.observeKey(v, pos, h, err != nil, latency)
}
