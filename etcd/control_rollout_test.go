package etcd

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/ringfence/ringfence/admin"
	"github.com/ringfence/ringfence/etcd/internal/etcdtest"
	"github.com/ringfence/ringfence/rollout"
)

// checkoutPlan is the plan of the fleet rollout these tests steer: a first
// ring that bakes for an hour, so only an operator moves it.
func checkoutPlan() rollout.Plan {
	return rollout.Plan{Name: "checkout", Interval: 50 * time.Millisecond,
		Stages: []rollout.Stage{{Percent: 50, Bake: time.Hour}, {Percent: 100}}}
}

// judge is one instance competing to judge the fleet's rollout.
type judge struct {
	e *Evaluator
	j *RolloutJudge
}

// newJudge joins the election as id, waits until it leads, and returns
// its judge (not yet running).
func newJudge(t *testing.T, id string, endpoints ...string) *judge {
	t.Helper()
	ctx := waitCtx(t)
	c := newClient(t, endpoints...)
	e, err := NewEvaluator(ctx, c, "checkout", EvaluatorSettings{Settings: quick(), ID: id, LeaseTTL: 10 * time.Second})
	require.NoError(t, err)
	t.Cleanup(func() { e.Close() })
	fe, err := NewFleetEvidence(ctx, c, "checkout", EvidenceSettings{Settings: quick(), Instance: id, LeaseTTL: 10 * time.Second})
	require.NoError(t, err)
	t.Cleanup(func() { fe.Close() })
	store, err := e.Campaign(ctx)
	require.NoError(t, err)
	j, err := e.JudgeRollout(checkoutPlan(), store, fe)
	require.NoError(t, err)
	return &judge{e: e, j: j}
}

// run runs the judge until the test ends.
func (jd *judge) run(t *testing.T) {
	t.Helper()
	ctx, stop := context.WithCancel(waitCtx(t))
	ran := make(chan error, 1)
	go func() { ran <- jd.j.Run(ctx) }()
	t.Cleanup(func() {
		stop()
		<-ran
	})
}

// eventually waits until ok holds, polling, bounded by d.
func eventually(t *testing.T, what string, d time.Duration, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %v", what, d)
		}
		time.Sleep(5 * time.Millisecond) // polls a real server; bounded by d
	}
}

// rolloutConsole is an instance that follows the fleet's rollout and
// serves an admin handler whose Admin steers it through a RolloutControl.
type rolloutConsole struct {
	console
	rf *RolloutFollower
	rc *RolloutControl
}

func newRolloutConsole(t *testing.T, timeout time.Duration, endpoints ...string) *rolloutConsole {
	t.Helper()
	c := newClient(t, endpoints...)
	rf, err := FollowRollout(c, checkoutPlan(), quick())
	require.NoError(t, err)
	t.Cleanup(rf.Close)
	rc, err := NewRolloutControl(c, "checkout", quick())
	require.NoError(t, err)
	objects := admin.Objects{Rollouts: []*rollout.Rollout{rf.Rollout()}}
	a, err := NewAdmin(AdminSettings{Objects: objects, Rollouts: map[string]*RolloutControl{"checkout": rc}, Timeout: timeout})
	require.NoError(t, err)
	h, err := admin.New(admin.Settings{
		Tokens:  []admin.Token{{Name: "alice", Secret: writeSecret, Write: true}},
		Objects: objects, Actions: a, Logger: quick().Logger,
	})
	require.NoError(t, err)
	in := &rolloutConsole{console: console{admin: a, srv: httptest.NewServer(h)}, rf: rf, rc: rc}
	t.Cleanup(in.srv.Close)
	return in
}

// act applies a rollout verb through the console's Admin.
func (in *rolloutConsole) act(verb admin.Verb, reason string) error {
	return in.admin.Apply(context.Background(), admin.Action{Kind: admin.KindRollout, Name: "checkout", Verb: verb, Reason: reason, Actor: "alice"})
}

