package grpc_test

import (
	"context"
	"errors"
	"io"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/grpc/status"

	"github.com/ringfence/ringfence/breaker"
	rfgrpc "github.com/ringfence/ringfence/grpc"
	"github.com/ringfence/ringfence/retry"
)

// waits records the waits a policy's OnRetry reports.
type waits struct {
	mu sync.Mutex
	d  []time.Duration
}

func (w *waits) onRetry(_ int, _ error, d time.Duration) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.d = append(w.d, d)
}

func (w *waits) get() []time.Duration {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]time.Duration(nil), w.d...)
}

// fastPolicy waits exactly 1ms between attempts, so that the retries of a
// test take no noticeable time; it records the waits in w.
func fastPolicy(w *waits) retry.Policy {
	return retry.Policy{
		MaxAttempts:     3,
		InitialInterval: time.Millisecond,
		MaxInterval:     time.Millisecond,
		Rand:            func() float64 { return 0.5 },
		OnRetry:         w.onRetry,
	}
}

func newRetrier(t *testing.T, opts rfgrpc.RetryOptions) *rfgrpc.Retrier {
	t.Helper()
	r, err := rfgrpc.NewRetrier(opts)
	require.NoError(t, err, "NewRetrier")
	return r
}

func TestRetryUnary(t *testing.T) {
	tests := []struct {
		name       string
		answers    []answer
		idempotent bool
		wantCode   codes.Code
		wantHits   int64
	}{
		{"UNAVAILABLE is retried", []answer{{code: codes.Unavailable}}, false, codes.OK, 2},
		{"RESOURCE_EXHAUSTED is retried", []answer{{code: codes.ResourceExhausted}}, false, codes.OK, 2},
		{"attempts run out", []answer{{code: codes.Unavailable}, {code: codes.Unavailable}, {code: codes.Unavailable}}, false, codes.Unavailable, 3},
		{"INVALID_ARGUMENT is not retried", []answer{{code: codes.InvalidArgument}}, false, codes.InvalidArgument, 1},
		{"INTERNAL is not retried", []answer{{code: codes.Internal}}, false, codes.Internal, 1},
		{"DEADLINE_EXCEEDED is not retried for a method not marked idempotent", []answer{{code: codes.DeadlineExceeded}}, false, codes.DeadlineExceeded, 1},
		{"DEADLINE_EXCEEDED is retried for an idempotent method", []answer{{code: codes.DeadlineExceeded}}, true, codes.OK, 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv, addr := startServer(t)
			var w waits
			opts := rfgrpc.RetryOptions{Policy: fastPolicy(&w)}
			if tt.idempotent {
				opts.Idempotent = rfgrpc.Methods(unaryMethod)
			}
			r := newRetrier(t, opts)
			client := dial(t, addr, []grpc.UnaryClientInterceptor{r.Unary}, nil)
			srv.script(tt.answers...)
			_, err := client.UnaryCall(bounded(t), &grpc_testing.SimpleRequest{})
			assert.Equal(t, tt.wantCode, status.Code(err), "UnaryCall() = %v", err)
			assert.Equal(t, tt.wantHits, srv.hits.Load(), "server hits")
			if tt.wantCode != codes.OK {
				var re *retry.Error
				assert.False(t, errors.As(err, &re), "UnaryCall() = %T, want the last attempt's error unchanged", err)
			}
		})
	}
}

func TestRetryAttemptTimeout(t *testing.T) {
	for _, idempotent := range []bool{false, true} {
		name := "a hung attempt of a method not marked idempotent is not retried"
		wantHits, wantCode := int64(1), codes.DeadlineExceeded
		if idempotent {
			name = "a hung attempt of an idempotent method is retried"
			wantHits, wantCode = 2, codes.OK
		}
		t.Run(name, func(t *testing.T) {
			srv, addr := startServer(t)
			var w waits
			opts := rfgrpc.RetryOptions{Policy: fastPolicy(&w), AttemptTimeout: 250 * time.Millisecond}
			if idempotent {
				opts.Idempotent = rfgrpc.Methods(unaryMethod)
			}
			r := newRetrier(t, opts)
			client := dial(t, addr, []grpc.UnaryClientInterceptor{r.Unary}, nil)
			ctx := bounded(t)
			// Connect first, so that the attempt timeout is spent on
			// the call alone.
			_, err := client.EmptyCall(ctx, &grpc_testing.Empty{})
			require.NoError(t, err, "EmptyCall")
			srv.script(answer{hang: true})
			_, err = client.UnaryCall(ctx, &grpc_testing.SimpleRequest{})
			assert.Equal(t, wantCode, status.Code(err), "UnaryCall() = %v", err)
			assert.Equal(t, 1+wantHits, srv.hits.Load(), "server hits")
		})
	}
}

