package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"testing"
	"time"

	"github.com/fsouza/fake-gcs-server/fakestorage"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/ringfence/ringfence/breaker"
	"github.com/ringfence/ringfence/chaos"
	"github.com/ringfence/ringfence/fallback"
)

// quiet drops the shop's timeline. (t.Logf would not do: a breaker left
// open reports its move to half-open from its timer, after the test.)
func quiet(string, ...any) {}

func TestOutageStory(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	sum, err := simulate(ctx, io.Discard, t.TempDir())
	require.NoError(t, err, "simulate")
	require.NoError(t, sum.check(), "check")

	t.Run("every read is answered, from the copy while the service is out", func(t *testing.T) {
		var got []string
		for _, r := range sum.Reads {
			got = append(got, r.Phase+": "+r.Source.Kind.String())
		}
		assert.Equal(t, []string{
			"healthy: primary",
			"server stopped: stale", "server stopped: stale",
			"overloaded: stale", "overloaded: stale",
			"recovered: primary",
		}, got, "reads by phase and source")
		for _, r := range sum.Stale() {
			assert.Positive(t, r.Source.Age, "age of a stale answer in %s", r.Phase)
		}
	})

	t.Run("the outage costs the server no request", func(t *testing.T) {
		assert.Equal(t, 0, sum.DuringOutage, "requests that reached the server during the outage")
		assert.GreaterOrEqual(t, sum.Failures[causeRefused], 1, "calls refused while the server was stopped")
		assert.GreaterOrEqual(t, sum.Failures[causeStatus], 1, "calls answered 503 by the front")
		assert.GreaterOrEqual(t, sum.Injected.Statuses, uint64(1), "503s injected")
		// Two reads and five orders, each sent once: the outage's attempts
		// never left the client, so the count is exact.
		assert.Equal(t, 7, sum.Server.Total, "requests that reached the server")
		assert.Equal(t, map[int]int{200: 7}, sum.Server.ByCode, "requests by status")
		assert.Equal(t, 2, sum.Server.Reads, "object reads served")
	})

	t.Run("every order is stored exactly once", func(t *testing.T) {
		assert.Len(t, sum.Placed, 5, "orders placed")
		assert.Equal(t, 2, sum.Deferred, "orders deferred")
		assert.Equal(t, 2, sum.Replayed, "orders replayed")
		assert.Equal(t, 0, sum.Duplicates, "writes the service already held")
		for name := range sum.Placed {
			assert.True(t, sum.Stored[name], "%s stored with its content", name)
			assert.Equal(t, 1, sum.Server.Created[name], "creations of %s", name)
		}
		assert.Len(t, sum.Server.Created, 5, "objects created")
		assert.Equal(t, 0, sum.Pending, "outbox items pending")
		assert.Equal(t, 0, sum.Dead, "outbox dead letters")
		assert.Equal(t, breaker.Closed, sum.Breaker, "breaker at the end")
	})
}

func TestRunPrintsTheStory(t *testing.T) {
	var out bytes.Buffer
	code := run(&out)
	require.Equal(t, 0, code, "run exit status; output:\n%s", out.String())
	for _, want := range []string{
		"breaker storage/gcs: closed -> open (3 consecutive failures)",
		"the service: connection refused, 3 attempts",
		`from stale "last known good"`,
		"503 Service Unavailable, Retry-After: 1s",
		"accepted, will sync",
		"replayed orders/0003.json",
		"replayed orders/0004.json",
		"breaker storage/gcs: half-open -> closed",
		"orders lost                                                0",
		"orders applied twice                                       0",
		"OK: every read answered",
	} {
		assert.Contains(t, out.String(), want, "run output")
	}
}

// A replay of an order the service already holds, as after a write whose
// answer was lost, is not applied twice: the create is conditional, the
// service answers 412, and the outbox counts the order delivered.
func TestReplayOfAStoredOrderIsNotAppliedTwice(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	dir := t.TempDir()
	o := order{ID: "0042", Item: "tea", Qty: 1}
	stored, err := json.Marshal(o)
	require.NoError(t, err, "Marshal")
	srv, err := startServer(dir+"/gcs", bucket, fakestorage.Object{
		ObjectAttrs: fakestorage.ObjectAttrs{BucketName: bucket, Name: o.object()},
		Content:     stored,
	})
	require.NoError(t, err, "startServer")
	t.Cleanup(srv.stop)
	sh, err := newShop(ctx, shopSettings{Endpoint: srv.URL(), Bucket: bucket, OutboxDir: dir + "/outbox", Logf: quiet})
	require.NoError(t, err, "newShop")
	t.Cleanup(func() { assert.NoError(t, sh.Close(), "Close") })

	it, err := orderItem(o)
	require.NoError(t, err, "orderItem")
	require.NoError(t, sh.outbox.Enqueue(ctx, it), "Enqueue")
	require.NoError(t, sh.Replay(ctx), "Replay")

	assert.Equal(t, 1, sh.duplicates, "writes the service already held")
	assert.Equal(t, 0, sh.outbox.Stats().Pending, "outbox items pending")
	assert.Equal(t, 0, sh.outbox.Stats().Dead, "outbox dead letters")
	srv.stop()
	c := srv.log.counts()
	assert.Equal(t, map[int]int{412: 1}, c.ByCode, "requests by status")
	assert.Empty(t, c.Created, "objects created")
}

