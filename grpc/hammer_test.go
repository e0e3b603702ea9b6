package grpc_test

import (
	"context"
	"errors"
	"io"
	"net"
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
	"github.com/ringfence/ringfence/chaos"
	rfgrpc "github.com/ringfence/ringfence/grpc"
	"github.com/ringfence/ringfence/retry"
)

// Concurrent unary calls and streams through retry, breaker and chaos:
// every call ends, and every call the injector let through reached the
// server.
func TestInterceptorsUnderConcurrentCalls(t *testing.T) {
	srv, addr := startServer(t)
	in, err := chaos.New(chaos.Settings{Seed: 7, Faults: chaos.Faults{ErrorRate: 0.3}})
	require.NoError(t, err, "chaos.New")
	c, err := rfgrpc.NewChaos(in, rfgrpc.ChaosOptions{})
	require.NoError(t, err, "NewChaos")
	g, _ := newGroup(t, breaker.Settings{ConsecutiveFailures: 4, OpenTimeout: time.Millisecond})
	b := rfgrpc.NewBreaker(g, rfgrpc.BreakerOptions{Key: rfgrpc.MethodKey})
	r := newRetrier(t, rfgrpc.RetryOptions{Policy: retry.Policy{
		MaxAttempts: 3, InitialInterval: time.Millisecond, MaxInterval: time.Millisecond,
	}})
	client := dial(t, addr,
		[]grpc.UnaryClientInterceptor{r.Unary, b.Unary, c.Unary},
		[]grpc.StreamClientInterceptor{r.Stream, b.Stream, c.Stream})
	ctx := bounded(t)

	var wg sync.WaitGroup
	for w := range 8 {
		wg.Go(func() {
			for range 25 {
				if w%2 == 0 {
					_, err := client.UnaryCall(ctx, &grpc_testing.SimpleRequest{})
					if err != nil && status.Code(err) != codes.Unavailable {
						t.Errorf("UnaryCall() = %v, want nil or UNAVAILABLE", err)
					}
					continue
				}
				st, err := client.StreamingOutputCall(ctx, &grpc_testing.StreamingOutputCallRequest{})
				if err != nil {
					t.Errorf("StreamingOutputCall() = %v", err)
					continue
				}
				for err == nil {
					_, err = st.Recv()
				}
				if !errors.Is(err, io.EOF) && status.Code(err) != codes.Unavailable {
					t.Errorf("Recv() = %v, want io.EOF or UNAVAILABLE", err)
				}
			}
		})
	}
	wg.Wait()
	st := in.Stats()
	assert.Equal(t, st.Calls, st.Passed+st.Errors, "injector Calls against Passed+Errors")
	assert.Equal(t, int64(st.Passed), srv.hits.Load(), "server hits against calls the injector passed")
}

func TestBreakerDoneContextTouchesNothing(t *testing.T) {
	srv, addr := startServer(t)
	g, _ := newGroup(t, breaker.Settings{})
	b := rfgrpc.NewBreaker(g, rfgrpc.BreakerOptions{})
	client := dial(t, addr, []grpc.UnaryClientInterceptor{b.Unary}, []grpc.StreamClientInterceptor{b.Stream})
	ctx, cancel := context.WithCancel(bounded(t))
	cancel()
	_, err := client.UnaryCall(ctx, &grpc_testing.SimpleRequest{})
	assert.Equal(t, codes.Canceled, status.Code(err), "UnaryCall(done context) = %v", err)
	_, err = client.StreamingOutputCall(ctx, &grpc_testing.StreamingOutputCallRequest{})
	assert.Equal(t, codes.Canceled, status.Code(err), "StreamingOutputCall(done context) = %v", err)
	assert.Zero(t, srv.hits.Load(), "server hits")
	assert.Zero(t, g.Get(addr).Snapshot().Requests, "Requests")
}

func TestBreakerCountsAStreamWhoseDeadlinePassed(t *testing.T) {
	srv, addr := startServer(t)
	// The deadline must pass after the stream opened, which on a loaded
	// machine may take a while: start short, and lengthen it whenever it
	// passed before the stream opened.
	for d := 20 * time.Millisecond; ; d *= 2 {
		require.Less(t, d, testTimeout, "a stream could not be opened within its deadline")
		g, changes := newGroup(t, breaker.Settings{ConsecutiveFailures: 1, OpenTimeout: time.Hour})
		b := rfgrpc.NewBreaker(g, rfgrpc.BreakerOptions{})
		client := dial(t, addr, nil, []grpc.StreamClientInterceptor{b.Stream})
		srv.script(answer{hang: true})
		ctx, cancel := context.WithTimeout(bounded(t), d)
		_, err := client.StreamingOutputCall(ctx, &grpc_testing.StreamingOutputCallRequest{})
		if err != nil {
			cancel()
			require.Equal(t, codes.DeadlineExceeded, status.Code(err), "StreamingOutputCall() = %v", err)
			srv.next() // the hang was not used
			continue
		}
		// The caller never receives; the passed deadline still counts.
		await(bounded(t), t, changes, breaker.Open)
		cancel()
		return
	}
}

func TestRetryHeaderOfAFailingStream(t *testing.T) {
	srv, addr := startServer(t)
	var w waits
	r := newRetrier(t, rfgrpc.RetryOptions{Policy: fastPolicy(&w)})
	client := dial(t, addr, nil, []grpc.StreamClientInterceptor{r.Stream})
	srv.script(answer{code: codes.Unavailable}, answer{code: codes.Unavailable}, answer{code: codes.Unavailable})
	st, err := client.StreamingOutputCall(bounded(t), &grpc_testing.StreamingOutputCallRequest{})
	require.NoError(t, err, "StreamingOutputCall")
	md, err := st.Header()
	assert.NoError(t, err, "Header")
	assert.Nil(t, md, "Header of a stream that ended without headers")
	_, err = st.Recv()
	assert.Equal(t, codes.Unavailable, status.Code(err), "Recv() = %v", err)
	assert.Equal(t, int64(3), srv.hits.Load(), "server hits")
}

func TestBreakerOpensWhenTheServerIsGone(t *testing.T) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err, "Listen")
	gs := grpc.NewServer()
	grpc_testing.RegisterTestServiceServer(gs, &server{})
	go gs.Serve(lis)
	t.Cleanup(gs.Stop)
	addr := lis.Addr().String()

	g, _ := newGroup(t, breaker.Settings{ConsecutiveFailures: 2, OpenTimeout: time.Hour})
	b := rfgrpc.NewBreaker(g, rfgrpc.BreakerOptions{})
	client := dial(t, addr, []grpc.UnaryClientInterceptor{b.Unary}, nil)
	ctx := bounded(t)
	_, err = client.UnaryCall(ctx, &grpc_testing.SimpleRequest{})
	require.NoError(t, err, "UnaryCall(server up)")

	gs.Stop() // connections refused from now on
	for i := range 2 {
		_, err := client.UnaryCall(ctx, &grpc_testing.SimpleRequest{})
		require.Equal(t, codes.Unavailable, status.Code(err), "UnaryCall %d (server gone) = %v", i, err)
		require.NotErrorIs(t, err, breaker.ErrOpen, "UnaryCall %d (server gone)", i)
	}
	_, err = client.UnaryCall(ctx, &grpc_testing.SimpleRequest{})
	require.ErrorIs(t, err, breaker.ErrOpen, "UnaryCall(after the trip)")
}