func TestRetryPushback(t *testing.T) {
	tests := []struct {
		name     string
		pushback []string
		wantCode codes.Code
		wantHits int64
		wantWait time.Duration // the wait before the retry, if one is made
	}{
		{"a pushback sets the least wait", []string{"7"}, codes.OK, 2, 7 * time.Millisecond},
		{"a zero pushback keeps the backoff", []string{"0"}, codes.OK, 2, time.Millisecond},
		{"a negative pushback forbids retrying", []string{"-1"}, codes.Unavailable, 1, 0},
		{"a malformed pushback forbids retrying", []string{"soon"}, codes.Unavailable, 1, 0},
		{"two pushbacks forbid retrying", []string{"1", "2"}, codes.Unavailable, 1, 0},
		{"a pushback longer than the retries could wait ends them", []string{"3600000"}, codes.Unavailable, 1, 0},
		{"an enormous pushback ends the retries", []string{"99999999999999999999999"}, codes.Unavailable, 1, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv, addr := startServer(t)
			var w waits
			p := fastPolicy(&w)
			p.MaxInterval = 10 * time.Millisecond
			r := newRetrier(t, rfgrpc.RetryOptions{Policy: p})
			client := dial(t, addr, []grpc.UnaryClientInterceptor{r.Unary}, nil)
			srv.script(answer{code: codes.Unavailable, pushback: tt.pushback})
			_, err := client.UnaryCall(bounded(t), &grpc_testing.SimpleRequest{})
			assert.Equal(t, tt.wantCode, status.Code(err), "UnaryCall() = %v", err)
			assert.Equal(t, tt.wantHits, srv.hits.Load(), "server hits")
			if tt.wantHits > 1 {
				assert.Equal(t, []time.Duration{tt.wantWait}, w.get(), "waits before retries")
			} else {
				assert.Empty(t, w.get(), "waits before retries")
			}
		})
	}
}

func TestRetryStopsEarlyWithReason(t *testing.T) {
	srv, addr := startServer(t)
	budget, err := retry.NewBudget(0.1, 2) // one retry, then dry
	require.NoError(t, err, "NewBudget")
	var w waits
	p := fastPolicy(&w)
	p.Budget = budget
	r := newRetrier(t, rfgrpc.RetryOptions{Policy: p})
	client := dial(t, addr, []grpc.UnaryClientInterceptor{r.Unary}, nil)
	srv.script(answer{code: codes.Unavailable}, answer{code: codes.Unavailable}, answer{code: codes.Unavailable})
	_, err = client.UnaryCall(bounded(t), &grpc_testing.SimpleRequest{})
	require.ErrorIs(t, err, retry.ErrBudgetExhausted, "UnaryCall")
	assert.Equal(t, codes.Unavailable, status.Code(err), "status.Code(UnaryCall)")
	assert.Equal(t, int64(2), srv.hits.Load(), "server hits")
}

func TestRetryThrottledFirstAttempt(t *testing.T) {
	srv, addr := startServer(t)
	th, err := retry.NewThrottle(retry.ThrottleSettings{Rand: func() float64 { return 0 }})
	require.NoError(t, err, "NewThrottle")
	// Refused requests with no accepts make the throttle reject the next.
	for range 10 {
		if th.Allow() == nil {
			th.Record(false)
		}
	}
	r := newRetrier(t, rfgrpc.RetryOptions{Policy: retry.Policy{Throttle: th}})
	client := dial(t, addr, []grpc.UnaryClientInterceptor{r.Unary}, nil)
	_, err = client.UnaryCall(bounded(t), &grpc_testing.SimpleRequest{})
	require.ErrorIs(t, err, retry.ErrThrottled, "UnaryCall")
	assert.Equal(t, codes.Unavailable, status.Code(err), "status.Code(UnaryCall)")
	assert.Zero(t, srv.hits.Load(), "server hits")
}

func TestRetryHonoursOpenBreaker(t *testing.T) {
	srv, addr := startServer(t)
	g, _ := newGroup(t, breaker.Settings{ConsecutiveFailures: 1, OpenTimeout: time.Hour})
	b := rfgrpc.NewBreaker(g, rfgrpc.BreakerOptions{})
	var w waits
	r := newRetrier(t, rfgrpc.RetryOptions{Policy: fastPolicy(&w)})
	client := dial(t, addr, []grpc.UnaryClientInterceptor{r.Unary, b.Unary}, nil)
	srv.script(answer{code: codes.Unavailable})
	_, err := client.UnaryCall(bounded(t), &grpc_testing.SimpleRequest{})
	// The breaker opened after the first attempt, so the retry was
	// rejected; the breaker's hour-long wait is longer than the retries
	// left could wait, so the call gives up then, without waiting for it.
	require.ErrorIs(t, err, breaker.ErrOpen, "UnaryCall")
	var oe *breaker.OpenError
	require.ErrorAs(t, err, &oe, "UnaryCall")
	assert.Equal(t, codes.Unavailable, status.Code(err), "status.Code(UnaryCall)")
	assert.Equal(t, int64(1), srv.hits.Load(), "server hits")
	assert.Equal(t, []time.Duration{time.Millisecond}, w.get(), "waits before retries")
}

