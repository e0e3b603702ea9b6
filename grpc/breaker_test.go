package grpc_test

import (
	"context"
	"errors"
	"io"
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
)

// newGroup returns a breaker group for tests, and a channel of the state
// changes of its breakers.
func newGroup(t *testing.T, s breaker.Settings) (*breaker.Group, <-chan breaker.Change) {
	t.Helper()
	changes := make(chan breaker.Change, 64)
	s.OnChange = func(c breaker.Change) { changes <- c }
	g, err := breaker.NewGroup(s, breaker.GroupOptions{})
	require.NoError(t, err, "NewGroup")
	return g, changes
}

// await waits for the next change to state to, bounded by ctx.
func await(ctx context.Context, t *testing.T, changes <-chan breaker.Change, to breaker.State) {
	t.Helper()
	for {
		select {
		case c := <-changes:
			if c.To == to {
				return
			}
		case <-ctx.Done():
			t.Fatalf("no change to %v before the test timeout", to)
		}
	}
}

func TestBreakerRejectsWithoutTouchingTheNetwork(t *testing.T) {
	srv, addr := startServer(t)
	g, _ := newGroup(t, breaker.Settings{ConsecutiveFailures: 2, OpenTimeout: time.Hour})
	b := rfgrpc.NewBreaker(g, rfgrpc.BreakerOptions{})
	client := dial(t, addr, []grpc.UnaryClientInterceptor{b.Unary}, []grpc.StreamClientInterceptor{b.Stream})
	ctx := bounded(t)

	srv.script(answer{code: codes.Unavailable}, answer{code: codes.Unavailable})
	for range 2 {
		_, err := client.UnaryCall(ctx, &grpc_testing.SimpleRequest{})
		require.Equal(t, codes.Unavailable, status.Code(err), "UnaryCall before the trip")
	}
	require.Equal(t, int64(2), srv.hits.Load(), "server hits before the trip")

	_, err := client.UnaryCall(ctx, &grpc_testing.SimpleRequest{})
	require.ErrorIs(t, err, breaker.ErrOpen, "UnaryCall(open breaker)")
	var oe *breaker.OpenError
	require.ErrorAs(t, err, &oe, "UnaryCall(open breaker)")
	assert.Equal(t, breaker.Open, oe.State, "OpenError.State")
	assert.Equal(t, codes.Unavailable, status.Code(err), "status.Code(rejection)")
	assert.Positive(t, oe.RetryAfter(), "OpenError.RetryAfter")

	_, err = client.StreamingOutputCall(ctx, &grpc_testing.StreamingOutputCallRequest{})
	require.ErrorIs(t, err, breaker.ErrOpen, "StreamingOutputCall(open breaker)")
	assert.Equal(t, int64(2), srv.hits.Load(), "server hits after the rejections")
}

func TestBreakerTripsAndRecovers(t *testing.T) {
	srv, addr := startServer(t)
	// A tiny open wait lets the breaker probe at once; the test waits for
	// the state change itself, never for the clock.
	g, changes := newGroup(t, breaker.Settings{ConsecutiveFailures: 3, OpenTimeout: time.Millisecond})
	b := rfgrpc.NewBreaker(g, rfgrpc.BreakerOptions{})
	client := dial(t, addr, []grpc.UnaryClientInterceptor{b.Unary}, nil)
	ctx := bounded(t)

	srv.script(answer{code: codes.Unavailable}, answer{code: codes.ResourceExhausted}, answer{code: codes.Internal})
	for range 3 {
		_, err := client.UnaryCall(ctx, &grpc_testing.SimpleRequest{})
		require.Error(t, err, "UnaryCall during the outage")
	}
	await(ctx, t, changes, breaker.Open)
	await(ctx, t, changes, breaker.HalfOpen)

	_, err := client.UnaryCall(ctx, &grpc_testing.SimpleRequest{})
	require.NoError(t, err, "UnaryCall(probe)")
	await(ctx, t, changes, breaker.Closed)
	assert.Equal(t, breaker.Closed, g.Get(addr).State(), "State after the probe")
	assert.Equal(t, int64(4), srv.hits.Load(), "server hits")
}

func TestBreakerPerMethod(t *testing.T) {
	srv, addr := startServer(t)
	g, _ := newGroup(t, breaker.Settings{ConsecutiveFailures: 1, OpenTimeout: time.Hour})
	b := rfgrpc.NewBreaker(g, rfgrpc.BreakerOptions{Key: rfgrpc.MethodKey})
	client := dial(t, addr, []grpc.UnaryClientInterceptor{b.Unary}, nil)
	ctx := bounded(t)

	srv.script(answer{code: codes.Unavailable})
	_, err := client.UnaryCall(ctx, &grpc_testing.SimpleRequest{})
	require.Equal(t, codes.Unavailable, status.Code(err), "UnaryCall(failing)")
	_, err = client.UnaryCall(ctx, &grpc_testing.SimpleRequest{})
	require.ErrorIs(t, err, breaker.ErrOpen, "UnaryCall(after the trip)")
	_, err = client.EmptyCall(ctx, &grpc_testing.Empty{})
	require.NoError(t, err, "EmptyCall(other method)")
	assert.Equal(t, breaker.Open, g.Get(unaryMethod).State(), "UnaryCall's breaker")
	assert.Equal(t, breaker.Closed, g.Get(emptyMethod).State(), "EmptyCall's breaker")
}

