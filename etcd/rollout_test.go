package etcd

import (
	"context"

	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/ringfence/ringfence/etcd/internal/etcdtest"
	"github.com/ringfence/ringfence/rollout"
)

func record(stage int, reason string) rollout.Record {
	return rollout.Record{Name: "checkout", Salt: "checkout", Stages: 4, Stage: stage, Percent: 1,
		State: rollout.Running, Reason: reason}
}

func TestRolloutStoreCompareAndSwap(t *testing.T) {
	srv := etcdtest.New(t)
	ctx := waitCtx(t)
	rs, err := NewRolloutStore(newClient(t, srv.Endpoints()...), "checkout", quick())
	require.NoError(t, err)

	_, _, err = rs.Load(ctx)
	require.ErrorIs(t, err, rollout.ErrNoState, "Load() of an empty store")
	v1, err := rs.Save(ctx, record(0, "started"), 0)
	require.NoError(t, err)
	v2, err := rs.Save(ctx, record(1, "advanced"), v1)
	require.NoError(t, err)
	_, err = rs.Save(ctx, record(2, "stale writer"), v1)
	require.ErrorIs(t, err, rollout.ErrConflict, "Save with an old version")
	got, v, err := rs.Load(ctx)
	require.NoError(t, err)
	assert.Equal(t, v2, v, "Load() version")
	assert.Equal(t, "advanced", got.Reason)

	const writers = 8
	var wg sync.WaitGroup
	var mu sync.Mutex
	wins := 0
	for i := range writers {
		other, err := NewRolloutStore(newClient(t, srv.Endpoints()...), "checkout", quick())
		require.NoError(t, err)
		wg.Go(func() {
			_, err := other.Save(ctx, record(2, fmt.Sprint(i)), v2)
			mu.Lock()
			defer mu.Unlock()
			if err == nil {
				wins++
			} else if !errors.Is(err, rollout.ErrConflict) {
				t.Errorf("Save by writer %d = %v, want nil or ErrConflict", i, err)
			}
		})
	}
	wg.Wait()
	assert.Equal(t, 1, wins, "concurrent writers whose Save succeeded")
}

func TestRolloutStoreRejectsBadRecords(t *testing.T) {
	srv := etcdtest.New(t)
	ctx := waitCtx(t)
	c := newClient(t, srv.Endpoints()...)
	s := quick()
	s.MaxRecordSize = 512
	rs, err := NewRolloutStore(c, "checkout", s)
	require.NoError(t, err)
	for name, value := range map[string]string{
		"garbage":        "not json",
		"another format": `{"format":3,"record":{}}`,
		"no record":      `{"format":1}`,
		"too large":      fmt.Sprintf(`{"format":1,"record":{"reason":"%0600d"}}`, 0),
	} {
		t.Run("reports "+name, func(t *testing.T) {
			resp, err := c.Put(ctx, rs.Key(), value)
			require.NoError(t, err)
			_, _, err = rs.Load(ctx)
			require.ErrorIs(t, err, rollout.ErrCorruptState, "Load() of %s", name)
			require.ErrorIs(t, err, ErrBadRecord)
			_, err = rs.Save(ctx, record(0, "over it"), uint64(resp.Header.Revision)-1)
			require.ErrorIs(t, err, rollout.ErrCorruptState, "Save over %s", name)
			got, err := c.Get(ctx, rs.Key())
			require.NoError(t, err)
			assert.Equal(t, value, string(got.Kvs[0].Value), "the bad record is left alone")
		})
	}
	t.Run("a rollout starting on a bad record fails safe to the baseline", func(t *testing.T) {
		_, err := c.Put(ctx, rs.Key(), "not json")
		require.NoError(t, err)
		r, err := rollout.New(rollout.Plan{Name: "checkout", Store: rs})
		require.NoError(t, err)
		require.ErrorIs(t, r.Start(ctx), rollout.ErrFailSafe)
		for i := range 100 {
			require.Equal(t, rollout.Baseline, r.Variant(fmt.Sprint("key", i)), "Variant() after a bad record")
		}
	})
}

// candidate is one instance taking part in the election.
type candidate struct {
	e     *Evaluator
	store chan *RolloutStore
	err   chan error
}

func newCandidate(t *testing.T, id string, endpoints ...string) *candidate {
	t.Helper()
	e, err := NewEvaluator(waitCtx(t), newClient(t, endpoints...), "checkout",
		EvaluatorSettings{Settings: quick(), ID: id, LeaseTTL: time.Second})
	require.NoError(t, err)
	t.Cleanup(func() { e.Close() })
	return &candidate{e: e, store: make(chan *RolloutStore, 1), err: make(chan error, 1)}
}

