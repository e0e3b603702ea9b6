package fallback

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/ringfence/ringfence/breaker"
	"github.com/ringfence/ringfence/retry"
)

// dep is a fake dependency: it counts its calls and answers with the
// value or error it is set to.
type dep struct {
	calls atomic.Int64
	mu    sync.Mutex
	val   string
	err   error
}

func newDep(val string, err error) *dep { return &dep{val: val, err: err} }

func (d *dep) set(val string, err error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.val, d.err = val, err
}

func (d *dep) call(_ context.Context, req string) (string, error) {
	d.calls.Add(1)
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.err != nil {
		return "", d.err
	}
	return d.val + ":" + req, nil
}

var (
	errDown    = errors.New("dependency down")
	errAltDown = errors.New("alternate down")
	errInvalid = errors.New("invalid request")
)

func identity(s string) string { return s }

func newSwitchT(t *testing.T, m Mode) *Switch {
	t.Helper()
	s, err := NewSwitch(t.Context(), "api", SwitchSettings{Initial: m})
	require.NoError(t, err)
	return s
}

func TestChainServesFromEveryStepKind(t *testing.T) {
	tests := []struct {
		name      string
		primary   error
		fallbacks func(alt, man *dep) []Step[string, string]
		altErr    error
		want      string
		wantSrc   Source
	}{
		{
			name:      "the primary answers when it is up",
			fallbacks: func(alt, man *dep) []Step[string, string] { return []Step[string, string]{Alternate("eu", alt.call)} },
			want:      "primary:sku",
			wantSrc:   Source{Step: "api", Kind: KindPrimary},
		},
		{
			name:      "an alternate answers when the primary is down",
			primary:   errDown,
			fallbacks: func(alt, man *dep) []Step[string, string] { return []Step[string, string]{Alternate("eu", alt.call)} },
			want:      "alternate:sku",
			wantSrc:   Source{Step: "eu", Kind: KindAlternate},
		},
		{
			name:    "a static default answers when the alternate is down too",
			primary: errDown,
			altErr:  errAltDown,
			fallbacks: func(alt, man *dep) []Step[string, string] {
				return []Step[string, string]{Alternate("eu", alt.call), Static[string]("default", "list price")}
			},
			want:    "list price",
			wantSrc: Source{Step: "default", Kind: KindStatic},
		},
		{
			name:    "a manual procedure answers after the other fallbacks",
			primary: errDown,
			altErr:  errAltDown,
			fallbacks: func(alt, man *dep) []Step[string, string] {
				return []Step[string, string]{Alternate("eu", alt.call), Manual("paper form", man.call)}
			},
			want:    "form:sku",
			wantSrc: Source{Step: "paper form", Kind: KindManual},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			primary, alt, man := newDep("primary", tt.primary), newDep("alternate", tt.altErr), newDep("form", nil)
			c, err := NewChain("price", ChainSettings{}, Primary("api", primary.call), tt.fallbacks(alt, man)...)
			require.NoError(t, err)
			got, src, err := c.Run(context.Background(), "sku")
			require.NoError(t, err, "Run(sku)")
			assert.Equal(t, tt.want, got, "Run(sku) value")
			assert.Equal(t, tt.wantSrc, src, "Run(sku) source")
			assert.Equal(t, tt.wantSrc.Kind != KindPrimary, src.Fallback(), "Source.Fallback()")
		})
	}
}

func TestChainStaleReportsAge(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		cache, err := NewCache[string, string](CacheSettings{MaxAge: time.Hour})
		require.NoError(t, err)
		primary := newDep("fresh", nil)
		c, err := NewChain("price", ChainSettings{}, Primary("api", primary.call),
			Stale("last known", cache, identity),
			Static[string]("default", "list price"))
		require.NoError(t, err)
		ctx := context.Background()

		got, src, err := c.Run(ctx, "sku")
		require.NoError(t, err)
		assert.Equal(t, "fresh:sku", got)
		assert.Equal(t, KindPrimary, src.Kind)

		time.Sleep(12 * time.Minute)
		primary.set("", errDown)
		got, src, err = c.Run(ctx, "sku")
		require.NoError(t, err)
		assert.Equal(t, "fresh:sku", got, "Run(sku) while the primary is down serves the last-known-good value")
		assert.Equal(t, Source{Step: "last known", Kind: KindStale, Age: 12 * time.Minute}, src)
		assert.Equal(t, `stale "last known" (12m0s old)`, src.String())

		got, src, err = c.Run(ctx, "other")
		require.NoError(t, err)
		assert.Equal(t, "list price", got, "Run(other) has nothing cached")
		assert.Equal(t, KindStatic, src.Kind)

		time.Sleep(48*time.Minute + time.Nanosecond)
		got, src, err = c.Run(ctx, "sku")
		require.NoError(t, err)
		assert.Equal(t, "list price", got, "Run(sku) once the cached value is older than MaxAge")
		assert.Equal(t, KindStatic, src.Kind)
	})
}

