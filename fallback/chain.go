package fallback

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"go.opentelemetry.io/otel/metric"

	"github.com/ringfence/ringfence/breaker"
	"github.com/ringfence/ringfence/retry"
)

// Errors a [Chain] returns, checked with errors.Is.
var (
	// ErrAllFailed is found in Run's error when every step was tried and
	// none produced a value. The same error joins each step's *StepError,
	// so errors.Is finds every step's cause.
	ErrAllFailed = errors.New("fallback: every step failed")
	// ErrManualMode stands in for the primary's error when the Switch is in
	// ModeManual and the primary was not called.
	ErrManualMode = errors.New("fallback: primary skipped in manual mode")
	// ErrStreamPending stands in for the primary's error when a chain with
	// a deferred step did not call the primary because earlier writes on
	// the same stream were still waiting in the outbox.
	ErrStreamPending = errors.New("fallback: earlier writes on the stream wait in the outbox")
	// ErrNotCached is returned by a stale step that holds no value for the
	// key, or only one older than the cache's MaxAge.
	ErrNotCached = errors.New("fallback: no cached value young enough")
	// ErrUnknownOutcome is found in Run's error when the primary of a
	// chain with a Deferred step failed in a way that leaves the write's
	// outcome unknown (it timed out, or the caller canceled it in flight),
	// and the write was not deferred: it may or may not have been applied.
	ErrUnknownOutcome = errors.New("fallback: the write may or may not have been applied")
)

// DefaultFallbackTimeout is the time local fallback steps get once the
// caller's deadline has passed, when ChainSettings.FallbackTimeout is
// zero: enough for a cache lookup or an outbox's fsync, short enough that
// a caller who is already late is not kept waiting much longer.
const DefaultFallbackTimeout = 250 * time.Millisecond

// Kind says what sort of step produced a value.
type Kind uint8

// The kinds of step. The zero Kind is none of them; a [Source] has it only
// when no step produced a value.
const (
	KindPrimary   Kind = iota + 1 // the dependency itself
	KindAlternate                 // another copy of it, such as a second region
	KindStale                     // last-known-good data from a Cache
	KindStatic                    // a fixed default value
	KindManual                    // a manual procedure standing in for the dependency
	KindDeferred                  // a write accepted into an Outbox, to be replayed later
)

var kindNames = [...]string{
	KindPrimary:   "primary",
	KindAlternate: "alternate",
	KindStale:     "stale",
	KindStatic:    "static",
	KindManual:    "manual",
	KindDeferred:  "deferred",
}

// String returns the kind's name, such as "stale", or "Kind(n)" for a value
// outside the defined constants.
func (k Kind) String() string {
	if k > 0 && int(k) < len(kindNames) {
		return kindNames[k]
	}
	return fmt.Sprintf("Kind(%d)", k)
}

// Source says where a value returned by [Chain.Run] came from, so that a
// user interface can say "offline copy from 12 minutes ago" or "accepted;
// will sync".
type Source struct {
	// Step is the name of the step that produced the value.
	Step string
	// Kind is that step's kind.
	Kind Kind
	// Age is how old the value is: for a KindStale step the time since the
	// primary produced it, otherwise zero.
	Age time.Duration
	// Mode is the Switch's mode when the call started (ModeAuto when the
	// chain has no Switch). ModeManual means the primary was not called.
	Mode Mode
}

// Fallback reports whether the value came from a step other than the
// primary.
func (s Source) Fallback() bool { return s.Kind != KindPrimary }

// String describes the source, such as `stale "last-known" (12m0s old)`,
// adding "in manual mode" when the primary was skipped.
func (s Source) String() string {
	str := fmt.Sprintf("%v %q", s.Kind, s.Step)
	if s.Kind == KindStale {
		str += fmt.Sprintf(" (%v old)", s.Age)
	}
	if s.Mode == ModeManual {
		str += " in manual mode"
	}
	return str
}