// campaign runs Campaign on its own goroutine.
func (c *candidate) campaign(ctx context.Context) {
	go func() {
		rs, err := c.e.Campaign(ctx)
		if err != nil {
			c.err <- err
			return
		}
		c.store <- rs
	}()
}

func (c *candidate) awaitLead(t *testing.T) *RolloutStore {
	t.Helper()
	select {
	case rs := <-c.store:
		return rs
	case err := <-c.err:
		t.Fatalf("Campaign by %s: %v", c.e.ID(), err)
	case <-time.After(testWait):
		t.Fatalf("%s did not lead within %v", c.e.ID(), testWait)
	}
	return nil
}

func TestEvaluatorElectionAndFencing(t *testing.T) {
	for _, how := range []string{"resigns", "crashes"} {
		t.Run("a follower takes over when the leader "+how, func(t *testing.T) {
			srv := etcdtest.New(t)
			ctx := waitCtx(t)
			a := newCandidate(t, "a", srv.Endpoints()...)
			b := newCandidate(t, "b", srv.Endpoints()...)
			a.campaign(ctx)
			leaderStore := a.awaitLead(t)
			v1, err := leaderStore.Save(ctx, record(0, "started by a"), 0)
			require.NoError(t, err, "Save by the leader")

			b.campaign(ctx)
			leader, err := b.e.Leader(ctx)
			require.NoError(t, err)
			assert.Equal(t, "a", leader, "Leader() while a leads")
			select {
			case <-b.store:
				t.Fatal("b leads while a does")
			default:
			}

			if how == "resigns" {
				require.NoError(t, a.e.Resign(ctx))
			} else {
				a.e.session.Orphan() // stop the keep-alive, as a dead process would
			}
			newStore := b.awaitLead(t)

			_, err = leaderStore.Save(ctx, record(1, "deposed a advances"), v1)
			require.ErrorIs(t, err, ErrDeposed, "Save by the deposed leader")
			require.ErrorIs(t, err, rollout.ErrConflict)
			v2, err := newStore.Save(ctx, record(1, "b advances"), v1)
			require.NoError(t, err, "Save by the new leader")
			got, v, err := newStore.Load(ctx)
			require.NoError(t, err)
			assert.Equal(t, v2, v)
			assert.Equal(t, "b advances", got.Reason, "the record holds only the leader's write")
		})
	}
}

// member is one instance of a fleet running a rollout.
type member struct {
	r  *rollout.Rollout
	fe *FleetEvidence
}

func newMember(t *testing.T, id string, endpoints ...string) *member {
	t.Helper()
	fe, err := NewFleetEvidence(waitCtx(t), newClient(t, endpoints...), "checkout",
		EvidenceSettings{Settings: quick(), Instance: id, LeaseTTL: time.Second})
	require.NoError(t, err)
	t.Cleanup(func() { fe.Close() })
	r, err := rollout.New(rollout.Plan{Name: "checkout", Evidence: fe.Merge})
	require.NoError(t, err)
	require.NoError(t, r.Start(waitCtx(t)))
	return &member{r: r, fe: fe}
}

func TestFleetEvidenceSumsLiveInstances(t *testing.T) {
	srv := etcdtest.New(t)
	ctx := waitCtx(t)
	var fleet []*member
	for i := range 3 {
		m := newMember(t, fmt.Sprint("i", i), srv.Endpoints()...)
		for range 10 * (i + 1) {
			m.r.Observe(rollout.Baseline, nil, time.Millisecond)
		}
		require.NoError(t, m.fe.PublishOnce(ctx, m.r.Evidence()))
		fleet = append(fleet, m)
	}
	samples := func(e rollout.Evidence) (n uint64) {
		for _, s := range e.Baseline.Samples {
			n += s
		}
		return n
	}
	sum, err := fleet[0].fe.Merge(ctx, fleet[0].r.Evidence())
	require.NoError(t, err)
	assert.Equal(t, uint64(60), samples(sum), "baseline samples of the fleet")

	require.NoError(t, fleet[0].fe.PublishOnce(ctx, fleet[0].r.Evidence()))
	assert.Equal(t, EvidenceStats{Writes: 1, Bytes: fleet[0].fe.Stats().Bytes, Skips: 1}, fleet[0].fe.Stats(),
		"an unchanged publication is skipped")

	fleet[2].fe.session.Orphan() // instance 2 dies: its lease runs out
	deadline := time.Now().Add(testWait)
	for {
		sum, err = fleet[0].fe.Merge(ctx, fleet[0].r.Evidence())
		require.NoError(t, err)
		if samples(sum) == 30 || time.Now().After(deadline) {
			break
		}
		select {
		case <-ctx.Done():
		case <-time.After(100 * time.Millisecond):
		}
	}
	assert.Equal(t, uint64(30), samples(sum), "baseline samples once a dead instance's lease expired")

	c := newClient(t, srv.Endpoints()...)
	_, err = c.Put(ctx, DefaultPrefix+"rollout/checkout/evidence/bad", "garbage")
	require.NoError(t, err)
	sum, err = fleet[0].fe.Merge(ctx, fleet[0].r.Evidence())
	require.NoError(t, err, "Merge with a damaged record")
	assert.Equal(t, uint64(30), samples(sum), "a damaged record is left out")
}

