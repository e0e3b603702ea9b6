package grpc_test

import (
	"context"
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
)

func newChaos(t *testing.T, f chaos.Faults, opts rfgrpc.ChaosOptions) (*rfgrpc.Chaos, *chaos.Injector) {
	t.Helper()
	in, err := chaos.New(chaos.Settings{Faults: f})
	require.NoError(t, err, "chaos.New")
	c, err := rfgrpc.NewChaos(in, opts)
	require.NoError(t, err, "NewChaos")
	return c, in
}

func TestChaosInjectsStatusCodes(t *testing.T) {
	tests := []struct {
		name   string
		faults chaos.Faults
		opts   rfgrpc.ChaosOptions
		want   codes.Code
	}{
		{"a failure is UNAVAILABLE by default", chaos.Faults{ErrorRate: 1}, rfgrpc.ChaosOptions{}, codes.Unavailable},
		{"ChaosOptions.Code sets the code", chaos.Faults{ErrorRate: 1}, rfgrpc.ChaosOptions{Code: codes.Internal}, codes.Internal},
		{"a status in Faults.Err wins", chaos.Faults{ErrorRate: 1, Err: status.Error(codes.ResourceExhausted, "quota")}, rfgrpc.ChaosOptions{Code: codes.Internal}, codes.ResourceExhausted},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv, addr := startServer(t)
			c, in := newChaos(t, tt.faults, tt.opts)
			client := dial(t, addr, []grpc.UnaryClientInterceptor{c.Unary}, []grpc.StreamClientInterceptor{c.Stream})
			ctx := bounded(t)
			_, err := client.UnaryCall(ctx, &grpc_testing.SimpleRequest{})
			assert.Equal(t, tt.want, status.Code(err), "UnaryCall() = %v", err)
			require.ErrorIs(t, err, chaos.ErrInjected, "UnaryCall")
			_, err = client.StreamingOutputCall(ctx, &grpc_testing.StreamingOutputCallRequest{})
			assert.Equal(t, tt.want, status.Code(err), "StreamingOutputCall() = %v", err)
			require.ErrorIs(t, err, chaos.ErrInjected, "StreamingOutputCall")
			assert.Zero(t, srv.hits.Load(), "server hits")
			assert.Equal(t, uint64(2), in.Stats().Errors, "Stats().Errors")
		})
	}
}

func TestChaosHangsUntilTheDeadline(t *testing.T) {
	srv, addr := startServer(t)
	c, in := newChaos(t, chaos.Faults{HangRate: 1}, rfgrpc.ChaosOptions{})
	client := dial(t, addr, []grpc.UnaryClientInterceptor{c.Unary}, nil)
	ctx, cancel := context.WithTimeout(bounded(t), 20*time.Millisecond)
	defer cancel()
	_, err := client.UnaryCall(ctx, &grpc_testing.SimpleRequest{})
	assert.Equal(t, codes.DeadlineExceeded, status.Code(err), "UnaryCall() = %v", err)
	assert.Zero(t, srv.hits.Load(), "server hits")
	assert.Equal(t, uint64(1), in.Stats().Hangs, "Stats().Hangs")
}

func TestChaosDelaysThenForwards(t *testing.T) {
	srv, addr := startServer(t)
	c, in := newChaos(t, chaos.Faults{Latency: time.Millisecond}, rfgrpc.ChaosOptions{})
	client := dial(t, addr, []grpc.UnaryClientInterceptor{c.Unary}, nil)
	_, err := client.UnaryCall(bounded(t), &grpc_testing.SimpleRequest{})
	require.NoError(t, err, "UnaryCall")
	assert.Equal(t, int64(1), srv.hits.Load(), "server hits")
	assert.Equal(t, uint64(1), in.Stats().Delayed, "Stats().Delayed")
}

func TestChaosTripsTheBreaker(t *testing.T) {
	srv, addr := startServer(t)
	g, _ := newGroup(t, breaker.Settings{ConsecutiveFailures: 3, OpenTimeout: time.Hour})
	b := rfgrpc.NewBreaker(g, rfgrpc.BreakerOptions{})
	c, in := newChaos(t, chaos.Faults{ErrorRate: 1}, rfgrpc.ChaosOptions{})
	client := dial(t, addr, []grpc.UnaryClientInterceptor{b.Unary, c.Unary}, nil)
	ctx := bounded(t)
	for range 4 {
		client.UnaryCall(ctx, &grpc_testing.SimpleRequest{})
	}
	assert.Equal(t, breaker.Open, g.Get(addr).State(), "State")
	assert.Equal(t, uint64(3), in.Stats().Calls, "calls that reached the injector")
	assert.Zero(t, srv.hits.Load(), "server hits")
}

func TestNewChaosRejectsAnUnknownCode(t *testing.T) {
	c, err := rfgrpc.NewChaos(nil, rfgrpc.ChaosOptions{Code: 42})
	require.ErrorIs(t, err, rfgrpc.ErrInvalidOptions, "NewChaos(Code 42)")
	assert.Nil(t, c, "NewChaos(Code 42)")
}

func TestNilInjectorInjectsNothing(t *testing.T) {
	srv, addr := startServer(t)
	c, err := rfgrpc.NewChaos(nil, rfgrpc.ChaosOptions{})
	require.NoError(t, err, "NewChaos(nil)")
	client := dial(t, addr, []grpc.UnaryClientInterceptor{c.Unary}, nil)
	_, err = client.UnaryCall(bounded(t), &grpc_testing.SimpleRequest{})
	require.NoError(t, err, "UnaryCall")
	assert.Equal(t, int64(1), srv.hits.Load(), "server hits")
}
