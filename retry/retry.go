package retry

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"time"

	"github.com/cenkalti/backoff/v4"
)

// ErrBudgetExhausted is reported (through errors.Is on the returned *Error)
// when a retry was not made because the Policy's Budget had no tokens left.
var ErrBudgetExhausted = errors.New("retry: budget exhausted")

// ErrThrottled is returned when a Throttle rejects a request locally, before
// it reaches the backend. Do reports it through errors.Is on its *Error.
var ErrThrottled = errors.New("retry: throttled")

// Error is returned by Do when it gives up. It carries the number of attempts
// made and the last attempt's error, which Unwrap returns, so errors.Is and
// errors.As see the caller's own error.
//
// When retrying ended early for a reason of its own — the Budget ran dry,
// the Throttle rejected the next attempt, the context was canceled or its
// deadline would pass before the next attempt — errors.Is also matches that
// reason: ErrBudgetExhausted, ErrThrottled, context.Canceled or
// context.DeadlineExceeded.
type Error struct {
	// Attempts is the number of attempts that reached the function. It is
	// zero only when a Throttle rejected the very first attempt.
	Attempts int
	// Err is the last attempt's error (ErrThrottled if no attempt was made).
	Err error

	stop error // why retrying ended early, or nil
}

// Error describes the failure, the number of attempts and the last error.
func (e *Error) Error() string {
	if e.stop != nil && e.stop != e.Err {
		return fmt.Sprintf("retry: gave up after %d attempts (%v): %v", e.Attempts, e.stop, e.Err)
	}
	return fmt.Sprintf("retry: gave up after %d attempts: %v", e.Attempts, e.Err)
}

// Unwrap returns the last attempt's error.
func (e *Error) Unwrap() error { return e.Err }

// Is reports whether target is the reason retrying ended early.
func (e *Error) Is(target error) bool {
	return e.stop != nil && errors.Is(e.stop, target)
}

// Permanent wraps err so that Do and Transport do not retry it. The wrapper
// is transparent: its message is err's, and errors.Is and errors.As see
// through it. Permanent(nil) is nil.
func Permanent(err error) error {
	if err == nil {
		return nil
	}
	return &permanentError{err: err}
}

type permanentError struct{ err error }

func (e *permanentError) Error() string { return e.err.Error() }
func (e *permanentError) Unwrap() error { return e.err }

// Do calls fn until it succeeds, the Policy says to stop, or ctx is done,
// and returns the last result. When the first attempt succeeds Do neither
// allocates nor reads the clock (unless MaxElapsed or a Throttle is set).
//
// After a failed attempt Do does not retry when the error is wrapped by
// Permanent, is context.Canceled, has a Forced method that reports true (a
// circuit breaker forced open by an operator), or is rejected by
// Policy.IsRetryable (which by default rejects certificate errors and
// unknown hosts);
// when ctx is done; when MaxAttempts is reached; when the next wait would
// end at or after ctx's deadline or beyond MaxElapsed; when the Budget is
// exhausted; or when the error asks for a delay (a RetryAfter method, as on
// *StatusError and on a circuit breaker's open error) longer than the
// remaining retries could wait at MaxInterval each. Otherwise it waits the
// jittered backoff interval, or the requested delay if that is longer, and
// tries again. It never sleeps past ctx's deadline.
//
// On success Do returns fn's value and a nil error. On failure it returns
// the last attempt's value and an *Error wrapping the last attempt's error.
// An invalid Policy makes Do return the Validate error without calling fn.
func Do[T any](ctx context.Context, p Policy, fn func(context.Context) (T, error)) (T, error) {
	if err := p.validate(); err != nil {
		var zero T
		return zero, err
	}
	var start time.Time
	if p.MaxElapsed > 0 {
		start = time.Now()
	}
	if p.Throttle != nil && !p.Throttle.allow() {
		var zero T
		return zero, &Error{Attempts: 0, Err: ErrThrottled, stop: ErrThrottled}
	}
	v, err := fn(ctx)
	if err == nil {
		if p.Throttle != nil {
			p.Throttle.Record(true)
		}
		if p.Budget != nil {
			p.Budget.RecordSuccess()
		}
		return v, nil
	}
	// p goes by value: taking its address here would move it to the heap
	// on every call, including those that succeed at once.
	return retrying(ctx, p, fn, start, v, err)
}

