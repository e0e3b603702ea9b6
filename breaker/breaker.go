package breaker

import (
	"context"
	"errors"
	"log/slog"
	"math/rand/v2"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cenkalti/backoff/v4"
	"github.com/sony/gobreaker/v2"

	"github.com/ringfence/ringfence/internal/window"
)

// Modes of the state word, the part of the state every call reads. A mode
// at or above modeOpen rejects.
const (
	modeClosed       = iota // closed: count and go
	modeRamp                // closed, ramping up: admit a share
	modeForcedClosed        // forced closed: count and go, never trip
	modeHalfOpen            // probing through gobreaker
	modeOpen                // open: reject with the current OpenError
	modeForcedOpen          // forced open: reject with the current OpenError

	modeBits = 3
	modeMask = 1<<modeBits - 1
)

// Counters of the rolling window.
const (
	countRequests = iota
	countFailures
	countSlow
	numCounters
)

// verdict is how a finished call counts.
type verdict uint8

const (
	success verdict = iota
	failure
	excluded
)

// Outcomes reported to gobreaker, which counts nil as a success.
var (
	errFailed   = errors.New("breaker: call failed")
	errExcluded = errors.New("breaker: call not counted")
)

// Breaker guards calls to one dependency; see the package documentation
// for the states and how a breaker moves between them. Create one with
// [New]; the zero value is not usable. A Breaker is safe for concurrent
// use.
//
// A breaker owns no goroutine. It arms timers while it needs them: the
// window's bucket timer while calls were counted within the last Window,
// one timer per open wait, and one per half-open deadline. A breaker that
// is no longer used is garbage once they have run out.
type Breaker struct {
	_ [64]byte
	// word is epoch<<modeBits | mode. Every call loads it; it changes
	// only on state changes (epoch+1) and at the end of a ramp (same
	// epoch). Stores happen with mu held; the ramp end uses a CAS.
	word atomic.Uint64
	// reject is the error for the rejections of the current mode; set
	// before word publishes a rejecting (or ramping) mode.
	reject atomic.Pointer[OpenError]
	// ramp is the current ramp, set before word publishes modeRamp.
	ramp atomic.Pointer[rampState]
	_    [64]byte
	// consec counts failures since the last success. A success stores 0
	// only if it is not 0 already, so a run of successes never writes it.
	consec atomic.Uint64
	_      [64]byte

	s     Settings // normalized; read-only
	win   *window.Window
	calls *inflight // calls in flight; nil unless the breaker is a Group's
	m     *meters   // instruments; nil without Settings.MeterProvider

	mu sync.Mutex // guards the fields below, and every call into gb
	// gb decides half-open admission and the transitions out of Closed
	// and HalfOpen. It never holds calls in its own Open state: its
	// Timeout is a nanosecond, and we keep calls away from it in our Open
	// state until our own (doubling) wait has passed. Settled outcomes
	// only reach it under mu, and its OnStateChange only appends to moves.
	gb      *gobreaker.TwoStepCircuitBreaker[struct{}]
	gbGen   uint64                     // incremented when gb is replaced
	moves   []gbMove                   // transitions gb reported, not yet applied
	epoch   uint64                     // the epoch in word
	state   State                      // the state callers see
	since   time.Time                  // when state began
	reason  string                     // why state began
	trip    string                     // why the last ReadyToTrip said yes
	wait    time.Duration              // the current (or last) open wait
	probeAt time.Time                  // when the current open wait ends
	timer   *time.Timer                // ends the open wait, or the half-open deadline
	bo      backoff.ExponentialBackOff // doubles the open wait, without jitter
	tripNow bool                       // makes shouldTrip say yes (probeTimedOut)
	// Changes waiting for delivery to OnChange and Logger, and
	// whether some goroutine is delivering them.
	queue      []change
	delivering bool
}

// gbMove is a transition gobreaker reported.
type gbMove struct{ from, to gobreaker.State }

// change is a state change to report.
type change struct {
	from, to State
	reason   string
	at       time.Time
}

// rampState is one ramp after closing.
type rampState struct {
	start  time.Time
	length time.Duration
	// credit accumulates each call's admitted share in units of 2^-32; a
	// call is admitted when its share carries credit past a whole unit.
	credit atomic.Uint64
}