func TestRetryServerStream(t *testing.T) {
	t.Run("a stream that fails before its first message is retried", func(t *testing.T) {
		srv, addr := startServer(t)
		var w waits
		r := newRetrier(t, rfgrpc.RetryOptions{Policy: fastPolicy(&w)})
		client := dial(t, addr, nil, []grpc.StreamClientInterceptor{r.Stream})
		srv.script(answer{code: codes.Unavailable}, answer{code: codes.ResourceExhausted})
		st, err := client.StreamingOutputCall(bounded(t), &grpc_testing.StreamingOutputCallRequest{})
		require.NoError(t, err, "StreamingOutputCall")
		assert.Equal(t, 3, drain(t, st), "messages received")
		assert.Equal(t, int64(3), srv.hits.Load(), "server hits")
	})
	t.Run("a stream that fails after a message is not retried", func(t *testing.T) {
		srv, addr := startServer(t)
		var w waits
		r := newRetrier(t, rfgrpc.RetryOptions{Policy: fastPolicy(&w)})
		client := dial(t, addr, nil, []grpc.StreamClientInterceptor{r.Stream})
		srv.script(answer{code: codes.Unavailable, sent: 1})
		st, err := client.StreamingOutputCall(bounded(t), &grpc_testing.StreamingOutputCallRequest{})
		require.NoError(t, err, "StreamingOutputCall")
		_, err = st.Recv()
		require.NoError(t, err, "Recv(first)")
		_, err = st.Recv()
		assert.Equal(t, codes.Unavailable, status.Code(err), "Recv(second) = %v", err)
		assert.Equal(t, int64(1), srv.hits.Load(), "server hits")
	})
	t.Run("a stream that ends cleanly without a message is not retried", func(t *testing.T) {
		srv, addr := startServer(t)
		var w waits
		r := newRetrier(t, rfgrpc.RetryOptions{Policy: fastPolicy(&w)})
		client := dial(t, addr, nil, []grpc.StreamClientInterceptor{r.Stream})
		srv.script(answer{})
		st, err := client.StreamingOutputCall(bounded(t), &grpc_testing.StreamingOutputCallRequest{})
		require.NoError(t, err, "StreamingOutputCall")
		_, err = st.Recv()
		assert.Equal(t, io.EOF, err, "Recv")
		assert.Equal(t, int64(1), srv.hits.Load(), "server hits")
	})
	t.Run("a stream whose attempts all fail returns the last error", func(t *testing.T) {
		srv, addr := startServer(t)
		var w waits
		r := newRetrier(t, rfgrpc.RetryOptions{Policy: fastPolicy(&w)})
		client := dial(t, addr, nil, []grpc.StreamClientInterceptor{r.Stream})
		srv.script(answer{code: codes.Unavailable}, answer{code: codes.Unavailable}, answer{code: codes.Unavailable})
		st, err := client.StreamingOutputCall(bounded(t), &grpc_testing.StreamingOutputCallRequest{})
		require.NoError(t, err, "StreamingOutputCall")
		_, err = st.Recv()
		assert.Equal(t, codes.Unavailable, status.Code(err), "Recv = %v", err)
		_, err = st.Recv()
		assert.Equal(t, codes.Unavailable, status.Code(err), "Recv(again) = %v", err)
		assert.Equal(t, int64(3), srv.hits.Load(), "server hits")
	})
	t.Run("headers commit the stream", func(t *testing.T) {
		srv, addr := startServer(t)
		var w waits
		r := newRetrier(t, rfgrpc.RetryOptions{Policy: fastPolicy(&w)})
		client := dial(t, addr, nil, []grpc.StreamClientInterceptor{r.Stream})
		srv.script(answer{code: codes.Unavailable})
		st, err := client.StreamingOutputCall(bounded(t), &grpc_testing.StreamingOutputCallRequest{})
		require.NoError(t, err, "StreamingOutputCall")
		_, err = st.Header()
		require.NoError(t, err, "Header")
		assert.Equal(t, 3, drain(t, st), "messages received")
		assert.Equal(t, int64(2), srv.hits.Load(), "server hits")
	})
}

