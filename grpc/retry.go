package grpc

import (
	"context"
	"errors"
	"math"
	"strconv"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/ringfence/ringfence/retry"
)

// PushbackKey is the trailer a server sets to tell a client when to retry,
// in milliseconds, as gRPC's retry design (A6) defines it.
const PushbackKey = "grpc-retry-pushback-ms"

// RetryOptions configures a [Retrier]. The zero value means the defaults
// stated on each field.
type RetryOptions struct {
	// Policy decides how often and after which waits a call is tried
	// again, and holds the Budget and Throttle shared with other calls.
	// Its IsRetryable, if set, is consulted after the codes below: it can
	// refuse a retry they allow, not allow one they refuse. Default: the
	// zero Policy, up to three attempts.
	Policy retry.Policy

	// Codes are the status codes retried for every method. Default
	// UNAVAILABLE and RESOURCE_EXHAUSTED, which say that the call was not
	// processed or was refused for load. An empty, non-nil list retries
	// no code. OK is not a valid entry.
	Codes []codes.Code

	// IdempotentCodes are the status codes retried only for the methods
	// Idempotent accepts, since the server may have acted on the call
	// before it failed. Default DEADLINE_EXCEEDED; an empty, non-nil list
	// retries no extra code.
	IdempotentCodes []codes.Code

	// Idempotent reports whether a method (its full name,
	// "/package.Service/Method") may safely be called twice. It runs on
	// the calling goroutine and must be safe for concurrent use; see
	// [Methods]. Default nil: no method is idempotent.
	Idempotent func(method string) bool

	// AttemptTimeout, if set, bounds each attempt of a unary call, so
	// that a hung attempt ends with DEADLINE_EXCEEDED (retried for
	// idempotent methods) while the call's own deadline leaves room for
	// another. It does not apply to streams. Default 0: attempts are bound
	// only by the call's context.
	AttemptTimeout time.Duration
}

// Methods returns a [RetryOptions.Idempotent] function that accepts
// exactly the full method names given, such as
// "/grpc.testing.TestService/UnaryCall".
func Methods(names ...string) func(method string) bool {
	set := make(map[string]struct{}, len(names))
	for _, n := range names {
		set[n] = struct{}{}
	}
	return func(method string) bool {
		_, ok := set[method]
		return ok
	}
}

// Retrier is a pair of client interceptors, [Retrier.Unary] and
// [Retrier.Stream], that try a failed call again under a retry.Policy.
// Put it outside a [Breaker], so that every attempt passes through the
// breaker and an open breaker's wait is honoured:
//
//	conn, err := grpc.NewClient(target,
//		grpc.WithChainUnaryInterceptor(r.Unary, b.Unary),
//		grpc.WithChainStreamInterceptor(r.Stream, b.Stream),
//		grpc.WithDisableRetry())
//
// (gRPC's own retries, configured through a service config, would add
// attempts the Policy's Budget does not see; turn them off.)
//
// # What is retried
//
// An attempt is retried when its status code is in RetryOptions.Codes, or
// in RetryOptions.IdempotentCodes for a method RetryOptions.Idempotent
// accepts, and then under the rules of retry.Do: attempts, deadline,
// MaxElapsed, Budget, Throttle, Policy.IsRetryable. A call rejected by a
// Breaker inside has code UNAVAILABLE and is retried after the breaker's
// RetryAfter, unless an operator forced the breaker open, which ends the
// retries at once.
//
// A server may answer with the trailer grpc-retry-pushback-ms
// ([PushbackKey]). A non-negative whole number of milliseconds is honoured
// as a Retry-After header is: the next attempt waits at least that long,
// and if the delay is longer than the remaining retries could wait at
// Policy.MaxInterval each, the call is not retried at all. A negative or
// malformed value, or more than one value, means the server asks not to be
// retried, and the call is not retried.
//
// # Streams
//
// A stream is retried only before its first response message arrives. A
// stream without client streaming (one request, then a stream of
// responses) is opened when the caller first calls RecvMsg or Header; the
// request is kept until then, and each attempt opens the stream anew,
// sends it and waits for the first response: an attempt succeeds when the
// first message arrives, when the stream ends cleanly without one, or when
// Header returns headers; after that the stream is committed and its
// errors come back unchanged. Until it is opened, SendMsg and CloseSend
// only record the request (a second request fails with INTERNAL), Trailer
// returns nil and Context returns the caller's context; a stream the
// caller never receives from never sends its request. A client-streaming or bidirectional stream is retried
// only while opening it fails, before any message was sent: replaying
// what the caller sent would need a buffer as large as the stream, so
// once it is open its errors come back unchanged. For the Budget and the
// Throttle, such a stream succeeds when it opens.
//
// # Errors
//
// When the call succeeds the interceptors return nil. When retrying ends
// because the code is not retried, the attempts are used up, MaxElapsed or
// Policy.IsRetryable says so, or the server (or an open breaker) asked for
// no retry or for a delay too long to wait, they return the last attempt's
// error unchanged. When it ends early for a reason of the retry's own
// (Budget spent, Throttle refusal, a wait that would cross the deadline or
// that the context cut short), they return the *retry.Error, which matches
// that reason with errors.Is and whose status (status.Code,
// status.FromError) is still the last attempt's. A Throttle refusal of the
// first attempt, which made no attempt, has code UNAVAILABLE and matches
// retry.ErrThrottled.
//
// A Retrier is safe for concurrent use. Callbacks run on the calling
// goroutine. It starts no goroutines.
type Retrier struct {
	p              retry.Policy
	codes, idem    codeSet
	idempotent     func(string) bool
	attemptTimeout time.Duration
}

