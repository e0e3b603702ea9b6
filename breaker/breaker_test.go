package breaker

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

var errDown = errors.New("dependency down")

// noJitter pins the open-wait jitter to none.
func noJitter() float64 { return 0 }

func mustNew(t *testing.T, s Settings) *Breaker {
	t.Helper()
	if s.rand == nil {
		s.rand = noJitter
	}
	b, err := New(s)
	require.NoError(t, err, "New(%+v)", s)
	return b
}

func ok(context.Context) (int, error)   { return 1, nil }
func fail(context.Context) (int, error) { return 0, errDown }

// run makes one call that succeeds or fails and returns Do's error.
func run(b *Breaker, succeed bool) error {
	fn := fail
	if succeed {
		fn = ok
	}
	_, err := Do(context.Background(), b, fn)
	return err
}

func TestNewValidatesSettings(t *testing.T) {
	tests := []struct {
		field string
		s     Settings
	}{
		{"Window", Settings{Window: -time.Second}},
		{"Window", Settings{Window: time.Millisecond}},
		{"MinRequests", Settings{MinRequests: -1}},
		{"FailureRatio", Settings{FailureRatio: 1.5}},
		{"FailureRatio", Settings{FailureRatio: -0.1}},
		{"ConsecutiveFailures", Settings{ConsecutiveFailures: -1}},
		{"SlowCall", Settings{SlowCall: -1}},
		{"OpenTimeout", Settings{OpenTimeout: -time.Second}},
		{"MaxOpenTimeout", Settings{MaxOpenTimeout: -time.Second}},
		{"MaxOpenTimeout", Settings{OpenTimeout: time.Minute, MaxOpenTimeout: time.Second}},
		{"HalfOpenRequests", Settings{HalfOpenRequests: -2}},
		{"Ramp", Settings{Ramp: -time.Second}},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("a bad %s is rejected", tt.field), func(t *testing.T) {
			b, err := New(tt.s)
			require.ErrorIs(t, err, ErrInvalidSettings, "New(%+v)", tt.s)
			assert.Nil(t, b, "New(%+v) breaker", tt.s)
			// The message must name the field, so the operator can fix it.
			assert.Contains(t, err.Error(), "Settings."+tt.field, "New(%+v) error", tt.s)
		})
	}
}

func TestZeroSettingsAreDefaults(t *testing.T) {
	s, err := Settings{}.normalize()
	require.NoError(t, err, "Settings{}.normalize()")
	assert.Equal(t, 60*time.Second, s.Window, "Window")
	assert.Equal(t, 20, s.MinRequests, "MinRequests")
	assert.Equal(t, 0.5, s.FailureRatio, "FailureRatio")
	assert.Equal(t, 5, s.ConsecutiveFailures, "ConsecutiveFailures")
	assert.Equal(t, 30*time.Second, s.OpenTimeout, "OpenTimeout")
	assert.Equal(t, 300*time.Second, s.MaxOpenTimeout, "MaxOpenTimeout")
	assert.Equal(t, 1, s.HalfOpenRequests, "HalfOpenRequests")
}

