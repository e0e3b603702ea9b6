package breaker_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"time"

	"github.com/ringfence/ringfence/breaker"
)

// inventory stands in for a remote service that is down.
type inventory struct{ down bool }

var errUnavailable = errors.New("inventory: unavailable")

func (s *inventory) Stock(_ context.Context, sku string) (int, error) {
	if s.down {
		return 0, errUnavailable
	}
	return 7, nil
}

func Example() {
	svc := &inventory{}
	b, err := breaker.New(breaker.Settings{
		Name:                "inventory",
		ConsecutiveFailures: 3,
		OnChange: func(c breaker.Change) {
			name, from, to := c.Name, c.From, c.To
			fmt.Printf("%s: %v -> %v\n", name, from, to)
		},
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	stock := func(ctx context.Context) (int, error) { return svc.Stock(ctx, "sku-1") }
	ctx := context.Background()

	n, err := breaker.Do(ctx, b, stock)
	fmt.Println(n, err)

	svc.down = true
	for range 3 {
		_, err = breaker.Do(ctx, b, stock)
		fmt.Println(err)
	}
	// The third failure tripped the breaker (its callback ran before Do
	// returned). Now the service is not called.
	_, err = breaker.Do(ctx, b, stock)
	fmt.Println(err, errors.Is(err, breaker.ErrOpen))

	// Output:
	// 7 <nil>
	// inventory: unavailable
	// inventory: unavailable
	// inventory: closed -> open
	// inventory: unavailable
	// breaker: open (inventory is open) true
}

func ExampleOpenError() {
	b, _ := breaker.New(breaker.Settings{Name: "search", OpenTimeout: time.Minute})
	b.ForceOpen("reindexing")
	_, err := breaker.Do(context.Background(), b, func(context.Context) (string, error) {
		return "results", nil
	})
	var oe *breaker.OpenError
	if errors.As(err, &oe) {
		if oe.Forced() {
			fmt.Println(oe.Name, oe.State, "until an operator releases it")
		} else {
			fmt.Println(oe.Name, oe.State, "retry after", oe.RetryAfter())
		}
	}
	// Output:
	// search forced-open until an operator releases it
}

func ExampleBreaker_ForceOpen() {
	b, _ := breaker.New(breaker.Settings{Name: "billing"})
	get := func(context.Context) (string, error) { return "invoice", nil }
	ctx := context.Background()

	b.ForceOpen("vendor incident")
	_, err := breaker.Do(ctx, b, get)
	fmt.Println(err)
	fmt.Println(b.Snapshot().Reason)

	b.Release()
	v, err := breaker.Do(ctx, b, get)
	fmt.Println(v, err, b.State())
	// Output:
	// breaker: open (billing is forced-open)
	// forced open: vendor incident
	// invoice <nil> closed
}

func ExampleBreaker_Snapshot() {
	b, _ := breaker.New(breaker.Settings{Name: "db"})
	ctx := context.Background()
	for i := range 4 {
		_, _ = breaker.Do(ctx, b, func(context.Context) (int, error) {
			if i%2 == 0 {
				return 0, errors.New("timeout")
			}
			return i, nil
		})
	}
	sn := b.Snapshot()
	fmt.Println(sn.State, sn.Requests, sn.Failures, sn.FailureRatio, sn.ConsecutiveFailures)
	// Output:
	// closed 4 2 0.5 0
}

func ExampleGroup() {
	g, _ := breaker.NewGroup(breaker.Settings{Name: "regions", ConsecutiveFailures: 2}, breaker.GroupOptions{})
	ctx := context.Background()
	call := func(region string, fail bool) {
		_, _ = breaker.Do(ctx, g.Get(region), func(context.Context) (bool, error) {
			if fail {
				return false, errors.New("region unavailable")
			}
			return true, nil
		})
	}
	call("eu-west", true)
	call("eu-west", true)
	call("us-east", false)

	for _, sn := range g.Snapshots() {
		fmt.Println(sn.Name, sn.State, sn.Reason)
	}
	// Output:
	// regions/eu-west open 2 consecutive failures
	// regions/us-east closed created
}

func ExampleTransport() {
	// A service that answers 503 on every request.
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.WriteHeader(http.StatusServiceUnavailable)
		_, _ = io.WriteString(w, "maintenance")
	}))
	defer srv.Close()

	g, _ := breaker.NewGroup(breaker.Settings{ConsecutiveFailures: 2}, breaker.GroupOptions{})
	client := &http.Client{Transport: breaker.Transport(http.DefaultTransport, g, breaker.TransportOptions{})}

	for range 3 {
		resp, err := client.Get(srv.URL)
		if err != nil {
			fmt.Println("rejected:", errors.Is(err, breaker.ErrOpen))
			continue
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		fmt.Println(resp.StatusCode, string(body))
	}
	// Output:
	// 503 maintenance
	// 503 maintenance
	// rejected: true
}

func ExampleChange() {
	b, _ := breaker.New(breaker.Settings{
		Name: "ledger",
		OnChange: func(c breaker.Change) {
			fmt.Printf("%s: %v -> %v (%s)\n", c.Name, c.From, c.To, c.Reason)
		},
	})
	b.ForceOpen("database failover")
	b.Release()
	// Output:
	// ledger: closed -> forced-open (forced open: database failover)
	// ledger: forced-open -> closed (released)
}

// A stream cannot be wrapped in one function call: Allow admits it, and
// Done reports how it ended.
func ExampleBreaker_Allow() {
	b, err := breaker.New(breaker.Settings{Name: "feed", ConsecutiveFailures: 2})
	if err != nil {
		fmt.Println(err)
		return
	}
	ctx := context.Background()
	errReset := errors.New("stream reset")
	for i := range 3 {
		p, err := b.Allow(ctx)
		if err != nil {
			fmt.Println("stream", i, "not opened:", err)
			continue
		}
		// ... open the stream, read from it until it ends ...
		p.Done(ctx, errReset)
		fmt.Println("stream", i, "ended:", errReset)
	}
	// Output:
	// stream 0 ended: stream reset
	// stream 1 ended: stream reset
	// stream 2 not opened: breaker: open (feed is open)
}