func TestFleetEvidencePublishesAtMostOncePerInterval(t *testing.T) {
	srv := etcdtest.New(t)
	m := newMember(t, "busy", srv.Endpoints()...)
	ctx, cancel := context.WithCancel(waitCtx(t))
	done := make(chan error, 1)
	go func() {
		done <- m.fe.Publish(ctx, func() rollout.Evidence {
			m.r.Observe(rollout.Baseline, nil, time.Millisecond) // always changed
			return m.r.Evidence()
		})
	}()
	start := time.Now()
	for m.fe.Stats().Writes < 3 {
		select {
		case <-time.After(50 * time.Millisecond):
		case <-ctx.Done():
			t.Fatal("fewer than 3 writes before the test's deadline")
		}
	}
	elapsed := time.Since(start)
	cancel()
	require.ErrorIs(t, <-done, context.Canceled)
	writes := m.fe.Stats().Writes
	assert.LessOrEqual(t, float64(writes), elapsed.Seconds()/DefaultPublishInterval.Seconds()+1,
		"%d writes in %v", writes, elapsed)
}

func TestRolloutFollowerTracksTheFleetRecord(t *testing.T) {
	stages := []rollout.Stage{{Percent: 10}, {Percent: 50}, {Percent: 100}}
	for _, end := range []rollout.State{rollout.RolledBack, rollout.Promoted} {
		t.Run("through a stage change to "+end.String(), func(t *testing.T) {
			srv := etcdtest.New(t)
			ctx := waitCtx(t)
			leader := newCandidate(t, "leader", srv.Endpoints()...)
			leader.campaign(ctx)
			store := leader.awaitLead(t)
			judge, err := rollout.New(rollout.Plan{Name: "checkout", Stages: stages, Store: store})
			require.NoError(t, err)
			require.NoError(t, judge.Start(ctx))

			rf, err := FollowRollout(newClient(t, srv.Endpoints()...), rollout.Plan{Name: "checkout", Stages: stages}, quick())
			require.NoError(t, err)
			defer rf.Close()
			awaitStatus := func(state rollout.State, stage int) {
				t.Helper()
				for st := rf.Rollout().Status(); st.State != state || st.Stage != stage; st = rf.Rollout().Status() {
					select {
					case <-ctx.Done():
						t.Fatalf("follower is %v at stage %d, want %v at stage %d", st.State, st.Stage, state, stage)
					case <-time.After(10 * time.Millisecond):
					}
				}
			}
			awaitStatus(rollout.Running, 0)

			// The evaluator advances: written here as its Evaluate would.
			rec, v, err := store.Load(ctx)
			require.NoError(t, err)
			rec.Stage, rec.Percent, rec.Reason = 1, 50, "judge: healthy at 10%"
			_, err = store.Save(ctx, rec, v)
			require.NoError(t, err)
			awaitStatus(rollout.Running, 1)
			assert.Equal(t, 50.0, rf.Rollout().Status().Percent, "the follower's share after the stage change")

			rec, v, err = store.Load(ctx)
			require.NoError(t, err)
			rec.State = end
			_, err = store.Save(ctx, rec, v)
			require.NoError(t, err)
			awaitStatus(end, 1)
			want := rollout.Baseline
			if end == rollout.Promoted {
				want = rollout.Canary
			}
			for i := range 100 {
				require.Equal(t, want, rf.Rollout().Variant(fmt.Sprint("key", i)), "Variant() once %v", end)
			}
		})
	}
}