// Defaults of RetryOptions.
const (
	defaultCodes     = codeSet(1<<codes.Unavailable | 1<<codes.ResourceExhausted)
	defaultIdemCodes = codeSet(1 << codes.DeadlineExceeded)
)

// NewRetrier returns interceptors that retry under opts. It returns an
// error wrapping [ErrInvalidOptions], naming the field, for an invalid
// code or a negative AttemptTimeout, and the error of
// retry.Policy.Validate (wrapping retry.ErrInvalidSettings) for an invalid
// Policy.
func NewRetrier(opts RetryOptions) (*Retrier, error) {
	if err := opts.Policy.Validate(); err != nil {
		return nil, err
	}
	r := &Retrier{p: opts.Policy, codes: defaultCodes, idem: defaultIdemCodes, idempotent: opts.Idempotent}
	var err error
	if opts.Codes != nil {
		if r.codes, err = newCodeSet("RetryOptions.Codes", opts.Codes); err != nil {
			return nil, err
		}
	}
	if opts.IdempotentCodes != nil {
		if r.idem, err = newCodeSet("RetryOptions.IdempotentCodes", opts.IdempotentCodes); err != nil {
			return nil, err
		}
	}
	if opts.AttemptTimeout < 0 {
		return nil, invalid("RetryOptions.AttemptTimeout must not be negative, got %v", opts.AttemptTimeout)
	}
	r.attemptTimeout = opts.AttemptTimeout
	return r, nil
}

// Unary is a grpc.UnaryClientInterceptor; see [Retrier].
func (r *Retrier) Unary(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
	idem := r.idempotent != nil && r.idempotent(method)
	var trailer metadata.MD
	callOpts := make([]grpc.CallOption, len(opts)+1)
	copy(callOpts, opts)
	callOpts[len(opts)] = grpc.Trailer(&trailer)
	var last error
	_, err := retry.Do(ctx, r.p, func(ctx context.Context) (struct{}, error) {
		trailer = nil
		if r.attemptTimeout > 0 {
			var cancel context.CancelFunc
			ctx, cancel = context.WithTimeout(ctx, r.attemptTimeout)
			defer cancel()
		}
		last = invoker(ctx, method, req, reply, cc, callOpts...)
		return struct{}{}, r.judge(last, trailer, idem)
	})
	return r.result(err, last)
}

// judge returns what retry.Do should see of an attempt's error: nil, the
// error for a retryable failure (carrying the server's pushback, if any),
// or the error made permanent.
func (r *Retrier) judge(err error, trailer metadata.MD, idem bool) error {
	if err == nil {
		return nil
	}
	code := status.Code(err)
	if !r.codes.has(code) && !(idem && r.idem.has(code)) {
		return retry.Permanent(err)
	}
	v, ok := trailer[PushbackKey]
	if !ok {
		return err
	}
	d, ok := parsePushback(v)
	if !ok {
		return retry.Permanent(err)
	}
	return &pushbackError{err: err, delay: d}
}

// maxPushback caps a parsed pushback; a longer one is as good as never.
const maxPushback = time.Duration(math.MaxInt64)

// parsePushback parses the values of the pushback trailer. It reports
// false for a value that asks not to be retried: negative, malformed, or
// more than one.
func parsePushback(v []string) (time.Duration, bool) {
	if len(v) != 1 {
		return 0, false
	}
	n, err := strconv.ParseUint(v[0], 10, 64)
	switch {
	case errors.Is(err, strconv.ErrRange):
		return maxPushback, true
	case err != nil:
		return 0, false
	case n > uint64(maxPushback/time.Millisecond):
		return maxPushback, true
	}
	return time.Duration(n) * time.Millisecond, true
}

// pushbackError is a retryable attempt error with the delay the server
// asked for.
type pushbackError struct {
	err   error
	delay time.Duration
}

func (e *pushbackError) Error() string { return e.err.Error() }

func (e *pushbackError) Unwrap() error { return e.err }

// RetryAfter returns the delay the server's pushback asked for.
func (e *pushbackError) RetryAfter() time.Duration { return e.delay }

// result is the error a call returns, from retry.Do's error and the last
// attempt's.
func (r *Retrier) result(err, last error) error {
	if err == nil {
		return nil
	}
	var re *retry.Error
	if !errors.As(err, &re) {
		return err
	}
	switch {
	case re.Attempts == 0:
		return &statusError{code: codes.Unavailable, err: err}
	case errors.Is(err, retry.ErrBudgetExhausted), errors.Is(err, retry.ErrThrottled),
		errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return err
	}
	return last
}
