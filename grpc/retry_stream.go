package grpc

import (
	"context"
	"io"
	"sync"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/ringfence/ringfence/retry"
)

// Stream is a grpc.StreamClientInterceptor; see [Retrier] for which
// streams are retried and when.
func (r *Retrier) Stream(ctx context.Context, desc *grpc.StreamDesc, cc *grpc.ClientConn, method string, streamer grpc.Streamer, opts ...grpc.CallOption) (grpc.ClientStream, error) {
	idem := r.idempotent != nil && r.idempotent(method)
	if !desc.ClientStreams {
		return &retryStream{r: r, ctx: ctx, desc: desc, cc: cc, method: method, streamer: streamer, opts: opts, idem: idem}, nil
	}
	var cs grpc.ClientStream
	var last error
	_, err := retry.Do(ctx, r.p, func(ctx context.Context) (struct{}, error) {
		cs, last = streamer(ctx, desc, cc, method, opts...)
		return struct{}{}, r.judge(last, nil, idem)
	})
	if err != nil {
		return nil, r.result(err, last)
	}
	return cs, nil
}

// errCardinality is returned by a second SendMsg on a stream without
// client streaming, before it is opened.
var errCardinality = status.Error(codes.Internal, "ringfence/grpc: more than one request sent on a stream without client streaming")

// retryStream is a stream without client streaming, opened (and retried)
// when the caller first receives.
type retryStream struct {
	r        *Retrier
	ctx      context.Context
	desc     *grpc.StreamDesc
	cc       *grpc.ClientConn
	method   string
	streamer grpc.Streamer
	opts     []grpc.CallOption
	idem     bool

	// mu guards the fields below. It is held while the stream is opened,
	// attempts and waits included, so a send made meanwhile waits for it.
	mu     sync.Mutex
	sent   []any             // the request, until the stream is opened
	closed bool              // CloseSend was called before opening
	opened bool              // the retries are over
	cs     grpc.ClientStream // the last attempt's stream, once opened
	err    error             // why opening failed, returned by every receive
}

// open runs the attempts: each opens a stream, sends the request and
// waits for recv (the first message, or the headers) to answer. It is
// called with mu held.
func (s *retryStream) open(recv func(grpc.ClientStream) error) error {
	var last error
	_, err := retry.Do(s.ctx, s.r.p, func(ctx context.Context) (struct{}, error) {
		cs, err := s.streamer(ctx, s.desc, s.cc, s.method, s.opts...)
		if err != nil {
			last = err
			return struct{}{}, s.r.judge(err, nil, s.idem)
		}
		s.cs = cs
		err = s.send(cs)
		if err == nil || err == io.EOF {
			// After io.EOF from a send the stream's status is what
			// receiving returns.
			err = recv(cs)
		}
		last = err
		if err == io.EOF {
			return struct{}{}, nil // ended cleanly without a message
		}
		var trailer metadata.MD
		if err != nil {
			trailer = cs.Trailer()
		}
		return struct{}{}, s.r.judge(err, trailer, s.idem)
	})
	s.opened, s.sent = true, nil
	if err != nil {
		s.err = s.r.result(err, last)
		return s.err
	}
	return last
}

// send sends what the caller sent before opening to one attempt.
func (s *retryStream) send(cs grpc.ClientStream) error {
	for _, m := range s.sent {
		if err := cs.SendMsg(m); err != nil {
			return err
		}
	}
	if s.closed {
		return cs.CloseSend()
	}
	return nil
}

// current returns the opened stream, or nil and the error the opening
// ended with; it reports false if the stream is not yet opened. The
// caller holds mu.
func (s *retryStream) current() (grpc.ClientStream, error, bool) {
	if !s.opened {
		return nil, nil, false
	}
	return s.cs, s.err, true
}

// RecvMsg opens the stream on first use, then receives from it.
func (s *retryStream) RecvMsg(m any) error {
	s.mu.Lock()
	cs, err, ok := s.current()
	if !ok {
		err = s.open(func(cs grpc.ClientStream) error { return cs.RecvMsg(m) })
		s.mu.Unlock()
		return err
	}
	s.mu.Unlock()
	if err != nil {
		return err
	}
	return cs.RecvMsg(m)
}

// Header opens the stream on first use, then returns its headers. As
// with gRPC's own streams, a stream that ended without headers gives nil
// and no error, and RecvMsg returns how it ended.
func (s *retryStream) Header() (metadata.MD, error) {
	s.mu.Lock()
	cs, err, ok := s.current()
	if !ok {
		var md metadata.MD
		err = s.open(func(cs grpc.ClientStream) error {
			var err error
			if md, err = cs.Header(); err != nil || md != nil {
				return err
			}
			// Ended without headers: receiving gives its status
			// and touches no message.
			return cs.RecvMsg(nil)
		})
		s.mu.Unlock()
		if err != nil {
			return nil, nil
		}
		return md, nil
	}
	s.mu.Unlock()
	if err != nil {
		return nil, nil
	}
	return cs.Header()
}

// SendMsg records the request before opening; afterwards it sends.
func (s *retryStream) SendMsg(m any) error {
	s.mu.Lock()
	cs, err, ok := s.current()
	if !ok {
		defer s.mu.Unlock()
		if len(s.sent) > 0 || s.closed {
			return errCardinality
		}
		s.sent = append(s.sent, m)
		return nil
	}
	s.mu.Unlock()
	if err != nil {
		return io.EOF // the stream has ended; RecvMsg returns its error
	}
	return cs.SendMsg(m)
}

// CloseSend records the half-close before opening; afterwards it closes.
func (s *retryStream) CloseSend() error {
	s.mu.Lock()
	cs, err, ok := s.current()
	if !ok {
		s.closed = true
		s.mu.Unlock()
		return nil
	}
	s.mu.Unlock()
	if err != nil || cs == nil {
		return nil
	}
	return cs.CloseSend()
}

// Trailer returns the last attempt's trailer, or nil before opening.
func (s *retryStream) Trailer() metadata.MD {
	s.mu.Lock()
	cs := s.cs
	s.mu.Unlock()
	if cs == nil {
		return nil
	}
	return cs.Trailer()
}

// Context returns the opened stream's context, or the caller's before.
func (s *retryStream) Context() context.Context {
	s.mu.Lock()
	cs := s.cs
	s.mu.Unlock()
	if cs == nil {
		return s.ctx
	}
	return cs.Context()
}
