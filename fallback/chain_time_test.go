package fallback

import (
	"context"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/ringfence/ringfence/retry"
)

// hangWrite is a primary write that hangs until its context is done, as a
// request to a service that stopped answering does.
func hangWrite(ctx context.Context, _ write) (string, error) {
	<-ctx.Done()
	return "", ctx.Err()
}

// timeoutError is a dependency's timeout, shaped like a net.Error.
type timeoutError struct{}

func (timeoutError) Error() string { return "i/o timeout" }
func (timeoutError) Timeout() bool { return true }

type ctxKey struct{}

func TestChainFallbacksGetTimeOfTheirOwn(t *testing.T) {
	t.Run("a deferred step enqueues after the primary used up the caller's deadline", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			o := openTestOutbox(t)
			c, err := NewChain("post", ChainSettings{}, Primary("ledger", hangWrite),
				Deferred("outbox", o, writeItem, acceptedReceipt))
			require.NoError(t, err)
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			defer cancel()
			got, src, err := c.Run(ctx, write{ID: "w1", Account: "A"})
			require.NoError(t, err, "Run(w1) after the primary hung past the deadline")
			assert.Equal(t, "accepted w1", got)
			assert.Equal(t, KindDeferred, src.Kind)
			assert.Equal(t, 1, o.Pending(), "writes in the outbox")
		})
	})
	t.Run("local steps keep the caller's values under a deadline of the chain's own", func(t *testing.T) {
		for _, tt := range []struct {
			name     string
			settings ChainSettings
			want     time.Duration
		}{
			{"by default", ChainSettings{}, DefaultFallbackTimeout},
			{"as configured", ChainSettings{FallbackTimeout: 300 * time.Millisecond}, 300 * time.Millisecond},
		} {
			t.Run(tt.name, func(t *testing.T) {
				synctest.Test(t, func(t *testing.T) {
					var sawValue any
					var sawErr error
					var left time.Duration
					c, err := NewChain("price", tt.settings,
						Primary("api", func(ctx context.Context, _ string) (string, error) {
							<-ctx.Done()
							return "", ctx.Err()
						}),
						Manual("form", func(ctx context.Context, req string) (string, error) {
							sawValue, sawErr = ctx.Value(ctxKey{}), ctx.Err()
							d, _ := ctx.Deadline()
							left = time.Until(d)
							return "form:" + req, nil
						}))
					require.NoError(t, err)
					ctx, cancel := context.WithTimeout(context.WithValue(context.Background(), ctxKey{}, "trace-1"), time.Second)
					defer cancel()
					got, src, err := c.Run(ctx, "sku")
					require.NoError(t, err)
					assert.Equal(t, "form:sku", got)
					assert.Equal(t, KindManual, src.Kind)
					assert.Equal(t, "trace-1", sawValue, "the fallback's ctx.Value")
					assert.NoError(t, sawErr, "the fallback's ctx.Err()")
					assert.Equal(t, tt.want, left, "time the fallback had")
				})
			})
		}
	})
	t.Run("a local step that outlives the budget fails and the next one answers", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			c, err := NewChain("price", ChainSettings{FallbackTimeout: 200 * time.Millisecond},
				Primary("api", func(ctx context.Context, _ string) (string, error) {
					<-ctx.Done()
					return "", ctx.Err()
				}),
				Manual("form", func(ctx context.Context, _ string) (string, error) {
					<-ctx.Done()
					return "", ctx.Err()
				}),
				Static[string]("default", "x"))
			require.NoError(t, err)
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			defer cancel()
			start := time.Now()
			got, src, err := c.Run(ctx, "sku")
			require.NoError(t, err)
			assert.Equal(t, "x", got)
			assert.Equal(t, KindStatic, src.Kind)
			assert.Equal(t, 1200*time.Millisecond, time.Since(start), "Run's duration")
		})
	})
	t.Run("an alternate gets no time past the caller's deadline", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			var altErr error
			c, err := NewChain("price", ChainSettings{},
				Primary("api", func(ctx context.Context, _ string) (string, error) {
					<-ctx.Done()
					return "", ctx.Err()
				}),
				Alternate("eu", func(ctx context.Context, _ string) (string, error) {
					altErr = ctx.Err()
					return "", altErr
				}),
				Static[string]("default", "x"))
			require.NoError(t, err)
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			defer cancel()
			_, src, err := c.Run(ctx, "sku")
			require.NoError(t, err)
			assert.Equal(t, KindStatic, src.Kind)
			require.ErrorIs(t, altErr, context.DeadlineExceeded, "the alternate's ctx.Err()")
		})
	})
	t.Run("a caller who canceled gets an immediate return and nothing is deferred", func(t *testing.T) {
		o := openTestOutbox(t)
		ctx, cancel := context.WithCancel(context.Background())
		c, err := NewChain("post", ChainSettings{}, Primary("ledger", func(ctx context.Context, w write) (string, error) {
			cancel()
			return hangWrite(ctx, w)
		}), Deferred("outbox", o, writeItem, acceptedReceipt))
		require.NoError(t, err)
		_, src, err := c.Run(ctx, write{ID: "w1", Account: "A"})
		require.ErrorIs(t, err, context.Canceled)
		require.ErrorIs(t, err, ErrUnknownOutcome, "a canceled write may have been applied")
		assert.Equal(t, Source{}, src)
		assert.Zero(t, o.Pending())
	})
}