// retrying is the slow path of Do, entered after the first failure.
func retrying[T any](ctx context.Context, pv Policy, fn func(context.Context) (T, error), start time.Time, v T, err error) (T, error) {
	p := &pv
	l := loop{start: start}
	for attempt := 1; ; attempt++ {
		f := inspect(err)
		ok := f.retryable(p, err)
		if p.Throttle != nil {
			p.Throttle.Record(!ok)
		}
		var wait time.Duration
		var stop error
		if ok {
			wait, stop, ok = l.next(ctx, p, attempt, &f)
		}
		if ok {
			stop, ok = l.spend(p)
		}
		if !ok {
			return v, &Error{Attempts: attempt, Err: err, stop: stop}
		}
		if p.OnRetry != nil {
			p.OnRetry(attempt, err, wait)
		}
		p.logRetry(attempt, err, wait)
		if serr := sleep(ctx, wait); serr != nil {
			return v, &Error{Attempts: attempt, Err: err, stop: serr}
		}
		v, err = fn(ctx)
		if err == nil {
			if p.Throttle != nil {
				p.Throttle.Record(true)
			}
			if p.Budget != nil {
				p.Budget.RecordSuccess()
			}
			return v, nil
		}
	}
}

// loop holds the backoff state of one call after its first failure. It is
// created lazily so that a call whose first attempt succeeds pays nothing.
// Its methods take the Policy as an argument rather than keeping it: the
// backoff's clock interface would move anything loop points to onto the
// heap.
type loop struct {
	start time.Time // zero unless p.MaxElapsed > 0
	ready bool      // eb is set up
	eb    backoff.ExponentialBackOff
}

// init sets up the backoff on the first wait it is asked for, so that a
// call that ends without waiting reads no clock for it.
func (l *loop) init(p *Policy) {
	l.ready = true
	l.eb = backoff.ExponentialBackOff{
		InitialInterval:     p.initialInterval(),
		RandomizationFactor: 0, // jitter is applied in wait, from p.Rand
		Multiplier:          p.multiplier(),
		MaxInterval:         p.maxInterval(),
		MaxElapsedTime:      0, // elapsed time is enforced in next
		Stop:                backoff.Stop,
		Clock:               backoff.SystemClock,
	}
	l.eb.Reset()
}

// backoff returns the next jittered backoff wait, capped at MaxInterval.
func (l *loop) backoff(p *Policy) time.Duration {
	interval := l.eb.NextBackOff()
	j := p.jitter()
	var r float64
	if p.Rand != nil {
		r = p.Rand()
	} else {
		r = rand.Float64()
	}
	if !(r >= 0) { // negative, or NaN from a Rand that breaks its contract
		r = 0
	}
	r = min(r, 1)
	limit := p.maxInterval()
	// Compare as floats: a wait near the largest Duration would wrap
	// around when converted back.
	switch d := float64(interval) * (1 + j*(2*r-1)); {
	case d >= float64(limit):
		return limit
	case d <= 0:
		return 0
	default:
		return time.Duration(d)
	}
}

// next decides what follows the failure of attempt (1-based), which the
// caller has found retryable and whose error f describes. It returns the
// wait before the next attempt and ok, or ok == false and the reason, if
// any, that retrying ends early. It spends nothing: a true result must be
// followed by spend.
func (l *loop) next(ctx context.Context, p *Policy, attempt int, f *facts) (wait time.Duration, stop error, ok bool) {
	if cerr := ctx.Err(); cerr != nil {
		return 0, cerr, false
	}
	left := p.maxAttempts() - attempt
	if left <= 0 {
		return 0, nil, false
	}
	// A delay longer than the remaining retries would wait in total is
	// not worth waiting for: the caller would be better served now.
	if f.delay > 0 && longerThan(f.delay, left, p.maxInterval()) {
		return 0, nil, false
	}
	if !l.ready {
		l.init(p)
	}
	wait = max(l.backoff(p), f.delay)
	now := time.Now()
	if dl, has := ctx.Deadline(); has && !now.Add(wait).Before(dl) {
		return 0, context.DeadlineExceeded, false
	}
	if p.MaxElapsed > 0 && now.Add(wait).Sub(l.start) > p.MaxElapsed {
		return 0, nil, false
	}
	return wait, nil, true
}

// spend takes a Budget token for the next attempt and counts it as a
// Throttle request. It reports false, and the reason, if either says no;
// a Budget token taken before the Throttle said no is given back.
func (l *loop) spend(p *Policy) (stop error, ok bool) {
	if p.Budget != nil && !p.Budget.AllowRetry() {
		p.denied(ErrBudgetExhausted)
		return ErrBudgetExhausted, false
	}
	// The throttle is asked before waiting rather than after, so that a
	// rejected retry neither waits in vain nor costs the caller the last
	// answer it got.
	if p.Throttle != nil && !p.Throttle.allow() {
		if p.Budget != nil {
			p.Budget.refund()
		}
		p.denied(ErrThrottled)
		return ErrThrottled, false
	}
	p.Metrics.add(countRetries)
	return nil, true
}

// longerThan reports whether d is longer than n waits of each, where n and
// each are positive; a product too large for a Duration is longer than any d.
func longerThan(d time.Duration, n int, each time.Duration) bool {
	if time.Duration(n) > math.MaxInt64/each {
		return false
	}
	return d > time.Duration(n)*each
}

// sleep waits for d or until ctx is done, whichever comes first, and returns
// ctx.Err() in the latter case.
func sleep(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