// StepError is a step's error, as found (through errors.Is and errors.As)
// in the error Run returns.
type StepError struct {
	Step string // the step's name
	Kind Kind   // the step's kind
	Err  error  // the step's own error
}

// Error returns the step's name and kind and its error's message.
func (e *StepError) Error() string {
	return fmt.Sprintf("fallback: %v step %q: %v", e.Kind, e.Step, e.Err)
}

// Unwrap returns the step's own error.
func (e *StepError) Unwrap() error { return e.Err }

// NoFallback wraps err so that a [Chain] returns it at once instead of
// trying the next step: use it for an error that says the request itself
// is wrong (a validation error must not be hidden behind stale data). The
// wrapper is transparent: its message is err's, and errors.Is and
// errors.As see through it. A chain's retry policy does not retry it
// either. NoFallback(nil) is nil.
func NoFallback(err error) error {
	if err == nil {
		return nil
	}
	return &noFallbackError{err: err}
}

type noFallbackError struct{ err error }

// errNoFallback is matched by every noFallbackError, so that errors.Is
// finds the mark without the allocation errors.As would make.
var errNoFallback = errors.New("fallback: no fallback")

func (e *noFallbackError) Error() string        { return e.err.Error() }
func (e *noFallbackError) Unwrap() error        { return e.err }
func (e *noFallbackError) Is(target error) bool { return target == errNoFallback }

func isNoFallback(err error) bool { return errors.Is(err, errNoFallback) }

// ChainSettings configures a [Chain]. Every zero field means the default
// its comment states, so ChainSettings{} gives a chain that is always in
// ModeAuto, calls the primary once, falls back on every error that means
// "unavailable" (see [Unavailable]), gives local fallbacks
// DefaultFallbackTimeout once the caller's deadline has passed, and
// defers writes of unknown outcome.
type ChainSettings struct {
	// Switch, if not nil, supplies the mode, read once at the start of
	// every Run. Nil means always ModeAuto.
	Switch *Switch

	// Breaker, if not nil, guards every call of the primary (see
	// breaker.Do): while it is open the primary is not called and the
	// chain falls back at once. A call whose error is wrapped by
	// NoFallback, or that ShouldFallback says is not an outage (such as
	// a 404), counts as a success, since the dependency answered. Nil
	// means no breaker.
	Breaker *breaker.Breaker

	// Retry, if not nil, retries the primary under this policy before the
	// chain falls back (see retry.Do). Retries wrap the Breaker, so each
	// attempt passes through it and an open breaker's error (which asks
	// for a delay) ends the retries. The chain copies the policy and never
	// retries an error wrapped by NoFallback or one that ShouldFallback
	// says is not an outage. Nil means one attempt.
	Retry *retry.Policy

	// ShouldFallback is the chain's classifier: it reports whether a
	// step's error means the dependency is unavailable, so that the chain
	// may go on to the next step. Nil means [Unavailable], which falls
	// back on every error except one carrying an HTTP status of 4xx other
	// than 408 and 429 (a not-found is an answer, not an outage). Set it
	// to classify an SDK's own error type, falling back to Unavailable
	// for the rest:
	//
	//	ShouldFallback: func(err error) bool {
	//		var re *azcore.ResponseError
	//		if errors.As(err, &re) {
	//			return fallback.UnavailableStatus(re.StatusCode)
	//		}
	//		return fallback.Unavailable(err)
	//	},
	//
	// It is consulted after the built-in rules, so it cannot make the
	// chain go on after an error wrapped by NoFallback or after the
	// caller's context was canceled. When it says a write's last error is
	// the dependency's answer (a 409 Conflict after an attempt that timed
	// out, say), Run returns that answer, marked with ErrUnknownOutcome if
	// an earlier attempt may have been applied, rather than deferring the
	// write. It runs on the goroutine that called Run, possibly inside the
	// breaker's and the retry policy's calls, and must be safe for
	// concurrent use.
	ShouldFallback func(error) bool

	// FallbackTimeout is the time local fallback steps (Stale, Static,
	// Manual and Deferred) get once the caller's deadline has passed, for
	// instance because the primary hung until it: they then run with a
	// context that keeps the caller's values but not its deadline,
	// bounded by FallbackTimeout from the moment the chain first needs
	// it. Alternate steps, which call a remote copy, get no extra time.
	// A caller who canceled gets none either: Run returns at once. Zero
	// means DefaultFallbackTimeout (250ms); it must not be negative.
	FallbackTimeout time.Duration

	// ReportUnknownOutcome changes what a chain with a Deferred step does
	// with a write whose outcome is unknown: one whose primary call (any
	// attempt of it) timed out, was canceled in flight or got 504 Gateway
	// Timeout, so that it may have been applied. By default (false) such a write skips the steps
	// before the deferred one (an alternate must not receive a write the
	// primary may have applied) and is deferred: the outbox item carries
	// the idempotency key, so its replay makes the outcome certain
	// without applying the write twice, and the Source has KindDeferred.
	// With true, Run returns at once with an error wrapping
	// ErrUnknownOutcome and the primary's error, and nothing is deferred;
	// choose it when the receiver cannot deduplicate by key. A chain
	// without a Deferred step ignores the field.
	ReportUnknownOutcome bool

	// Logger, if not nil, receives a Debug record for every Run answered
	// by a fallback step (chain, step and kind) and for every Run that
	// returns an error (chain, mode and the last step's error). Nil means
	// no logging.
	Logger *slog.Logger

	// MeterProvider, if not nil, gets the chain's answers by source kind
	// as the OpenTelemetry counter ringfence.fallback.answers (see
	// METRICS.md at the root of the module); a Run adds to a striped
	// counter only. The chain stays registered with the provider as long
	// as the provider lives. Nil means no instruments.
	MeterProvider metric.MeterProvider
}

