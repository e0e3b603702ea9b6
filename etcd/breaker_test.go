package etcd

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/ringfence/ringfence/breaker"
	"github.com/ringfence/ringfence/etcd/internal/etcdtest"
)

// node is one simulated instance with its own client, control and breakers.
type node struct {
	control *BreakerControl
	brs     map[string]*breaker.Breaker
	changes chan breaker.Change
}

func newNode(t *testing.T, s Settings, endpoints ...string) *node {
	t.Helper()
	control, err := NewBreakerControl(newClient(t, endpoints...), s)
	require.NoError(t, err, "NewBreakerControl")
	t.Cleanup(control.Close)
	n := &node{control: control, brs: make(map[string]*breaker.Breaker), changes: make(chan breaker.Change, 64)}
	for name, groups := range map[string][]string{"payments": {"backend"}, "search": {"backend"}, "email": nil} {
		b, err := breaker.New(breaker.Settings{Name: name, OnChange: func(c breaker.Change) { n.changes <- c }})
		require.NoError(t, err)
		n.brs[name] = b
		control.Attach(b, groups...)
	}
	return n
}

// await waits until breaker name reports state, bounded by d.
func (n *node) await(t *testing.T, name string, state breaker.State, d time.Duration) {
	t.Helper()
	timeout := time.NewTimer(d)
	defer timeout.Stop()
	for n.brs[name].State() != state {
		select {
		case <-n.changes:
		case <-timeout.C:
			t.Fatalf("breaker %q: State() = %v after %v, want %v", name, n.brs[name].State(), d, state)
		}
	}
}

func TestBreakerControlReachesTheFleet(t *testing.T) {
	srv := etcdtest.New(t)
	var fleet []*node
	for range 4 {
		fleet = append(fleet, newNode(t, quick(), srv.Endpoints()...))
	}
	ctx := waitCtx(t)
	operator := fleet[0].control

	require.NoError(t, operator.Set(ctx, Intent{Group: "backend", Action: ForceOpen, Reason: "provider outage", Actor: "alice"}))
	for _, n := range fleet {
		n.await(t, "payments", breaker.ForcedOpen, time.Second)
		n.await(t, "search", breaker.ForcedOpen, time.Second)
		assert.Equal(t, breaker.Closed, n.brs["email"].State(), "a breaker outside the group")
		assert.Contains(t, n.brs["payments"].Snapshot().Reason, "alice", "Snapshot().Reason names the actor")
	}

	require.NoError(t, operator.Set(ctx, Intent{Breaker: "search", Action: ForceClosed, Reason: "needed", Actor: "bob"}))
	for _, n := range fleet {
		n.await(t, "search", breaker.ForcedClosed, time.Second)
		assert.Equal(t, breaker.ForcedOpen, n.brs["payments"].State(), "the group intent still holds for payments")
	}

	require.NoError(t, operator.Set(ctx, Intent{Group: "backend", Action: Release, Reason: "resolved", Actor: "alice"}))
	require.NoError(t, operator.Set(ctx, Intent{Breaker: "search", Action: Release, Reason: "resolved", Actor: "bob"}))
	for _, n := range fleet {
		n.await(t, "payments", breaker.Closed, time.Second)
		n.await(t, "search", breaker.Closed, time.Second)
	}
	assert.Len(t, operator.Intents(), 2, "Intents() keeps the releases")
}

func TestBreakerControlIntentExpires(t *testing.T) {
	srv := etcdtest.New(t)
	n := newNode(t, quick(), srv.Endpoints()...)
	ctx := waitCtx(t)
	now := time.Now()
	require.NoError(t, n.control.Set(ctx, Intent{Breaker: "email", Action: ForceOpen, Time: now, Expires: now.Add(300 * time.Millisecond)}))
	n.await(t, "email", breaker.ForcedOpen, testWait)
	n.await(t, "email", breaker.Closed, testWait)
	assert.False(t, time.Now().Before(now.Add(300*time.Millisecond)), "released before Expires")
}