func TestChainDefersWritesOfUnknownOutcome(t *testing.T) {
	// setup returns a write chain with a replica before the outbox.
	setup := func(t *testing.T, settings ChainSettings, primary func(context.Context, write) (string, error)) (*Chain[write, string], *Outbox, *atomic.Int64) {
		t.Helper()
		o := openTestOutbox(t)
		var replica atomic.Int64
		c, err := NewChain("post", settings, Primary("ledger", primary),
			Alternate("replica", func(context.Context, write) (string, error) {
				replica.Add(1)
				return "written to the replica", nil
			}),
			Deferred("outbox", o, writeItem, acceptedReceipt))
		require.NoError(t, err)
		return c, o, &replica
	}
	failWith := func(err error) func(context.Context, write) (string, error) {
		return func(context.Context, write) (string, error) { return "", err }
	}
	for _, tt := range []struct {
		name    string
		primary func(context.Context, write) (string, error)
	}{
		{"a write that hung past the deadline", hangWrite},
		{"a write that failed with a timeout", failWith(timeoutError{})},
		{"a write that got 504 Gateway Timeout", failWith(&retry.StatusError{StatusCode: 504})},
	} {
		t.Run(tt.name+" skips the replica and is deferred", func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				c, o, replica := setup(t, ChainSettings{}, tt.primary)
				ctx, cancel := context.WithTimeout(context.Background(), time.Second)
				defer cancel()
				got, src, err := c.Run(ctx, write{ID: "w1", Account: "A"})
				require.NoError(t, err)
				assert.Equal(t, "accepted w1", got)
				assert.Equal(t, Source{Step: "outbox", Kind: KindDeferred}, src)
				assert.Zero(t, replica.Load(), "writes sent to the replica")
				assert.Equal(t, 1, o.Pending())
			})
		})
	}
	t.Run("a refused write still goes to the replica", func(t *testing.T) {
		c, o, replica := setup(t, ChainSettings{}, failWith(errDown))
		got, src, err := c.Run(context.Background(), write{ID: "w1", Account: "A"})
		require.NoError(t, err)
		assert.Equal(t, "written to the replica", got)
		assert.Equal(t, KindAlternate, src.Kind)
		assert.Equal(t, int64(1), replica.Load())
		assert.Zero(t, o.Pending())
	})
	t.Run("an earlier attempt's timeout counts when a retry was refused", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			var calls int
			c, o, replica := setup(t, ChainSettings{Retry: &retry.Policy{MaxAttempts: 2}},
				func(context.Context, write) (string, error) {
					calls++
					if calls == 1 {
						return "", timeoutError{}
					}
					return "", errDown
				})
			_, src, err := c.Run(context.Background(), write{ID: "w1", Account: "A"})
			require.NoError(t, err)
			assert.Equal(t, KindDeferred, src.Kind)
			assert.Equal(t, 2, calls, "attempts")
			assert.Zero(t, replica.Load())
			assert.Equal(t, 1, o.Pending())
		})
	})
	t.Run("ReportUnknownOutcome returns the error instead", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			c, o, replica := setup(t, ChainSettings{ReportUnknownOutcome: true}, hangWrite)
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			defer cancel()
			_, src, err := c.Run(ctx, write{ID: "w1", Account: "A"})
			require.ErrorIs(t, err, ErrUnknownOutcome)
			require.ErrorIs(t, err, context.DeadlineExceeded)
			assert.NotErrorIs(t, err, ErrAllFailed)
			assert.Equal(t, Source{}, src)
			assert.Zero(t, replica.Load())
			assert.Zero(t, o.Pending())
		})
	})
	t.Run("primary mode reports the unknown outcome", func(t *testing.T) {
		c, o, _ := setup(t, ChainSettings{Switch: newSwitchT(t, ModePrimary)}, failWith(timeoutError{}))
		_, _, err := c.Run(context.Background(), write{ID: "w1", Account: "A"})
		require.ErrorIs(t, err, ErrUnknownOutcome)
		require.ErrorIs(t, err, timeoutError{})
		assert.Zero(t, o.Pending())
	})
	t.Run("the deferred write is replayed once and its key makes it certain", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			l := newLedger()
			o := openTestOutbox(t)
			// The ledger applies the write, then the answer is lost.
			lost := func(ctx context.Context, w write) (string, error) {
				if _, err := l.apply(ctx, w); err != nil {
					return "", err
				}
				return hangWrite(ctx, w)
			}
			c, err := NewChain("post", ChainSettings{}, Primary("ledger", lost), Deferred("outbox", o, writeItem, acceptedReceipt))
			require.NoError(t, err)
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			defer cancel()
			_, src, err := c.Run(ctx, write{ID: "w1", Account: "A"})
			require.NoError(t, err)
			require.Equal(t, KindDeferred, src.Kind)

			seen := map[string]bool{}
			require.NoError(t, o.Replay(context.Background(), func(_ context.Context, it Item) error {
				seen[it.Key] = true // the receiver's idempotency check: w1 is already applied
				return nil
			}))
			_, applied := l.state()
			assert.Equal(t, []string{"w1"}, applied["A"], "applied once")
			assert.Equal(t, map[string]bool{"w1": true}, seen, "replayed with its key")
			assert.Zero(t, o.Pending())
		})
	})
}