func TestBreakerClassifiesStatusCodes(t *testing.T) {
	srv, addr := startServer(t)
	tests := []struct {
		code codes.Code
		want rfgrpc.Outcome
	}{
		{codes.OK, rfgrpc.Success},
		{codes.Unavailable, rfgrpc.Failure},
		{codes.ResourceExhausted, rfgrpc.Failure},
		{codes.DeadlineExceeded, rfgrpc.Failure},
		{codes.Internal, rfgrpc.Failure},
		{codes.Unknown, rfgrpc.Failure},
		{codes.DataLoss, rfgrpc.Failure},
		{codes.InvalidArgument, rfgrpc.Success},
		{codes.NotFound, rfgrpc.Success},
		{codes.AlreadyExists, rfgrpc.Success},
		{codes.PermissionDenied, rfgrpc.Success},
		{codes.Unauthenticated, rfgrpc.Success},
		{codes.FailedPrecondition, rfgrpc.Success},
		{codes.Aborted, rfgrpc.Success},
		{codes.OutOfRange, rfgrpc.Success},
		{codes.Unimplemented, rfgrpc.Success},
		{codes.Canceled, rfgrpc.Excluded},
	}
	for _, tt := range tests {
		t.Run(tt.code.String()+" counts as "+tt.want.String(), func(t *testing.T) {
			assert.Equal(t, tt.want, rfgrpc.DefaultClassify(tt.code), "DefaultClassify(%v)", tt.code)
			g, _ := newGroup(t, breaker.Settings{ConsecutiveFailures: 1, OpenTimeout: time.Hour})
			b := rfgrpc.NewBreaker(g, rfgrpc.BreakerOptions{})
			client := dial(t, addr, []grpc.UnaryClientInterceptor{b.Unary}, nil)
			srv.script(answer{code: tt.code})
			_, err := client.UnaryCall(bounded(t), &grpc_testing.SimpleRequest{})
			require.Equal(t, tt.code, status.Code(err), "UnaryCall")
			snap := g.Get(addr).Snapshot()
			switch tt.want {
			case rfgrpc.Success:
				assert.Equal(t, breaker.Closed, snap.State, "State")
				assert.Equal(t, uint64(1), snap.Requests, "Requests")
				assert.Zero(t, snap.Failures, "Failures")
			case rfgrpc.Failure:
				assert.Equal(t, breaker.Open, snap.State, "State")
			case rfgrpc.Excluded:
				assert.Equal(t, breaker.Closed, snap.State, "State")
				assert.Zero(t, snap.Requests, "Requests")
			}
		})
	}
}

func TestBreakerDoesNotCountCallerCancellation(t *testing.T) {
	srv, addr := startServer(t)
	g, _ := newGroup(t, breaker.Settings{ConsecutiveFailures: 1})
	b := rfgrpc.NewBreaker(g, rfgrpc.BreakerOptions{})
	client := dial(t, addr, []grpc.UnaryClientInterceptor{b.Unary}, nil)

	arrived := make(chan struct{})
	srv.script(answer{hang: true, arrived: arrived})
	ctx, cancel := context.WithCancel(bounded(t))
	go func() {
		select {
		case <-arrived:
		case <-ctx.Done():
		}
		cancel()
	}()
	_, err := client.UnaryCall(ctx, &grpc_testing.SimpleRequest{})
	require.Equal(t, codes.Canceled, status.Code(err), "UnaryCall(canceled)")
	snap := g.Get(addr).Snapshot()
	assert.Equal(t, breaker.Closed, snap.State, "State")
	assert.Zero(t, snap.Requests, "Requests")
}

func TestBreakerCustomClassify(t *testing.T) {
	srv, addr := startServer(t)
	g, _ := newGroup(t, breaker.Settings{ConsecutiveFailures: 1, OpenTimeout: time.Hour})
	b := rfgrpc.NewBreaker(g, rfgrpc.BreakerOptions{Classify: func(c codes.Code) rfgrpc.Outcome {
		if c == codes.NotFound {
			return rfgrpc.Failure
		}
		return rfgrpc.DefaultClassify(c)
	}})
	client := dial(t, addr, []grpc.UnaryClientInterceptor{b.Unary}, nil)
	srv.script(answer{code: codes.NotFound})
	_, err := client.UnaryCall(bounded(t), &grpc_testing.SimpleRequest{})
	require.Equal(t, codes.NotFound, status.Code(err), "UnaryCall")
	assert.Equal(t, breaker.Open, g.Get(addr).State(), "State after NOT_FOUND counted as a failure")
}

