package chaos_test

import (
	"context"
	"errors"
	"math"
	"sync"
	"testing"

	"github.com/ringfence/ringfence/chaos"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

var errBoom = errors.New("boom")

func newInjector(t *testing.T, s chaos.Settings) *chaos.Injector {
	t.Helper()
	in, err := chaos.New(s)
	require.NoError(t, err, "New(%+v)", s)
	return in
}

// failures calls in.Inject n times with ctx and returns the indexes of the
// calls that returned an error.
func failures(ctx context.Context, in *chaos.Injector, n int) []int {
	var failed []int
	for i := range n {
		if in.Inject(ctx) != nil {
			failed = append(failed, i)
		}
	}
	return failed
}

// withinBinomial reports whether k successes in n trials of probability p
// lie within five standard deviations of the mean.
func withinBinomial(k, n int, p float64) bool {
	mean := float64(n) * p
	sd := math.Sqrt(float64(n) * p * (1 - p))
	return math.Abs(float64(k)-mean) <= 5*sd
}

func TestSeedFixesTheNumberOfFaults(t *testing.T) {
	const calls = 10_000
	tests := []struct {
		name   string
		seed   uint64
		faults chaos.Faults
		want   chaos.Stats
	}{
		{
			name:   "seed 1 at a 30% error rate fails 3046 of 10000 calls",
			seed:   1,
			faults: chaos.Faults{ErrorRate: 0.3},
			want:   chaos.Stats{Calls: calls, Errors: 3046, Passed: calls - 3046},
		},
		{
			name:   "seed 2 at a 30% error rate fails 2951 of 10000 calls",
			seed:   2,
			faults: chaos.Faults{ErrorRate: 0.3},
			want:   chaos.Stats{Calls: calls, Errors: 2951, Passed: calls - 2951},
		},
		{
			// The same draws as the first case: the 3046 calls below 0.3
			// split into hangs (below 0.1) and errors.
			name:   "seed 1 with 20% errors and 10% hangs",
			seed:   1,
			faults: chaos.Faults{ErrorRate: 0.2, HangRate: 0.1},
			want:   chaos.Stats{Calls: calls, Errors: 2061, Hangs: 985, Passed: calls - 2061 - 985},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := newInjector(t, chaos.Settings{Seed: tt.seed, Faults: tt.faults})
			// A cancelled context ends injected hangs at once.
			ctx, cancel := context.WithCancel(context.Background())
			cancel()
			failures(ctx, in, calls)
			got := in.Stats()
			assert.Equal(t, tt.want, got, "Stats after %d calls", calls)
			assert.True(t, withinBinomial(int(got.Errors), calls, tt.faults.ErrorRate),
				"Stats().Errors = %d, want near %v", got.Errors, tt.faults.ErrorRate*calls)
			assert.True(t, withinBinomial(int(got.Hangs), calls, tt.faults.HangRate),
				"Stats().Hangs = %d, want near %v", got.Hangs, tt.faults.HangRate*calls)
		})
	}
}

func TestNoSeedFailsAFixedCall(t *testing.T) {
	// With a tiny error rate, a call fails only if it draws (nearly) zero.
	// Every seed draws zero at some call, but not at a fixed one: in
	// particular not at the first call of seed 0.
	for seed := range uint64(100) {
		in := newInjector(t, chaos.Settings{Seed: seed, Faults: chaos.Faults{ErrorRate: 1e-12, HangRate: 1e-12}})
		got := failures(context.Background(), in, 100)
		assert.Empty(t, got, "failed calls of 100 with seed %d", seed)
	}
}

func TestSameSeedGivesTheSameSequence(t *testing.T) {
	ctx := context.Background()
	s := chaos.Settings{Seed: 42, Faults: chaos.Faults{ErrorRate: 0.5}}
	a := failures(ctx, newInjector(t, s), 200)
	b := failures(ctx, newInjector(t, s), 200)
	assert.Equal(t, a, b, "failed calls of two injectors with seed 42")

	s.Seed = 43
	c := failures(ctx, newInjector(t, s), 200)
	assert.NotEqual(t, a, c, "failed calls with seeds 42 and 43")
}