func TestNewChainRejectsBadTimeSettings(t *testing.T) {
	c, err := NewChain("price", ChainSettings{FallbackTimeout: -time.Second}, Primary("api", newDep("", nil).call))
	require.Error(t, err)
	assert.Nil(t, c)
	assert.Contains(t, err.Error(), "ChainSettings.FallbackTimeout")
}

func TestChainReturnsAnAnswerAfterAnAttemptOfUnknownOutcome(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		o := openTestOutbox(t)
		var calls int
		errConflict := &sdkError{409}
		c, err := NewChain("post", ChainSettings{Retry: &retry.Policy{MaxAttempts: 2}},
			Primary("ledger", func(context.Context, write) (string, error) {
				calls++
				if calls == 1 {
					return "", timeoutError{}
				}
				return "", errConflict
			}),
			Deferred("outbox", o, writeItem, acceptedReceipt))
		require.NoError(t, err)
		_, src, err := c.Run(context.Background(), write{ID: "w1", Account: "A"})
		require.ErrorIs(t, err, errConflict, "Run(w1) returns the dependency's answer")
		require.ErrorIs(t, err, ErrUnknownOutcome, "Run(w1) says the first attempt may have been applied")
		assert.Equal(t, Source{}, src)
		assert.Zero(t, o.Pending(), "a write the dependency refused is not deferred")
	})
}