func TestRolloutFollowerFailsSafeWhenStale(t *testing.T) {
	srv := etcdtest.New(t)
	proxy := newProxy(t, srv)
	ctx := waitCtx(t)
	plan := rollout.Plan{Name: "checkout", Stages: []rollout.Stage{{Percent: 50}, {Percent: 100}}}
	writer, err := NewRolloutStore(newClient(t, srv.Endpoints()...), "checkout", quick())
	require.NoError(t, err)
	p := plan
	p.Store = writer
	judge, err := rollout.New(p)
	require.NoError(t, err)
	require.NoError(t, judge.Start(ctx))

	s, fresh := freshnessLog(quick())
	rf, err := FollowRollout(newClient(t, proxy.Endpoint()), plan, s)
	require.NoError(t, err)
	defer rf.Close()
	awaitFreshness(t, fresh, false, "first read")
	require.Equal(t, rollout.Running, rf.Rollout().Status().State, "the local rollout while the view is fresh")

	proxy.Cut()
	awaitFreshness(t, fresh, true, "proxy cut")
	assert.Equal(t, rollout.RolledBack, rf.Rollout().Status().State, "the local rollout once the view is older than StaleAfter")
	for i := range 100 {
		require.Equal(t, rollout.Baseline, rf.Rollout().Variant(fmt.Sprint("key", i)), "Variant() while stale")
	}

	proxy.Restore()
	awaitFreshness(t, fresh, false, "proxy restored")
	assert.Equal(t, rollout.Running, rf.Rollout().Status().State, "the local rollout once the view is fresh again")
}

func TestFollowRolloutRejectsAPlanWithAStore(t *testing.T) {
	srv := etcdtest.New(t)
	c := newClient(t, srv.Endpoints()...)
	rs, err := NewRolloutStore(c, "checkout", quick())
	require.NoError(t, err)
	_, err = FollowRollout(c, rollout.Plan{Name: "checkout", Store: rs}, quick())
	require.Error(t, err, "FollowRollout with Plan.Store set")
}

func TestRolloutFollowerRefusesOperatorControls(t *testing.T) {
	srv := etcdtest.New(t)
	ctx := waitCtx(t)
	plan := rollout.Plan{Name: "checkout", Stages: []rollout.Stage{{Percent: 50}, {Percent: 100}}}
	writer, err := NewRolloutStore(newClient(t, srv.Endpoints()...), "checkout", quick())
	require.NoError(t, err)
	p := plan
	p.Store = writer
	judge, err := rollout.New(p)
	require.NoError(t, err)
	require.NoError(t, judge.Start(ctx))

	s, fresh := freshnessLog(quick())
	rf, err := FollowRollout(newClient(t, srv.Endpoints()...), plan, s)
	require.NoError(t, err)
	defer rf.Close()
	awaitFreshness(t, fresh, false, "first read")
	require.Equal(t, rollout.Running, rf.Rollout().Status().State, "the local rollout before the controls")

	controls := map[string]func(*rollout.Rollout) error{
		"Pause":   func(r *rollout.Rollout) error { return r.Pause("operator on a follower") },
		"Promote": func(r *rollout.Rollout) error { return r.Promote("operator on a follower") },
		"Abort":   func(r *rollout.Rollout) error { return r.Abort("operator on a follower") },
	}
	for name, control := range controls {
		err := control(rf.Rollout())
		require.ErrorIs(t, err, ErrFollower, "%s on a follower's rollout", name)
		st := rf.Rollout().Status()
		assert.Equal(t, rollout.Running, st.State, "the local rollout after %s on a follower", name)
		assert.Equal(t, 50.0, st.Percent, "the local share after %s on a follower", name)
	}

	// A paused fleet rollout cannot be resumed from a follower either.
	require.NoError(t, judge.Pause("operator on the evaluator"))
	for st := rf.Rollout().Status(); st.State != rollout.Paused; st = rf.Rollout().Status() {
		select {
		case <-ctx.Done():
			t.Fatalf("follower is %v, want Paused", st.State)
		case <-time.After(10 * time.Millisecond):
		}
	}
	require.ErrorIs(t, rf.Rollout().Resume("operator on a follower"), ErrFollower, "Resume on a follower's rollout")
	assert.Equal(t, rollout.Paused, rf.Rollout().Status().State, "the local rollout after Resume on a follower")
}
