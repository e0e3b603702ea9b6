package chaos

import (
	"context"
	"log/slog"
	"math"
	"sync/atomic"
	"time"
)

// Injector decides, call by call, which faults to inject, following its
// Settings: the faults that apply when no phase does, a schedule of phases
// on a timeline, and a seed. A test can also switch faults on and off while
// it runs with [Injector.Set] and [Injector.Clear]; faults set that way win
// over the timeline until cleared. It counts what it injected; see [Stats].
//
// An Injector is used through [Wrap] for functions, [Transport] for HTTP
// clients, or [Injector.Inject] for anything else. Create one with [New];
// the zero Injector is not usable, but a nil *Injector is accepted by Wrap,
// Transport and every method, and injects nothing.
//
// An Injector is safe for concurrent use. It starts no goroutines.
type Injector struct {
	start  time.Time
	seed   uint64
	base   slot   // Settings.Faults, used when no phase applies
	phases []slot // one per Settings.Phases, in order

	// set holds the faults of the last Set, or nil when none apply. It is
	// read on every call, before the timeline, so it is an atomic pointer
	// to a slot that Set makes afresh and nothing mutates but its counter.
	set atomic.Pointer[slot]
	// setCalls counts the calls that fell in a slot made by Set, since
	// those slots are dropped by the next Set or Clear.
	setCalls atomic.Uint64

	// Counters of outcomes. The number of calls is the sum of the
	// timeline slots' counters and setCalls, so it needs no counter of its
	// own.
	passed   atomic.Uint64
	errs     atomic.Uint64
	statuses atomic.Uint64
	hangs    atomic.Uint64
	delayed  atomic.Uint64
	canceled atomic.Uint64

	logger   *slog.Logger         // Settings.Logger
	lastSlot atomic.Pointer[slot] // the slot of the last call, kept with a logger only
}

// slot is one part of the timeline with its own faults and call counter.
type slot struct {
	phase Phase
	end   time.Duration // exclusive end offset from start; unused for base
	key   uint64        // derived from the seed and the slot's index
	err   error         // what a failed call returns from Inject and Wrap
	none  bool          // phase.Faults inject nothing
	n     atomic.Uint64 // calls that fell in this slot so far
}

// New returns an Injector for s. It returns an error wrapping
// [ErrInvalidSettings], naming the field, if s is invalid (see
// [Settings.Validate]).
func New(s Settings) (*Injector, error) {
	if err := s.Validate(); err != nil {
		return nil, err
	}
	in := &Injector{start: s.Start, seed: s.Seed, logger: s.Logger}
	if in.start.IsZero() {
		in.start = time.Now()
	}
	in.base.init(Phase{Faults: s.Faults}, s.Seed, 0)
	in.phases = make([]slot, len(s.Phases))
	for i, p := range s.Phases {
		in.phases[i].init(p, s.Seed, i+1)
		switch {
		case p.Duration > 0:
			in.phases[i].end = p.Start + p.Duration
		case i+1 < len(s.Phases):
			in.phases[i].end = s.Phases[i+1].Start
		default:
			in.phases[i].end = math.MaxInt64
		}
	}
	return in, nil
}

// init sets up the slot for phase p; index is 0 for the base slot and
// i+1 for Phases[i].
func (s *slot) init(p Phase, seed uint64, index int) {
	s.phase = p
	// The slot's key is element index+1 of the SplitMix64 sequence of the
	// seed. Call n then draws mix(key + n×golden): a bijection of n, so
	// which call draws 0 (and so always fails or hangs) varies with the
	// seed instead of being call 0 of every injector with seed 0.
	s.key = mix(seed + uint64(index+1)*golden)
	s.none = p.Faults.none()
	s.err = ErrInjected
	if p.Faults.Err != nil {
		s.err = &injectedError{err: p.Faults.Err}
	}
}