// New returns a closed breaker configured by s. It returns an error
// wrapping [ErrInvalidSettings], naming the field, if a setting is out of
// range.
func New(s Settings) (*Breaker, error) {
	s, err := s.normalize()
	if err != nil {
		return nil, err
	}
	b := newBreaker(s)
	if err := b.instrument(); err != nil {
		return nil, err
	}
	return b, nil
}

// newBreaker returns a breaker for normalized settings.
func newBreaker(s Settings) *Breaker {
	if s.rand == nil {
		s.rand = rand.Float64
	}
	b := &Breaker{
		s:      s,
		win:    window.New(s.Window, windowBuckets, numCounters),
		since:  time.Now(),
		reason: "created",
		bo: backoff.ExponentialBackOff{
			InitialInterval: s.OpenTimeout,
			Multiplier:      2,
			MaxInterval:     s.MaxOpenTimeout,
			Clock:           backoff.SystemClock,
			// RandomizationFactor 0: backoff draws from the global
			// source, so we add our own jitter from s.rand.
		},
	}
	b.bo.Reset()
	b.newGobreaker()
	return b
}

// newGobreaker gives the breaker a fresh gobreaker in its Closed state.
// The caller holds mu, or owns b exclusively.
func (b *Breaker) newGobreaker() {
	b.gbGen++
	gen := b.gbGen
	b.gb = gobreaker.NewTwoStepCircuitBreaker[struct{}](gobreaker.Settings{
		Name:        b.s.Name,
		MaxRequests: uint32(b.s.HalfOpenRequests),
		Timeout:     time.Nanosecond,
		ReadyToTrip: func(gobreaker.Counts) bool { return b.shouldTrip() },
		OnStateChange: func(_ string, from, to gobreaker.State) {
			// Runs under gb's mutex, which is only taken under mu.
			if gen == b.gbGen {
				b.moves = append(b.moves, gbMove{from, to})
			}
		},
		IsExcluded: func(err error) bool { return err == errExcluded },
	})
	b.moves = b.moves[:0]
}

// Name returns the breaker's name.
func (b *Breaker) Name() string { return b.s.Name }

// State returns the breaker's current state.
func (b *Breaker) State() State {
	switch b.word.Load() & modeMask {
	case modeHalfOpen:
		return HalfOpen
	case modeOpen:
		return Open
	case modeForcedOpen:
		return ForcedOpen
	case modeForcedClosed:
		return ForcedClosed
	default:
		return Closed
	}
}

// Do calls fn if b admits the call, counts its outcome and returns what fn
// returned.
//
// If b rejects the call, fn is not called and Do returns the zero T and an
// [*OpenError], which matches [ErrOpen]. If ctx is already done, fn is not
// called, nothing is counted, and Do returns ctx.Err(). If fn (or
// Settings.IsFailure) panics, the call counts as a failure and the panic
// goes on up the stack.
//
// A call counts as a success if fn returns a nil error (and it was not
// slower than Settings.SlowCall), is not counted if it was canceled (see
// Settings.CountCanceled), and otherwise counts as a failure unless
// Settings.IsFailure says it is not one.
func Do[T any](ctx context.Context, b *Breaker, fn func(context.Context) (T, error)) (T, error) {
	return call(ctx, b, fn, nil)
}

// call is Do with an optional judge, which decides how the outcome counts
// from the result as well as the error (the error is still returned as is).
func call[T any](ctx context.Context, b *Breaker, fn func(context.Context) (T, error), judge func(context.Context, T, error) verdict) (T, error) {
	select {
	case <-ctx.Done():
		var zero T
		return zero, ctx.Err()
	default:
	}
	t, oe := b.admit()
	if oe != nil {
		b.m.rejected()
		var zero T
		return zero, oe
	}
	if b.calls != nil {
		b.calls.add(1)
	}
	var start time.Time
	if b.s.SlowCall > 0 {
		start = time.Now()
	}
	settled := false
	defer func() {
		// fn or the judging of its outcome panicked (or called
		// runtime.Goexit): count a failure, so that a probe gives back
		// its slot.
		if !settled {
			b.settle(t, start, failure)
		}
	}()
	v, err := fn(ctx)
	var vd verdict
	if judge != nil {
		vd = judge(ctx, v, err)
	} else {
		vd = b.s.classify(ctx, err)
	}
	settled = true
	b.settle(t, start, vd)
	return v, err
}