// intent reads the rollout's control key.
func intent(t *testing.T, c *clientv3.Client, rc *RolloutControl) (controlDoc, int64) {
	t.Helper()
	resp, err := c.Get(waitCtx(t), rc.Key())
	require.NoError(t, err)
	require.Len(t, resp.Kvs, 1, "intent at %s", rc.Key())
	var doc controlDoc
	require.NoError(t, json.Unmarshal(resp.Kvs[0].Value, &doc))
	return doc, resp.Kvs[0].ModRevision
}

func recordVersion(t *testing.T, endpoints []string) (rollout.Record, uint64) {
	t.Helper()
	rs, err := NewRolloutStore(newClient(t, endpoints...), "checkout", quick())
	require.NoError(t, err)
	rec, version, err := rs.Load(waitCtx(t))
	require.NoError(t, err)
	return rec, version
}

func TestFleetRolloutPauseThroughAnyConsole(t *testing.T) {
	srv := etcdtest.New(t)
	a := newJudge(t, "a", srv.Endpoints()...)
	a.run(t)
	eventually(t, "judged rollout running", testWait, func() bool { return a.j.Judged().Status().State == rollout.Running })
	b := newRolloutConsole(t, 0, srv.Endpoints()...)
	eventually(t, "B following", testWait, func() bool { return b.rf.Rollout().Status().State == rollout.Running })

	start := time.Now()
	got := b.post(t, writeSecret, "rollouts/checkout/pause", `{"reason":"checkout errors up"}`)
	require.Equal(t, http.StatusOK, got.Status, "pause through B's console: %s", got.Error)
	assert.Equal(t, ScopeFleet, got.Change.Scope)
	st := a.j.Judged().Status()
	assert.Equal(t, rollout.Paused, st.State, "the judged rollout once B's console answered")
	assert.True(t, strings.HasPrefix(st.Reason, "checkout errors up (by alice, intent "), "reason %q", st.Reason)
	eventually(t, "B's follower paused", fleetWait-time.Since(start), func() bool { return b.rf.Rollout().Status().State == rollout.Paused })

	doc, _ := intent(t, newClient(t, srv.Endpoints()...), b.rc)
	assert.Equal(t, resultApplied, doc.Result)
	assert.Equal(t, "a", doc.Judge)

	// The judge refuses what the rollout refuses, and nothing changes.
	_, before := recordVersion(t, srv.Endpoints())
	err := b.act(admin.VerbPause, "again")
	require.ErrorIs(t, err, admin.ErrTransition, "pausing a paused rollout")
	assert.Contains(t, err.Error(), "cannot go from paused to paused")
	_, after := recordVersion(t, srv.Endpoints())
	assert.Equal(t, before, after, "record version after a refused intent")
	assert.Equal(t, rollout.Paused, a.j.Judged().Status().State)
}

func TestFleetRolloutPromoteOfARolledBackRolloutIsRefused(t *testing.T) {
	srv := etcdtest.New(t)
	a := newJudge(t, "a", srv.Endpoints()...)
	a.run(t)
	eventually(t, "judged rollout running", testWait, func() bool { return a.j.Judged().Status().State == rollout.Running })
	b := newRolloutConsole(t, 0, srv.Endpoints()...)

	require.NoError(t, b.act(admin.VerbAbort, "bad update"))
	eventually(t, "B rolled back", fleetWait, func() bool { return b.rf.Rollout().Status().State == rollout.RolledBack })
	rec, before := recordVersion(t, srv.Endpoints())
	require.Equal(t, rollout.RolledBack, rec.State)
	_, intentBefore := intent(t, newClient(t, srv.Endpoints()...), b.rc)

	got := b.post(t, writeSecret, "rollouts/checkout/promote", `{"reason":"ship it"}`)
	assert.Equal(t, http.StatusConflict, got.Status, "promote of a rolled-back rollout: %s", got.Error)
	assert.Equal(t, "illegal-transition", got.Code)
	rec, after := recordVersion(t, srv.Endpoints())
	assert.Equal(t, before, after, "record version")
	assert.Equal(t, rollout.RolledBack, rec.State)
	_, intentAfter := intent(t, newClient(t, srv.Endpoints()...), b.rc)
	assert.Equal(t, intentBefore, intentAfter, "no intent is written for an ended rollout")
	assert.Equal(t, rollout.RolledBack, a.j.Judged().Status().State)
}