func TestConcurrentCallsGiveTheSameCounts(t *testing.T) {
	const goroutines, each = 8, 1250
	s := chaos.Settings{Seed: 1, Faults: chaos.Faults{ErrorRate: 0.3}}
	serial := newInjector(t, s)
	failures(context.Background(), serial, goroutines*each)

	in := newInjector(t, s)
	var wg sync.WaitGroup
	for range goroutines {
		wg.Go(func() { failures(context.Background(), in, each) })
	}
	wg.Wait()
	assert.Equal(t, serial.Stats(), in.Stats(), "Stats of concurrent and serial calls")
}

func TestRatesZeroAndOne(t *testing.T) {
	tests := []struct {
		name   string
		faults chaos.Faults
		want   int
	}{
		{"no faults fail no call", chaos.Faults{}, 0},
		{"a zero error rate fails no call", chaos.Faults{ErrorRate: 0, Latency: 0}, 0},
		{"an error rate of one fails every call", chaos.Faults{ErrorRate: 1}, 1000},
		{"error and hang rates summing to one stop every call", chaos.Faults{ErrorRate: 0.7, HangRate: 0.3}, 1000},
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := newInjector(t, chaos.Settings{Faults: tt.faults})
			got := len(failures(ctx, in, 1000))
			assert.Equal(t, tt.want, got, "failed calls of 1000 with %+v", tt.faults)
		})
	}
}

func TestInjectedErrors(t *testing.T) {
	ctx := context.Background()
	t.Run("the default error is ErrInjected", func(t *testing.T) {
		in := newInjector(t, chaos.Settings{Faults: chaos.Faults{ErrorRate: 1}})
		err := in.Inject(ctx)
		require.ErrorIs(t, err, chaos.ErrInjected)
		assert.Equal(t, uint64(1), in.Stats().Errors, "Stats().Errors")
	})
	t.Run("a caller's error keeps its identity and message and matches ErrInjected", func(t *testing.T) {
		in := newInjector(t, chaos.Settings{Faults: chaos.Faults{ErrorRate: 1, Err: errBoom}})
		err := in.Inject(ctx)
		require.ErrorIs(t, err, errBoom)
		require.ErrorIs(t, err, chaos.ErrInjected)
		assert.Equal(t, errBoom.Error(), err.Error(), "Inject error message")
	})
	t.Run("a caller's error type is reachable with errors.As", func(t *testing.T) {
		in := newInjector(t, chaos.Settings{Faults: chaos.Faults{ErrorRate: 1, Err: &codeError{code: 14}}})
		var ce *codeError
		require.ErrorAs(t, in.Inject(ctx), &ce)
		assert.Equal(t, 14, ce.code, "code of the injected error")
	})
}

type codeError struct{ code int }

func (e *codeError) Error() string { return "code error" }

func TestNilInjectorInjectsNothing(t *testing.T) {
	var in *chaos.Injector
	assert.NoError(t, in.Inject(context.Background()), "nil Injector Inject")
	assert.Equal(t, chaos.Stats{}, in.Stats(), "nil Injector Stats")
	_, ok := in.Current()
	assert.False(t, ok, "nil Injector Current reports a phase")

	calls := 0
	fn := func(context.Context) (int, error) { calls++; return 7, nil }
	v, err := chaos.Wrap(fn, nil)(context.Background())
	require.NoError(t, err)
	assert.Equal(t, 7, v, "Wrap(fn, nil) value")
	assert.Equal(t, 1, calls, "calls of fn through Wrap(fn, nil)")
}