// Set makes f apply to every call from now on, in place of the timeline:
// neither Settings.Faults nor any phase applies until [Injector.Clear] is
// called, or Set is called again with other faults. Set(Faults{}) switches
// every fault off, even during a phase of the schedule. It is how a test
// scripts "outage now" and "recovered now" without computing offsets on the
// timeline:
//
//	inj.Set(chaos.Faults{ErrorRate: 1, Status: http.StatusServiceUnavailable})
//	// ... the dependency is down
//	inj.Clear()
//
// Each Set starts a fresh pattern of decisions: the calls after Set(f)
// draw their fates as the calls of a new injector with Faults f and the
// same seed would, call 0, 1, 2, … (see Determinism in the package
// documentation). Calls already past their draw keep the fate they drew;
// in particular a call hanging when Set or Clear is called hangs until its
// context ends, as a connection a dead server accepted would.
//
// Set returns an error wrapping [ErrInvalidSettings], naming the field, if
// f is invalid (see [Settings.Validate]); the faults in force then stay as
// they were. Set is safe to call concurrently with calls and with other
// calls to Set and Clear; the last one to run wins. On a nil Injector it
// only validates f.
func (in *Injector) Set(f Faults) error {
	if err := f.validate("Faults"); err != nil {
		return err
	}
	if in == nil {
		return nil
	}
	s := new(slot)
	s.init(Phase{Faults: f}, in.seed, 0)
	in.set.Store(s)
	in.logSet(f)
	return nil
}

// Clear switches off the faults of [Injector.Set], so that the timeline of
// Settings applies again from the next call on: the phase of the schedule
// that applies at that moment, or else Settings.Faults. Calls in the
// timeline's slots go on with the pattern they were drawing, as if no Set
// had happened. Clear on an injector with nothing set, or a nil Injector,
// does nothing. It is safe for concurrent use, like Set.
func (in *Injector) Clear() {
	if in == nil {
		return
	}
	in.set.Store(nil)
	in.logClear()
}

// timeline returns the slot of the timeline that applies at this moment:
// a phase's, or the base slot.
func (in *Injector) timeline() *slot {
	if len(in.phases) == 0 {
		return &in.base
	}
	el := time.Since(in.start)
	for i := len(in.phases) - 1; i >= 0; i-- {
		p := &in.phases[i]
		if el >= p.phase.Start {
			if el < p.end {
				return p
			}
			break
		}
	}
	return &in.base
}

// outcome is what becomes of one call.
type outcome uint8

const (
	forward outcome = iota // call the real thing
	fail                   // return an injected error or response
	stopped                // the context ended during a hang or delay
)

// enter decides the outcome of one call and serves its hang or delay. It
// returns the slot the call fell in, the outcome and, when the outcome is
// stopped, the context's error. It counts every outcome but fail, which
// its caller counts as an error or a status.
func (in *Injector) enter(ctx context.Context) (*slot, outcome, error) {
	s := in.set.Load()
	if s != nil {
		in.setCalls.Add(1)
	} else {
		s = in.timeline()
		in.notePhase(s)
	}
	n := s.n.Add(1) - 1
	if s.none {
		in.passed.Add(1)
		return s, forward, nil
	}
	f := &s.phase.Faults
	h := mix(s.key + n*golden)
	u := float64(h>>11) * 0x1p-53 // uniform in [0, 1)
	if u < f.HangRate {
		in.hangs.Add(1)
		<-ctx.Done()
		return s, stopped, ctx.Err()
	}
	d := f.Latency
	if f.Jitter > 0 {
		d += time.Duration(mix(h) % uint64(f.Jitter))
	}
	if d > 0 {
		in.delayed.Add(1)
		if err := wait(ctx, d); err != nil {
			in.canceled.Add(1)
			return s, stopped, err
		}
	}
	if u < f.HangRate+f.ErrorRate {
		return s, fail, nil
	}
	in.passed.Add(1)
	return s, forward, nil
}