// classify judges an error by the settings.
func (s *Settings) classify(ctx context.Context, err error) verdict {
	switch {
	case err == nil:
		return success
	case s.canceled(ctx, err):
		return excluded
	case s.IsFailure != nil && !s.IsFailure(err):
		return success
	}
	return failure
}

// canceled reports whether a non-nil error is a cancellation that is not
// counted.
func (s *Settings) canceled(ctx context.Context, err error) bool {
	return !s.CountCanceled && (errors.Is(err, context.Canceled) || ctx.Err() == context.Canceled)
}

// ticket is an admitted call: the state word it was admitted under, and
// for a probe, gobreaker's callback.
type ticket struct {
	word  uint64
	probe func(error)
	gen   uint64 // gbGen of the probe's gobreaker
}

// admit decides whether a call may go. It returns a ticket, or the error
// to reject the call with.
func (b *Breaker) admit() (ticket, *OpenError) {
	for {
		w := b.word.Load()
		switch w & modeMask {
		case modeClosed, modeForcedClosed:
			return ticket{word: w}, nil
		case modeOpen, modeForcedOpen:
			return ticket{}, b.reject.Load()
		case modeRamp:
			if ok, again := b.admitRamp(w); again {
				continue
			} else if ok {
				return ticket{word: w}, nil
			}
			return ticket{}, b.reject.Load()
		case modeHalfOpen:
			t, oe, again := b.admitProbe(w)
			if again {
				continue
			}
			return t, oe
		}
	}
}

// admitRamp admits a share of calls during a ramp. It reports again if the
// ramp has just ended and the call must be admitted afresh.
func (b *Breaker) admitRamp(w uint64) (ok, again bool) {
	r := b.ramp.Load()
	elapsed := time.Since(r.start)
	if elapsed >= r.length {
		b.endRamp(w)
		return false, true
	}
	share := rampFloor + (1-rampFloor)*float64(elapsed)/float64(r.length)
	unit := uint64(share * (1 << 32))
	c := r.credit.Add(unit)
	return c>>32 != (c-unit)>>32, false
}

// endRamp ends the ramp that word w (mode modeRamp) describes: the breaker
// stays Closed in the same epoch, now admitting every call. It does nothing
// if the word has changed since w was loaded.
func (b *Breaker) endRamp(w uint64) {
	b.word.CompareAndSwap(w, w&^modeMask) // modeClosed is 0
}

// admitProbe asks gobreaker whether a probe may go in the HalfOpen state.
func (b *Breaker) admitProbe(w uint64) (t ticket, oe *OpenError, again bool) {
	b.mu.Lock()
	if b.word.Load() != w {
		b.mu.Unlock()
		return ticket{}, nil, true
	}
	done, err := b.gb.Allow()
	b.applyMoves()
	if err != nil {
		oe = b.reject.Load()
		b.unlockAndDeliver()
		return ticket{}, oe, false
	}
	gen := b.gbGen
	if b.timer == nil && b.state == HalfOpen {
		// The round's first probe starts the half-open deadline.
		epoch := b.epoch
		b.timer = time.AfterFunc(b.s.HalfOpenTimeout, func() { b.probeTimedOut(epoch) })
	}
	b.unlockAndDeliver()
	return ticket{word: w, probe: done, gen: gen}, nil, false
}

// probeTimedOut ends the HalfOpen state of epoch whose probes did not all
// report back within Settings.HalfOpenTimeout: the missing probes count as
// failed, and the breaker opens again for its next wait. Their slots go
// with the gobreaker that held them, whose late outcomes settleProbe
// ignores.
func (b *Breaker) probeTimedOut(epoch uint64) {
	b.mu.Lock()
	if b.epoch != epoch || b.state != HalfOpen {
		b.mu.Unlock()
		return
	}
	b.timer = nil
	// A fresh gobreaker, tripped by one failure, is in its Open state,
	// from which the next round probes as usual.
	b.newGobreaker()
	b.tripNow = true
	if done, err := b.gb.Allow(); err == nil {
		done(errFailed)
	}
	b.tripNow = false
	b.moves = b.moves[:0]
	b.enterOpen("probe timed out")
	b.unlockAndDeliver()
}

