package chaos_test

import (
	"context"
	"testing"
	"testing/synctest"
	"time"

	"github.com/ringfence/ringfence/chaos"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// outageDay is a schedule: healthy for 10s, down for 10s, degraded at half
// errors for 20s, then healthy again.
var outageDay = []chaos.Phase{
	{Name: "outage", Start: 10 * time.Second, Duration: 10 * time.Second, Faults: chaos.Faults{ErrorRate: 1}},
	{Name: "degraded", Start: 20 * time.Second, Duration: 20 * time.Second, Faults: chaos.Faults{ErrorRate: 0.5}},
}

func TestScheduleBoundaries(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		in := newInjector(t, chaos.Settings{Seed: 1, Phases: outageDay})
		start := time.Now()
		ctx := context.Background()

		// at moves the fake clock to offset d from the injector's start.
		at := func(d time.Duration) {
			time.Sleep(time.Until(start.Add(d)))
			require.Equal(t, d, time.Since(start), "fake clock offset")
		}
		phase := func() string {
			p, _ := in.Current()
			return p.Name
		}

		tests := []struct {
			at    time.Duration
			phase string
			fails bool
		}{
			{0, "", false},
			{10*time.Second - time.Nanosecond, "", false},
			{10 * time.Second, "outage", true},
			{20*time.Second - time.Nanosecond, "outage", true},
			{40*time.Second - time.Nanosecond, "degraded", true}, // seed 1's first degraded call fails
			{40 * time.Second, "", false},
			{time.Hour, "", false},
		}
		for _, tt := range tests {
			at(tt.at)
			assert.Equal(t, tt.phase, phase(), "Current() at %v", tt.at)
			err := in.Inject(ctx)
			assert.Equal(t, tt.fails, err != nil, "Inject() at %v = %v", tt.at, err)
		}

		// In the degraded phase, about half of the calls fail.
		in2 := newInjector(t, chaos.Settings{Seed: 1, Phases: outageDay})
		base := time.Now()
		time.Sleep(time.Until(base.Add(20 * time.Second)))
		p, ok := in2.Current()
		require.True(t, ok, "Current() reports a phase at 20s")
		assert.Equal(t, "degraded", p.Name, "Current() at 20s")
		got := len(failures(ctx, in2, 1000))
		assert.Equal(t, 503, got, "failed calls of 1000 in the degraded phase with seed 1")
	})
}

func TestOpenEndedPhases(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		// A zero Duration lasts until the next phase, or for ever.
		in := newInjector(t, chaos.Settings{
			Faults: chaos.Faults{ErrorRate: 1}, // between phases: none here
			Phases: []chaos.Phase{
				{Name: "first", Start: 0},
				{Name: "second", Start: time.Minute, Faults: chaos.Faults{ErrorRate: 1}},
			},
		})
		tests := []struct {
			sleep time.Duration
			phase string
			fails bool
		}{
			{0, "first", false},
			{time.Minute - time.Nanosecond, "first", false},
			{time.Nanosecond, "second", true},
			{1000 * time.Hour, "second", true},
		}
		for _, tt := range tests {
			time.Sleep(tt.sleep)
			p, ok := in.Current()
			assert.True(t, ok, "Current() reports a phase after sleeping %v", tt.sleep)
			assert.Equal(t, tt.phase, p.Name, "Current() after sleeping %v", tt.sleep)
			err := in.Inject(context.Background())
			assert.Equal(t, tt.fails, err != nil, "Inject() in %s = %v", tt.phase, err)
		}
	})
}

func TestStartSetsTheTimeline(t *testing.T) {
	down := []chaos.Phase{{Name: "down", Start: 0, Duration: time.Minute, Faults: chaos.Faults{ErrorRate: 1}}}
	t.Run("a Start in the past puts the injector mid-timeline", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			in := newInjector(t, chaos.Settings{Phases: down, Start: time.Now().Add(-59 * time.Second)})
			require.ErrorIs(t, in.Inject(context.Background()), chaos.ErrInjected)
			time.Sleep(time.Second)
			assert.NoError(t, in.Inject(context.Background()), "Inject() after the phase")
		})
	})
	t.Run("a Start in the future applies Settings.Faults until then", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			in := newInjector(t, chaos.Settings{Phases: down, Start: time.Now().Add(time.Second)})
			_, ok := in.Current()
			assert.False(t, ok, "Current() reports a phase before Start")
			assert.NoError(t, in.Inject(context.Background()), "Inject() before Start")
			time.Sleep(time.Second)
			require.ErrorIs(t, in.Inject(context.Background()), chaos.ErrInjected)
		})
	})
}

