package fallback

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/ringfence/ringfence/breaker"
	"github.com/ringfence/ringfence/retry"
)

// benchPrimary stands in for a dependency that answers at once.
//
//go:noinline
func benchPrimary(_ context.Context, id string) (int, error) { return len(id), nil }

func newBenchChain(b *testing.B, settings ChainSettings, fallbacks ...Step[string, int]) *Chain[string, int] {
	b.Helper()
	c, err := NewChain("price", settings, Primary("pricing-api", benchPrimary), fallbacks...)
	if err != nil {
		b.Fatal(err)
	}
	return c
}

func newBenchSwitch(b *testing.B) *Switch {
	b.Helper()
	sw, err := NewSwitch("pricing-api", SwitchSettings{})
	if err != nil {
		b.Fatal(err)
	}
	return sw
}

// BenchmarkChainPrimarySucceeds compares a chain whose primary succeeds
// with a direct call of the same function: the difference is the chain's
// overhead.
func BenchmarkChainPrimarySucceeds(b *testing.B) {
	ctx := context.Background()
	br, err := breaker.New(breaker.Settings{})
	if err != nil {
		b.Fatal(err)
	}
	cache, err := NewCache[string, int](CacheSettings{})
	if err != nil {
		b.Fatal(err)
	}
	sw := newBenchSwitch(b)
	chains := []struct {
		name  string
		chain *Chain[string, int]
	}{
		{"chain", newBenchChain(b, ChainSettings{Switch: sw}, Static[string]("zero", 0))},
		{"chain+breaker", newBenchChain(b, ChainSettings{Switch: sw, Breaker: br}, Static[string]("zero", 0))},
		{"chain+breaker+retry", newBenchChain(b, ChainSettings{Switch: sw, Breaker: br, Retry: &retry.Policy{}}, Static[string]("zero", 0))},
		{"chain+stale", newBenchChain(b, ChainSettings{Switch: sw}, Stale("last", cache, func(id string) string { return id }))},
	}

	b.Run("direct", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := benchPrimary(ctx, "sku-1"); err != nil {
				b.Fatal(err)
			}
		}
	})
	for _, c := range chains {
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, _, err := c.chain.Run(ctx, "sku-1"); err != nil {
					b.Fatal(err)
				}
			}
		})
	}

	b.Run("direct/parallel", func(b *testing.B) {
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if _, err := benchPrimary(ctx, "sku-1"); err != nil {
					b.Error(err)
					return
				}
			}
		})
	})
	for _, c := range chains {
		b.Run(c.name+"/parallel", func(b *testing.B) {
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if _, _, err := c.chain.Run(ctx, "sku-1"); err != nil {
						b.Error(err)
						return
					}
				}
			})
		})
	}
}

// BenchmarkSwitchMode measures the read every Run makes.
func BenchmarkSwitchMode(b *testing.B) {
	sw := newBenchSwitch(b)
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if sw.Mode() != ModeAuto {
				b.Error("mode changed")
				return
			}
		}
	})
}

// BenchmarkChainFallsBack measures a call whose primary fails and whose
// static fallback answers, and one in manual mode that skips the primary.
func BenchmarkChainFallsBack(b *testing.B) {
	ctx := context.Background()
	errDown := errors.New("down")
	failing := func(context.Context, string) (int, error) { return 0, errDown }
	auto, err := NewChain("price", ChainSettings{}, Primary("pricing-api", failing), Static[string]("zero", 0))
	if err != nil {
		b.Fatal(err)
	}
	sw := newBenchSwitch(b)
	if err := sw.Set(ModeManual, "bench"); err != nil {
		b.Fatal(err)
	}
	manual := newBenchChain(b, ChainSettings{Switch: sw}, Static[string]("zero", 0))
	for _, c := range []struct {
		name  string
		chain *Chain[string, int]
	}{{"primary fails", auto}, {"manual mode", manual}} {
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, src, err := c.chain.Run(ctx, "sku-1"); err != nil || src.Kind != KindStatic {
					b.Fatal(src, err)
				}
			}
		})
	}
}