// Chain runs one operation against its primary and, when the primary is
// unavailable, against fallback steps in order, and says which step
// produced the value. Req is the operation's input and Resp its result.
//
// Build a Chain once with [NewChain] and call Run for every request. A
// Chain is immutable and safe for concurrent use. The zero value is not
// usable.
type Chain[Req, Resp any] struct {
	name      string
	primary   Step[Req, Resp]
	fallbacks []Step[Req, Resp]
	feeds     []func(Req, Resp) // fed by every successful primary call
	// deferredAt is the index in fallbacks of the deferred step, or -1.
	deferredAt int

	sw            *Switch
	breaker       *breaker.Breaker
	retry         *retry.Policy
	should        func(error) bool
	fallbackTime  time.Duration
	reportUnknown bool
	obs           *chainObs // logger and metrics; nil without either
}

// NewChain returns a chain called name that calls primary, made with
// [Primary], and falls back to the fallbacks in the order given.
//
// It returns an error naming the problem for a step not made by one of
// this package's step constructors, a primary of the wrong kind or a
// fallback of kind primary, an empty step name, more than one deferred
// step, an invalid Retry policy, or a negative FallbackTimeout.
func NewChain[Req, Resp any](name string, settings ChainSettings, primary Step[Req, Resp], fallbacks ...Step[Req, Resp]) (*Chain[Req, Resp], error) {
	if primary.kind != KindPrimary || primary.do == nil {
		return nil, fmt.Errorf("fallback: chain %q: the primary step must be made with Primary", name)
	}
	if primary.name == "" {
		return nil, fmt.Errorf("fallback: chain %q: the primary step has an empty name", name)
	}
	if settings.FallbackTimeout < 0 {
		return nil, fmt.Errorf("fallback: chain %q: ChainSettings.FallbackTimeout must be >= 0, got %v", name, settings.FallbackTimeout)
	}
	c := &Chain[Req, Resp]{
		name:          name,
		primary:       primary,
		fallbacks:     append([]Step[Req, Resp](nil), fallbacks...),
		sw:            settings.Switch,
		breaker:       settings.Breaker,
		should:        settings.ShouldFallback,
		fallbackTime:  settings.FallbackTimeout,
		reportUnknown: settings.ReportUnknownOutcome,
		deferredAt:    -1,
	}
	if c.should == nil {
		c.should = Unavailable
	}
	if c.fallbackTime == 0 {
		c.fallbackTime = DefaultFallbackTimeout
	}
	for i, st := range fallbacks {
		switch {
		case st.kind == KindPrimary:
			return nil, fmt.Errorf("fallback: chain %q: fallback %d (%q) is a primary step", name, i, st.name)
		case st.run == nil && st.deferred == nil:
			return nil, fmt.Errorf("fallback: chain %q: fallback %d was not made by a step constructor", name, i)
		case st.name == "":
			return nil, fmt.Errorf("fallback: chain %q: fallback %d (%v) has an empty name", name, i, st.kind)
		case st.deferred != nil && c.deferredAt >= 0:
			return nil, fmt.Errorf("fallback: chain %q: fallback %d (%q) is a second deferred step", name, i, st.name)
		}
		if st.feed != nil {
			c.feeds = append(c.feeds, st.feed)
		}
		if st.deferred != nil {
			c.deferredAt = i
		}
	}
	if settings.Retry != nil {
		p := *settings.Retry
		if err := p.Validate(); err != nil {
			return nil, fmt.Errorf("fallback: chain %q: ChainSettings.Retry: %w", name, err)
		}
		userRetryable := p.IsRetryable
		p.IsRetryable = func(err error) bool {
			if c.answered(err) {
				return false
			}
			return userRetryable == nil || userRetryable(err)
		}
		c.retry = &p
	}
	obs, err := newChainObs(name, settings)
	if err != nil {
		return nil, err
	}
	c.obs = obs
	return c, nil
}

