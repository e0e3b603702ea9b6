package breaker

import (
	"errors"
	"time"
)

// ErrOpen is the error a breaker's rejections match with errors.Is: the
// call was not made because the breaker is open (or forced open, or
// half-open with every probe slot taken, or ramping up after recovery and
// holding this call back). Use errors.As with an [*OpenError] to learn
// which breaker rejected the call and when to try again.
var ErrOpen = errors.New("breaker: open")

// ErrInvalidSettings is wrapped by the error [New] and [NewGroup] return for
// settings they cannot use. The message names the offending field.
var ErrInvalidSettings = errors.New("breaker: invalid settings")

// OpenError is the error returned for a call a breaker rejected. It
// unwraps to [ErrOpen]. A breaker hands out one OpenError per open period
// to every call it rejects, so an OpenError must not be modified.
type OpenError struct {
	// Name is the name of the breaker that rejected the call.
	Name string
	// State is the breaker's state when it rejected the call: Open,
	// ForcedOpen, HalfOpen (all probe slots taken) or Closed (held back
	// while ramping up after recovery).
	State State

	until time.Time     // when the wait ends; zero if unknown
	limit time.Duration // the answer when until is zero, else a cap (0 = none)
}

// Error describes the rejection, such as "breaker: open (payments is
// open)", or "breaker: open (half-open)" for a breaker without a name.
func (e *OpenError) Error() string {
	what := e.State.String()
	if e.State == Closed {
		what = "ramping up"
	}
	switch {
	case e.Name != "":
		return "breaker: open (" + e.Name + " is " + what + ")"
	case e.State == Open:
		return "breaker: open"
	}
	return "breaker: open (" + what + ")"
}

// Unwrap returns [ErrOpen].
func (e *OpenError) Unwrap() error { return ErrOpen }

// Forced reports whether an operator forced the breaker open
// ([Breaker.ForceOpen]): the rejection lasts until the operator releases
// the breaker, so trying again soon is pointless. Package retry stops at
// once on an error whose Forced method reports true.
func (e *OpenError) Forced() bool { return e.State == ForcedOpen }

// RetryAfter returns how long the caller should wait before trying again.
// In the Open state it is the time left until the next probe may go,
// computed from the clock when RetryAfter is called (zero once that moment
// has passed). Where no such moment is known it is an estimate: in
// HalfOpen the breaker's OpenTimeout; while ramping up, a twentieth of the
// ramp, capped at the time left in the ramp. A forced-open breaker makes
// no promise, since only the operator's Release ends its state:
// RetryAfter returns zero and [OpenError.Forced] reports true.
func (e *OpenError) RetryAfter() time.Duration {
	if e.until.IsZero() {
		return e.limit
	}
	d := max(time.Until(e.until), 0)
	if e.limit > 0 {
		d = min(d, e.limit)
	}
	return d
}