func TestCurrentWithoutPhaseReturnsTheBaseFaults(t *testing.T) {
	f := chaos.Faults{ErrorRate: 0.25, Latency: time.Second}
	in := newInjector(t, chaos.Settings{Faults: f})
	p, ok := in.Current()
	assert.False(t, ok, "Current() reports a phase")
	assert.Equal(t, chaos.Phase{Faults: f}, p, "Current()")
}

func TestWrapHangsUntilTheContextEnds(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		in := newInjector(t, chaos.Settings{Faults: chaos.Faults{HangRate: 1}})
		called := false
		fn := chaos.Wrap(func(context.Context) (int, error) { called = true; return 1, nil }, in)

		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		start := time.Now()
		v, err := fn(ctx)
		require.ErrorIs(t, err, context.DeadlineExceeded)
		assert.Equal(t, 0, v, "value of a hung call")
		assert.Equal(t, 5*time.Second, time.Since(start), "time a hung call took")
		assert.False(t, called, "a hung call reached fn")
		assert.Equal(t, chaos.Stats{Calls: 1, Hangs: 1}, in.Stats(), "Stats after a hang")
	})
}

func TestWrapHangEndsOnCancel(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		in := newInjector(t, chaos.Settings{Faults: chaos.Faults{HangRate: 1}})
		fn := chaos.Wrap(func(context.Context) (int, error) { return 1, nil }, in)

		ctx, cancel := context.WithCancel(context.Background())
		time.AfterFunc(3*time.Second, cancel)
		start := time.Now()
		_, err := fn(ctx)
		require.ErrorIs(t, err, context.Canceled)
		assert.Equal(t, 3*time.Second, time.Since(start), "time until the cancelled hang returned")
	})
}

func TestWrapLatency(t *testing.T) {
	tests := []struct {
		name     string
		faults   chaos.Faults
		timeout  time.Duration
		wantTime time.Duration
		wantErr  error
		want     chaos.Stats
	}{
		{
			name:     "latency delays a call that then goes ahead",
			faults:   chaos.Faults{Latency: 2 * time.Second},
			timeout:  time.Minute,
			wantTime: 2 * time.Second,
			want:     chaos.Stats{Calls: 1, Passed: 1, Delayed: 1},
		},
		{
			name:     "latency delays a call that then fails",
			faults:   chaos.Faults{Latency: 2 * time.Second, ErrorRate: 1},
			timeout:  time.Minute,
			wantTime: 2 * time.Second,
			wantErr:  chaos.ErrInjected,
			want:     chaos.Stats{Calls: 1, Errors: 1, Delayed: 1},
		},
		{
			name:     "a deadline during the delay ends the call without reaching fn",
			faults:   chaos.Faults{Latency: 2 * time.Second},
			timeout:  time.Second,
			wantTime: time.Second,
			wantErr:  context.DeadlineExceeded,
			want:     chaos.Stats{Calls: 1, Delayed: 1, Canceled: 1},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				in := newInjector(t, chaos.Settings{Faults: tt.faults})
				calls := 0
				fn := chaos.Wrap(func(context.Context) (int, error) { calls++; return 1, nil }, in)
				ctx, cancel := context.WithTimeout(context.Background(), tt.timeout)
				defer cancel()

				start := time.Now()
				_, err := fn(ctx)
				assert.Equal(t, tt.wantTime, time.Since(start), "time the call took")
				if tt.wantErr != nil {
					require.ErrorIs(t, err, tt.wantErr)
				} else {
					require.NoError(t, err)
				}
				assert.Equal(t, int(tt.want.Passed), calls, "calls of fn")
				assert.Equal(t, tt.want, in.Stats(), "Stats")
			})
		})
	}
}

func TestJitterIsBoundedAndSeeded(t *testing.T) {
	const latency, jitter = time.Second, 500 * time.Millisecond
	delays := func(seed uint64) []time.Duration {
		var ds []time.Duration
		synctest.Test(t, func(t *testing.T) {
			in := newInjector(t, chaos.Settings{Seed: seed, Faults: chaos.Faults{Latency: latency, Jitter: jitter}})
			for range 100 {
				start := time.Now()
				require.NoError(t, in.Inject(context.Background()))
				ds = append(ds, time.Since(start))
			}
		})
		return ds
	}
	a := delays(7)
	for i, d := range a {
		assert.True(t, d >= latency && d < latency+jitter, "delay of call %d = %v, want in [%v, %v)", i, d, latency, latency+jitter)
	}
	assert.Equal(t, a, delays(7), "delays of two injectors with seed 7")
	assert.NotEqual(t, a, delays(8), "delays with seeds 7 and 8")
}
