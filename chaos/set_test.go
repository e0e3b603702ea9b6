package chaos_test

import (
	"context"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/ringfence/ringfence/chaos"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestSetWinsOverTheTimeline(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		// outageDay: healthy until 10s, down from 10s to 20s, degraded until
		// 40s, healthy after.
		in := newInjector(t, chaos.Settings{Seed: 1, Phases: outageDay})
		start := time.Now()
		ctx := context.Background()
		at := func(d time.Duration) { time.Sleep(time.Until(start.Add(d))) }
		down := chaos.Faults{ErrorRate: 1}

		tests := []struct {
			at    time.Duration
			do    func()
			phase string // Current().Name; "" also for faults set with Set
			set   bool   // Current() reports a phase or faults set with Set
			fails bool
		}{
			{0, func() {}, "", false, false},
			{time.Second, func() { require.NoError(t, in.Set(down), "Set(down)") }, "", true, true},
			{5 * time.Second, in.Clear, "", false, false},
			{10 * time.Second, func() {}, "outage", true, true},
			{12 * time.Second, func() { require.NoError(t, in.Set(chaos.Faults{}), "Set(Faults{})") }, "", true, false},
			{15 * time.Second, in.Clear, "outage", true, true},
			{18 * time.Second, func() { require.NoError(t, in.Set(down), "Set(down)") }, "", true, true},
			{25 * time.Second, func() {}, "", true, true}, // Set holds through the next phase
			{45 * time.Second, func() {}, "", true, true}, // and past the schedule
			{50 * time.Second, in.Clear, "", false, false},
		}
		for _, tt := range tests {
			at(tt.at)
			tt.do()
			p, ok := in.Current()
			assert.Equal(t, tt.phase, p.Name, "Current().Name at %v", tt.at)
			assert.Equal(t, tt.set, ok, "Current() reports a phase at %v", tt.at)
			err := in.Inject(ctx)
			assert.Equal(t, tt.fails, err != nil, "Inject() at %v = %v", tt.at, err)
		}
		assert.Equal(t, chaos.Stats{Calls: 10, Passed: 4, Errors: 6}, in.Stats(), "Stats")
	})
}

func TestSetStartsTheSeedsPattern(t *testing.T) {
	ctx := context.Background()
	f := chaos.Faults{ErrorRate: 0.5}
	want := failures(ctx, newInjector(t, chaos.Settings{Seed: 9, Faults: f}), 200)

	in := newInjector(t, chaos.Settings{Seed: 9, Faults: chaos.Faults{ErrorRate: 0.1}})
	failures(ctx, in, 37) // calls before Set do not shift the pattern
	require.NoError(t, in.Set(f), "Set(%+v)", f)
	assert.Equal(t, want, failures(ctx, in, 200), "failed calls after Set, like a new injector with the same seed")

	require.NoError(t, in.Set(f), "Set(%+v) again", f)
	assert.Equal(t, want, failures(ctx, in, 200), "failed calls after a second Set")
}

func TestClearResumesTheTimelinesPattern(t *testing.T) {
	ctx := context.Background()
	s := chaos.Settings{Seed: 4, Faults: chaos.Faults{ErrorRate: 0.5}}
	want := failures(ctx, newInjector(t, s), 100)

	in := newInjector(t, s)
	got := failures(ctx, in, 40)
	require.NoError(t, in.Set(chaos.Faults{ErrorRate: 1}), "Set")
	failures(ctx, in, 10)
	in.Clear()
	for _, i := range failures(ctx, in, 60) {
		got = append(got, 40+i)
	}
	assert.Equal(t, want, got, "failed calls of the timeline around a Set and Clear")
}

func TestSetRejectsInvalidFaults(t *testing.T) {
	tests := []struct {
		name string
		f    chaos.Faults
		want string
	}{
		{"a rate above one", chaos.Faults{ErrorRate: 1.5}, "Faults.ErrorRate"},
		{"rates summing above one", chaos.Faults{ErrorRate: 0.6, HangRate: 0.6}, "Faults.ErrorRate + Faults.HangRate"},
		{"a status outside 400 to 599", chaos.Faults{ErrorRate: 1, Status: 200}, "Faults.Status"},
		{"a negative latency", chaos.Faults{Latency: -time.Second}, "Faults.Latency"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := newInjector(t, chaos.Settings{})
			require.NoError(t, in.Set(chaos.Faults{ErrorRate: 1}), "Set(valid)")
			err := in.Set(tt.f)
			require.ErrorIs(t, err, chaos.ErrInvalidSettings, "Set(%+v)", tt.f)
			assert.Contains(t, err.Error(), tt.want, "Set(%+v) names the field", tt.f)
			assert.ErrorIs(t, in.Inject(context.Background()), chaos.ErrInjected,
				"Inject() after a rejected Set keeps the faults set before")
		})
	}
}