// Name returns the name given to NewChain.
func (c *Chain[Req, Resp]) Name() string { return c.name }

// Run performs the operation for req and returns the value, the Source
// that produced it, and a nil error; or the zero Resp, a Source with only
// Mode set, and an error.
//
// In ModeAuto Run calls the primary (through the Retry policy) and, if it
// fails, each fallback in order until one succeeds. In ModeManual it
// skips the primary and starts with the first fallback. In ModePrimary it
// calls only the primary and returns its error. Every successful primary
// call feeds the caches of the chain's stale steps.
//
// A failed step leads to the next one unless its error is wrapped by
// NoFallback, the caller's ctx was canceled, or ShouldFallback says the
// error is not an outage; then Run returns at once, with that step's
// *StepError (joined with the earlier steps' errors, and with
// context.Canceled when ctx was canceled). When every step failed, the
// error joins (errors.Join) an error wrapping ErrAllFailed with every
// step's *StepError, in order, so errors.Is finds each cause; in
// ModeManual the primary's place is taken by ErrManualMode.
//
// A passed deadline is not a cancellation: once ctx's deadline has
// passed, the local fallback steps still run, under a context of the
// chain's own (see ChainSettings.FallbackTimeout), so that a primary that
// hung until the deadline still leaves time to serve stale data or to
// defer a write. A canceled ctx means the caller has gone: Run returns at
// once without trying further steps.
//
// A chain with a [Deferred] step also keeps the writes of each stream in
// order: while earlier writes on the request's stream wait in the outbox,
// Run skips every step before the deferred one and queues the write
// behind them; the primary's place in the errors is then taken by
// ErrStreamPending. In ModePrimary, which never falls back, Run returns
// that error instead. A write whose outcome is unknown goes straight to
// the deferred step too (see ChainSettings.ReportUnknownOutcome); when
// it is not deferred, Run's error wraps ErrUnknownOutcome.
//
// In a chain without a deferred step, Run adds no allocation to the
// steps' own, whether the primary answers or a fallback does (a
// fallback's own context, made only once the caller's deadline has
// passed, aside); only the error of a call that fails is built on the
// heap.
func (c *Chain[Req, Resp]) Run(ctx context.Context, req Req) (Resp, Source, error) {
	r := run{mode: ModeAuto}
	if c.sw != nil {
		r.mode = c.sw.Mode()
	}
	var buf [4]failure[Req, Resp] // the steps' errors, kept off the heap for short chains
	fails := buf[:0]
	if c.deferredAt >= 0 {
		queued, err := c.queuedBehind(req, &r.w)
		if err != nil {
			fails = append(fails, failure[Req, Resp]{&c.fallbacks[c.deferredAt], err})
			return c.fail(ctx, &r, fails, false)
		}
		if queued {
			// Earlier writes on this stream wait in the outbox: this one
			// goes behind them instead of overtaking them.
			fails = append(fails, failure[Req, Resp]{&c.primary, ErrStreamPending})
			if r.mode == ModePrimary {
				return c.fail(ctx, &r, fails, false)
			}
			return c.runFallbacks(ctx, req, &r, c.deferredAt, fails)
		}
	}
	if r.mode == ModeManual {
		fails = append(fails, failure[Req, Resp]{&c.primary, ErrManualMode})
		return c.runFallbacks(ctx, req, &r, 0, fails)
	}
	v, err := c.callPrimary(ctx, req, &r)
	if err == nil {
		c.obs.answered(ctx, c.primary.name, KindPrimary)
		return v, Source{Step: c.primary.name, Kind: KindPrimary, Mode: r.mode}, nil
	}
	fails = append(fails, failure[Req, Resp]{&c.primary, err})
	switch {
	case r.mode == ModePrimary || isNoFallback(err) || canceled(ctx) || !c.should(err):
		return c.fail(ctx, &r, fails, false)
	case r.unknown:
		// The write may have been applied: only the deferred step, whose
		// replay carries the idempotency key, can make its outcome
		// certain.
		if c.reportUnknown {
			return c.fail(ctx, &r, fails, false)
		}
		return c.runFallbacks(ctx, req, &r, c.deferredAt, fails)
	}
	return c.runFallbacks(ctx, req, &r, 0, fails)
}

