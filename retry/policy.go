package retry

import (
	"errors"
	"fmt"
	"log/slog"
	"math"
	"time"
)

// Defaults used for zero fields of a Policy.
const (
	DefaultMaxAttempts     = 3                      // Policy.MaxAttempts
	DefaultInitialInterval = 100 * time.Millisecond // Policy.InitialInterval
	DefaultMaxInterval     = 10 * time.Second       // Policy.MaxInterval
	DefaultMultiplier      = 2.0                    // Policy.Multiplier
	DefaultJitter          = 0.5                    // Policy.Jitter
)

// Policy describes when and how often a call is tried again. It is passed by
// value; every zero field means the default documented on it, so the zero
// Policy retries up to three attempts with jittered exponential backoff
// starting at 100ms.
//
// A Policy holds no state of its own and may be shared by any number of
// goroutines; the Budget and Throttle it points to are safe for concurrent
// use.
type Policy struct {
	// MaxAttempts is the total number of attempts, including the first.
	// Zero means DefaultMaxAttempts (3); 1 disables retries.
	MaxAttempts int

	// InitialInterval is the backoff interval before the first retry.
	// Zero means DefaultInitialInterval (100ms).
	InitialInterval time.Duration

	// MaxInterval caps every backoff wait, jitter included. A delay the
	// server asks for (see RetryAfter) may be longer. Zero means
	// DefaultMaxInterval (10s). It must not be below InitialInterval.
	MaxInterval time.Duration

	// Multiplier grows the interval after each retry. Zero means
	// DefaultMultiplier (2); it must be at least 1.
	Multiplier float64

	// Jitter is the randomization factor in [0, 1]: each wait is drawn
	// uniformly from interval*(1-Jitter) to interval*(1+Jitter), then capped
	// at MaxInterval. Zero means DefaultJitter (0.5). To wait exactly the
	// computed interval, set Rand to a function returning 0.5.
	Jitter float64

	// MaxElapsed bounds the time from the start of the first attempt to the
	// start of the last one; a retry that could not start within it is not
	// made. Zero means no bound other than the context's deadline.
	MaxElapsed time.Duration

	// IsRetryable reports whether a failed attempt's error may be retried.
	// It is consulted after the built-in rules (see the package
	// documentation), so it cannot make a Permanent error, a forced
	// rejection or context.Canceled retryable. Nil means every other error
	// is retryable except certificate errors (x509.UnknownAuthorityError,
	// x509.HostnameError, x509.CertificateInvalidError,
	// *tls.CertificateVerificationError) and a *net.DNSError whose
	// IsNotFound is set: waiting mends neither. A non-nil IsRetryable
	// decides those too. It runs on the calling goroutine.
	IsRetryable func(error) bool

	// Budget, if not nil, is spent by every retry and refilled by every
	// successful call, capping the extra load retries add across all the
	// calls that share it.
	Budget *Budget

	// Throttle, if not nil, gates every attempt with client-side adaptive
	// throttling and learns from each attempt's outcome: an attempt counts
	// as accepted when it succeeds or fails with an error that is not
	// retried (the backend gave a definite answer), and as refused when it
	// fails with a retryable error.
	Throttle *Throttle

	// OnRetry, if not nil, is called on the calling goroutine just before
	// waiting for a retry, with the number of the attempt that failed
	// (1 for the first), its error, and the wait about to start.
	OnRetry func(attempt int, err error, wait time.Duration)

	// Metrics, if not nil, counts the retries of every call made with the
	// policy, and the retries the Budget or the Throttle refused (see
	// [Metrics]). Nil means no instruments.
	Metrics *Metrics

	// Logger, if not nil, receives a Debug record before every retry
	// (the failed attempt's number and error, and the wait) and when the
	// Budget or the Throttle refuses one. Nothing is logged above Debug:
	// these are per-call events. Nil means no logging.
	Logger *slog.Logger

	// Rand returns uniform values in [0, 1) for jitter. Nil means
	// math/rand/v2.Float64. Tests pin it to make waits exact.
	Rand func() float64
}

// ErrInvalidSettings is wrapped by the errors that Policy.Validate,
// NewBudget and NewThrottle return for settings they cannot use. The message
// names the offending field or argument.
var ErrInvalidSettings = errors.New("retry: invalid settings")

func invalid(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{ErrInvalidSettings}, args...)...)
}

// Validate reports whether p is usable. The error wraps ErrInvalidSettings
// and names the offending field.
func (p Policy) Validate() error { return p.validate() }

func (p *Policy) validate() error {
	switch {
	case p.MaxAttempts < 0:
		return invalid("Policy.MaxAttempts must be >= 0, got %d", p.MaxAttempts)
	case p.InitialInterval < 0:
		return invalid("Policy.InitialInterval must be >= 0, got %v", p.InitialInterval)
	case p.MaxInterval < 0:
		return invalid("Policy.MaxInterval must be >= 0, got %v", p.MaxInterval)
	case p.Multiplier != 0 && !(p.Multiplier >= 1 && p.Multiplier <= math.MaxFloat64):
		return invalid("Policy.Multiplier must be >= 1 and finite, got %v", p.Multiplier)
	case !(p.Jitter >= 0 && p.Jitter <= 1):
		return invalid("Policy.Jitter must be in [0,1], got %v", p.Jitter)
	case p.MaxElapsed < 0:
		return invalid("Policy.MaxElapsed must be >= 0, got %v", p.MaxElapsed)
	}
	if p.maxInterval() < p.initialInterval() {
		return invalid("Policy.MaxInterval must be >= InitialInterval (%v), got %v",
			p.initialInterval(), p.maxInterval())
	}
	return nil
}

func (p *Policy) maxAttempts() int {
	if p.MaxAttempts == 0 {
		return DefaultMaxAttempts
	}
	return p.MaxAttempts
}

func (p *Policy) initialInterval() time.Duration {
	if p.InitialInterval == 0 {
		return DefaultInitialInterval
	}
	return p.InitialInterval
}

func (p *Policy) maxInterval() time.Duration {
	if p.MaxInterval == 0 {
		return DefaultMaxInterval
	}
	return p.MaxInterval
}

func (p *Policy) multiplier() float64 {
	if p.Multiplier == 0 {
		return DefaultMultiplier
	}
	return p.Multiplier
}

func (p *Policy) jitter() float64 {
	if p.Jitter == 0 {
		return DefaultJitter
	}
	return p.Jitter
}
