package breaker

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync"
	"testing"

	"github.com/sony/gobreaker/v2"
)

// The raw gobreaker benchmarks are the yardstick for the breaker's own.

func BenchmarkGobreakerExecuteSuccess(b *testing.B) {
	cb := gobreaker.NewCircuitBreaker[int](gobreaker.Settings{Name: "raw"})
	ok := func() (int, error) { return 1, nil }
	b.ReportAllocs()
	for b.Loop() {
		_, _ = cb.Execute(ok)
	}
}

func BenchmarkGobreakerExecuteRejected(b *testing.B) {
	cb := gobreaker.NewCircuitBreaker[int](gobreaker.Settings{Name: "raw"})
	fail := func() (int, error) { return 0, errBench }
	for range 10 {
		_, _ = cb.Execute(fail)
	}
	if cb.State() != gobreaker.StateOpen {
		b.Fatalf("gobreaker State() = %v, want open", cb.State())
	}
	b.ReportAllocs()
	for b.Loop() {
		_, _ = cb.Execute(fail)
	}
}

var errBench = errors.New("bench: failure")

func BenchmarkGobreakerTwoStepSuccess(b *testing.B) {
	cb := gobreaker.NewTwoStepCircuitBreaker[int](gobreaker.Settings{Name: "raw"})
	b.ReportAllocs()
	for b.Loop() {
		if done, err := cb.Allow(); err == nil {
			done(nil)
		}
	}
}

func BenchmarkGobreakerTwoStepRejected(b *testing.B) {
	cb := gobreaker.NewTwoStepCircuitBreaker[int](gobreaker.Settings{Name: "raw"})
	for range 10 {
		if done, err := cb.Allow(); err == nil {
			done(errBench)
		}
	}
	if cb.State() != gobreaker.StateOpen {
		b.Fatalf("gobreaker State() = %v, want open", cb.State())
	}
	b.ReportAllocs()
	for b.Loop() {
		if done, err := cb.Allow(); err == nil {
			done(nil)
		}
	}
}

func benchOK(context.Context) (int, error) { return 1, nil }

func newBench(b *testing.B) *Breaker {
	br, err := New(Settings{Name: "bench"})
	if err != nil {
		b.Fatalf("New() error = %v", err)
	}
	return br
}

func BenchmarkDoClosed(b *testing.B) {
	br := newBench(b)
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		_, _ = Do(ctx, br, benchOK)
	}
}

func BenchmarkDoClosedParallel(b *testing.B) {
	br := newBench(b)
	ctx := context.Background()
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			_, _ = Do(ctx, br, benchOK)
		}
	})
}

func newOpenBench(b *testing.B) *Breaker {
	br := newBench(b)
	br.ForceOpen("benchmark")
	// ForceOpen and Open share the rejection path; check it is taken.
	if _, err := Do(context.Background(), br, benchOK); !errors.Is(err, ErrOpen) {
		b.Fatalf("Do() error = %v, want ErrOpen", err)
	}
	return br
}

func BenchmarkDoOpen(b *testing.B) {
	br := newOpenBench(b)
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		_, _ = Do(ctx, br, benchOK)
	}
}

func BenchmarkDoOpenParallel(b *testing.B) {
	br := newOpenBench(b)
	ctx := context.Background()
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			_, _ = Do(ctx, br, benchOK)
		}
	})
}

func BenchmarkGroupGet(b *testing.B) {
	g, err := NewGroup(Settings{Name: "bench"}, GroupOptions{})
	if err != nil {
		b.Fatalf("NewGroup() error = %v", err)
	}
	g.Get("api.example.com")
	b.ReportAllocs()
	for b.Loop() {
		_ = g.Get("api.example.com")
	}
}

// BenchmarkSyncMapLoad is the yardstick for Group.Get: the lock-free map
// of the standard library, which Group used before.
func BenchmarkSyncMapLoad(b *testing.B) {
	var m sync.Map
	m.Store("api.example.com", newBench(b))
	b.ReportAllocs()
	for b.Loop() {
		v, _ := m.Load("api.example.com")
		_ = v.(*Breaker)
	}
}

