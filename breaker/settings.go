package breaker

import (
	"fmt"
	"log/slog"
	"math"
	"time"

	"go.opentelemetry.io/otel/metric"
)

// Settings configures a [Breaker]. Every zero field means the default its
// comment states, so Settings{} is a sensible production breaker. Settings
// are copied by [New]; changing them afterwards has no effect.
type Settings struct {
	// Name names the breaker in errors, callbacks and logs. Default "".
	Name string

	// Window is the rolling span over which requests, failures and slow
	// calls are counted for FailureRatio. It is cut into 10 buckets and
	// covers between 0.9 and 1.0 times Window of history. Default 60s;
	// when set it must be at least 100ms.
	Window time.Duration

	// MinRequests is how many calls the window must hold before
	// FailureRatio is judged. Default 20.
	MinRequests int

	// FailureRatio trips the breaker when failures/requests in the window
	// reaches it (with at least MinRequests requests). It must be in
	// (0, 1]. Default 0.5.
	FailureRatio float64

	// ConsecutiveFailures trips the breaker when this many calls fail in a
	// row within the window, however they fall across its buckets;
	// failures that have left the window no longer count towards the run.
	// The breaker trips on whichever of the two conditions is met first.
	// Default 5.
	ConsecutiveFailures int

	// SlowCall makes a call that takes at least this long count as a
	// failure even if it succeeded (and as a slow call in [Snapshot]).
	// Default 0: off, and then no clock is read for a successful call.
	SlowCall time.Duration

	// OpenTimeout is the first wait in the Open state before a probe may
	// go. Every wait is shortened by a random jitter of up to 20%, so
	// that clients that tripped together do not probe together. Default
	// 30s.
	OpenTimeout time.Duration

	// MaxOpenTimeout caps the open wait, which doubles after every failed
	// probe round and returns to OpenTimeout once the breaker closes. It
	// must not be below OpenTimeout. Default 10 times OpenTimeout.
	MaxOpenTimeout time.Duration

	// HalfOpenRequests is how many probe calls the HalfOpen state lets
	// through; all of them must succeed to close the breaker, and any
	// failure opens it again. Default 1.
	HalfOpenRequests int

	// HalfOpenTimeout bounds how long the HalfOpen state waits for its
	// probes, counted from the moment the first probe of the round is
	// admitted. A probe still unfinished then (hung, or admitted by
	// [Breaker.Allow] and never reported with Done) counts as failed: the
	// breaker opens again for its next, longer wait, and the probe's late
	// outcome is ignored. A HalfOpen state that admits no probe does not
	// time out. Default 60s.
	HalfOpenTimeout time.Duration

	// Ramp, if set, is how long the breaker takes after it closes again
	// to let all calls through: the share it admits rises linearly from
	// 10% to 100% over Ramp, and calls held back get an [*OpenError].
	// Default 0: no ramp, everything goes through at once.
	Ramp time.Duration

	// CountCanceled makes a call that ends in context.Canceled count like
	// any other error. Default false: a call whose error is
	// context.Canceled, or whose context was canceled, counts neither as
	// a success nor as a failure, since the caller gave up, not the
	// dependency. (context.DeadlineExceeded always counts.)
	CountCanceled bool

	// IsFailure reports whether a non-nil error counts as a failure;
	// returning false counts the call as a success. It is not called for
	// excluded cancellations. Default: every non-nil error is a failure.
	// It runs on the calling goroutine and must be safe for concurrent use.
	IsFailure func(err error) bool

	// OnChange, if set, is called after every state change with a [Change]
	// that carries the states, the reason and the time of the change. It
	// is never called while the breaker holds a lock, so it may use the
	// breaker. Calls are made one at a time and in the order of the
	// changes, on the goroutine whose call caused the change (or on one
	// that was already delivering earlier changes); the move from Open to
	// HalfOpen, which no call causes, is delivered on the goroutine of the
	// breaker's timer, and so is the move from HalfOpen to Open when the
	// half-open deadline passes. Default nil.
	OnChange func(Change)

	// Logger, if set, receives one record per state change: Warn when the
	// breaker opens (automatically or by force), Info otherwise, with the
	// name, both states and the reason. Default nil: no logging.
	Logger *slog.Logger

	// MeterProvider, if set, gives the breaker OpenTelemetry instruments:
	// its state, its calls by outcome and its state changes (see
	// METRICS.md at the root of the module for names and attributes).
	// The instruments are created once, by New or NewGroup, and a call
	// adds only to striped counters that the provider reads when it
	// collects. A breaker with instruments stays registered with the
	// provider, and so reachable, as long as the provider lives. Default
	// nil: no instruments, and nothing is counted.
	MeterProvider metric.MeterProvider

	// rand returns jitter in [0, 1); tests pin it. Default math/rand/v2.
	rand func() float64
}

