package grpc_test

import (
	"context"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/interop/grpc_testing"

	"github.com/ringfence/ringfence/breaker"
	rfgrpc "github.com/ringfence/ringfence/grpc"
	"github.com/ringfence/ringfence/retry"
)

// benchChains are the interceptor chains the benchmarks compare, the bare
// connection first.
func benchChains(b *testing.B) []struct {
	name  string
	unary []grpc.UnaryClientInterceptor
} {
	g, err := breaker.NewGroup(breaker.Settings{Name: "bench"}, breaker.GroupOptions{})
	if err != nil {
		b.Fatal(err)
	}
	br := rfgrpc.NewBreaker(g, rfgrpc.BreakerOptions{})
	budget, err := retry.NewBudget(0, 0)
	if err != nil {
		b.Fatal(err)
	}
	r, err := rfgrpc.NewRetrier(rfgrpc.RetryOptions{Policy: retry.Policy{Budget: budget}})
	if err != nil {
		b.Fatal(err)
	}
	return []struct {
		name  string
		unary []grpc.UnaryClientInterceptor
	}{
		{"bare", nil},
		{"breaker", []grpc.UnaryClientInterceptor{br.Unary}},
		{"retry", []grpc.UnaryClientInterceptor{r.Unary}},
		{"retry+breaker", []grpc.UnaryClientInterceptor{r.Unary, br.Unary}},
	}
}

// BenchmarkUnary measures a unary call to a loopback server, bare and
// through the interceptors, in the same run.
func BenchmarkUnary(b *testing.B) {
	_, addr := startServer(b)
	for _, c := range benchChains(b) {
		client := dial(b, addr, c.unary, nil)
		ctx := context.Background()
		req := &grpc_testing.SimpleRequest{}
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := client.UnaryCall(ctx, req); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkUnaryParallel is BenchmarkUnary with concurrent callers.
func BenchmarkUnaryParallel(b *testing.B) {
	_, addr := startServer(b)
	for _, c := range benchChains(b) {
		client := dial(b, addr, c.unary, nil)
		ctx := context.Background()
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				req := &grpc_testing.SimpleRequest{}
				for pb.Next() {
					if _, err := client.UnaryCall(ctx, req); err != nil {
						b.Error(err)
						return
					}
				}
			})
		})
	}
}

// BenchmarkInterceptor measures the interceptors alone, around an invoker
// that returns at once, next to calling that invoker directly.
func BenchmarkInterceptor(b *testing.B) {
	invoker := func(context.Context, string, any, any, *grpc.ClientConn, ...grpc.CallOption) error { return nil }
	ctx := context.Background()
	for _, c := range benchChains(b) {
		chain := chainUnary(c.unary, invoker)
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if err := chain(ctx, unaryMethod, nil, nil, nil); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(c.name+"/parallel", func(b *testing.B) {
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if err := chain(ctx, unaryMethod, nil, nil, nil); err != nil {
						b.Error(err)
						return
					}
				}
			})
		})
	}
}

// chainUnary composes interceptors around invoker, outermost first, as
// grpc.WithChainUnaryInterceptor does.
func chainUnary(ics []grpc.UnaryClientInterceptor, invoker grpc.UnaryInvoker) grpc.UnaryInvoker {
	for i := len(ics) - 1; i >= 0; i-- {
		ic, next := ics[i], invoker
		invoker = func(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, opts ...grpc.CallOption) error {
			return ic(ctx, method, req, reply, cc, next, opts...)
		}
	}
	return invoker
}
