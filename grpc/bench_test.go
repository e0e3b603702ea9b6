package grpc_test

import (
	"context"
	"slices"
	"testing"
	"time"

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

// BenchmarkUnaryOverhead interleaves bare calls and calls through the
// interceptors on the same loopback server, one of each per iteration in
// alternating order, so that both see the same load on the machine. It
// reports the median time of each kind of call and the extra time of the
// intercepted ones as overhead-% of the bare median (medians, because a
// shared machine adds long outliers to either side at random).
func BenchmarkUnaryOverhead(b *testing.B) {
	_, addr := startServer(b)
	chains := benchChains(b)
	bare := dial(b, addr, nil, nil)
	ctx := context.Background()
	req := &grpc_testing.SimpleRequest{}
	call := func(b *testing.B, c grpc_testing.TestServiceClient) time.Duration {
		start := time.Now()
		if _, err := c.UnaryCall(ctx, req); err != nil {
			b.Fatal(err)
		}
		return time.Since(start)
	}
	for _, c := range chains[1:] {
		wrapped := dial(b, addr, c.unary, nil)
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			var tBare, tWrapped []time.Duration
			for b.Loop() {
				if len(tBare)%2 == 0 {
					tBare = append(tBare, call(b, bare))
					tWrapped = append(tWrapped, call(b, wrapped))
				} else {
					tWrapped = append(tWrapped, call(b, wrapped))
					tBare = append(tBare, call(b, bare))
				}
			}
			mb, mw := median(tBare), median(tWrapped)
			b.ReportMetric(float64(mb.Nanoseconds()), "bare-ns/call")
			b.ReportMetric(float64(mw.Nanoseconds()), "wrapped-ns/call")
			b.ReportMetric(100*float64(mw-mb)/float64(mb), "overhead-%")
		})
	}
}

// median returns the median of ds, reordering them.
func median(ds []time.Duration) time.Duration {
	slices.Sort(ds)
	return ds[len(ds)/2]
}