func TestTripConditions(t *testing.T) {
	// Each test makes the calls in outcomes ('S' succeeds, 'F' fails), gap
	// apart, and checks which call (1-based) trips the breaker, 0 if none.
	tests := []struct {
		name     string
		s        Settings
		outcomes string
		gap      time.Duration
		wantTrip int
	}{
		{
			name:     "the ratio trips once MinRequests calls are in",
			s:        Settings{MinRequests: 10, FailureRatio: 0.5, ConsecutiveFailures: 100},
			outcomes: "SFSFSFSFSFSF",
			wantTrip: 10,
		},
		{
			name:     "the ratio is not judged below MinRequests",
			s:        Settings{MinRequests: 10, FailureRatio: 0.5, ConsecutiveFailures: 100},
			outcomes: "FFFFFFFFS",
			wantTrip: 0,
		},
		{
			name:     "a ratio below the threshold does not trip",
			s:        Settings{MinRequests: 4, FailureRatio: 0.5, ConsecutiveFailures: 100},
			outcomes: "SSSFSSSFSSSFSSSF",
			wantTrip: 0,
		},
		{
			name:     "a ratio of 1 needs every call to fail",
			s:        Settings{MinRequests: 3, FailureRatio: 1, ConsecutiveFailures: 100},
			outcomes: "FFSFFF",
			wantTrip: 0,
		},
		{
			name:     "consecutive failures trip",
			s:        Settings{ConsecutiveFailures: 3},
			outcomes: "SSFFF",
			wantTrip: 5,
		},
		{
			name:     "a success resets the consecutive failures",
			s:        Settings{ConsecutiveFailures: 3},
			outcomes: "FFSFFSFF",
			wantTrip: 0,
		},
		{
			name:     "consecutive failures straddling bucket boundaries trip",
			s:        Settings{Window: time.Second, ConsecutiveFailures: 5},
			outcomes: "SFFFFF",
			gap:      150 * time.Millisecond, // buckets are 100ms
			wantTrip: 6,
		},
		{
			name:     "consecutive failures that left the window do not trip",
			s:        Settings{Window: time.Second, ConsecutiveFailures: 3},
			outcomes: "FFF",
			gap:      2 * time.Second,
			wantTrip: 0,
		},
		{
			name:     "consecutive failures across buckets of the window trip",
			s:        Settings{Window: time.Second, ConsecutiveFailures: 3},
			outcomes: "FFF",
			gap:      300 * time.Millisecond,
			wantTrip: 3,
		},
		{
			// The 1s window holds only the last three calls, one failure.
			name:     "failures that left the window do not count toward the ratio",
			s:        Settings{Window: time.Second, MinRequests: 3, FailureRatio: 0.5, ConsecutiveFailures: 100},
			outcomes: "FFSSSF",
			gap:      400 * time.Millisecond,
			wantTrip: 0,
		},
		{
			name:     "failures inside the window count toward the ratio",
			s:        Settings{Window: time.Minute, MinRequests: 3, FailureRatio: 0.5, ConsecutiveFailures: 100},
			outcomes: "FFSSSF",
			gap:      400 * time.Millisecond,
			wantTrip: 6,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				b := mustNew(t, tt.s)
				trippedAt := 0
				for i, o := range tt.outcomes {
					if i > 0 {
						time.Sleep(tt.gap)
					}
					err := run(b, o == 'S')
					require.NotErrorIs(t, err, ErrOpen, "Do() call %d was rejected", i+1)
					if b.State() == Open {
						trippedAt = i + 1
						break
					}
				}
				assert.Equal(t, tt.wantTrip, trippedAt, "tripping call of %q", tt.outcomes)
			})
		})
	}
}

func TestOpenRejectsWithOpenError(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := mustNew(t, Settings{Name: "api", ConsecutiveFailures: 1, OpenTimeout: 10 * time.Second})
		require.ErrorIs(t, run(b, false), errDown, "Do(failing)")
		require.Equal(t, Open, b.State(), "State() after the trip")

		called := false
		_, err := Do(context.Background(), b, func(context.Context) (int, error) {
			called = true
			return 1, nil
		})
		require.ErrorIs(t, err, ErrOpen, "Do() while open")
		assert.False(t, called, "Do() called fn while open")
		var oe *OpenError
		require.ErrorAs(t, err, &oe, "Do() while open")
		assert.Equal(t, "api", oe.Name, "OpenError.Name")
		assert.Equal(t, Open, oe.State, "OpenError.State")
		assert.Equal(t, 10*time.Second, oe.RetryAfter(), "RetryAfter() at once")
		time.Sleep(4 * time.Second)
		assert.Equal(t, 6*time.Second, oe.RetryAfter(), "RetryAfter() 4s later")

		// One OpenError serves every rejection of the open period.
		_, err2 := Do(context.Background(), b, ok)
		assert.Same(t, oe, err2, "the second rejection's error")
	})
}

func TestSlowCalls(t *testing.T) {
	tests := []struct {
		name       string
		took       time.Duration
		err        error
		wantFailed uint64
		wantSlow   uint64
	}{
		{"a fast success is a success", 50 * time.Millisecond, nil, 0, 0},
		{"a slow success is a failure", 100 * time.Millisecond, nil, 1, 1},
		{"a slow failure is a slow failure", 150 * time.Millisecond, errDown, 1, 1},
		{"a fast failure is not slow", 10 * time.Millisecond, errDown, 1, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				b := mustNew(t, Settings{SlowCall: 100 * time.Millisecond})
				_, err := Do(context.Background(), b, func(context.Context) (int, error) {
					time.Sleep(tt.took)
					return 1, tt.err
				})
				assert.ErrorIs(t, err, tt.err, "Do() returns fn's error")
				sn := b.Snapshot()
				assert.Equal(t, uint64(1), sn.Requests, "Snapshot().Requests")
				assert.Equal(t, tt.wantFailed, sn.Failures, "Snapshot().Failures")
				assert.Equal(t, tt.wantSlow, sn.SlowCalls, "Snapshot().SlowCalls")
			})
		})
	}
}