// The same stack, with chaos turned on by hand: a breaker rejection never
// reaches the server, and a stale copy answers.
func TestSetFaultsReachNoServer(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	dir := t.TempDir()
	srv, err := startServer(dir+"/gcs", bucket, fakestorage.Object{
		ObjectAttrs: fakestorage.ObjectAttrs{BucketName: bucket, Name: priceList},
		Content:     []byte(prices),
	})
	require.NoError(t, err, "startServer")
	t.Cleanup(srv.stop)
	in, err := chaos.New(chaos.Settings{})
	require.NoError(t, err, "chaos.New")
	sh, err := newShop(ctx, shopSettings{Endpoint: srv.URL(), Bucket: bucket, OutboxDir: dir + "/outbox", Injector: in, Logf: quiet})
	require.NoError(t, err, "newShop")
	t.Cleanup(func() { assert.NoError(t, sh.Close(), "Close") })

	_, src, err := sh.Read(ctx, priceList)
	require.NoError(t, err, "Read while healthy")
	assert.Equal(t, fallback.KindPrimary, src.Kind, "source while healthy")

	require.NoError(t, in.Set(chaos.Faults{ErrorRate: 1}), "Set")
	data, src, err := sh.Read(ctx, priceList)
	require.NoError(t, err, "Read during the outage")
	assert.Equal(t, fallback.KindStale, src.Kind, "source during the outage")
	assert.Equal(t, prices, string(data), "content during the outage")
	assert.Equal(t, breaker.Open, sh.breaker().State(), "breaker after three refused attempts")
	assert.Equal(t, chaos.Stats{Calls: 4, Passed: 1, Errors: 3}, in.Stats(), "chaos Stats")

	srv.stop()
	assert.Equal(t, 1, srv.log.counts().Total, "requests that reached the server")
}

func TestCheckNamesTheBrokenInvariant(t *testing.T) {
	good := func() Summary {
		return Summary{
			Reads: []read{
				{Phase: "healthy", Source: fallback.Source{Kind: fallback.KindPrimary}},
				{Phase: "server stopped", Source: fallback.Source{Kind: fallback.KindStale, Age: time.Millisecond}},
				{Phase: "recovered", Source: fallback.Source{Kind: fallback.KindPrimary}},
			},
			Placed:   map[string]string{"orders/0001.json": stored, "orders/0002.json": accepted},
			Deferred: 1,
			Replayed: 1,
			Server:   requestCounts{Created: map[string]int{"orders/0001.json": 1, "orders/0002.json": 1}},
			Stored:   map[string]bool{"orders/0001.json": true, "orders/0002.json": true},
			Breaker:  breaker.Closed,
		}
	}
	require.NoError(t, good().check(), "check of a good summary")

	tests := []struct {
		name  string
		spoil func(*Summary)
		want  error
	}{
		{"a request reached the server during the outage", func(s *Summary) { s.DuringOutage = 1 }, errOutageTraffic},
		{"no read was stale", func(s *Summary) { s.Reads[1].Source.Kind = fallback.KindPrimary }, errNoStale},
		{"the last read was stale", func(s *Summary) { s.Reads = s.Reads[:2] }, errNotRecovered},
		{"no order was deferred", func(s *Summary) { s.Deferred, s.Replayed = 0, 0 }, errNoDeferred},
		{"a deferred order is not replayed", func(s *Summary) { s.Replayed = 0 }, errNotReplayed},
		{"an order is lost", func(s *Summary) { s.Stored["orders/0002.json"] = false }, errLost},
		{"an order is applied twice", func(s *Summary) { s.Server.Created["orders/0001.json"] = 2 }, errAppliedTwice},
		{"the outbox keeps a dead letter", func(s *Summary) { s.Dead = 1 }, errOutboxNotEmpty},
		{"the breaker stays open", func(s *Summary) { s.Breaker = breaker.Open }, errBreakerOpen},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := good()
			tt.spoil(&s)
			require.ErrorIs(t, s.check(), tt.want, "check")
		})
	}
}