func TestRetryClientStream(t *testing.T) {
	t.Run("a client stream that fails after opening is not retried", func(t *testing.T) {
		srv, addr := startServer(t)
		var w waits
		r := newRetrier(t, rfgrpc.RetryOptions{Policy: fastPolicy(&w)})
		client := dial(t, addr, nil, []grpc.StreamClientInterceptor{r.Stream})
		srv.script(answer{code: codes.Unavailable})
		st, err := client.StreamingInputCall(bounded(t))
		require.NoError(t, err, "StreamingInputCall")
		require.NoError(t, st.Send(&grpc_testing.StreamingInputCallRequest{}), "Send")
		_, err = st.CloseAndRecv()
		assert.Equal(t, codes.Unavailable, status.Code(err), "CloseAndRecv = %v", err)
		assert.Equal(t, int64(1), srv.hits.Load(), "server hits")
	})
	t.Run("a client stream that cannot be opened is retried", func(t *testing.T) {
		srv, addr := startServer(t)
		var w waits
		r := newRetrier(t, rfgrpc.RetryOptions{Policy: fastPolicy(&w)})
		// The first opening fails as a dead connection would, before
		// reaching the server.
		opened := 0
		failFirst := func(ctx context.Context, desc *grpc.StreamDesc, cc *grpc.ClientConn, method string, streamer grpc.Streamer, opts ...grpc.CallOption) (grpc.ClientStream, error) {
			opened++
			if opened == 1 {
				return nil, status.Error(codes.Unavailable, "connection refused")
			}
			return streamer(ctx, desc, cc, method, opts...)
		}
		client := dial(t, addr, nil, []grpc.StreamClientInterceptor{r.Stream, failFirst})
		st, err := client.StreamingInputCall(bounded(t))
		require.NoError(t, err, "StreamingInputCall")
		require.NoError(t, st.Send(&grpc_testing.StreamingInputCallRequest{}), "Send")
		resp, err := st.CloseAndRecv()
		require.NoError(t, err, "CloseAndRecv")
		assert.Equal(t, int32(1), resp.AggregatedPayloadSize, "messages the server saw")
		assert.Equal(t, 2, opened, "openings")
		assert.Equal(t, []time.Duration{time.Millisecond}, w.get(), "waits before retries")
		assert.Equal(t, int64(1), srv.hits.Load(), "server hits")
	})
}

func TestRetryStopsAtAForcedOpenBreaker(t *testing.T) {
	srv, addr := startServer(t)
	g, _ := newGroup(t, breaker.Settings{})
	g.Get(addr).ForceOpen("maintenance")
	b := rfgrpc.NewBreaker(g, rfgrpc.BreakerOptions{})
	var w waits
	r := newRetrier(t, rfgrpc.RetryOptions{Policy: fastPolicy(&w)})
	client := dial(t, addr, []grpc.UnaryClientInterceptor{r.Unary, b.Unary}, []grpc.StreamClientInterceptor{r.Stream, b.Stream})
	ctx := bounded(t)
	_, err := client.UnaryCall(ctx, &grpc_testing.SimpleRequest{})
	require.ErrorIs(t, err, breaker.ErrOpen, "UnaryCall")
	assert.Equal(t, codes.Unavailable, status.Code(err), "status.Code(UnaryCall)")
	st, err := client.StreamingOutputCall(ctx, &grpc_testing.StreamingOutputCallRequest{})
	require.NoError(t, err, "StreamingOutputCall")
	_, err = st.Recv()
	require.ErrorIs(t, err, breaker.ErrOpen, "Recv")
	assert.Empty(t, w.get(), "waits before retries")
	assert.Zero(t, srv.hits.Load(), "server hits")
}

func TestNewRetrierRejectsInvalidOptions(t *testing.T) {
	tests := []struct {
		name string
		opts rfgrpc.RetryOptions
		want error
	}{
		{"OK in Codes", rfgrpc.RetryOptions{Codes: []codes.Code{codes.OK}}, rfgrpc.ErrInvalidOptions},
		{"an unknown code in IdempotentCodes", rfgrpc.RetryOptions{IdempotentCodes: []codes.Code{99}}, rfgrpc.ErrInvalidOptions},
		{"a negative AttemptTimeout", rfgrpc.RetryOptions{AttemptTimeout: -time.Second}, rfgrpc.ErrInvalidOptions},
		{"an invalid Policy", rfgrpc.RetryOptions{Policy: retry.Policy{MaxAttempts: -1}}, retry.ErrInvalidSettings},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, err := rfgrpc.NewRetrier(tt.opts)
			require.ErrorIs(t, err, tt.want, "NewRetrier(%+v)", tt.opts)
			assert.Nil(t, r, "NewRetrier(%+v)", tt.opts)
		})
	}
}