// BenchmarkChainBreakerOpen measures the failure path of an outage: the
// primary fails, its breaker is open, and a static fallback answers.
// "retry+breaker" is the same retry.Do around breaker.Do without a chain,
// serving the static value on error by hand: the difference is the
// chain's share. The primary-succeeds rows, measured in the same run, are
// the path the outage is compared with.
func BenchmarkChainBreakerOpen(b *testing.B) {
	ctx := context.Background()
	errDown := errors.New("down")
	failing := func(context.Context, string) (int, error) { return 0, errDown }
	open, err := breaker.New(breaker.Settings{ConsecutiveFailures: 1, OpenTimeout: time.Hour})
	if err != nil {
		b.Fatal(err)
	}
	closed, err := breaker.New(breaker.Settings{})
	if err != nil {
		b.Fatal(err)
	}
	policy := &retry.Policy{}
	newChain := func(br *breaker.Breaker, p *retry.Policy, fn func(context.Context, string) (int, error)) *Chain[string, int] {
		c, err := NewChain("price", ChainSettings{Breaker: br, Retry: p}, Primary("pricing-api", fn), Static[string]("zero", 0))
		if err != nil {
			b.Fatal(err)
		}
		return c
	}
	openRetry := newChain(open, policy, failing)
	if _, src, _ := openRetry.Run(ctx, "sku-1"); src.Kind != KindStatic || open.State() != breaker.Open {
		b.Fatalf("the breaker did not open: %v, %v", src, open.State())
	}
	closedRetry := newChain(closed, policy, benchPrimary)
	openOnly := newChain(open, nil, failing)
	runs := []struct {
		name string
		want Kind
		run  func() (int, Kind)
	}{
		{"primary succeeds/chain+breaker+retry", KindPrimary, func() (int, Kind) {
			v, src, _ := closedRetry.Run(ctx, "sku-1")
			return v, src.Kind
		}},
		{"breaker open/retry+breaker", KindStatic, func() (int, Kind) {
			v, err := retry.Do(ctx, *policy, func(ctx context.Context) (int, error) {
				return breaker.Do(ctx, open, func(ctx context.Context) (int, error) { return failing(ctx, "sku-1") })
			})
			if err != nil {
				return 0, KindStatic
			}
			return v, KindPrimary
		}},
		{"breaker open/chain+breaker", KindStatic, func() (int, Kind) {
			v, src, _ := openOnly.Run(ctx, "sku-1")
			return v, src.Kind
		}},
		{"breaker open/chain+breaker+retry", KindStatic, func() (int, Kind) {
			v, src, _ := openRetry.Run(ctx, "sku-1")
			return v, src.Kind
		}},
	}
	for _, r := range runs {
		b.Run(r.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, k := r.run(); k != r.want {
					b.Fatal(k)
				}
			}
		})
		b.Run(r.name+"/parallel", func(b *testing.B) {
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if _, k := r.run(); k != r.want {
						b.Error(k)
						return
					}
				}
			})
		})
	}
}

// benchStatusError exposes an HTTP status as the AWS SDK's errors do.
type benchStatusError struct{ code int }

func (e *benchStatusError) Error() string       { return "status" }
func (e *benchStatusError) HTTPStatusCode() int { return e.code }

// BenchmarkUnavailable measures the default classifier on the errors a
// failing call brings: a breaker's rejection and a wrapped SDK 404.
func BenchmarkUnavailable(b *testing.B) {
	open, err := breaker.New(breaker.Settings{ConsecutiveFailures: 1, OpenTimeout: time.Hour})
	if err != nil {
		b.Fatal(err)
	}
	breaker.Do(context.Background(), open, func(context.Context) (int, error) { return 0, errors.New("down") }) // opens it
	_, rejected := breaker.Do(context.Background(), open, func(context.Context) (int, error) { return 0, nil })
	if !errors.Is(rejected, breaker.ErrOpen) {
		b.Fatal(rejected)
	}
	for _, tt := range []struct {
		name string
		err  error
		want bool
	}{
		{"breaker open", rejected, true},
		{"wrapped 404", fmt.Errorf("get blob: %w", &benchStatusError{404}), false},
	} {
		b.Run(tt.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if Unavailable(tt.err) != tt.want {
					b.Fatal(tt.err)
				}
			}
		})
		b.Run(tt.name+"/parallel", func(b *testing.B) {
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if Unavailable(tt.err) != tt.want {
						b.Error(tt.err)
						return
					}
				}
			})
		})
	}
}