func TestBreakerStream(t *testing.T) {
	t.Run("a stream that ends cleanly counts as a success", func(t *testing.T) {
		_, addr := startServer(t)
		g, _ := newGroup(t, breaker.Settings{ConsecutiveFailures: 1})
		b := rfgrpc.NewBreaker(g, rfgrpc.BreakerOptions{})
		client := dial(t, addr, nil, []grpc.StreamClientInterceptor{b.Stream})
		st, err := client.StreamingOutputCall(bounded(t), &grpc_testing.StreamingOutputCallRequest{})
		require.NoError(t, err, "StreamingOutputCall")
		n := drain(t, st)
		assert.Equal(t, 3, n, "messages received")
		snap := g.Get(addr).Snapshot()
		assert.Equal(t, uint64(1), snap.Requests, "Requests")
		assert.Zero(t, snap.Failures, "Failures")
	})
	t.Run("failing streams trip the breaker", func(t *testing.T) {
		srv, addr := startServer(t)
		g, _ := newGroup(t, breaker.Settings{ConsecutiveFailures: 2, OpenTimeout: time.Hour})
		b := rfgrpc.NewBreaker(g, rfgrpc.BreakerOptions{})
		client := dial(t, addr, nil, []grpc.StreamClientInterceptor{b.Stream})
		ctx := bounded(t)
		srv.script(answer{code: codes.Unavailable, sent: 1}, answer{code: codes.Internal})
		for range 2 {
			st, err := client.StreamingOutputCall(ctx, &grpc_testing.StreamingOutputCallRequest{})
			require.NoError(t, err, "StreamingOutputCall")
			for err == nil {
				_, err = st.Recv()
			}
			require.NotEqual(t, io.EOF, err, "Recv")
		}
		_, err := client.StreamingOutputCall(ctx, &grpc_testing.StreamingOutputCallRequest{})
		require.ErrorIs(t, err, breaker.ErrOpen, "StreamingOutputCall(open breaker)")
		assert.Equal(t, int64(2), srv.hits.Load(), "server hits")
	})
	t.Run("a client stream counts when its response arrives", func(t *testing.T) {
		srv, addr := startServer(t)
		g, _ := newGroup(t, breaker.Settings{ConsecutiveFailures: 1, OpenTimeout: time.Hour})
		b := rfgrpc.NewBreaker(g, rfgrpc.BreakerOptions{})
		client := dial(t, addr, nil, []grpc.StreamClientInterceptor{b.Stream})
		ctx := bounded(t)
		st, err := client.StreamingInputCall(ctx)
		require.NoError(t, err, "StreamingInputCall")
		require.NoError(t, st.Send(&grpc_testing.StreamingInputCallRequest{}), "Send")
		resp, err := st.CloseAndRecv()
		require.NoError(t, err, "CloseAndRecv")
		assert.Equal(t, int32(1), resp.AggregatedPayloadSize, "messages the server saw")
		assert.Equal(t, uint64(1), g.Get(addr).Snapshot().Requests, "Requests")

		srv.script(answer{code: codes.Unavailable})
		st, err = client.StreamingInputCall(ctx)
		require.NoError(t, err, "StreamingInputCall")
		_, err = st.CloseAndRecv()
		require.Equal(t, codes.Unavailable, status.Code(err), "CloseAndRecv(failing)")
		assert.Equal(t, breaker.Open, g.Get(addr).State(), "State")
	})
	t.Run("a stream the caller cancels is not counted", func(t *testing.T) {
		srv, addr := startServer(t)
		g, _ := newGroup(t, breaker.Settings{ConsecutiveFailures: 1})
		b := rfgrpc.NewBreaker(g, rfgrpc.BreakerOptions{})
		client := dial(t, addr, nil, []grpc.StreamClientInterceptor{b.Stream})
		srv.script(answer{hang: true})
		ctx, cancel := context.WithCancel(bounded(t))
		st, err := client.StreamingOutputCall(ctx, &grpc_testing.StreamingOutputCallRequest{})
		require.NoError(t, err, "StreamingOutputCall")
		cancel()
		_, err = st.Recv()
		require.Equal(t, codes.Canceled, status.Code(err), "Recv(canceled)")
		snap := g.Get(addr).Snapshot()
		assert.Equal(t, breaker.Closed, snap.State, "State")
		assert.Zero(t, snap.Requests, "Requests")
	})
}

// drain receives until the stream ends cleanly and returns the number of
// messages.
func drain[T any](t *testing.T, st grpc.ServerStreamingClient[T]) int {
	t.Helper()
	n := 0
	for {
		_, err := st.Recv()
		if errors.Is(err, io.EOF) {
			return n
		}
		require.NoError(t, err, "Recv")
		n++
	}
}
