package grpc

import (
	"context"
	"errors"
	"io"
	"sync/atomic"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/ringfence/ringfence/breaker"
)

// BreakerOptions configures a [Breaker]. The zero value means the defaults
// stated on each field.
type BreakerOptions struct {
	// Key picks the breaker of the group for a call, from the call's
	// context, its full method name ("/package.Service/Method") and its
	// connection. Default [TargetKey]: one breaker per connection target,
	// as breaker.Transport keeps one per host. [MethodKey] keeps one per
	// method. It runs on the calling goroutine for every call and must be
	// safe for concurrent use.
	Key func(ctx context.Context, method string, cc *grpc.ClientConn) string

	// Classify says how a call that ended with a status code counts. It
	// is not consulted for calls whose context the caller canceled, which
	// are never counted, nor for OK, which is a success. Errors that carry
	// no gRPC status count as UNKNOWN. A Failure is then still subject to
	// the group's Settings.IsFailure. An Excluded call is reported to the
	// breaker as a cancellation, so a group with Settings.CountCanceled
	// set counts it as a failure; a value that is none of the three
	// Outcomes counts as a Failure. Default [DefaultClassify]. It runs on
	// the calling goroutine (for a stream, the one that sees it end) and
	// must be safe for concurrent use.
	Classify func(codes.Code) Outcome
}

// TargetKey is the default [BreakerOptions.Key]: the target the connection
// was created with (cc.Target()), so that every method of one service
// shares a breaker. A nil connection gives "".
func TargetKey(_ context.Context, _ string, cc *grpc.ClientConn) string {
	if cc == nil {
		return ""
	}
	return cc.Target()
}

// MethodKey is a [BreakerOptions.Key] that gives each full method name
// ("/package.Service/Method") its own breaker, so that one failing method
// does not cut off the others.
func MethodKey(_ context.Context, method string, _ *grpc.ClientConn) string { return method }

// Breaker is a pair of client interceptors, [Breaker.Unary] and
// [Breaker.Stream], that send each call through the breaker of a
// breaker.Group picked by [BreakerOptions.Key]:
//
//	b := rfgrpc.NewBreaker(group, rfgrpc.BreakerOptions{})
//	conn, err := grpc.NewClient(target,
//		grpc.WithChainUnaryInterceptor(b.Unary),
//		grpc.WithChainStreamInterceptor(b.Stream))
//
// A call the breaker rejects never reaches the network: it fails at once
// with a status error of code UNAVAILABLE that also matches breaker.ErrOpen
// and unwraps to the breaker's *breaker.OpenError (errors.Is, errors.As),
// so that a retry outside it, such as [Retrier], waits out the open
// breaker's RetryAfter. A call whose context is already done fails with
// CANCELED or DEADLINE_EXCEEDED, also without touching the network and
// without being counted. Every other call's error comes back unchanged.
//
// A unary call counts when it returns. A stream counts once, when it ends:
// when RecvMsg returns io.EOF (a success) or an error (judged by
// Classify), when a stream without server streaming receives its one
// response, or when its context ends first (a cancellation is not
// counted; a passed deadline is judged as DEADLINE_EXCEEDED). A stream the
// caller abandons without either, which gRPC itself forbids, is not
// counted; in the HalfOpen state it keeps its probe slot until the
// breaker's half-open deadline (Settings.HalfOpenTimeout) takes it back.
//
// A Breaker is safe for concurrent use. It holds no state of its own
// beyond its group and options, and starts no goroutines.
type Breaker struct {
	g        *breaker.Group
	key      func(context.Context, string, *grpc.ClientConn) string
	classify func(codes.Code) Outcome
}

// NewBreaker returns interceptors over the breakers of g. A nil g means a
// new group with default settings.
func NewBreaker(g *breaker.Group, opts BreakerOptions) *Breaker {
	if g == nil {
		g, _ = breaker.NewGroup(breaker.Settings{}, breaker.GroupOptions{}) // zero settings are valid
	}
	b := &Breaker{g: g, key: opts.Key, classify: opts.Classify}
	if b.key == nil {
		b.key = TargetKey
	}
	if b.classify == nil {
		b.classify = DefaultClassify
	}
	return b
}

// Unary is a grpc.UnaryClientInterceptor; see [Breaker].
func (b *Breaker) Unary(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
	p, err := b.g.Get(b.key(ctx, method, cc)).Allow(ctx)
	if err != nil {
		return rejection(err)
	}
	done := false
	defer func() {
		if !done { // the invoker panicked: give back a probe slot
			p.Done(ctx, errPanicked)
		}
	}()
	err = invoker(ctx, method, req, reply, cc, opts...)
	done = true
	p.Done(ctx, b.judge(err))
	return err
}

// Stream is a grpc.StreamClientInterceptor; see [Breaker].
func (b *Breaker) Stream(ctx context.Context, desc *grpc.StreamDesc, cc *grpc.ClientConn, method string, streamer grpc.Streamer, opts ...grpc.CallOption) (grpc.ClientStream, error) {
	p, err := b.g.Get(b.key(ctx, method, cc)).Allow(ctx)
	if err != nil {
		return nil, rejection(err)
	}
	done := false
	defer func() {
		if !done {
			p.Done(ctx, errPanicked)
		}
	}()
	cs, err := streamer(ctx, desc, cc, method, opts...)
	done = true
	if err != nil {
		p.Done(ctx, b.judge(err))
		return nil, err
	}
	s := &breakerStream{ClientStream: cs, b: b, p: p, ctx: ctx, single: !desc.ServerStreams}
	s.stop = context.AfterFunc(ctx, func() { s.end(contextStatus(ctx.Err())) })
	return s, nil
}

// errPanicked is the outcome reported for a call whose invoker panicked.
var errPanicked = errors.New("ringfence/grpc: call panicked")

// judge turns a call's error into the error the permit is settled with:
// nil for a success, context.Canceled for a call not counted, and the
// error itself for a failure.
func (b *Breaker) judge(err error) error {
	if err == nil {
		return nil
	}
	switch b.classify(status.Code(err)) {
	case Success:
		return nil
	case Excluded:
		return context.Canceled
	}
	return err
}

// rejection is the error for a call the breaker did not let go: a status
// error for an open breaker, gRPC's own status for a done context.
func rejection(err error) error {
	var oe *breaker.OpenError
	if errors.As(err, &oe) {
		return &statusError{code: codes.Unavailable, err: err}
	}
	return contextStatus(err)
}

// breakerStream counts a stream's outcome when it ends.
type breakerStream struct {
	grpc.ClientStream
	b      *Breaker
	p      breaker.Permit
	ctx    context.Context
	single bool        // no server streaming: one response ends the call
	stop   func() bool // stops the context watch; set before the stream is returned
	ended  atomic.Bool
}

// RecvMsg receives a message and counts the stream's outcome if it ended.
func (s *breakerStream) RecvMsg(m any) error {
	err := s.ClientStream.RecvMsg(m)
	var ended bool
	switch {
	case err == io.EOF:
		ended = s.end(nil)
	case err != nil:
		ended = s.end(err)
	case s.single:
		ended = s.end(nil)
	}
	if ended {
		s.stop()
	}
	return err
}

// end settles the permit with the stream's final error, unless it was
// settled already, and reports whether it did.
func (s *breakerStream) end(err error) bool {
	if !s.ended.CompareAndSwap(false, true) {
		return false
	}
	s.p.Done(s.ctx, s.b.judge(err))
	return true
}
