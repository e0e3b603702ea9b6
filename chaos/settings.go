package chaos

import (
	"errors"
	"fmt"
	"log/slog"
	"math"
	"time"
)

// ErrInjected is matched, through errors.Is, by every error an [Injector]
// makes up: the default failure, a failure carrying a caller's own
// [Faults.Err], and the connection errors of [Transport]. It is not matched
// by the context errors returned when a call hangs or is delayed past its
// deadline, since those come from the caller's context.
var ErrInjected = errors.New("chaos: injected fault")

// ErrInvalidSettings is wrapped by the error [New] and [Settings.Validate]
// return for settings that make no sense. The message names the field.
var ErrInvalidSettings = errors.New("chaos: invalid settings")

func invalid(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{ErrInvalidSettings}, args...)...)
}

// Faults describes what happens to the calls made while it applies. The zero
// Faults injects nothing: every call passes through untouched.
//
// Each call has one outcome, drawn from the injector's seeded generator:
// with probability HangRate it hangs, with probability ErrorRate it fails,
// and otherwise it goes ahead. A call that does not hang is first delayed
// by Latency plus up to Jitter.
type Faults struct {
	// ErrorRate is the probability, in [0, 1], that a call fails with an
	// injected error (or, in a Transport with Status set, an injected
	// response). ErrorRate + HangRate must not exceed 1.
	ErrorRate float64

	// Err is the error a failed call returns. The error returned wraps it
	// and also matches ErrInjected; its message is Err's message. Default:
	// ErrInjected itself for Wrap and Inject, and a connection-refused
	// *net.OpError for Transport.
	Err error

	// Status, when nonzero, makes Transport answer a failed call with an
	// HTTP response with this status code (400 to 599, typically 503)
	// instead of an error. Wrap and Inject ignore it. Default: zero, a
	// connection error.
	Status int

	// RetryAfter, when positive, adds a Retry-After header to the responses
	// Transport makes up, in whole seconds rounded up. Default: zero, no
	// header.
	RetryAfter time.Duration

	// HangRate is the probability, in [0, 1], that a call hangs: it blocks
	// until the call's context ends and then returns the context's error,
	// like a dependency that accepted a connection and never answered. A
	// hanging call with a context that never ends blocks forever.
	HangRate float64

	// Latency delays every call that does not hang, before its outcome
	// (forwarding or failing) is delivered. The wait ends early when the
	// call's context ends; the call then returns the context's error
	// without being forwarded. Default: zero, no delay.
	Latency time.Duration

	// Jitter adds to Latency a delay drawn uniformly from [0, Jitter).
	// Default: zero, no jitter.
	Jitter time.Duration
}

// none reports whether f injects nothing.
func (f Faults) none() bool {
	return f.ErrorRate == 0 && f.HangRate == 0 && f.Latency == 0 && f.Jitter == 0
}

// Phase is a stretch of an injector's timeline during which its Faults
// apply, instead of the faults of Settings.
type Phase struct {
	// Name labels the phase for people, e.g. "outage"; it may be empty.
	Name string

	// Start is when the phase begins, as an offset from Settings.Start. It
	// must not be negative, and the phases of a schedule must be given in
	// order of Start, without overlapping.
	Start time.Duration

	// Duration is how long the phase lasts. Zero means until the next phase
	// starts, or for ever for the last phase.
	Duration time.Duration

	// Faults are the faults injected during the phase.
	Faults Faults
}

// Settings configures an [Injector]. The zero Settings gives an injector that
// injects nothing and only counts calls.
type Settings struct {
	// Faults are the faults injected when no phase applies, and so always
	// when Phases is empty. Default: none.
	Faults Faults

	// Phases is the schedule: phases in order of Start, not overlapping.
	// At any moment at most one phase applies; the call's time is read with
	// time.Now and compared with Start. A phase applies from its Start
	// (inclusive) to its end (exclusive). Default: no schedule.
	Phases []Phase

	// Start is the moment the timeline of Phases counts from. Default: the
	// time New is called. A Start in the future means that no phase applies
	// until then.
	Start time.Time

	// Seed picks the pseudo-random pattern of faults. The same seed gives
	// the same decisions (see the package documentation for what that
	// means under concurrency). Zero is a seed like any other, so the
	// default is deterministic too.
	Seed uint64

	// Logger, if set, receives a record when the faults in force change:
	// Warn when Set switches faults on or calls enter a phase of the
	// schedule that injects faults, Info when Clear is called or calls
	// enter a part of the timeline that injects none, with the phase's
	// name and its faults. A phase change is noticed by the first call
	// that falls in it. Individual calls are not logged. Default nil: no
	// logging.
	Logger *slog.Logger
}

// Validate reports whether s is usable. The error wraps ErrInvalidSettings
// and names the first offending field, e.g.
// "Phases[2].Start (40s) overlaps Phases[1] (20s to 50s)".
func (s Settings) Validate() error {
	if err := s.Faults.validate("Faults"); err != nil {
		return err
	}
	for i, p := range s.Phases {
		name := fmt.Sprintf("Phases[%d]", i)
		if p.Start < 0 {
			return invalid("%s.Start must not be negative, got %v", name, p.Start)
		}
		if p.Duration < 0 {
			return invalid("%s.Duration must not be negative, got %v", name, p.Duration)
		}
		if p.Duration > math.MaxInt64-p.Start {
			return invalid("%s.Duration (%v) overflows the timeline after Start %v", name, p.Duration, p.Start)
		}
		if i > 0 {
			prev := s.Phases[i-1]
			if p.Start <= prev.Start {
				return invalid("%s.Start (%v) must come after Phases[%d].Start (%v): phases must be in order",
					name, p.Start, i-1, prev.Start)
			}
			if prev.Duration > 0 && p.Start < prev.Start+prev.Duration {
				return invalid("%s.Start (%v) overlaps Phases[%d] (%v to %v)",
					name, p.Start, i-1, prev.Start, prev.Start+prev.Duration)
			}
		}
		if err := p.Faults.validate(name + ".Faults"); err != nil {
			return err
		}
	}
	return nil
}

// validate checks f; name is the path of the field holding f.
func (f Faults) validate(name string) error {
	rate := func(field string, r float64) error {
		if !(r >= 0 && r <= 1) { // also rejects NaN
			return invalid("%s.%s must be in [0,1], got %v", name, field, r)
		}
		return nil
	}
	if err := rate("ErrorRate", f.ErrorRate); err != nil {
		return err
	}
	if err := rate("HangRate", f.HangRate); err != nil {
		return err
	}
	if f.ErrorRate+f.HangRate > 1+1e-12 {
		return invalid("%s.ErrorRate + %s.HangRate must not exceed 1, got %v + %v",
			name, name, f.ErrorRate, f.HangRate)
	}
	if f.Status != 0 && (f.Status < 400 || f.Status > 599) {
		return invalid("%s.Status must be 0 or in [400,599], got %d", name, f.Status)
	}
	if f.RetryAfter < 0 {
		return invalid("%s.RetryAfter must not be negative, got %v", name, f.RetryAfter)
	}
	if f.Latency < 0 {
		return invalid("%s.Latency must not be negative, got %v", name, f.Latency)
	}
	if f.Jitter < 0 {
		return invalid("%s.Jitter must not be negative, got %v", name, f.Jitter)
	}
	if f.Jitter > math.MaxInt64-f.Latency {
		return invalid("%s.Latency + %s.Jitter overflows, got %v + %v", name, name, f.Latency, f.Jitter)
	}
	return nil
}