func TestSetAndClearOnANilInjector(t *testing.T) {
	var in *chaos.Injector
	assert.NoError(t, in.Set(chaos.Faults{ErrorRate: 1}), "Set on a nil Injector")
	in.Clear()
	assert.NoError(t, in.Inject(context.Background()), "Inject on a nil Injector")
}

func TestAHangOutlivesClear(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		in := newInjector(t, chaos.Settings{})
		require.NoError(t, in.Set(chaos.Faults{HangRate: 1}), "Set(hang)")
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		done := make(chan error, 1)
		go func() { done <- in.Inject(ctx) }()
		synctest.Wait() // the call is hanging

		in.Clear()
		assert.NoError(t, in.Inject(context.Background()), "Inject() after Clear")
		select {
		case err := <-done:
			t.Fatalf("hung call returned %v after Clear, want it to hang until its context ends", err)
		default:
		}
		start := time.Now()
		require.ErrorIs(t, <-done, context.DeadlineExceeded, "hung call")
		assert.Equal(t, time.Minute, time.Since(start), "time until the hung call returned")
		assert.Equal(t, chaos.Stats{Calls: 2, Passed: 1, Hangs: 1}, in.Stats(), "Stats")
	})
}

func TestTransportFollowsSet(t *testing.T) {
	next := &fakeNext{}
	in := newInjector(t, chaos.Settings{})
	rt := chaos.Transport(next, in)
	status := func() int {
		req, _ := newRequest(t, context.Background(), http.MethodGet)
		resp, err := rt.RoundTrip(req)
		require.NoError(t, err, "RoundTrip")
		resp.Body.Close()
		return resp.StatusCode
	}

	assert.Equal(t, http.StatusOK, status(), "status before Set")
	require.NoError(t, in.Set(chaos.Faults{ErrorRate: 1, Status: 503, RetryAfter: time.Second}), "Set(503)")
	req, _ := newRequest(t, context.Background(), http.MethodGet)
	resp, err := rt.RoundTrip(req)
	require.NoError(t, err, "RoundTrip after Set")
	resp.Body.Close()
	assert.Equal(t, 503, resp.StatusCode, "status after Set")
	assert.Equal(t, "1", resp.Header.Get("Retry-After"), "Retry-After after Set")
	in.Clear()
	assert.Equal(t, http.StatusOK, status(), "status after Clear")
	assert.Equal(t, int64(2), next.calls.Load(), "requests that reached next")
	assert.Equal(t, chaos.Stats{Calls: 3, Passed: 2, Statuses: 1}, in.Stats(), "Stats")
}

// TestConcurrentSetAndCalls switches faults while calls run on other
// goroutines; run with -race. Every call must be counted once, by one
// outcome, whatever it met.
func TestConcurrentSetAndCalls(t *testing.T) {
	const goroutines, each, switches = 4, 2000, 500
	in := newInjector(t, chaos.Settings{Seed: 3, Phases: []chaos.Phase{
		{Name: "degraded", Start: 0, Faults: chaos.Faults{ErrorRate: 0.5}},
	}})
	rt := chaos.Transport(&fakeNext{}, in)
	var failed atomic.Uint64
	var wg sync.WaitGroup
	for g := range goroutines {
		wg.Go(func() {
			for range each {
				if g%2 == 0 {
					if in.Inject(context.Background()) != nil {
						failed.Add(1)
					}
					continue
				}
				req, err := http.NewRequest(http.MethodGet, "http://booking.example/seats", nil)
				if !assert.NoError(t, err, "NewRequest") {
					return
				}
				resp, err := rt.RoundTrip(req)
				if err != nil || resp.StatusCode != http.StatusOK {
					failed.Add(1)
				}
				if err == nil {
					resp.Body.Close()
				}
				_, _ = in.Current()
			}
		})
	}
	wg.Go(func() {
		faults := []chaos.Faults{{ErrorRate: 1}, {}, {ErrorRate: 1, Status: 503}, {ErrorRate: 0.2}}
		for i := range switches {
			if i%5 == 4 {
				in.Clear()
				continue
			}
			assert.NoError(t, in.Set(faults[i%len(faults)]), "Set")
		}
	})
	wg.Wait()

	st := in.Stats()
	assert.Equal(t, uint64(goroutines*each), st.Calls, "Stats().Calls")
	assert.Equal(t, st.Calls, st.Passed+st.Errors+st.Statuses+st.Hangs+st.Canceled, "Stats() outcomes add up to Calls")
	assert.Equal(t, failed.Load(), st.Errors+st.Statuses, "failures seen by callers")
}