func TestSlowCallsTrip(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := mustNew(t, Settings{SlowCall: time.Second, ConsecutiveFailures: 3})
		slow := func(context.Context) (int, error) { time.Sleep(2 * time.Second); return 1, nil }
		for i := range 3 {
			_, err := Do(context.Background(), b, slow)
			require.NoError(t, err, "Do(slow) call %d", i+1)
		}
		assert.Equal(t, Open, b.State(), "State() after 3 slow calls")
	})
}

func TestCancellations(t *testing.T) {
	canceled := func() context.Context {
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		return ctx
	}
	tests := []struct {
		name      string
		s         Settings
		cancelMid bool // cancel the caller's context during the call
		err       error
		wantReqs  uint64
		wantFails uint64
	}{
		{"context.Canceled is not counted", Settings{}, false, context.Canceled, 0, 0},
		{"a wrapped context.Canceled is not counted", Settings{}, false, fmt.Errorf("get: %w", context.Canceled), 0, 0},
		{"any error after the caller canceled is not counted", Settings{}, true, errDown, 0, 0},
		{"context.DeadlineExceeded is a failure", Settings{}, false, context.DeadlineExceeded, 1, 1},
		{"CountCanceled counts context.Canceled", Settings{CountCanceled: true}, false, context.Canceled, 1, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := mustNew(t, tt.s)
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			_, err := Do(ctx, b, func(context.Context) (int, error) {
				if tt.cancelMid {
					cancel()
				}
				return 0, tt.err
			})
			require.ErrorIs(t, err, tt.err, "Do()")
			sn := b.Snapshot()
			assert.Equal(t, tt.wantReqs, sn.Requests, "Snapshot().Requests")
			assert.Equal(t, tt.wantFails, sn.Failures, "Snapshot().Failures")
		})
	}

	t.Run("a context already done skips the call", func(t *testing.T) {
		b := mustNew(t, Settings{})
		called := false
		_, err := Do(canceled(), b, func(context.Context) (int, error) { called = true; return 1, nil })
		require.ErrorIs(t, err, context.Canceled, "Do(canceled ctx)")
		assert.False(t, called, "Do(canceled ctx) called fn")
		assert.Equal(t, uint64(0), b.Snapshot().Requests, "Snapshot().Requests")
	})
}

func TestIsFailure(t *testing.T) {
	errNotFound := errors.New("not found")
	b := mustNew(t, Settings{
		ConsecutiveFailures: 2,
		IsFailure:           func(err error) bool { return !errors.Is(err, errNotFound) },
	})
	for range 5 {
		_, err := Do(context.Background(), b, func(context.Context) (int, error) { return 0, errNotFound })
		require.ErrorIs(t, err, errNotFound, "Do()")
	}
	sn := b.Snapshot()
	assert.Equal(t, Closed, sn.State, "State after excused errors")
	assert.Equal(t, uint64(5), sn.Requests, "Snapshot().Requests")
	assert.Equal(t, uint64(0), sn.Failures, "Snapshot().Failures")
}

func TestPanicCountsAsFailure(t *testing.T) {
	b := mustNew(t, Settings{ConsecutiveFailures: 1})
	func() {
		defer func() {
			assert.Equal(t, "boom", recover(), "recovered panic value")
		}()
		_, _ = Do(context.Background(), b, func(context.Context) (int, error) { panic("boom") })
		t.Error("Do() returned after fn panicked")
	}()
	sn := b.Snapshot()
	assert.Equal(t, uint64(1), sn.Failures, "Snapshot().Failures")
	assert.Equal(t, Open, sn.State, "State after the panic")
}

// trip opens b with failing calls (some may be held back by a ramp).
func trip(t *testing.T, b *Breaker) {
	t.Helper()
	for i := 0; b.State() != Open; i++ {
		require.Less(t, i, 1000, "breaker does not trip")
		if err := run(b, false); !errors.Is(err, errDown) {
			require.ErrorIs(t, err, ErrOpen, "Do(failing)")
		}
	}
}

// sleep advances the bubble's clock by d and lets the breaker's timers
// that are due run.
func sleep(d time.Duration) {
	time.Sleep(d)
	synctest.Wait()
}

