package breaker

import (
	"context"
	"time"
)

// Permit is one call admitted by [Breaker.Allow]. Report the call's
// outcome with [Permit.Done], exactly once. A Permit is a small value: it
// is returned and passed by value and allocates nothing. The zero Permit,
// which Allow returns with a rejection, is valid and its Done does
// nothing.
//
// A Permit may be handed to another goroutine (a stream's receiver, say),
// but Done must not be called twice: each call would count the outcome
// again.
type Permit struct {
	b     *Breaker
	t     ticket
	start time.Time // set only when Settings.SlowCall is
}

// Allow is the first half of the two-step use of a breaker, for calls that
// cannot be wrapped in a function, such as streams or gRPC interceptors:
// it decides whether a call may go and, if so, returns a [Permit] whose
// Done must be called once with the call's outcome.
//
//	p, err := b.Allow(ctx)
//	if err != nil {
//		return err // an *OpenError, or ctx.Err()
//	}
//	err = stream.Send(msg)
//	p.Done(ctx, err)
//
// Allow admits and rejects exactly as [Do] does: if the breaker rejects
// the call it returns the zero Permit and an [*OpenError], which matches
// [ErrOpen]; if ctx is already done it returns the zero Permit and
// ctx.Err(), and nothing is counted. It allocates nothing in the Closed
// and Open states.
//
// A Permit whose Done is never called leaves no lasting mark in the Closed
// state: the call is simply not counted. In the HalfOpen state the Permit
// holds one of the Settings.HalfOpenRequests probe slots; the slot is
// taken back when the half-open deadline (Settings.HalfOpenTimeout)
// passes, which counts the lost probe as failed and opens the breaker
// again for its next, longer wait. A Done that comes after that is
// ignored. A breaker of a [Group] counts a Permit as a call in flight
// until its Done, and the group never evicts a breaker with calls in
// flight: a Permit that is never done keeps its breaker in the group.
func (b *Breaker) Allow(ctx context.Context) (Permit, error) {
	select {
	case <-ctx.Done():
		return Permit{}, ctx.Err()
	default:
	}
	t, oe := b.admit()
	if oe != nil {
		b.m.rejected()
		return Permit{}, oe
	}
	if b.calls != nil {
		b.calls.add(1)
	}
	p := Permit{b: b, t: t}
	if b.s.SlowCall > 0 {
		p.start = time.Now()
	}
	return p, nil
}

// Done reports the outcome of the permitted call: err is the call's error,
// nil for a success, and ctx its context. The outcome is counted exactly
// as [Do] counts fn's: a success if err is nil (and the call was not
// slower than Settings.SlowCall since Allow), not at all if it was
// canceled (see Settings.CountCanceled; a canceled ctx counts as such even
// when err does not say so), and otherwise a failure unless
// Settings.IsFailure says it is not one. If Settings.IsFailure panics, the
// call counts as a failure and the panic goes on up the stack.
//
// Done on the zero Permit does nothing. Done for a call admitted before a
// later state change is ignored, as in Do.
func (p Permit) Done(ctx context.Context, err error) {
	b := p.b
	if b == nil {
		return
	}
	settled := false
	defer func() {
		if !settled {
			b.settle(p.t, p.start, failure)
		}
	}()
	vd := b.s.classify(ctx, err)
	settled = true
	b.settle(p.t, p.start, vd)
}