func BenchmarkGroupGetParallel(b *testing.B) {
	g, err := NewGroup(Settings{Name: "bench"}, GroupOptions{})
	if err != nil {
		b.Fatalf("NewGroup() error = %v", err)
	}
	g.Get("api.example.com")
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			_ = g.Get("api.example.com")
		}
	})
}

// benchRoundTrips sends GET requests to a loopback server through rt.
func benchRoundTrips(b *testing.B, wrap func(http.RoundTripper) http.RoundTripper) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		_, _ = io.WriteString(w, "ok")
	}))
	defer srv.Close()
	base := &http.Transport{MaxIdleConnsPerHost: 4}
	defer base.CloseIdleConnections()
	client := &http.Client{Transport: wrap(base)}
	b.ReportAllocs()
	for b.Loop() {
		resp, err := client.Get(srv.URL)
		if err != nil {
			b.Fatalf("Get() error = %v", err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
}

func BenchmarkLoopbackBare(b *testing.B) {
	benchRoundTrips(b, func(rt http.RoundTripper) http.RoundTripper { return rt })
}

func BenchmarkLoopbackTransport(b *testing.B) {
	g, err := NewGroup(Settings{Name: "bench"}, GroupOptions{})
	if err != nil {
		b.Fatalf("NewGroup() error = %v", err)
	}
	benchRoundTrips(b, func(rt http.RoundTripper) http.RoundTripper {
		return Transport(rt, g, TransportOptions{})
	})
}

func BenchmarkAllowClosed(b *testing.B) {
	br := newBench(b)
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		p, err := br.Allow(ctx)
		p.Done(ctx, err)
	}
}

func BenchmarkAllowClosedParallel(b *testing.B) {
	br := newBench(b)
	ctx := context.Background()
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			p, err := br.Allow(ctx)
			p.Done(ctx, err)
		}
	})
}

func BenchmarkAllowOpen(b *testing.B) {
	br := newOpenBench(b)
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		p, err := br.Allow(ctx)
		p.Done(ctx, err)
	}
}

func BenchmarkAllowOpenParallel(b *testing.B) {
	br := newOpenBench(b)
	ctx := context.Background()
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			p, err := br.Allow(ctx)
			p.Done(ctx, err)
		}
	})
}

// newFullGroup returns a group at its bound of members, each with a call
// counted in its window, so that no member can be evicted.
func newFullGroup(b *testing.B, members int) *Group {
	g, err := NewGroup(Settings{Name: "bench"}, GroupOptions{MaxKeys: members})
	if err != nil {
		b.Fatalf("NewGroup() error = %v", err)
	}
	for i := range members {
		_, _ = Do(context.Background(), g.Get("member-"+strconv.Itoa(i)), benchOK)
	}
	if got := g.Get("overflow").Name(); got != "bench/*" {
		b.Fatalf("Get(overflow).Name() = %q, want bench/*", got)
	}
	return g
}

func BenchmarkGroupGetOverflow(b *testing.B) {
	for _, members := range []int{1024, 8192} {
		b.Run(strconv.Itoa(members)+" busy members", func(b *testing.B) {
			g := newFullGroup(b, members)
			keys := [4]string{"tenant-a", "tenant-b", "tenant-c", "tenant-d"}
			i := 0
			b.ReportAllocs()
			for b.Loop() {
				_ = g.Get(keys[i&3])
				i++
			}
		})
	}
}

func BenchmarkGroupGetOverflowParallel(b *testing.B) {
	g := newFullGroup(b, 1024)
	keys := [4]string{"tenant-a", "tenant-b", "tenant-c", "tenant-d"}
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		for pb.Next() {
			_ = g.Get(keys[i&3])
			i++
		}
	})
}

func BenchmarkGroupDo(b *testing.B) {
	g, err := NewGroup(Settings{Name: "bench"}, GroupOptions{})
	if err != nil {
		b.Fatalf("NewGroup() error = %v", err)
	}
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		_, _ = Do(ctx, g.Get("api.example.com"), benchOK)
	}
}