// wait blocks for d or until ctx ends, whichever comes first, and returns
// ctx's error in the second case.
func wait(ctx context.Context, d time.Duration) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Inject subjects one call to the faults that apply now, for code that
// neither [Wrap] nor [Transport] fits, such as a fake server's handler:
//
//	if err := inj.Inject(ctx); err != nil {
//		return err
//	}
//	// ... do the real work
//
// It returns nil when the call should go ahead, possibly after an injected
// delay; the injected error (see [Faults.Err]) when the call should fail;
// and the context's error when the call hung, or its context ended during
// the delay. A nil Injector always returns nil at once.
func (in *Injector) Inject(ctx context.Context) error {
	if in == nil {
		return nil
	}
	s, o, err := in.enter(ctx)
	switch o {
	case fail:
		in.errs.Add(1)
		return s.err
	case stopped:
		return err
	}
	return nil
}

// Wrap returns a function that calls fn through in: each call first gets
// the faults that apply at that moment (see [Injector.Inject]), and fn runs
// only if the call goes ahead. An injected failure or a context that ends
// during a hang or delay returns the zero T and the error, without calling
// fn. A nil in returns fn itself.
//
// The returned function is safe for concurrent use if fn is.
func Wrap[T any](fn func(context.Context) (T, error), in *Injector) func(context.Context) (T, error) {
	if in == nil {
		return fn
	}
	return func(ctx context.Context) (T, error) {
		if err := in.Inject(ctx); err != nil {
			var zero T
			return zero, err
		}
		return fn(ctx)
	}
}

// Stats counts the calls an Injector has seen and what it did to them.
// Once every call has returned,
//
//	Calls == Passed + Errors + Statuses + Hangs + Canceled
//
// A call still waiting out an injected delay is counted in Calls and
// Delayed only.
type Stats struct {
	// Calls is the number of calls that reached the injector.
	Calls uint64
	// Passed counts calls forwarded to the wrapped function or to the next
	// round tripper, including delayed ones.
	Passed uint64
	// Errors counts calls failed with an injected error.
	Errors uint64
	// Statuses counts calls answered by Transport with an injected HTTP
	// response (Faults.Status).
	Statuses uint64
	// Hangs counts calls made to hang until their context ended. A hang is
	// counted as soon as it begins.
	Hangs uint64
	// Delayed counts calls given an injected delay (Latency or Jitter);
	// each is also counted by its outcome.
	Delayed uint64
	// Canceled counts delayed calls whose context ended during the delay,
	// so that they were neither forwarded nor failed.
	Canceled uint64
}

// Stats returns the counts so far. Each counter is read atomically, but
// not all at one instant: with calls in flight, they may disagree by those
// calls. A nil Injector returns zero Stats.
func (in *Injector) Stats() Stats {
	if in == nil {
		return Stats{}
	}
	calls := in.base.n.Load() + in.setCalls.Load()
	for i := range in.phases {
		calls += in.phases[i].n.Load()
	}
	return Stats{
		Calls:    calls,
		Passed:   in.passed.Load(),
		Errors:   in.errs.Load(),
		Statuses: in.statuses.Load(),
		Hangs:    in.hangs.Load(),
		Delayed:  in.delayed.Load(),
		Canceled: in.canceled.Load(),
	}
}

// Current returns the phase that applies now and true, or, when none does,
// a Phase holding Settings.Faults (with no name, start or duration) and
// false. While faults set with [Injector.Set] apply, it returns them as a
// Phase with no name, start or duration, and true. A nil Injector returns
// the zero Phase and false.
func (in *Injector) Current() (Phase, bool) {
	if in == nil {
		return Phase{}, false
	}
	if s := in.set.Load(); s != nil {
		return s.phase, true
	}
	s := in.timeline()
	return s.phase, s != &in.base
}

// injectedError wraps a caller's error so that it also matches
// ErrInjected. Its message is the caller's.
type injectedError struct{ err error }

func (e *injectedError) Error() string        { return e.err.Error() }
func (e *injectedError) Unwrap() error        { return e.err }
func (e *injectedError) Is(target error) bool { return target == ErrInjected }

// golden is 2^64 divided by the golden ratio, the increment of SplitMix64.
const golden = 0x9e3779b97f4a7c15

// mix is the SplitMix64 finaliser: a bijection on uint64 whose outputs for
// consecutive inputs look independent and uniform.
func mix(z uint64) uint64 {
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9
	z = (z ^ (z >> 27)) * 0x94d049bb133111eb
	return z ^ (z >> 31)
}
