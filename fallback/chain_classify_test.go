package fallback

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/ringfence/ringfence/breaker"
	"github.com/ringfence/ringfence/retry"
)

// sdkError exposes its HTTP status the way AWS's smithy ResponseError does.
type sdkError struct{ code int }

func (e *sdkError) Error() string       { return fmt.Sprintf("sdk: status %d", e.code) }
func (e *sdkError) HTTPStatusCode() int { return e.code }

// fieldError carries its status in a field, as Azure's azcore.ResponseError
// (StatusCode) and Google's googleapi.Error (Code) do.
type fieldError struct{ StatusCode int }

func (e *fieldError) Error() string { return fmt.Sprintf("service: status %d", e.StatusCode) }

// asError finds an sdkError only through its As method.
type asError struct{ code int }

func (e asError) Error() string { return "as" }
func (e asError) As(target any) bool {
	if p, ok := target.(*httpStatusCoder); ok {
		*p = &sdkError{e.code}
		return true
	}
	return false
}

func TestUnavailable(t *testing.T) {
	tests := []struct {
		name string
		err  error
		want bool
	}{
		{"a plain error", errDown, true},
		{"404 through HTTPStatusCode", &sdkError{404}, false},
		{"404 wrapped twice", fmt.Errorf("get blob: %w", fmt.Errorf("attempt: %w", &sdkError{404})), false},
		{"403 in a joined error", errors.Join(errDown, &sdkError{403}), false},
		{"400", &sdkError{400}, false},
		{"409", &sdkError{409}, false},
		{"408 Request Timeout", &sdkError{408}, true},
		{"429 Too Many Requests", &sdkError{429}, true},
		{"500", &sdkError{500}, true},
		{"503", &sdkError{503}, true},
		{"a retry.StatusError 503", &retry.StatusError{StatusCode: 503}, true},
		{"a retry.StatusError 404", &retry.StatusError{StatusCode: 404}, false},
		{"a retry.Error whose last attempt got 404", retryGaveUp(t, &sdkError{404}), false},
		{"404 found through an As method", asError{404}, false},
		{"a status in a field is not seen without a classifier", &fieldError{404}, true},
		{"a breaker's rejection", &breaker.OpenError{Name: "api"}, true},
		{"a deadline", context.DeadlineExceeded, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			assert.Equal(t, tt.want, Unavailable(tt.err), "Unavailable(%v)", tt.err)
		})
	}
}

// retryGaveUp returns the *retry.Error of a call that failed once with err.
func retryGaveUp(t *testing.T, err error) error {
	t.Helper()
	_, got := retry.Do(context.Background(), retry.Policy{MaxAttempts: 1}, func(context.Context) (int, error) { return 0, err })
	var re *retry.Error
	require.ErrorAs(t, got, &re)
	return got
}

func TestUnavailableStatus(t *testing.T) {
	for code, want := range map[int]bool{200: true, 304: true, 400: false, 401: false, 403: false, 404: false,
		408: true, 409: false, 412: false, 429: true, 499: false, 500: true, 502: true, 503: true, 504: true} {
		assert.Equal(t, want, UnavailableStatus(code), "UnavailableStatus(%d)", code)
	}
}

func TestChainDoesNotFallBackOnClientErrors(t *testing.T) {
	newStale := func(t *testing.T) *Cache[string, string] {
		cache, err := NewCache[string, string](CacheSettings{})
		require.NoError(t, err)
		cache.Put("blob", "deleted contents")
		return cache
	}
	t.Run("a not-found is returned, not served stale", func(t *testing.T) {
		errGone := &sdkError{404}
		c, err := NewChain("read", ChainSettings{}, Primary("storage", newDep("", fmt.Errorf("read blob: %w", errGone)).call),
			Stale("last known", newStale(t), identity))
		require.NoError(t, err)
		_, src, err := c.Run(context.Background(), "blob")
		require.ErrorIs(t, err, errGone)
		assert.NotErrorIs(t, err, ErrAllFailed)
		var se *StepError
		require.ErrorAs(t, err, &se)
		assert.Equal(t, KindPrimary, se.Kind)
		assert.Equal(t, Source{}, src)
	})
	t.Run("a 503 is served stale", func(t *testing.T) {
		c, err := NewChain("read", ChainSettings{}, Primary("storage", newDep("", &sdkError{503}).call),
			Stale("last known", newStale(t), identity))
		require.NoError(t, err)
		got, src, err := c.Run(context.Background(), "blob")
		require.NoError(t, err)
		assert.Equal(t, "deleted contents", got)
		assert.Equal(t, KindStale, src.Kind)
	})
	t.Run("a not-found neither opens the breaker nor is retried", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			br, err := breaker.New(breaker.Settings{ConsecutiveFailures: 2, OpenTimeout: time.Hour})
			require.NoError(t, err)
			primary := newDep("", &sdkError{404})
			c, err := NewChain("read", ChainSettings{Breaker: br, Retry: &retry.Policy{MaxAttempts: 3}},
				Primary("storage", primary.call), Static[string]("default", "x"))
			require.NoError(t, err)
			for range 5 {
				_, _, err := c.Run(context.Background(), "blob")
				var se *sdkError
				require.ErrorAs(t, err, &se)
				assert.NotErrorIs(t, err, breaker.ErrOpen)
			}
			assert.Equal(t, int64(5), primary.calls.Load(), "calls that reached the primary")
			assert.Equal(t, breaker.Closed, br.State())
		})
	})
	t.Run("an SDK's error type plugs in through ShouldFallback", func(t *testing.T) {
		sdkAware := func(err error) bool {
			var fe *fieldError
			if errors.As(err, &fe) {
				return UnavailableStatus(fe.StatusCode)
			}
			return Unavailable(err)
		}
		for _, tt := range []struct {
			err      error
			wantKind Kind
		}{{&fieldError{404}, 0}, {&fieldError{500}, KindStatic}, {&sdkError{404}, 0}, {errDown, KindStatic}} {
			c, err := NewChain("read", ChainSettings{ShouldFallback: sdkAware},
				Primary("storage", newDep("", tt.err).call), Static[string]("default", "x"))
			require.NoError(t, err)
			_, src, err := c.Run(context.Background(), "blob")
			assert.Equal(t, tt.wantKind, src.Kind, "Run with the primary failing with %v", tt.err)
			if tt.wantKind == 0 {
				require.ErrorIs(t, err, tt.err)
			}
		}
	})
}