// settle counts the outcome of an admitted call.
func (b *Breaker) settle(t ticket, start time.Time, vd verdict) {
	if b.calls != nil {
		b.calls.add(-1)
	}
	slow := false
	if b.s.SlowCall > 0 && vd != excluded && time.Since(start) >= b.s.SlowCall {
		slow = true
		vd = failure
	}
	b.m.settled(vd)
	if t.probe != nil {
		b.settleProbe(t, vd)
		return
	}
	if b.word.Load()>>modeBits != t.word>>modeBits {
		// Admitted before the last state change: like gobreaker, count
		// an outcome only in the period that admitted the call.
		return
	}
	switch vd {
	case success:
		b.win.Add(countRequests, 1)
		if b.consec.Load() != 0 {
			b.consec.Store(0)
		}
	case failure:
		b.win.Add(countRequests, 1)
		b.win.Add(countFailures, 1)
		if slow {
			b.win.Add(countSlow, 1)
		}
		b.consec.Add(1)
		if t.word&modeMask != modeForcedClosed {
			b.failed(t.word)
		}
	}
}

// failed hands a failure in the Closed state to gobreaker, which asks
// shouldTrip. A failure admitted before the last state change is ignored.
func (b *Breaker) failed(w uint64) {
	b.mu.Lock()
	if b.epoch != w>>modeBits {
		b.mu.Unlock()
		return
	}
	if done, err := b.gb.Allow(); err == nil {
		done(errFailed)
	}
	b.applyMoves()
	b.unlockAndDeliver()
}

// settleProbe reports a probe's outcome to the gobreaker that admitted it.
func (b *Breaker) settleProbe(t ticket, vd verdict) {
	b.mu.Lock()
	if t.gen != b.gbGen {
		b.mu.Unlock()
		return
	}
	switch vd {
	case success:
		t.probe(nil)
	case failure:
		t.probe(errFailed)
	default:
		t.probe(errExcluded)
	}
	b.applyMoves()
	b.unlockAndDeliver()
}

// shouldTrip is gobreaker's ReadyToTrip: it judges our own counts, not
// gobreaker's. It runs under mu.
func (b *Breaker) shouldTrip() bool {
	if b.tripNow {
		return true
	}
	if n := b.consecutive(); n >= uint64(b.s.ConsecutiveFailures) {
		b.trip = strconv.FormatUint(n, 10) + " consecutive failures"
		return true
	}
	reqs := b.win.Sum(countRequests)
	if reqs == 0 || reqs < uint64(b.s.MinRequests) {
		return false
	}
	fails := b.win.Sum(countFailures)
	if float64(fails) >= b.s.FailureRatio*float64(reqs) {
		b.trip = "failure ratio " + strconv.FormatUint(fails, 10) + "/" + strconv.FormatUint(reqs, 10)
		return true
	}
	return false
}

// consecutive returns the failures in a row that are still in the window:
// failures that have left it no longer count, so a run of failures
// decays with the window instead of waiting for a success. Once none is
// left, it clears the run.
func (b *Breaker) consecutive() uint64 {
	n := b.consec.Load()
	if n == 0 {
		return 0
	}
	f := b.win.Sum(countFailures)
	if f >= n {
		return n
	}
	if f == 0 {
		// A failure racing with this has added to the window before
		// adding to consec, so it either fails the swap or adds after it.
		b.consec.CompareAndSwap(n, 0)
	}
	return f
}

// applyMoves applies the transitions gobreaker reported. The caller holds
// mu.
func (b *Breaker) applyMoves() {
	for _, m := range b.moves {
		if b.state == ForcedOpen || b.state == ForcedClosed {
			continue
		}
		switch {
		case m.from == gobreaker.StateClosed && m.to == gobreaker.StateOpen:
			b.enterOpen(b.trip)
		case m.from == gobreaker.StateHalfOpen && m.to == gobreaker.StateOpen:
			b.enterOpen("probe failed")
		case m.from == gobreaker.StateHalfOpen && m.to == gobreaker.StateClosed:
			b.enterClosed("probes succeeded")
		}
		// Open to HalfOpen needs nothing: our own timer moved us there
		// before gobreaker was asked.
	}
	b.moves = b.moves[:0]
}