// run is the state of one Run call.
type run struct {
	mode Mode
	// w carries the deferred write's item, if the chain has a deferred
	// step.
	w pendingWrite
	// unknown is set when an attempt of a chain with a deferred step
	// failed in a way that leaves the write's outcome unknown.
	unknown bool
	// fbCtx is the local fallbacks' own context, made once the caller's
	// deadline has passed; cancel releases it when runFallbacks returns.
	fbCtx  context.Context
	cancel context.CancelFunc
}

// release frees the fallbacks' own context, if one was made.
func (r *run) release() {
	if r.cancel != nil {
		r.cancel()
	}
}

// failure is a step's error, kept as it is until Run has to return it, so
// that a fallback that succeeds costs no allocation for the errors before.
type failure[Req, Resp any] struct {
	step *Step[Req, Resp]
	err  error
}

// canceled reports whether the caller canceled ctx (rather than let its
// deadline pass).
func canceled(ctx context.Context) bool { return ctx.Err() == context.Canceled }

// answered reports whether the primary's err is the dependency's answer
// rather than an outage: such an error is neither retried nor counted as
// a failure by the breaker, and ends the chain.
func (c *Chain[Req, Resp]) answered(err error) bool {
	return isNoFallback(err) || !c.should(err)
}

// callPrimary calls the primary through the retry policy and the breaker,
// and on success feeds the stale steps' caches.
func (c *Chain[Req, Resp]) callPrimary(ctx context.Context, req Req, r *run) (Resp, error) {
	var v Resp
	var err error
	if c.retry != nil {
		v, err = retry.Do(ctx, *c.retry, func(ctx context.Context) (Resp, error) {
			return c.guarded(ctx, req, r)
		})
	} else {
		v, err = c.guarded(ctx, req, r)
	}
	if err == nil {
		for _, feed := range c.feeds {
			feed(req, v)
		}
	}
	return v, err
}

