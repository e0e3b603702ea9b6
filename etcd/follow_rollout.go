package etcd

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/ringfence/ringfence/rollout"
)

// ErrFollower is returned by Pause, Resume, Promote and Abort called on a
// [RolloutFollower]'s local rollout (and by any save it attempts): the
// fleet's rollout is driven by the elected evaluator alone, so operator
// controls must be applied to the evaluator's rollout. The local rollout
// is put back at the fleet record's state and stage before the call
// returns, so a follower never diverges from the fleet.
var ErrFollower = errors.New("etcd: a follower's rollout is driven by the fleet evaluator")

// RolloutFollower runs a rollout on an instance that does not evaluate: it
// watches the record the elected evaluator writes and keeps a local
// [rollout.Rollout] at the record's state and stage, so that Variant on
// every instance follows the fleet's rollout through each ring, its
// rollback and its promotion. Call Rollout for the current local rollout
// on each request (one atomic load) and publish its Evidence with
// [FleetEvidence]; when the stage changes a new local rollout takes over
// with the new stage's counts, as the evaluator's does.
//
// The fleet view has a time to live of Settings.StaleAfter: once the
// follower has not heard from etcd for that long (etcd unreachable, or
// never reached), it fails safe by aborting the local rollout, so every
// key gets the baseline, since it can no longer know whether the
// evaluator rolled back; the next record it reads brings the fleet's state
// back. Freshness reports since when the view is stale. Operator controls
// (Pause, Resume, Promote, Abort) on the local rollout return an error
// wrapping [ErrFollower] and leave it at the record's state and stage;
// apply them to the evaluator's rollout instead. A damaged record,
// or one that does not fit the plan, is logged, reported by Err and not
// acted on.
//
// FollowRollout starts a goroutine that follows the record until Close. A
// RolloutFollower is safe for concurrent use.
type RolloutFollower struct {
	store  *RolloutStore
	plan   rollout.Plan
	follow *follower
	cur    atomic.Pointer[rollout.Rollout]
	// failing is set while the view is stale, so that the follower's own
	// fail-safe abort of the local rollout is not undone.
	failing atomic.Bool

	build sync.Mutex // held while the local rollout is rebuilt

	mu      sync.Mutex // guards rec, version and bad
	rec     rollout.Record
	version uint64
	bad     error
}

// mirror is the Store of a follower's local rollout: it serves one record
// of the evaluator's, without its counts, and refuses every save.
type mirror struct {
	rf  *RolloutFollower
	rec rollout.Record
}

func (m mirror) Load(context.Context) (rollout.Record, uint64, error) { return m.rec, 1, nil }

// Save refuses r. When r would move the local rollout away from the
// record (an operator control, or an Evaluate the caller ran), it first
// replaces the local rollout with one at the record's state and stage, so
// that the control takes no effect. It runs under the local rollout's
// lock, and takes no lock that a rollout's methods hold.
func (m mirror) Save(_ context.Context, r rollout.Record, _ uint64) (uint64, error) {
	if !m.rf.failing.Load() && (r.State != m.rec.State || r.Stage != m.rec.Stage) {
		m.rf.mu.Lock()
		rec := m.rf.rec
		m.rf.mu.Unlock()
		m.rf.rebuild(rec)
	}
	return 0, fmt.Errorf("%w: apply operator controls to the evaluator's rollout", ErrFollower)
}