func TestHalfOpenProbeLimit(t *testing.T) {
	for _, probeFails := range []bool{false, true} {
		name := "probes that succeed close the breaker"
		want := Closed
		if probeFails {
			name, want = "a failed probe opens the breaker again", Open
		}
		t.Run(name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				b := mustNew(t, Settings{ConsecutiveFailures: 1, HalfOpenRequests: 3, OpenTimeout: time.Second})
				trip(t, b)
				sleep(time.Second)
				require.Equal(t, HalfOpen, b.State(), "State() after the open wait")

				release := make(chan struct{})
				var wg sync.WaitGroup
				errs := make([]error, 3)
				for i := range 3 {
					wg.Go(func() {
						_, errs[i] = Do(context.Background(), b, func(context.Context) (int, error) {
							<-release
							if probeFails && i == 0 {
								return 0, errDown
							}
							return 1, nil
						})
					})
				}
				synctest.Wait() // all three probes are in flight
				_, err := Do(context.Background(), b, ok)
				require.ErrorIs(t, err, ErrOpen, "Do() beyond HalfOpenRequests")
				var oe *OpenError
				require.ErrorAs(t, err, &oe, "Do() beyond HalfOpenRequests")
				assert.Equal(t, HalfOpen, oe.State, "OpenError.State")
				assert.Equal(t, time.Second, oe.RetryAfter(), "OpenError.RetryAfter()")

				if probeFails {
					close(release)
					wg.Wait()
				} else {
					// The breaker closes only when all probes have succeeded.
					release <- struct{}{}
					release <- struct{}{}
					synctest.Wait()
					assert.Equal(t, HalfOpen, b.State(), "State() after 2 of 3 probes")
					close(release)
					wg.Wait()
				}
				for i, err := range errs {
					assert.NotErrorIs(t, err, ErrOpen, "probe %d", i)
				}
				assert.Equal(t, want, b.State(), "State() after the probes")
			})
		})
	}
}

func TestOpenWaitDoublesWithCapAndReset(t *testing.T) {
	tests := []struct {
		name   string
		jitter float64
		want   []time.Duration
	}{
		{"without jitter the wait doubles up to the cap", 0, []time.Duration{
			time.Second, 2 * time.Second, 4 * time.Second, 5 * time.Second, 5 * time.Second}},
		{"jitter shortens each wait by its share of 20%", 0.5, []time.Duration{
			900 * time.Millisecond, 1800 * time.Millisecond, 3600 * time.Millisecond, 4500 * time.Millisecond, 4500 * time.Millisecond}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				b := mustNew(t, Settings{
					ConsecutiveFailures: 1, OpenTimeout: time.Second, MaxOpenTimeout: 5 * time.Second,
					rand: func() float64 { return tt.jitter },
				})
				trip(t, b)
				for round, want := range tt.want {
					sn := b.Snapshot()
					require.Equal(t, Open, sn.State, "State() in round %d", round)
					assert.Equal(t, want, sn.OpenWait, "OpenWait in round %d", round)
					assert.Equal(t, want, sn.NextProbe.Sub(sn.Since), "NextProbe-Since in round %d", round)
					sleep(want - time.Nanosecond)
					assert.Equal(t, Open, b.State(), "State() just before the wait ends in round %d", round)
					sleep(time.Nanosecond)
					require.Equal(t, HalfOpen, b.State(), "State() when the wait ends in round %d", round)
					require.ErrorIs(t, run(b, false), errDown, "failing probe in round %d", round)
				}
				// A successful probe closes the breaker and resets the wait.
				sleep(tt.want[len(tt.want)-1])
				require.NoError(t, run(b, true), "successful probe")
				require.Equal(t, Closed, b.State(), "State() after the probe")
				assert.Equal(t, time.Duration(0), b.Snapshot().OpenWait, "OpenWait once closed")
				trip(t, b)
				assert.Equal(t, tt.want[0], b.Snapshot().OpenWait, "OpenWait after closing and tripping again")
			})
		})
	}
}