func TestChainModes(t *testing.T) {
	t.Run("manual mode never calls the primary", func(t *testing.T) {
		primary, alt := newDep("primary", nil), newDep("alternate", nil)
		c, err := NewChain("price", ChainSettings{Switch: newSwitchT(t, ModeManual)},
			Primary("api", primary.call), Alternate("eu", alt.call))
		require.NoError(t, err)
		for range 10 {
			got, src, err := c.Run(context.Background(), "sku")
			require.NoError(t, err)
			assert.Equal(t, "alternate:sku", got)
			assert.Equal(t, Source{Step: "eu", Kind: KindAlternate, Mode: ModeManual}, src)
			assert.Equal(t, `alternate "eu" in manual mode`, src.String())
		}
		assert.Zero(t, primary.calls.Load(), "calls that reached the primary in manual mode")
	})
	t.Run("manual mode with every fallback failing says the primary was skipped", func(t *testing.T) {
		primary, alt := newDep("primary", nil), newDep("", errAltDown)
		c, err := NewChain("price", ChainSettings{Switch: newSwitchT(t, ModeManual)},
			Primary("api", primary.call), Alternate("eu", alt.call))
		require.NoError(t, err)
		_, src, err := c.Run(context.Background(), "sku")
		require.ErrorIs(t, err, ErrAllFailed)
		require.ErrorIs(t, err, ErrManualMode)
		require.ErrorIs(t, err, errAltDown)
		assert.Equal(t, Source{Mode: ModeManual}, src)
		assert.Zero(t, primary.calls.Load())
	})
	t.Run("primary mode never falls back", func(t *testing.T) {
		primary, alt := newDep("", errDown), newDep("alternate", nil)
		c, err := NewChain("price", ChainSettings{Switch: newSwitchT(t, ModePrimary)},
			Primary("api", primary.call), Alternate("eu", alt.call), Static[string]("default", "x"))
		require.NoError(t, err)
		_, src, err := c.Run(context.Background(), "sku")
		require.ErrorIs(t, err, errDown)
		assert.NotErrorIs(t, err, ErrAllFailed)
		var se *StepError
		require.ErrorAs(t, err, &se)
		assert.Equal(t, StepError{Step: "api", Kind: KindPrimary, Err: errDown}, *se)
		assert.Equal(t, Source{Mode: ModePrimary}, src)
		assert.Zero(t, alt.calls.Load(), "calls that reached the alternate in primary mode")
	})
	t.Run("switching back to auto calls the primary again", func(t *testing.T) {
		sw := newSwitchT(t, ModeManual)
		primary := newDep("primary", nil)
		c, err := NewChain("price", ChainSettings{Switch: sw}, Primary("api", primary.call), Static[string]("default", "x"))
		require.NoError(t, err)
		_, src, err := c.Run(context.Background(), "sku")
		require.NoError(t, err)
		assert.Equal(t, KindStatic, src.Kind)
		require.NoError(t, sw.Set(t.Context(), ModeAuto, "test", "resolved"))
		_, src, err = c.Run(context.Background(), "sku")
		require.NoError(t, err)
		assert.Equal(t, Source{Step: "api", Kind: KindPrimary, Mode: ModeAuto}, src)
		assert.Equal(t, int64(1), primary.calls.Load())
	})
}

