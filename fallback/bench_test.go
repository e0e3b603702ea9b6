package fallback

import (
	"context"
	"errors"
	"testing"

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
	sw, err := NewSwitch(b.Context(), "pricing-api", SwitchSettings{})
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
	if err := sw.Set(b.Context(), ModeManual, "bench", "bench"); err != nil {
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
