package chaos_test

import (
	"context"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/ringfence/ringfence/chaos"
)

//go:noinline
func work(context.Context) (int, error) { return 42, nil }

// BenchmarkWrap compares a direct call with a call through Wrap that
// passes through: with no faults, with faults that let every call through,
// and with a schedule, which reads the clock on every call; then with the
// same faults switched on by Injector.Set, and with a Set undone by Clear,
// which must cost what no faults cost. An error rate of 1e-15 makes every
// call draw its fate while failing none in practice.
func BenchmarkWrap(b *testing.B) {
	ctx := context.Background()
	drawn := chaos.Faults{ErrorRate: 1e-15}
	injectors := []struct {
		name  string
		s     chaos.Settings
		set   *chaos.Faults // passed to Set after New, if not nil
		clear bool          // call Clear after that
	}{
		{"no faults", chaos.Settings{}, nil, false},
		{"error rate drawn", chaos.Settings{Faults: drawn}, nil, false},
		{"schedule", chaos.Settings{Phases: []chaos.Phase{
			{Start: 0, Duration: time.Hour},
			{Start: time.Hour, Faults: chaos.Faults{ErrorRate: 1}},
		}}, nil, false},
		{"no faults after Set and Clear", chaos.Settings{}, &drawn, true},
		{"error rate drawn by Set", chaos.Settings{}, &drawn, false},
	}
	b.Run("direct", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := work(ctx); err != nil {
				b.Fatal(err)
			}
		}
	})
	for _, tt := range injectors {
		in, err := chaos.New(tt.s)
		if err != nil {
			b.Fatal(err)
		}
		if tt.set != nil {
			if err := in.Set(*tt.set); err != nil {
				b.Fatal(err)
			}
		}
		if tt.clear {
			in.Clear()
		}
		fn := chaos.Wrap(work, in)
		b.Run("Wrap "+tt.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := fn(ctx); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
	in, err := chaos.New(chaos.Settings{Faults: chaos.Faults{ErrorRate: 1e-15}})
	if err != nil {
		b.Fatal(err)
	}
	fn := chaos.Wrap(work, in)
	b.Run("Wrap error rate drawn parallel", func(b *testing.B) {
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if _, err := fn(ctx); err != nil {
					b.Fatal(err)
				}
			}
		})
	})
	// The same faults switched on by Set, with calls on every core.
	set, err := chaos.New(chaos.Settings{})
	if err != nil {
		b.Fatal(err)
	}
	if err := set.Set(drawn); err != nil {
		b.Fatal(err)
	}
	setFn := chaos.Wrap(work, set)
	b.Run("Wrap error rate drawn by Set parallel", func(b *testing.B) {
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if _, err := setFn(ctx); err != nil {
					b.Fatal(err)
				}
			}
		})
	})
}

// okTransport answers every request with a shared 200 response; it
// stands in for the network so that only Transport's overhead is measured.
type okTransport struct{ resp *http.Response }

func (t okTransport) RoundTrip(*http.Request) (*http.Response, error) { return t.resp, nil }

// BenchmarkTransport compares a round trip through a fake next transport
// with the same round trip through Transport when the request passes
// through.
func BenchmarkTransport(b *testing.B) {
	next := okTransport{resp: &http.Response{StatusCode: 200, Body: io.NopCloser(strings.NewReader(""))}}
	req, err := http.NewRequest(http.MethodGet, "http://booking.example/seats", nil)
	if err != nil {
		b.Fatal(err)
	}
	in, err := chaos.New(chaos.Settings{Faults: chaos.Faults{ErrorRate: 1e-15}})
	if err != nil {
		b.Fatal(err)
	}
	rt := chaos.Transport(next, in)
	b.Run("next", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := next.RoundTrip(req); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("Transport", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := rt.RoundTrip(req); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("Transport parallel", func(b *testing.B) {
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if _, err := rt.RoundTrip(req); err != nil {
					b.Fatal(err)
				}
			}
		})
	})
}