func TestWrapSkipsFnOnFailure(t *testing.T) {
	s := chaos.Settings{Seed: 1, Faults: chaos.Faults{ErrorRate: 0.3, Err: errBoom}}
	in := newInjector(t, s)
	calls := 0
	wrapped := chaos.Wrap(func(context.Context) (string, error) {
		calls++
		return "ok", nil
	}, in)
	for range 100 {
		v, err := wrapped(context.Background())
		if err != nil {
			require.ErrorIs(t, err, errBoom)
			assert.Equal(t, "", v, "value of a failed call")
		} else {
			assert.Equal(t, "ok", v, "value of a forwarded call")
		}
	}
	st := in.Stats()
	assert.Equal(t, uint64(100), st.Calls, "Stats().Calls")
	assert.Equal(t, uint64(calls), st.Passed, "Stats().Passed against calls of fn")
	assert.Equal(t, st.Calls, st.Passed+st.Errors, "Calls against Passed + Errors")
}

func TestValidateNamesTheField(t *testing.T) {
	tests := []struct {
		field string
		s     chaos.Settings
	}{
		{"Faults.ErrorRate", chaos.Settings{Faults: chaos.Faults{ErrorRate: 1.5}}},
		{"Faults.ErrorRate", chaos.Settings{Faults: chaos.Faults{ErrorRate: -0.1}}},
		{"Faults.ErrorRate", chaos.Settings{Faults: chaos.Faults{ErrorRate: math.NaN()}}},
		{"Faults.HangRate", chaos.Settings{Faults: chaos.Faults{HangRate: 2}}},
		{"Faults.ErrorRate + Faults.HangRate", chaos.Settings{Faults: chaos.Faults{ErrorRate: 0.6, HangRate: 0.6}}},
		{"Faults.Status", chaos.Settings{Faults: chaos.Faults{Status: 200}}},
		{"Faults.Status", chaos.Settings{Faults: chaos.Faults{Status: 600}}},
		{"Faults.RetryAfter", chaos.Settings{Faults: chaos.Faults{RetryAfter: -1}}},
		{"Faults.Latency", chaos.Settings{Faults: chaos.Faults{Latency: -1}}},
		{"Faults.Jitter", chaos.Settings{Faults: chaos.Faults{Jitter: -1}}},
		{"Faults.Latency + Faults.Jitter", chaos.Settings{Faults: chaos.Faults{Latency: math.MaxInt64, Jitter: 1}}},
		{"Phases[0].Start", chaos.Settings{Phases: []chaos.Phase{{Start: -1}}}},
		{"Phases[0].Duration", chaos.Settings{Phases: []chaos.Phase{{Duration: -1}}}},
		{"Phases[0].Duration", chaos.Settings{Phases: []chaos.Phase{{Start: 1, Duration: math.MaxInt64}}}},
		{"Phases[1].Faults.ErrorRate", chaos.Settings{Phases: []chaos.Phase{
			{Start: 0}, {Start: 10, Faults: chaos.Faults{ErrorRate: 3}},
		}}},
		{"Phases[2].Start", chaos.Settings{Phases: []chaos.Phase{ // overlapping
			{Start: 0, Duration: 10}, {Start: 10, Duration: 10}, {Start: 15},
		}}},
		{"Phases[1].Start", chaos.Settings{Phases: []chaos.Phase{ // out of order
			{Start: 20}, {Start: 10},
		}}},
		{"Phases[1].Start", chaos.Settings{Phases: []chaos.Phase{ // same start
			{Start: 10}, {Start: 10},
		}}},
	}
	for _, tt := range tests {
		t.Run("rejects a bad "+tt.field, func(t *testing.T) {
			err := tt.s.Validate()
			require.ErrorIs(t, err, chaos.ErrInvalidSettings)
			assert.Contains(t, err.Error(), tt.field)
			in, nerr := chaos.New(tt.s)
			assert.Nil(t, in, "New with invalid settings returned an Injector")
			assert.Equal(t, err, nerr, "New error against Validate error")
		})
	}
	t.Run("accepts the zero Settings", func(t *testing.T) {
		assert.NoError(t, chaos.Settings{}.Validate())
	})
	t.Run("accepts phases that touch", func(t *testing.T) {
		s := chaos.Settings{Phases: []chaos.Phase{
			{Start: 0, Duration: 10}, {Start: 10, Duration: 10}, {Start: 20},
		}}
		assert.NoError(t, s.Validate())
	})
}
