package main

import (
	"bytes"
	"context"
	"io"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/ringfence/ringfence/breaker"
	"github.com/ringfence/ringfence/retry"
)

func TestTwoRegions(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	sum, err := simulate(ctx, io.Discard)
	require.NoError(t, err, "simulate")
	recovered := rounds - usUpAt + 1

	t.Run("retries hide the EU region's dropped connections", func(t *testing.T) {
		assert.Equal(t, rounds, sum.EU.Calls, "EU calls")
		assert.Equal(t, rounds, sum.EU.Seen[OK], "EU calls that succeeded")
		// The seed fixes which attempts chaos fails; the calls are made one
		// at a time, so the count is exact.
		assert.Equal(t, 9, sum.EU.Injected, "EU attempts failed by chaos")
		assert.Equal(t, rounds, sum.EU.Served, "EU requests served")
		assert.Equal(t, breaker.Closed, sum.EU.Breaker, "EU breaker")
	})

	t.Run("the US breaker stops the calls to the dead region", func(t *testing.T) {
		outage := usUpAt - 1
		assert.Equal(t, outage, sum.US.Seen[Status]+sum.US.Seen[Rejected], "US calls that failed during the outage")
		assert.GreaterOrEqual(t, sum.US.Seen[Status], 1, "US calls answered 503")
		// Round 1's three attempts open the breaker, whose open wait
		// outlasts the outage: no request reaches the dead region after.
		assert.Equal(t, 3+recovered, sum.US.Served, "US requests served")
		assert.Less(t, sum.US.Served, 3*outage+recovered, "US requests served, vs three attempts per call")
	})

	t.Run("the US region is used again once it is back", func(t *testing.T) {
		assert.Equal(t, recovered, sum.US.Seen[OK], "US calls that succeeded")
		assert.Equal(t, breaker.Closed, sum.US.Breaker, "US breaker")
	})

	t.Run("the invariants hold", func(t *testing.T) {
		assert.NoError(t, sum.check(), "check")
	})
}

func TestRunPrintsTheStory(t *testing.T) {
	var out bytes.Buffer
	code := run(&out)
	require.Equal(t, 0, code, "run exit status; output:\n%s", out.String())
	for _, want := range []string{
		"breaker storage/us.storage.example: closed -> open (3 consecutive failures)",
		"us.storage.example: 503 Service Unavailable",
		"rejected at once by breaker storage/us.storage.example (open), no request sent",
		"breaker storage/us.storage.example: open -> forced-closed (forced closed: operator: the US region has recovered)",
		"breaker storage/us.storage.example: forced-closed -> closed (released)",
		"OK: the EU region's faults never reached the caller",
	} {
		assert.Contains(t, out.String(), want, "run output")
	}
	assert.NotContains(t, out.String(), "eu.storage.example: connection refused", "run output")
}

// The caller can tell a breaker's rejection from a server's answer through
// the errors http.Client wraps around it.
func TestClientErrors(t *testing.T) {
	srv := newRegion()
	defer srv.close()
	srv.down.Store(true)
	g, err := breaker.NewGroup(breaker.Settings{ConsecutiveFailures: 1, OpenTimeout: time.Hour}, breaker.GroupOptions{})
	require.NoError(t, err, "NewGroup")
	client := NewHTTPClient(nil, g, retry.Policy{MaxAttempts: 1})
	store := newStorageClient(srv.srv.URL, StorageOptions{HTTPClient: client})

	tests := []struct {
		name string
		want Outcome
	}{
		{"the first call sees the server's 503", Status},
		{"the second call is rejected by the open breaker", Rejected},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := store.Get(context.Background(), "objects/1")
			got, _ := classify(err)
			assert.Equal(t, tt.want, got, "classify(%v)", err)
		})
	}
	assert.Equal(t, int64(1), srv.served.Load(), "requests served")
}
