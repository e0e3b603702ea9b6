package retry_test

import (
	"context"
	"net/http"
	"testing"
	"time"

	"github.com/cenkalti/backoff/v4"
	"github.com/ringfence/ringfence/breaker"
	"github.com/ringfence/ringfence/retry"
)

//go:noinline
func work(context.Context) (int, error) { return 42, nil }

// BenchmarkDo compares a call through Do whose first attempt succeeds with
// a direct call of the same function; the difference is Do's overhead.
func BenchmarkDo(b *testing.B) {
	ctx := context.Background()
	b.Run("direct", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := work(ctx); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("retry.Do", func(b *testing.B) {
		b.ReportAllocs()
		p := retry.Policy{}
		for b.Loop() {
			if _, err := retry.Do(ctx, p, work); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("retry.Do with Budget", func(b *testing.B) {
		b.ReportAllocs()
		p := retry.Policy{Budget: new(retry.Budget)}
		for b.Loop() {
			if _, err := retry.Do(ctx, p, work); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("retry.Do parallel", func(b *testing.B) {
		b.ReportAllocs()
		p := retry.Policy{Budget: new(retry.Budget)}
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if _, err := retry.Do(ctx, p, work); err != nil {
					b.Fatal(err)
				}
			}
		})
	})
}

// BenchmarkDoOneRetry measures the slow path: one failure, a zero-length
// wait, then success.
func BenchmarkDoOneRetry(b *testing.B) {
	ctx := context.Background()
	p := retry.Policy{InitialInterval: time.Nanosecond, Rand: func() float64 { return 0 }}
	b.ReportAllocs()
	for b.Loop() {
		n := 0
		_, err := retry.Do(ctx, p, func(context.Context) (int, error) {
			n++
			if n == 1 {
				return 0, errBoom
			}
			return n, nil
		})
		if err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkExponentialBackOff is the raw dependency behind Do's intervals.
func BenchmarkExponentialBackOff(b *testing.B) {
	b.ReportAllocs()
	eb := backoff.NewExponentialBackOff()
	for b.Loop() {
		if eb.NextBackOff() == backoff.Stop {
			eb.Reset()
		}
	}
}

func BenchmarkBudget(b *testing.B) {
	b.Run("RecordSuccess when full", func(b *testing.B) {
		b.ReportAllocs()
		var bu retry.Budget
		for b.Loop() {
			bu.RecordSuccess()
		}
	})
	b.Run("AllowRetry and RecordSuccess", func(b *testing.B) {
		b.ReportAllocs()
		bu, _ := retry.NewBudget(1, 10)
		for b.Loop() {
			bu.AllowRetry()
			bu.RecordSuccess()
		}
	})
	b.Run("parallel", func(b *testing.B) {
		b.ReportAllocs()
		bu, _ := retry.NewBudget(0.5, 100)
		b.RunParallel(func(pb *testing.PB) {
			i := 0
			for pb.Next() {
				if i%4 == 0 {
					bu.AllowRetry()
				} else {
					bu.RecordSuccess()
				}
				i++
			}
		})
	})
}

func BenchmarkThrottle(b *testing.B) {
	b.Run("Allow and Record", func(b *testing.B) {
		b.ReportAllocs()
		var th retry.Throttle
		for b.Loop() {
			if th.Allow() == nil {
				th.Record(true)
			}
		}
	})
	b.Run("parallel", func(b *testing.B) {
		b.ReportAllocs()
		var th retry.Throttle
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if th.Allow() == nil {
					th.Record(true)
				}
			}
		})
	})
}

type okTransport struct{ resp *http.Response }

func (t okTransport) RoundTrip(*http.Request) (*http.Response, error) { return t.resp, nil }

// BenchmarkTransport compares a RoundTrip through Transport whose first
// attempt succeeds with calling the wrapped RoundTripper directly.
func BenchmarkTransport(b *testing.B) {
	next := okTransport{resp: &http.Response{StatusCode: 200, Body: http.NoBody}}
	req, _ := http.NewRequest(http.MethodGet, "http://backend/", nil)
	for _, c := range []struct {
		name string
		rt   http.RoundTripper
	}{{"direct", next}, {"retry.Transport", retry.Transport(next, retry.Policy{})}} {
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := c.rt.RoundTrip(req); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkFailurePath measures the calls that fail: retry.Do over
// breaker.Do on an open breaker (the rejection is not worth waiting for,
// so Do gives up after one attempt), and over a function that fails
// without retries. Each returns an *Error, the one allocation.
func BenchmarkFailurePath(b *testing.B) {
	ctx := context.Background()
	br, err := breaker.New(breaker.Settings{Name: "bench", ConsecutiveFailures: 1, OpenTimeout: time.Hour})
	if err != nil {
		b.Fatal(err)
	}
	_, _ = breaker.Do(ctx, br, failWork)
	if br.State() != breaker.Open {
		b.Fatalf("State() = %v, want open", br.State())
	}
	p := retry.Policy{MaxInterval: time.Second}
	b.Run("open breaker", func(b *testing.B) {
		guarded := func(ctx context.Context) (int, error) { return breaker.Do(ctx, br, work) }
		b.ReportAllocs()
		for b.Loop() {
			if _, err := retry.Do(ctx, p, guarded); err == nil {
				b.Fatal("Do() = nil error, want open")
			}
		}
	})
	b.Run("open breaker parallel", func(b *testing.B) {
		guarded := func(ctx context.Context) (int, error) { return breaker.Do(ctx, br, work) }
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if _, err := retry.Do(ctx, p, guarded); err == nil {
					b.Fatal("Do() = nil error, want open")
				}
			}
		})
	})
	b.Run("failing function", func(b *testing.B) {
		one := retry.Policy{MaxAttempts: 1}
		b.ReportAllocs()
		for b.Loop() {
			if _, err := retry.Do(ctx, one, failWork); err == nil {
				b.Fatal("Do() = nil error, want a failure")
			}
		}
	})
	b.Run("failing function through a closed breaker", func(b *testing.B) {
		closed, err := breaker.New(breaker.Settings{Name: "bench", IsFailure: func(error) bool { return false }})
		if err != nil {
			b.Fatal(err)
		}
		guarded := func(ctx context.Context) (int, error) { return breaker.Do(ctx, closed, failWork) }
		one := retry.Policy{MaxAttempts: 1}
		b.ReportAllocs()
		for b.Loop() {
			if _, err := retry.Do(ctx, one, guarded); err == nil {
				b.Fatal("Do() = nil error, want a failure")
			}
		}
	})
}

//go:noinline
func failWork(context.Context) (int, error) { return 0, errBoom }