func TestForcedStates(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var mu sync.Mutex
		var changes []string
		var b *Breaker
		b = mustNew(t, Settings{
			Name: "api", ConsecutiveFailures: 2,
			OnChange: func(c Change) {
				name, from, to := c.Name, c.From, c.To
				mu.Lock()
				defer mu.Unlock()
				changes = append(changes, fmt.Sprintf("%s %v->%v %s", name, from, to, b.Snapshot().Reason))
			},
		})

		b.ForceOpen("maintenance")
		_, err := Do(context.Background(), b, ok)
		var oe *OpenError
		require.ErrorAs(t, err, &oe, "Do() when forced open")
		assert.Equal(t, ForcedOpen, oe.State, "OpenError.State when forced open")
		// Forced open outlasts any open wait.
		time.Sleep(time.Hour)
		assert.Equal(t, ForcedOpen, b.State(), "State() an hour after ForceOpen")

		b.ForceClose("vendor says it is fine")
		for range 10 {
			require.ErrorIs(t, run(b, false), errDown, "Do(failing) when forced closed")
		}
		sn := b.Snapshot()
		assert.Equal(t, ForcedClosed, sn.State, "State() after failures when forced closed")
		assert.Equal(t, uint64(10), sn.Failures, "Snapshot().Failures when forced closed")
		assert.Equal(t, uint64(10), sn.ConsecutiveFailures, "Snapshot().ConsecutiveFailures when forced closed")

		b.Release()
		sn = b.Snapshot()
		assert.Equal(t, Closed, sn.State, "State() after Release")
		assert.Equal(t, uint64(0), sn.Requests, "Snapshot().Requests after Release")
		assert.Equal(t, uint64(0), sn.ConsecutiveFailures, "Snapshot().ConsecutiveFailures after Release")
		b.Release() // not forced: nothing happens

		// Automatic control is back: two failures trip.
		trip(t, b)
		assert.Equal(t, uint64(2), b.Snapshot().Failures, "failures to trip after Release")

		mu.Lock()
		defer mu.Unlock()
		assert.Equal(t, []string{
			"api closed->forced-open forced open: maintenance",
			"api forced-open->forced-closed forced closed: vendor says it is fine",
			"api forced-closed->closed released",
			"api closed->open 2 consecutive failures",
		}, changes, "OnChange calls")
	})
}

func TestForceOpenDuringOpenWait(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := mustNew(t, Settings{ConsecutiveFailures: 1, OpenTimeout: time.Second})
		trip(t, b)
		b.ForceOpen("incident")
		time.Sleep(time.Minute)
		assert.Equal(t, ForcedOpen, b.State(), "State() after the open wait, when forced open")
		b.Release()
		require.NoError(t, run(b, true), "Do() after Release")
	})
}

func TestOnChangeMayUseTheBreaker(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var seen []string
		var b *Breaker
		b = mustNew(t, Settings{
			ConsecutiveFailures: 1, OpenTimeout: time.Second,
			OnChange: func(c Change) {
				from, to := c.From, c.To
				// Reading the breaker, and even calling through it, must
				// not deadlock.
				sn := b.Snapshot()
				_, err := Do(context.Background(), b, ok)
				seen = append(seen, fmt.Sprintf("%v->%v state=%v open=%t", from, to, sn.State, errors.Is(err, ErrOpen)))
			},
		})
		trip(t, b)
		sleep(time.Second)
		require.NoError(t, run(b, true), "probe")
		assert.Equal(t, []string{
			"closed->open state=open open=true",
			// The callback's own call is the probe, and closes the breaker.
			"open->half-open state=half-open open=false",
			"half-open->closed state=closed open=false",
		}, seen, "OnChange calls")
	})
}

func TestChangesAreLogged(t *testing.T) {
	var buf strings.Builder
	logger := newTextLogger(&buf)
	b := mustNew(t, Settings{Name: "db", ConsecutiveFailures: 1, Logger: logger})
	trip(t, b)
	b.ForceClose("failover done")
	assert.Equal(t,
		"level=WARN msg=\"breaker state change\" name=db from=closed to=open reason=\"1 consecutive failures\"\n"+
			"level=INFO msg=\"breaker state change\" name=db from=open to=forced-closed reason=\"forced closed: failover done\"\n",
		buf.String(), "log output")
}

