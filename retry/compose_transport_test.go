package retry_test

import (
	"io"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/ringfence/ringfence/breaker"
	"github.com/ringfence/ringfence/retry"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// These tests check the recommended transport chain:
// retry.Transport(breaker.Transport(...)).

func newGroup(t *testing.T, s breaker.Settings) *breaker.Group {
	t.Helper()
	g, err := breaker.NewGroup(s, breaker.GroupOptions{})
	require.NoError(t, err)
	return g
}

// flakyServer answers 503 to its first failures requests and 200 after.
func flakyServer(t *testing.T, failures int) (*httptest.Server, *atomic.Int64) {
	t.Helper()
	var hits atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if hits.Add(1) <= int64(failures) {
			http.Error(w, "overloaded", http.StatusServiceUnavailable)
			return
		}
		io.WriteString(w, "ok")
	}))
	t.Cleanup(srv.Close)
	return srv, &hits
}

// The transport tests below use a real server and wait a millisecond
// between attempts; they need no fake time.

func TestTransportChainRetriesThroughTheBreaker(t *testing.T) {
	srv, hits := flakyServer(t, 2)
	g := newGroup(t, breaker.Settings{Name: "api"})
	client := &http.Client{Transport: retry.Transport(
		breaker.Transport(srv.Client().Transport, g, breaker.TransportOptions{}),
		retry.Policy{InitialInterval: time.Millisecond, Rand: fixed(0.5)},
	)}
	resp, err := client.Get(srv.URL)
	require.NoError(t, err)
	assert.Equal(t, http.StatusOK, resp.StatusCode, "client.Get status")
	assert.Equal(t, "ok", readBody(t, resp), "client.Get body")
	assert.EqualValues(t, 3, hits.Load(), "requests the server received")
	sns := g.Snapshots()
	require.Len(t, sns, 1, "breakers in the group")
	assert.EqualValues(t, 3, sns[0].Requests, "requests the breaker counted")
	assert.EqualValues(t, 2, sns[0].Failures, "failures the breaker counted")
}

func TestTransportChainStopsWhenTheBreakerOpens(t *testing.T) {
	srv, hits := flakyServer(t, 1000)
	g := newGroup(t, breaker.Settings{Name: "api", ConsecutiveFailures: 2, OpenTimeout: 30 * time.Second})
	client := &http.Client{Transport: retry.Transport(
		breaker.Transport(srv.Client().Transport, g, breaker.TransportOptions{}),
		retry.Policy{MaxAttempts: 3, InitialInterval: time.Millisecond, Rand: fixed(0.5)},
	)}

	// Two 503s open the breaker, and the last attempt is rejected by it.
	_, err := client.Get(srv.URL)
	require.ErrorIs(t, err, breaker.ErrOpen)
	var re *retry.Error
	require.ErrorAs(t, err, &re)
	assert.Equal(t, 3, re.Attempts, "Error.Attempts")
	assert.EqualValues(t, 2, hits.Load(), "requests the server received")

	// The next request is rejected by the breaker with a wait of 24s to
	// 30s, more than its two retries could wait (2 × 10s), so it ends at
	// once without touching the network.
	_, err = client.Get(srv.URL)
	require.ErrorIs(t, err, breaker.ErrOpen)
	require.ErrorAs(t, err, &re)
	assert.Equal(t, 1, re.Attempts, "Error.Attempts while open")
	assert.EqualValues(t, 2, hits.Load(), "requests the server received")
}

func TestTransportChainWaitsOutABriefOpenBreaker(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := &fakeBackend{steps: statuses(503, 503, 200)}
		g := newGroup(t, breaker.Settings{Name: "api", ConsecutiveFailures: 2, OpenTimeout: 2 * time.Second})
		rt := retry.Transport(
			breaker.Transport(f, g, breaker.TransportOptions{}),
			retry.Policy{MaxAttempts: 5, Rand: fixed(0.5)},
		)
		req, err := http.NewRequest(http.MethodGet, "http://backend/items", nil)
		require.NoError(t, err)
		start := time.Now()
		resp, err := rt.RoundTrip(req)
		require.NoError(t, err)
		assert.Equal(t, http.StatusOK, resp.StatusCode, "RoundTrip status")
		readBody(t, resp)
		calls, closed := f.counts()
		assert.Equal(t, 3, calls, "calls to the backend: two 503s and the probe")
		assert.Equal(t, 3, closed, "response bodies closed (two discarded, plus ours)")
		// The open wait is 2s less up to 20% jitter, from 100ms on.
		assert.GreaterOrEqual(t, time.Since(start), 1700*time.Millisecond, "time spent in RoundTrip")
		assert.LessOrEqual(t, time.Since(start), 2900*time.Millisecond, "time spent in RoundTrip")
	})
}