// guarded calls the primary through the breaker, if there is one.
func (c *Chain[Req, Resp]) guarded(ctx context.Context, req Req, r *run) (Resp, error) {
	if c.breaker == nil {
		return c.attempt(ctx, req, r)
	}
	var answer error // an error that is the dependency's answer, which the breaker counts as a success
	v, err := breaker.Do(ctx, c.breaker, func(ctx context.Context) (Resp, error) {
		v, err := c.attempt(ctx, req, r)
		if err != nil && c.answered(err) {
			answer = err
			return v, nil
		}
		return v, err
	})
	if answer != nil {
		return v, answer
	}
	return v, err
}

// attempt calls the primary once and, in a chain with a deferred step,
// notes whether its error leaves the write's outcome unknown.
func (c *Chain[Req, Resp]) attempt(ctx context.Context, req Req, r *run) (Resp, error) {
	v, err := c.primary.do(ctx, req)
	if err != nil && c.deferredAt >= 0 && !r.unknown && unknownOutcome(err) {
		r.unknown = true
	}
	return v, err
}

// stepContext returns the context for fallback step st: the caller's, or,
// once the caller's deadline has passed and st does local work, the
// fallbacks' own, made on first use.
func (c *Chain[Req, Resp]) stepContext(ctx context.Context, st *Step[Req, Resp], r *run) context.Context {
	if st.kind == KindAlternate || ctx.Err() != context.DeadlineExceeded {
		return ctx
	}
	if r.fbCtx == nil {
		r.fbCtx, r.cancel = context.WithTimeout(context.WithoutCancel(ctx), c.fallbackTime)
	}
	return r.fbCtx
}

// runFallbacks tries the fallbacks from index from on, after the failures
// of the steps before.
func (c *Chain[Req, Resp]) runFallbacks(ctx context.Context, req Req, r *run, from int, fails []failure[Req, Resp]) (Resp, Source, error) {
	defer r.release()
	for i := from; i < len(c.fallbacks); i++ {
		st := &c.fallbacks[i]
		sctx := c.stepContext(ctx, st, r)
		var (
			v   Resp
			age time.Duration
			err error
		)
		if st.deferred != nil {
			v, err = st.deferred.enqueue(sctx, req, &r.w)
		} else {
			v, age, err = st.run(sctx, req)
		}
		if err == nil {
			c.obs.answered(ctx, st.name, st.kind)
			return v, Source{Step: st.name, Kind: st.kind, Age: age, Mode: r.mode}, nil
		}
		fails = append(fails, failure[Req, Resp]{st, err})
		if isNoFallback(err) || canceled(ctx) || !c.should(err) {
			return c.fail(ctx, r, fails, false)
		}
	}
	return c.fail(ctx, r, fails, true)
}

// fail builds Run's error from the steps' failures: a *StepError for each,
// joined, after an ErrAllFailed error when all is set and an
// ErrUnknownOutcome error when the write's outcome is unknown.
func (c *Chain[Req, Resp]) fail(ctx context.Context, r *run, fails []failure[Req, Resp], all bool) (Resp, Source, error) {
	var zero Resp
	c.obs.failed(ctx, r.mode, fails[len(fails)-1].err)
	errs := make([]error, 0, len(fails)+3)
	if all {
		errs = append(errs, fmt.Errorf("fallback: chain %q: %w", c.name, ErrAllFailed))
	}
	if r.unknown {
		errs = append(errs, fmt.Errorf("fallback: chain %q: %w", c.name, ErrUnknownOutcome))
	}
	sawCancel := false
	for _, f := range fails {
		errs = append(errs, &StepError{Step: f.step.name, Kind: f.step.kind, Err: f.err})
		sawCancel = sawCancel || errors.Is(f.err, context.Canceled)
	}
	if canceled(ctx) && !sawCancel {
		errs = append(errs, context.Canceled)
	}
	if len(errs) == 1 {
		return zero, Source{Mode: r.mode}, errs[0]
	}
	return zero, Source{Mode: r.mode}, errors.Join(errs...)
}