func TestRampAdmission(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const ramp = 10 * time.Second
		b := mustNew(t, Settings{ConsecutiveFailures: 1, OpenTimeout: time.Second, Ramp: ramp})
		trip(t, b)
		sleep(time.Second)
		require.NoError(t, run(b, true), "probe")
		require.True(t, b.Snapshot().Ramping, "Snapshot().Ramping after the probe")

		// One call every 10ms through the ramp: the share admitted rises
		// from 10% to 100%, so on average 55% of the 1000 calls go
		// through. The credit accumulator admits exactly the integer part
		// of the summed shares, so the bound is tight: within 1 call.
		const calls = 1000
		admitted, firstHalf := 0, 0
		for i := range calls {
			err := run(b, true)
			if err == nil {
				admitted++
				if i < calls/2 {
					firstHalf++
				}
			} else {
				var oe *OpenError
				require.ErrorAs(t, err, &oe, "held-back call %d", i)
				assert.Equal(t, Closed, oe.State, "OpenError.State of a held-back call")
				assert.LessOrEqual(t, oe.RetryAfter(), ramp/20, "RetryAfter() of a held-back call")
			}
			time.Sleep(ramp / calls)
		}
		var want float64
		for i := range calls {
			want += rampFloor + (1-rampFloor)*float64(i)/calls
		}
		assert.InDelta(t, want, float64(admitted), 1, "calls admitted during the ramp")
		// The share rises: the second half admits more than the first.
		assert.Less(t, firstHalf, admitted-firstHalf, "admitted in the first half vs the second")

		// After the ramp everything goes through.
		for i := range 100 {
			require.NoError(t, run(b, true), "Do() call %d after the ramp", i)
		}
		assert.False(t, b.Snapshot().Ramping, "Snapshot().Ramping after the ramp")
	})
}

func TestRampEndsWithoutTraffic(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const ramp = 10 * time.Second
		b := mustNew(t, Settings{ConsecutiveFailures: 1, OpenTimeout: time.Second, Ramp: ramp})
		trip(t, b)
		sleep(time.Second)
		require.NoError(t, run(b, true), "probe")
		sleep(ramp - time.Nanosecond)
		require.True(t, b.Snapshot().Ramping, "Snapshot().Ramping just before the ramp ends")
		sleep(time.Nanosecond)
		assert.False(t, b.Snapshot().Ramping, "Snapshot().Ramping once the ramp is over, with no calls made")
		assert.Equal(t, Closed, b.State(), "State() after the ramp")
		require.NoError(t, run(b, true), "the first call after the ramp goes through")
	})
}

func TestRampFailuresTrip(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := mustNew(t, Settings{ConsecutiveFailures: 1, OpenTimeout: time.Second, Ramp: time.Minute})
		trip(t, b)
		sleep(time.Second)
		require.NoError(t, run(b, true), "probe")
		trip(t, b)
		assert.Equal(t, Open, b.State(), "State() after a failure during the ramp")
	})
}

func TestStateNames(t *testing.T) {
	tests := []struct {
		s    State
		want string
	}{
		{Closed, "closed"}, {HalfOpen, "half-open"}, {Open, "open"},
		{ForcedOpen, "forced-open"}, {ForcedClosed, "forced-closed"}, {State(9), "state(9)"},
	}
	for _, tt := range tests {
		if got := tt.s.String(); got != tt.want {
			t.Errorf("State(%d).String() = %q, want %q", tt.s, got, tt.want)
		}
	}
}

func TestCanceledProbeFreesItsSlot(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := mustNew(t, Settings{ConsecutiveFailures: 1, OpenTimeout: time.Second})
		trip(t, b)
		sleep(time.Second)
		_, err := Do(context.Background(), b, func(context.Context) (int, error) { return 0, context.Canceled })
		require.ErrorIs(t, err, context.Canceled, "canceled probe")
		assert.Equal(t, HalfOpen, b.State(), "State() after a canceled probe")
		require.NoError(t, run(b, true), "second probe")
		assert.Equal(t, Closed, b.State(), "State() after the second probe")
	})
}

func TestLateOutcomesAreNotCounted(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := mustNew(t, Settings{ConsecutiveFailures: 2, OpenTimeout: time.Second})
		// A slow call admitted while closed ends after the breaker has
		// tripped and recovered: it must not count in the new period.
		started := make(chan struct{})
		done := make(chan error)
		go func() {
			_, err := Do(context.Background(), b, func(context.Context) (int, error) {
				close(started)
				time.Sleep(time.Minute)
				return 0, errDown
			})
			done <- err
		}()
		<-started
		trip(t, b)
		sleep(time.Second)
		require.NoError(t, run(b, true), "probe")
		require.Equal(t, Closed, b.State(), "State() after the probe")
		require.ErrorIs(t, <-done, errDown, "the slow call")
		sn := b.Snapshot()
		assert.Equal(t, uint64(0), sn.Failures, "Snapshot().Failures after the late failure")
		assert.Equal(t, uint64(0), sn.ConsecutiveFailures, "Snapshot().ConsecutiveFailures after the late failure")
	})
}