// setMode publishes a new state. The caller holds mu and has stored the
// reject error or ramp the mode needs.
func (b *Breaker) setMode(mode uint64, s State, reason string) {
	from := b.state
	b.epoch++
	b.word.Store(b.epoch<<modeBits | mode)
	b.state, b.since, b.reason = s, time.Now(), reason
	if b.timer != nil {
		b.timer.Stop()
		b.timer = nil
	}
	if from != s {
		b.queue = append(b.queue, change{from, s, reason, b.since})
	}
}

// enterOpen opens the breaker for the next open wait. The caller holds mu.
func (b *Breaker) enterOpen(reason string) {
	d := b.bo.NextBackOff()
	b.wait = d - time.Duration(float64(d)*jitterShare*b.s.rand())
	b.probeAt = time.Now().Add(b.wait)
	b.reject.Store(&OpenError{Name: b.s.Name, State: Open, until: b.probeAt})
	b.setMode(modeOpen, Open, reason)
	epoch := b.epoch
	b.timer = time.AfterFunc(b.wait, func() { b.endOpenWait(epoch) })
}

// endOpenWait moves the breaker from Open to HalfOpen when the open wait
// of epoch has passed.
func (b *Breaker) endOpenWait(epoch uint64) {
	b.mu.Lock()
	if b.epoch != epoch || b.state != Open {
		b.mu.Unlock()
		return
	}
	b.timer = nil
	b.probeAt = time.Time{}
	b.reject.Store(&OpenError{Name: b.s.Name, State: HalfOpen, limit: b.s.OpenTimeout})
	b.setMode(modeHalfOpen, HalfOpen, "open wait over")
	b.unlockAndDeliver()
}

// enterClosed closes the breaker with fresh counts. The caller holds mu.
func (b *Breaker) enterClosed(reason string) {
	b.win.Reset()
	b.consec.Store(0)
	b.bo.Reset()
	b.probeAt, b.wait = time.Time{}, 0
	if b.s.Ramp > 0 {
		now := time.Now()
		b.ramp.Store(&rampState{start: now, length: b.s.Ramp})
		b.reject.Store(&OpenError{Name: b.s.Name, State: Closed, until: now.Add(b.s.Ramp), limit: b.s.Ramp / 20})
		b.setMode(modeRamp, Closed, reason)
		return
	}
	b.setMode(modeClosed, Closed, reason)
}

// unlockAndDeliver unlocks mu and delivers queued changes, unless another
// goroutine is delivering already (it will deliver ours too, in order).
// The caller holds mu.
func (b *Breaker) unlockAndDeliver() {
	if b.delivering || len(b.queue) == 0 {
		b.mu.Unlock()
		return
	}
	b.delivering = true
	for len(b.queue) > 0 {
		c := b.queue[0]
		b.queue = b.queue[1:]
		b.mu.Unlock()
		b.deliver(c)
		b.mu.Lock()
	}
	b.queue = b.queue[:0]
	b.delivering = false
	b.mu.Unlock()
}

// deliver reports one change, without holding mu. If a callback panics,
// delivery is handed back so later changes are still reported.
func (b *Breaker) deliver(c change) {
	done := false
	defer func() {
		if !done {
			b.mu.Lock()
			b.delivering = false
			b.mu.Unlock()
		}
	}()
	b.m.changed(c)
	if l := b.s.Logger; l != nil {
		level := slog.LevelInfo
		if c.to == Open || c.to == ForcedOpen {
			level = slog.LevelWarn
		}
		l.LogAttrs(context.Background(), level, "breaker state change",
			slog.String("name", b.s.Name),
			slog.String("from", c.from.String()),
			slog.String("to", c.to.String()),
			slog.String("reason", c.reason))
	}
	if f := b.s.OnChange; f != nil {
		f(Change{Name: b.s.Name, From: c.from, To: c.to, Reason: c.reason, At: c.at})
	}
	done = true
}