func TestFleetRolloutIntentAppliedOnceAcrossALeaderChange(t *testing.T) {
	srv := etcdtest.New(t)
	c := newClient(t, srv.Endpoints()...)
	a := newJudge(t, "a", srv.Endpoints()...)
	require.NoError(t, a.j.Judged().Start(waitCtx(t))) // leads, but is not yet serving intents
	b := newRolloutConsole(t, 300*time.Millisecond, srv.Endpoints()...)

	// No judge answers: the console withdraws the intent and says so.
	err := b.act(admin.VerbPause, "checkout errors up")
	require.ErrorIs(t, err, admin.ErrUnavailable, "pause with no judge serving")
	assert.Contains(t, err.Error(), "withdrawn, nothing was changed")
	resp, err := c.Get(waitCtx(t), b.rc.Key())
	require.NoError(t, err)
	assert.Empty(t, resp.Kvs, "the withdrawn intent")
	assert.Equal(t, rollout.Running, a.j.Judged().Status().State)

	// Leader a claims an intent and applies it, then loses the leadership
	// before it records the result.
	doc := controlDoc{Format: FormatVersion, ID: "0123456789abcdef", Verb: "pause", Reason: "checkout errors up",
		Actor: "alice", Time: time.Now(), Result: resultClaimed, Judge: "a", At: time.Now()}
	data, err := json.Marshal(doc)
	require.NoError(t, err)
	_, err = c.Put(waitCtx(t), b.rc.Key(), string(data))
	require.NoError(t, err)
	require.NoError(t, a.j.Judged().Pause(annotated(doc)))
	_, applied := recordVersion(t, srv.Endpoints())
	require.NoError(t, a.e.Resign(waitCtx(t)))

	// The next leader answers it as applied, without applying it again.
	next := newJudge(t, "next", srv.Endpoints()...)
	next.run(t)
	eventually(t, "the next leader answers the intent", testWait, func() bool {
		d, _ := intent(t, c, b.rc)
		return d.Result != resultClaimed
	})
	doc, _ = intent(t, c, b.rc)
	assert.Equal(t, resultApplied, doc.Result)
	assert.Equal(t, "next", doc.Judge)
	rec, version := recordVersion(t, srv.Endpoints())
	assert.Equal(t, applied, version, "record version: the intent was saved once")
	assert.Equal(t, rollout.Paused, rec.State)
	assert.Equal(t, rollout.Paused, next.j.Judged().Status().State)
	for _, ev := range next.j.Judged().History() {
		if ev.From != rollout.Paused {
			assert.NotEqual(t, rollout.Paused, ev.To, "the next leader paused again: %+v", ev)
		}
	}

	// A new intent goes to the new leader.
	require.NoError(t, b.act(admin.VerbResume, "errors gone"))
	assert.Equal(t, rollout.Running, next.j.Judged().Status().State)
}

func TestFleetRolloutControlWhenEtcdIsStopped(t *testing.T) {
	srv := etcdtest.New(t)
	b := newRolloutConsole(t, 500*time.Millisecond, srv.Endpoints()...)
	srv.Stop()
	err := b.act(admin.VerbPause, "checkout errors up")
	require.Error(t, err)
	assert.True(t, errors.Is(err, admin.ErrUnavailable), "error %v wraps admin.ErrUnavailable", err)
	got := b.post(t, writeSecret, "rollouts/checkout/pause", `{"reason":"checkout errors up"}`)
	assert.Equal(t, http.StatusServiceUnavailable, got.Status, "%s", got.Error)
	assert.Equal(t, "unavailable", got.Code)
}

func TestNewAdminRejectsAStrayRolloutControl(t *testing.T) {
	srv := etcdtest.New(t)
	rc, err := NewRolloutControl(newClient(t, srv.Endpoints()...), "checkout", quick())
	require.NoError(t, err)
	_, err = NewAdmin(AdminSettings{Rollouts: map[string]*RolloutControl{"checkout": rc}})
	require.Error(t, err)
	assert.Contains(t, err.Error(), "AdminSettings.Rollouts")
}