func TestChainJoinsEveryStepError(t *testing.T) {
	cache, err := NewCache[string, string](CacheSettings{})
	require.NoError(t, err)
	c, err := NewChain("price", ChainSettings{},
		Primary("api", newDep("", errDown).call),
		Alternate("eu", newDep("", errAltDown).call),
		Stale("last known", cache, identity))
	require.NoError(t, err)

	_, src, err := c.Run(context.Background(), "sku")
	for _, want := range []error{ErrAllFailed, errDown, errAltDown, ErrNotCached} {
		require.ErrorIs(t, err, want, "Run(sku) when every step fails")
	}
	assert.Equal(t, Source{}, src)

	var steps []string
	var joined interface{ Unwrap() []error }
	require.ErrorAs(t, err, &joined)
	for _, e := range joined.Unwrap() {
		if se, ok := e.(*StepError); ok {
			steps = append(steps, se.Kind.String()+" "+se.Step)
		}
	}
	assert.Equal(t, []string{"primary api", "alternate eu", "stale last known"}, steps)
}

func TestChainStops(t *testing.T) {
	t.Run("a NoFallback error comes back at once", func(t *testing.T) {
		primary, alt := newDep("", NoFallback(errInvalid)), newDep("alternate", nil)
		c, err := NewChain("price", ChainSettings{}, Primary("api", primary.call), Alternate("eu", alt.call))
		require.NoError(t, err)
		_, _, err = c.Run(context.Background(), "sku")
		require.ErrorIs(t, err, errInvalid)
		assert.NotErrorIs(t, err, ErrAllFailed)
		assert.Equal(t, errInvalid.Error(), errors.Unwrap(err).Error(), "NoFallback keeps the message")
		assert.Zero(t, alt.calls.Load(), "calls that reached the alternate")
	})
	t.Run("a NoFallback error from a fallback stops the rest", func(t *testing.T) {
		alt, last := newDep("", NoFallback(errInvalid)), newDep("x", nil)
		c, err := NewChain("price", ChainSettings{}, Primary("api", newDep("", errDown).call),
			Alternate("eu", alt.call), Manual("form", last.call))
		require.NoError(t, err)
		_, _, err = c.Run(context.Background(), "sku")
		require.ErrorIs(t, err, errInvalid)
		require.ErrorIs(t, err, errDown)
		assert.Zero(t, last.calls.Load())
	})
	t.Run("the caller's cancellation comes back at once", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		alt := newDep("alternate", nil)
		c, err := NewChain("price", ChainSettings{}, Primary("api", func(ctx context.Context, _ string) (string, error) {
			cancel()
			return "", ctx.Err()
		}), Alternate("eu", alt.call))
		require.NoError(t, err)
		_, _, err = c.Run(ctx, "sku")
		require.ErrorIs(t, err, context.Canceled)
		assert.Zero(t, alt.calls.Load())
	})
	t.Run("a cancellation while the primary failed otherwise stops too", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		alt := newDep("alternate", nil)
		c, err := NewChain("price", ChainSettings{}, Primary("api", func(context.Context, string) (string, error) {
			cancel()
			return "", errDown
		}), Alternate("eu", alt.call))
		require.NoError(t, err)
		_, _, err = c.Run(ctx, "sku")
		require.ErrorIs(t, err, context.Canceled)
		require.ErrorIs(t, err, errDown)
		assert.Zero(t, alt.calls.Load())
	})
	t.Run("a cancellation that is the dependency's own falls back", func(t *testing.T) {
		c, err := NewChain("price", ChainSettings{}, Primary("api", newDep("", context.Canceled).call),
			Static[string]("default", "x"))
		require.NoError(t, err)
		got, src, err := c.Run(context.Background(), "sku")
		require.NoError(t, err)
		assert.Equal(t, "x", got)
		assert.Equal(t, KindStatic, src.Kind)
	})
	t.Run("a deadline falls back", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			defer cancel()
			c, err := NewChain("price", ChainSettings{}, Primary("api", func(ctx context.Context, _ string) (string, error) {
				<-ctx.Done()
				return "", ctx.Err()
			}), Static[string]("default", "x"))
			require.NoError(t, err)
			got, src, err := c.Run(ctx, "sku")
			require.NoError(t, err)
			assert.Equal(t, "x", got)
			assert.Equal(t, KindStatic, src.Kind)
		})
	})
	t.Run("ShouldFallback can stop on more errors", func(t *testing.T) {
		alt := newDep("alternate", nil)
		c, err := NewChain("price", ChainSettings{ShouldFallback: func(err error) bool { return !errors.Is(err, errInvalid) }},
			Primary("api", newDep("", errInvalid).call), Alternate("eu", alt.call))
		require.NoError(t, err)
		_, _, err = c.Run(context.Background(), "sku")
		require.ErrorIs(t, err, errInvalid)
		assert.Zero(t, alt.calls.Load())
	})
}