// Defaults for zero Settings fields.
const (
	defaultWindow              = 60 * time.Second
	defaultMinRequests         = 20
	defaultFailureRatio        = 0.5
	defaultConsecutiveFailures = 5
	defaultOpenTimeout         = 30 * time.Second
	defaultMaxOpenFactor       = 10
	defaultHalfOpenRequests    = 1
	defaultHalfOpenTimeout     = 60 * time.Second

	windowBuckets = 10
	minWindow     = 100 * time.Millisecond
	jitterShare   = 0.2 // the most jitter takes off an open wait
	rampFloor     = 0.1 // the share a ramp admits when it starts
)

func invalid(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{ErrInvalidSettings}, args...)...)
}

// normalize checks s and fills in its defaults. The error names the first
// field it cannot use.
func (s Settings) normalize() (Settings, error) {
	switch {
	case s.Window < 0:
		return s, invalid("Settings.Window must not be negative, got %v", s.Window)
	case s.Window == 0:
		s.Window = defaultWindow
	case s.Window < minWindow:
		return s, invalid("Settings.Window must be at least %v, got %v", minWindow, s.Window)
	}
	switch {
	case s.MinRequests < 0:
		return s, invalid("Settings.MinRequests must not be negative, got %d", s.MinRequests)
	case s.MinRequests == 0:
		s.MinRequests = defaultMinRequests
	}
	switch {
	case math.IsNaN(s.FailureRatio) || s.FailureRatio < 0 || s.FailureRatio > 1:
		return s, invalid("Settings.FailureRatio must be in (0,1], got %v", s.FailureRatio)
	case s.FailureRatio == 0:
		s.FailureRatio = defaultFailureRatio
	}
	switch {
	case s.ConsecutiveFailures < 0:
		return s, invalid("Settings.ConsecutiveFailures must not be negative, got %d", s.ConsecutiveFailures)
	case s.ConsecutiveFailures == 0:
		s.ConsecutiveFailures = defaultConsecutiveFailures
	}
	if s.SlowCall < 0 {
		return s, invalid("Settings.SlowCall must not be negative, got %v", s.SlowCall)
	}
	switch {
	case s.OpenTimeout < 0:
		return s, invalid("Settings.OpenTimeout must not be negative, got %v", s.OpenTimeout)
	case s.OpenTimeout == 0:
		s.OpenTimeout = defaultOpenTimeout
	}
	switch {
	case s.MaxOpenTimeout < 0:
		return s, invalid("Settings.MaxOpenTimeout must not be negative, got %v", s.MaxOpenTimeout)
	case s.MaxOpenTimeout == 0:
		s.MaxOpenTimeout = defaultMaxOpenFactor * s.OpenTimeout
		if s.MaxOpenTimeout/defaultMaxOpenFactor != s.OpenTimeout {
			s.MaxOpenTimeout = math.MaxInt64 // overflow: no cap worth having
		}
	case s.MaxOpenTimeout < s.OpenTimeout:
		return s, invalid("Settings.MaxOpenTimeout must not be below OpenTimeout (%v), got %v", s.OpenTimeout, s.MaxOpenTimeout)
	}
	switch {
	case s.HalfOpenRequests < 0 || s.HalfOpenRequests > math.MaxUint32:
		return s, invalid("Settings.HalfOpenRequests must be in [0,%d], got %d", uint32(math.MaxUint32), s.HalfOpenRequests)
	case s.HalfOpenRequests == 0:
		s.HalfOpenRequests = defaultHalfOpenRequests
	}
	switch {
	case s.HalfOpenTimeout < 0:
		return s, invalid("Settings.HalfOpenTimeout must not be negative, got %v", s.HalfOpenTimeout)
	case s.HalfOpenTimeout == 0:
		s.HalfOpenTimeout = defaultHalfOpenTimeout
	}
	if s.Ramp < 0 {
		return s, invalid("Settings.Ramp must not be negative, got %v", s.Ramp)
	}
	return s, nil
}
