package grpc

import (
	"context"
	"errors"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/ringfence/ringfence/chaos"
)

// ChaosOptions configures a [Chaos]. The zero value means the defaults
// stated on each field.
type ChaosOptions struct {
	// Code is the status code of an injected failure whose
	// chaos.Faults.Err carries no gRPC status. Set Faults.Err to a status
	// error (status.Error(codes.ResourceExhausted, "...")) to choose the
	// code, message and details per phase instead. Default UNAVAILABLE.
	// OK is not a valid code.
	Code codes.Code
}

// Chaos is a pair of client interceptors, [Chaos.Unary] and
// [Chaos.Stream], that subject calls to the faults of a chaos.Injector,
// standing in for the network: put them innermost, after a [Retrier] and
// a [Breaker], so that injected faults pass through both exactly as real
// ones would:
//
//	conn, err := grpc.NewClient(target,
//		grpc.WithChainUnaryInterceptor(r.Unary, b.Unary, c.Unary))
//
// For each call (for a stream, when it is opened) the injector decides:
//
//   - a failure returns a status error without calling the server: the
//     status of Faults.Err if it carries one, otherwise ChaosOptions.Code
//     with Faults.Err's (or the injector's) message. Either matches
//     chaos.ErrInjected with errors.Is, and errors.Is and errors.As see
//     Faults.Err;
//   - a hang blocks until the call's context ends and returns
//     DEADLINE_EXCEEDED or CANCELED, as gRPC does for that context;
//   - a delay (Faults.Latency, Faults.Jitter) waits before the call goes
//     ahead or fails, and returns like a hang if the context ends first.
//
// Faults.Status and Faults.RetryAfter, which describe HTTP responses, are
// ignored. The injector counts every call in its Stats. A nil injector
// injects nothing.
//
// A Chaos is safe for concurrent use and starts no goroutines.
type Chaos struct {
	in   *chaos.Injector
	code codes.Code
}

// NewChaos returns interceptors that inject the faults of in. It returns
// an error wrapping [ErrInvalidOptions] if ChaosOptions.Code is OK or
// unknown; the zero Code means UNAVAILABLE.
func NewChaos(in *chaos.Injector, opts ChaosOptions) (*Chaos, error) {
	c := &Chaos{in: in, code: opts.Code}
	switch {
	case c.code == codes.OK:
		c.code = codes.Unavailable
	case c.code > maxCode:
		return nil, invalid("ChaosOptions.Code must be a failure code (1 to %d), got %d", maxCode, uint32(c.code))
	}
	return c, nil
}

// Unary is a grpc.UnaryClientInterceptor; see [Chaos].
func (c *Chaos) Unary(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
	if err := c.inject(ctx); err != nil {
		return err
	}
	return invoker(ctx, method, req, reply, cc, opts...)
}

// Stream is a grpc.StreamClientInterceptor; see [Chaos].
func (c *Chaos) Stream(ctx context.Context, desc *grpc.StreamDesc, cc *grpc.ClientConn, method string, streamer grpc.Streamer, opts ...grpc.CallOption) (grpc.ClientStream, error) {
	if err := c.inject(ctx); err != nil {
		return nil, err
	}
	return streamer(ctx, desc, cc, method, opts...)
}

// inject asks the injector about one call and returns the status error
// the call fails with, or nil if it goes ahead.
func (c *Chaos) inject(ctx context.Context) error {
	err := c.in.Inject(ctx)
	switch {
	case err == nil:
		return nil
	case !errors.Is(err, chaos.ErrInjected):
		return contextStatus(err) // hung or delayed past the context
	}
	if _, ok := status.FromError(err); ok {
		return err // Faults.Err carries its own status
	}
	return &statusError{code: c.code, err: err}
}
