package breaker

import (
	"context"
	"errors"
	"net/http"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

var errOdd = errors.New("odd error")

// A panic in Settings.IsFailure must still settle the call, or a probe
// would keep its half-open slot for good and the breaker would never close.
func TestPanicInIsFailureFreesTheProbeSlot(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := mustNew(t, Settings{
			ConsecutiveFailures: 1,
			OpenTimeout:         time.Second,
			IsFailure: func(err error) bool {
				if errors.Is(err, errOdd) {
					panic("cannot judge")
				}
				return true
			},
		})
		trip(t, b)
		sleep(time.Second)
		require.Equal(t, HalfOpen, b.State(), "State() after the open wait")
		func() {
			defer func() { assert.Equal(t, "cannot judge", recover(), "recovered panic value") }()
			_, _ = Do(context.Background(), b, func(context.Context) (int, error) { return 0, errOdd })
			t.Error("Do() returned after IsFailure panicked")
		}()
		assert.Equal(t, Open, b.State(), "State() after the probe whose judging panicked")
		sleep(2 * time.Second)
		require.NoError(t, run(b, true), "next probe")
		assert.Equal(t, Closed, b.State(), "State() after the next probe")
	})
}

// The same holds for TransportOptions.IsFailure.
func TestPanicInTransportIsFailureFreesTheProbeSlot(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		g, err := NewGroup(Settings{ConsecutiveFailures: 1, OpenTimeout: time.Second, rand: noJitter}, GroupOptions{})
		require.NoError(t, err)
		status := http.StatusServiceUnavailable
		next := roundTripFunc(func(req *http.Request) (*http.Response, error) {
			return &http.Response{StatusCode: status, Body: http.NoBody, Request: req}, nil
		})
		rt := Transport(next, g, TransportOptions{IsFailure: func(resp *http.Response, _ error) bool {
			if resp.StatusCode == http.StatusTeapot {
				panic("cannot judge")
			}
			return resp.StatusCode >= 500
		}})
		get := func() error {
			req, err := http.NewRequest(http.MethodGet, "http://api.example/", nil)
			require.NoError(t, err)
			_, err = rt.RoundTrip(req)
			return err
		}
		require.NoError(t, get(), "first request (503)")
		require.Equal(t, Open, g.Get("api.example").State(), "State() after a 503")
		sleep(time.Second)
		status = http.StatusTeapot
		func() {
			defer func() { assert.Equal(t, "cannot judge", recover(), "recovered panic value") }()
			_ = get()
			t.Error("RoundTrip() returned after IsFailure panicked")
		}()
		sleep(2 * time.Second)
		status = http.StatusOK
		require.NoError(t, get(), "next probe")
		assert.Equal(t, Closed, g.Get("api.example").State(), "State() after the next probe")
	})
}

// roundTripFunc is a round tripper made of a function.
type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(req *http.Request) (*http.Response, error) { return f(req) }