// FollowRollout follows the record of the rollout that plan describes and
// returns at once; until the first record is read, Rollout returns a
// rollout that gives every key the baseline. plan must not set Store or
// Evidence (the follower sets the first and has no use for the second).
// The caller keeps ownership of c and must call Close before closing c. It
// returns an error naming the field for invalid settings or plan.
func FollowRollout(c *clientv3.Client, plan rollout.Plan, settings Settings) (*RolloutFollower, error) {
	if plan.Store != nil || plan.Evidence != nil {
		return nil, errors.New("etcd: rollout follower: Plan.Store and Plan.Evidence must be nil")
	}
	name := plan.Name
	if name == "" {
		name = rollout.DefaultName
	}
	store, err := NewRolloutStore(c, name, settings)
	if err != nil {
		return nil, err
	}
	first, err := rollout.New(plan)
	if err != nil {
		return nil, err
	}
	rf := &RolloutFollower{store: store, plan: plan}
	rf.cur.Store(first) // Pending: every key gets the baseline
	s := store.s
	s.OnFreshness = func(f Freshness) {
		rf.failing.Store(f.Stale)
		if f.Stale {
			// ErrTransition only says the local rollout has already ended,
			// ErrFollower that the abort was not saved, as intended.
			_ = rf.cur.Load().Abort(fmt.Sprintf("fleet view stale since %v: every key to the baseline", f.Since.UTC().Format(time.RFC3339)))
		}
		if store.s.OnFreshness != nil {
			store.s.OnFreshness(f)
		}
	}
	rf.follow = &follower{
		c: c, key: store.key, what: "rollout " + name, s: s,
		reset: func(kvs []*mvccpb.KeyValue, _ int64) {
			if len(kvs) == 1 {
				rf.take(kvs[0], true)
			}
		},
		event: func(ev *clientv3.Event) {
			if ev.Type == clientv3.EventTypePut {
				rf.take(ev.Kv, false)
			}
		},
	}
	rf.follow.start()
	return rf, nil
}

// take records kv and moves the local rollout to its state and stage.
// After a fresh read (reread) it rebuilds the local rollout if a stale
// spell aborted it.
func (rf *RolloutFollower) take(kv *mvccpb.KeyValue, reread bool) {
	rec, err := rf.store.decode(kv.Value)
	rf.mu.Lock()
	newer := err == nil && uint64(kv.ModRevision) > rf.version
	prev, had := rf.rec, rf.version != 0
	if newer {
		rf.rec, rf.version = rec, uint64(kv.ModRevision)
	}
	rf.bad = err
	rf.mu.Unlock()
	if err != nil {
		rf.store.s.Logger.Error("ringfence: damaged rollout record in etcd; not acting on it", "key", rf.store.key, "error", err)
		return
	}
	cur := rf.cur.Load()
	st := cur.Status()
	same := had && prev.State == rec.State && prev.Stage == rec.Stage &&
		st.State == rec.State && st.Stage == rec.Stage
	if !newer && !reread || same {
		return
	}
	rf.rebuild(rec)
}

// rebuild replaces the local rollout with one at rec's state and stage.
func (rf *RolloutFollower) rebuild(rec rollout.Record) {
	rf.build.Lock()
	defer rf.build.Unlock()
	// A new stage starts with no counts here: the evaluator's record holds
	// the fleet's, and this instance's own arrive through FleetEvidence.
	m := rec
	m.Evidence, m.Baseline, m.Canary = nil, rollout.Counts{}, rollout.Counts{}
	p := rf.plan
	p.Store = mirror{rf: rf, rec: m}
	next, err := rollout.New(p)
	if err == nil {
		err = next.Start(context.Background())
	}
	if err != nil {
		rf.mu.Lock()
		rf.bad = fmt.Errorf("%w: %w: record does not fit the plan: %w", rollout.ErrCorruptState, ErrBadRecord, err)
		rf.mu.Unlock()
		rf.store.s.Logger.Error("ringfence: rollout record does not fit the plan; not acting on it", "key", rf.store.key, "error", err)
		return
	}
	rf.cur.Store(next)
}

// Rollout returns the current local rollout, to call Variant, Observe and
// Evidence on. It is one atomic load; call it per request rather than
// keeping the result, which is replaced when the stage changes.
func (rf *RolloutFollower) Rollout() *rollout.Rollout { return rf.cur.Load() }

// Record returns the latest valid record seen and its version, and false
// if none has been seen.
func (rf *RolloutFollower) Record() (rollout.Record, uint64, bool) {
	rf.mu.Lock()
	defer rf.mu.Unlock()
	return rf.rec, rf.version, rf.version != 0
}

// Err returns why the latest record seen is not trusted (wrapping
// rollout.ErrCorruptState and ErrBadRecord), or nil.
func (rf *RolloutFollower) Err() error {
	rf.mu.Lock()
	defer rf.mu.Unlock()
	return rf.bad
}

// Freshness reports how current the follower's view of the record is.
func (rf *RolloutFollower) Freshness() Freshness { return rf.follow.freshness() }

// Close stops following and waits for the follower's goroutine.
func (rf *RolloutFollower) Close() { rf.follow.stop() }
