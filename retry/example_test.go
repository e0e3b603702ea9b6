package retry_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/http/httptest"
	"time"

	"github.com/ringfence/ringfence/retry"
)

// The examples wait a millisecond or so between attempts: real time, but
// short enough not to matter, and their output does not depend on it.

func ExampleDo() {
	attempts := 0
	fetch := func(ctx context.Context) (string, error) {
		attempts++
		if attempts < 3 {
			return "", errors.New("connection reset")
		}
		return "inventory: 12 units", nil
	}

	p := retry.Policy{InitialInterval: time.Millisecond}
	v, err := retry.Do(context.Background(), p, fetch)
	fmt.Println(v, err, "after", attempts, "attempts")
	// Output: inventory: 12 units <nil> after 3 attempts
}

func ExampleError() {
	errUnavailable := errors.New("inventory unavailable")
	p := retry.Policy{InitialInterval: time.Millisecond}
	_, err := retry.Do(context.Background(), p, func(context.Context) (int, error) {
		return 0, errUnavailable
	})

	var re *retry.Error
	if errors.As(err, &re) {
		fmt.Println("attempts:", re.Attempts)
	}
	fmt.Println("unavailable:", errors.Is(err, errUnavailable))
	// Output:
	// attempts: 3
	// unavailable: true
}

func ExamplePermanent() {
	errNotFound := errors.New("no such item")
	attempts := 0
	_, err := retry.Do(context.Background(), retry.Policy{}, func(context.Context) (int, error) {
		attempts++
		return 0, retry.Permanent(errNotFound) // retrying will not help
	})
	fmt.Println(attempts, errors.Is(err, errNotFound))
	// Output: 1 true
}

// In a total outage a budget stops retries once half its tokens are spent,
// where a plain three-attempt policy would triple the load.
func ExampleBudget() {
	budget, err := retry.NewBudget(0.1, 10)
	if err != nil {
		fmt.Println(err)
		return
	}
	p := retry.Policy{Budget: budget, InitialInterval: time.Microsecond}

	calls := 0
	for range 1000 {
		retry.Do(context.Background(), p, func(context.Context) (int, error) {
			calls++
			return 0, errors.New("service down")
		})
	}
	fmt.Println("requests:", calls, "retries:", calls-1000, "tokens left:", budget.Tokens())
	// Output: requests: 1005 retries: 5 tokens left: 5
}

// A Throttle used on its own: ask before each request, report the outcome.
// Here the client wants 10 requests per second from a backend that can take
// 4; with the default K of 2 the client settles at sending about twice what
// the backend accepts and rejects the rest itself, without a round trip.
func ExampleThrottle() {
	draw := 0.0
	th, err := retry.NewThrottle(retry.ThrottleSettings{
		// An evenly spread, repeatable sequence instead of random draws.
		Rand: func() float64 { draw = math.Mod(draw+0.618, 1); return draw },
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	sent, accepted, rejected := 0, 0, 0
	for range 100 { // seconds; all inside the two-minute window
		capacity := 4
		for range 10 {
			if err := th.Allow(); errors.Is(err, retry.ErrThrottled) {
				rejected++ // fail fast or serve a fallback
				continue
			}
			sent++
			ok := capacity > 0
			if ok {
				capacity--
				accepted++
			}
			th.Record(ok)
		}
	}
	fmt.Printf("sent %d, accepted %d, rejected locally %d, reject probability %.2f\n",
		sent, accepted, rejected, th.RejectProbability())
	// Output: sent 814, accepted 400, rejected locally 186, reject probability 0.20
}

func ExampleTransport() {
	hits := 0
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits++
		if hits == 1 {
			w.Header().Set("Retry-After", "0")
			http.Error(w, "warming up", http.StatusServiceUnavailable)
			return
		}
		fmt.Fprint(w, "hello")
	}))
	defer srv.Close()

	client := &http.Client{Transport: retry.Transport(http.DefaultTransport,
		retry.Policy{InitialInterval: time.Millisecond})}
	resp, err := client.Get(srv.URL)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	fmt.Println(resp.StatusCode, string(body), "after", hits, "requests")
	// Output: 200 hello after 2 requests
}

func ExampleCheckResponse() {
	resp := &http.Response{
		StatusCode: http.StatusTooManyRequests,
		Header:     http.Header{"Retry-After": {"30"}},
	}
	err := retry.CheckResponse(resp)
	var se *retry.StatusError
	if errors.As(err, &se) {
		fmt.Println(se.StatusCode, se.RetryAfter())
	}
	// Output: 429 30s
}

// maintenance is a rejection an operator ordered, like a circuit breaker
// forced open: its Forced method tells Do that waiting cannot help.
type maintenance struct{}

func (maintenance) Error() string { return "payments: down for maintenance" }
func (maintenance) Forced() bool  { return true }

// An error with a Forced method that reports true ends retrying at once.
func ExampleDo_forced() {
	attempts := 0
	_, err := retry.Do(context.Background(), retry.Policy{}, func(context.Context) (int, error) {
		attempts++
		return 0, maintenance{}
	})
	fmt.Println(err)
	fmt.Println("attempts:", attempts)
	// Output:
	// retry: gave up after 1 attempts: payments: down for maintenance
	// attempts: 1
}