func TestBreakerControlLeavesLocalTripsAlone(t *testing.T) {
	srv := etcdtest.New(t)
	a := newNode(t, quick(), srv.Endpoints()...)
	b := newNode(t, quick(), srv.Endpoints()...)
	a.brs["email"].ForceOpen("local diagnosis")
	ctx := waitCtx(t)
	require.NoError(t, b.control.Set(ctx, Intent{Breaker: "search", Action: ForceOpen}))
	a.await(t, "search", breaker.ForcedOpen, testWait)
	assert.Equal(t, breaker.ForcedOpen, a.brs["email"].State(), "a local force is not touched")
	assert.Equal(t, breaker.Closed, b.brs["email"].State(), "a local force stays local")
}

func TestBreakerControlRejectsBadIntents(t *testing.T) {
	srv := etcdtest.New(t)
	n := newNode(t, quick(), srv.Endpoints()...)
	ctx := waitCtx(t)
	now := time.Now()
	for name, in := range map[string]Intent{
		"no target":             {Action: ForceOpen},
		"two targets":           {Breaker: "a", Group: "b", Action: ForceOpen},
		"a slash in the name":   {Breaker: "a/b", Action: ForceOpen},
		"an unknown action":     {Breaker: "a", Action: "open"},
		"an expiry in the past": {Breaker: "a", Action: ForceOpen, Time: now, Expires: now.Add(-time.Second)},
	} {
		t.Run("rejects "+name, func(t *testing.T) {
			require.ErrorIs(t, n.control.Set(ctx, in), ErrBadIntent, "Set(%+v)", in)
		})
	}
}

func TestBreakerControlIgnoresDamagedRecords(t *testing.T) {
	srv := etcdtest.New(t)
	ctx := waitCtx(t)
	c := newClient(t, srv.Endpoints()...)
	for key, value := range map[string]string{
		"breaker/name/payments": "garbage",
		"breaker/name/search":   `{"format":9,"intent":{"breaker":"search","action":"force-open"}}`,
		"breaker/group/backend": `{"format":1,"intent":{"group":"other","action":"force-open"}}`,
	} {
		_, err := c.Put(ctx, DefaultPrefix+key, value)
		require.NoError(t, err)
	}
	s, fresh := freshnessLog(quick())
	n := newNode(t, s, srv.Endpoints()...)
	awaitFreshness(t, fresh, false, "first read")
	require.ErrorIs(t, n.control.Err(), ErrBadRecord, "Err() after damaged records")
	for name, b := range n.brs {
		assert.Equal(t, breaker.Closed, b.State(), "breaker %q under a damaged record", name)
	}
	require.NoError(t, n.control.Set(ctx, Intent{Breaker: "payments", Action: ForceOpen}), "Set replaces a damaged record")
	n.await(t, "payments", breaker.ForcedOpen, testWait)
}

func TestBreakerControlSurvivesEtcdRestart(t *testing.T) {
	srv := etcdtest.New(t)
	s, fresh := freshnessLog(quick())
	a := newNode(t, s, srv.Endpoints()...)
	b := newNode(t, quick(), srv.Endpoints()...)
	ctx := waitCtx(t)
	require.NoError(t, b.control.Set(ctx, Intent{Group: "backend", Action: ForceOpen}))
	a.await(t, "payments", breaker.ForcedOpen, testWait)

	srv.Stop()
	awaitFreshness(t, fresh, true, "etcd stopped")
	assert.Equal(t, breaker.ForcedOpen, a.brs["payments"].State(), "the forced intent holds while etcd is down")
	require.NoError(t, srv.Restart(ctx))
	awaitFreshness(t, fresh, false, "etcd restarted")
	require.NoError(t, b.control.Set(ctx, Intent{Group: "backend", Action: Release}))
	a.await(t, "payments", breaker.Closed, testWait)
}