func TestChainRetriesThePrimary(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var calls int
		c, err := NewChain("price", ChainSettings{Retry: &retry.Policy{MaxAttempts: 3, InitialInterval: time.Second}},
			Primary("api", func(context.Context, string) (string, error) {
				calls++
				if calls < 3 {
					return "", errDown
				}
				return "ok", nil
			}), Static[string]("default", "x"))
		require.NoError(t, err)
		start := time.Now()
		got, src, err := c.Run(context.Background(), "sku")
		require.NoError(t, err)
		assert.Equal(t, "ok", got)
		assert.Equal(t, KindPrimary, src.Kind)
		assert.Equal(t, 3, calls)
		assert.Greater(t, time.Since(start), time.Duration(0), "retries waited")
	})
	// In bubbles too, so that a regression that did retry would wait on
	// the fake clock rather than the real one.
	t.Run("a NoFallback error is not retried", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			primary := newDep("", NoFallback(errInvalid))
			c, err := NewChain("price", ChainSettings{Retry: &retry.Policy{MaxAttempts: 5}},
				Primary("api", primary.call), Static[string]("default", "x"))
			require.NoError(t, err)
			_, _, err = c.Run(context.Background(), "sku")
			require.ErrorIs(t, err, errInvalid)
			assert.Equal(t, int64(1), primary.calls.Load())
		})
	})
	t.Run("the caller's IsRetryable still applies", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			primary := newDep("", errDown)
			c, err := NewChain("price", ChainSettings{Retry: &retry.Policy{MaxAttempts: 5, IsRetryable: func(error) bool { return false }}},
				Primary("api", primary.call), Static[string]("default", "x"))
			require.NoError(t, err)
			got, _, err := c.Run(context.Background(), "sku")
			require.NoError(t, err)
			assert.Equal(t, "x", got)
			assert.Equal(t, int64(1), primary.calls.Load())
		})
	})
}

func TestChainBreaker(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		br, err := breaker.New(breaker.Settings{ConsecutiveFailures: 2, OpenTimeout: time.Minute})
		require.NoError(t, err)
		primary := newDep("", errDown)
		c, err := NewChain("price", ChainSettings{Breaker: br},
			Primary("api", primary.call), Static[string]("default", "x"))
		require.NoError(t, err)
		ctx := context.Background()
		for range 5 {
			got, src, err := c.Run(ctx, "sku")
			require.NoError(t, err)
			assert.Equal(t, "x", got)
			assert.Equal(t, KindStatic, src.Kind)
		}
		assert.Equal(t, int64(2), primary.calls.Load(), "calls that reached the primary once the breaker opened")

		c2, err := NewChain("price", ChainSettings{Breaker: br}, Primary("api", primary.call), Alternate("eu", newDep("", errAltDown).call))
		require.NoError(t, err)
		_, _, err = c2.Run(ctx, "sku")
		require.ErrorIs(t, err, breaker.ErrOpen)
		require.ErrorIs(t, err, errAltDown)

		time.Sleep(2 * time.Minute)
		primary.set("back", nil)
		got, src, err := c.Run(ctx, "sku")
		require.NoError(t, err)
		assert.Equal(t, "back:sku", got, "Run once the breaker lets a probe through")
		assert.Equal(t, KindPrimary, src.Kind)
	})
	t.Run("NoFallback errors do not open the breaker", func(t *testing.T) {
		br, err := breaker.New(breaker.Settings{ConsecutiveFailures: 2})
		require.NoError(t, err)
		primary := newDep("", NoFallback(errInvalid))
		c, err := NewChain("price", ChainSettings{Breaker: br}, Primary("api", primary.call))
		require.NoError(t, err)
		for range 5 {
			_, _, err := c.Run(context.Background(), "sku")
			require.ErrorIs(t, err, errInvalid)
			assert.NotErrorIs(t, err, breaker.ErrOpen)
		}
		assert.Equal(t, int64(5), primary.calls.Load())
	})
	t.Run("retries pass through the breaker", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			br, err := breaker.New(breaker.Settings{ConsecutiveFailures: 2, OpenTimeout: time.Hour})
			require.NoError(t, err)
			primary := newDep("", errDown)
			c, err := NewChain("price", ChainSettings{Breaker: br, Retry: &retry.Policy{MaxAttempts: 5}},
				Primary("api", primary.call), Static[string]("default", "x"))
			require.NoError(t, err)
			got, _, err := c.Run(context.Background(), "sku")
			require.NoError(t, err)
			assert.Equal(t, "x", got)
			assert.Equal(t, int64(2), primary.calls.Load(), "attempts that reached the primary before the breaker opened")
		})
	})
}

