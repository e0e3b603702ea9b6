package chaos_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"syscall"
	"time"

	"github.com/ringfence/ringfence/chaos"
)

func ExampleWrap() {
	errUnavailable := errors.New("booking service unavailable")
	in, err := chaos.New(chaos.Settings{
		Seed:   2,
		Faults: chaos.Faults{ErrorRate: 0.3, Err: errUnavailable},
	})
	if err != nil {
		panic(err)
	}
	seatMap := func(ctx context.Context) (string, error) { return "seat map", nil }
	get := chaos.Wrap(seatMap, in)

	var outcomes []string
	for range 10 {
		_, err := get(context.Background())
		switch {
		case errors.Is(err, errUnavailable):
			outcomes = append(outcomes, "fail")
		case err == nil:
			outcomes = append(outcomes, "ok")
		}
	}
	fmt.Println(strings.Join(outcomes, " "))
	fmt.Printf("%+v\n", in.Stats())
	// Output:
	// ok ok fail ok ok ok ok fail fail ok
	// {Calls:10 Passed:7 Errors:3 Statuses:0 Hangs:0 Delayed:0 Canceled:0}
}

func ExampleTransport() {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "checked in")
	}))
	defer srv.Close()

	// Every request gets 503 Service Unavailable with Retry-After: 2.
	in, err := chaos.New(chaos.Settings{Faults: chaos.Faults{
		ErrorRate:  1,
		Status:     http.StatusServiceUnavailable,
		RetryAfter: 2 * time.Second,
	}})
	if err != nil {
		panic(err)
	}
	client := &http.Client{Transport: chaos.Transport(srv.Client().Transport, in)}

	resp, err := client.Get(srv.URL)
	if err != nil {
		panic(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	fmt.Println(resp.Status, "Retry-After:", resp.Header.Get("Retry-After"))
	fmt.Println("statuses injected:", in.Stats().Statuses)
	// Output:
	// 503 Service Unavailable Retry-After: 2
	// statuses injected: 1
}

func ExampleTransport_connectionError() {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "checked in")
	}))
	defer srv.Close()

	in, err := chaos.New(chaos.Settings{Faults: chaos.Faults{ErrorRate: 1}})
	if err != nil {
		panic(err)
	}
	client := &http.Client{Transport: chaos.Transport(srv.Client().Transport, in)}

	_, err = client.Get(srv.URL)
	fmt.Println("injected:", errors.Is(err, chaos.ErrInjected))
	fmt.Println("connection refused:", errors.Is(err, syscall.ECONNREFUSED))
	// Output:
	// injected: true
	// connection refused: true
}

func ExampleSettings_phases() {
	// A timeline: healthy for a minute, down for a minute, then degraded
	// with half of the calls failing. Start puts "now" 90 seconds in, in
	// the middle of the outage; tests would rather run the timeline from
	// the start inside a testing/synctest bubble.
	in, err := chaos.New(chaos.Settings{
		Start: time.Now().Add(-90 * time.Second),
		Phases: []chaos.Phase{
			{Name: "outage", Start: time.Minute, Duration: time.Minute, Faults: chaos.Faults{ErrorRate: 1}},
			{Name: "degraded", Start: 2 * time.Minute, Faults: chaos.Faults{ErrorRate: 0.5}},
		},
	})
	if err != nil {
		panic(err)
	}
	p, ok := in.Current()
	fmt.Println(p.Name, ok)
	fmt.Println(in.Inject(context.Background()))
	// Output:
	// outage true
	// chaos: injected fault
}

func ExampleSettings_Validate() {
	s := chaos.Settings{Phases: []chaos.Phase{
		{Name: "outage", Start: 10 * time.Second, Duration: 20 * time.Second},
		{Name: "degraded", Start: 20 * time.Second},
	}}
	err := s.Validate()
	fmt.Println(errors.Is(err, chaos.ErrInvalidSettings))
	fmt.Println(err)
	// Output:
	// true
	// chaos: invalid settings: Phases[1].Start (20s) overlaps Phases[0] (10s to 30s)
}

func ExampleInjector_Inject() {
	// A fake backend that fails like the real one would, seeded.
	in, err := chaos.New(chaos.Settings{Seed: 1, Faults: chaos.Faults{ErrorRate: 0.5}})
	if err != nil {
		panic(err)
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if err := in.Inject(r.Context()); err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		io.WriteString(w, "ok")
	}))
	defer srv.Close()

	for range 6 {
		resp, err := srv.Client().Get(srv.URL)
		if err != nil {
			panic(err)
		}
		resp.Body.Close()
		fmt.Print(resp.StatusCode, " ")
	}
	fmt.Println()
	// Output:
	// 200 502 200 502 200 502
}

func ExampleInjector_Set() {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "checked in")
	}))
	defer srv.Close()

	// No faults in the settings: the test switches them by hand.
	in, err := chaos.New(chaos.Settings{})
	if err != nil {
		panic(err)
	}
	client := &http.Client{Transport: chaos.Transport(srv.Client().Transport, in)}
	get := func(step string) {
		resp, err := client.Get(srv.URL)
		if errors.Is(err, syscall.ECONNREFUSED) {
			fmt.Println(step + ": connection refused")
			return
		}
		if err != nil {
			panic(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		line := step + ": " + resp.Status
		if ra := resp.Header.Get("Retry-After"); ra != "" {
			line += ", retry after " + ra + "s"
		}
		fmt.Println(line)
	}

	get("healthy")
	if err := in.Set(chaos.Faults{ErrorRate: 1}); err != nil { // the host is gone
		panic(err)
	}
	get("outage")
	if err := in.Set(chaos.Faults{ErrorRate: 1, Status: http.StatusServiceUnavailable, RetryAfter: time.Second}); err != nil {
		panic(err)
	}
	get("overloaded")
	in.Clear() // back to the timeline, which has no faults
	get("recovered")
	fmt.Printf("%+v\n", in.Stats())
	// Output:
	// healthy: 200 OK
	// outage: connection refused
	// overloaded: 503 Service Unavailable, retry after 1s
	// recovered: 200 OK
	// {Calls:4 Passed:2 Errors:1 Statuses:1 Hangs:0 Delayed:0 Canceled:0}
}