func TestNewChainRejectsBadSteps(t *testing.T) {
	ok := Primary("api", newDep("", nil).call)
	tests := []struct {
		name      string
		settings  ChainSettings
		primary   Step[string, string]
		fallbacks []Step[string, string]
	}{
		{"a zero primary", ChainSettings{}, Step[string, string]{}, nil},
		{"a primary made without a function", ChainSettings{}, Primary[string, string]("api", nil), nil},
		{"a primary of another kind", ChainSettings{}, Static[string]("x", "x"), nil},
		{"a primary without a name", ChainSettings{}, Primary("", newDep("", nil).call), nil},
		{"a zero fallback", ChainSettings{}, ok, []Step[string, string]{{}}},
		{"a fallback of kind primary", ChainSettings{}, ok, []Step[string, string]{ok}},
		{"a fallback without a name", ChainSettings{}, ok, []Step[string, string]{Static[string]("", "x")}},
		{"an alternate made without a function", ChainSettings{}, ok, []Step[string, string]{Alternate[string, string]("eu", nil)}},
		{"a stale step without a cache", ChainSettings{}, ok, []Step[string, string]{Stale[string, string, string]("s", nil, identity)}},
		{"an invalid retry policy", ChainSettings{Retry: &retry.Policy{Jitter: 2}}, ok, nil},
	}
	for _, tt := range tests {
		t.Run("rejects "+tt.name, func(t *testing.T) {
			c, err := NewChain("price", tt.settings, tt.primary, tt.fallbacks...)
			require.Error(t, err)
			assert.Nil(t, c)
		})
	}
}

func TestKindAndSourceText(t *testing.T) {
	tests := []struct {
		src  Source
		want string
	}{
		{Source{Step: "api", Kind: KindPrimary}, `primary "api"`},
		{Source{Step: "eu", Kind: KindAlternate}, `alternate "eu"`},
		{Source{Step: "cache", Kind: KindStale, Age: 90 * time.Second}, `stale "cache" (1m30s old)`},
		{Source{Step: "default", Kind: KindStatic, Mode: ModeManual}, `static "default" in manual mode`},
		{Source{Step: "form", Kind: KindManual}, `manual "form"`},
		{Source{Step: "outbox", Kind: KindDeferred}, `deferred "outbox"`},
		{Source{Kind: Kind(42)}, `Kind(42) ""`},
	}
	for _, tt := range tests {
		t.Run("describes "+tt.want, func(t *testing.T) {
			assert.Equal(t, tt.want, tt.src.String(), "%#v.String()", tt.src)
		})
	}
}

func TestChainConcurrentRunAndSet(t *testing.T) {
	sw := newSwitchT(t, ModeAuto)
	cache, err := NewCache[string, string](CacheSettings{MaxEntries: 4})
	require.NoError(t, err)
	primary := newDep("primary", nil)
	c, err := NewChain("price", ChainSettings{Switch: sw}, Primary("api", primary.call),
		Stale("last known", cache, identity), Static[string]("default", "x"))
	require.NoError(t, err)

	var wg sync.WaitGroup
	var primaryRuns atomic.Int64
	for g := range 8 {
		wg.Go(func() {
			keys := []string{"a", "b", "c", "d", "e", "f"}
			for i := range 200 {
				_, src, err := c.Run(context.Background(), keys[(g+i)%len(keys)])
				if !assert.NoError(t, err) {
					return
				}
				if src.Mode == ModeManual {
					assert.NotEqual(t, KindPrimary, src.Kind, "manual mode served from the primary")
				}
				if src.Kind == KindPrimary {
					primaryRuns.Add(1)
				}
			}
		})
	}
	wg.Go(func() {
		for i := range 100 {
			assert.NoError(t, sw.Set(t.Context(), []Mode{ModeManual, ModeAuto}[i%2], "test", "flip"))
		}
	})
	wg.Wait()
	assert.Equal(t, primaryRuns.Load(), primary.calls.Load(), "primary calls match primary sources")
	assert.LessOrEqual(t, cache.Len(), 4)
}
