package etcd

import (
	"errors"
	"fmt"
	"sync"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/ringfence/ringfence/rollout"
)

// RolloutFollower follows the fleet's rollout record on an instance that
// does not evaluate: it watches the record the elected evaluator writes
// and, when the evaluator ends the rollout, ends the local Rollout the same
// way, so every key gets the baseline on every instance once the fleet's
// canary was rolled back (Abort), or the canary once it was promoted
// (Promote). Record returns the latest record for callers that act on the
// stage themselves.
//
// The fleet view has a time to live of Settings.StaleAfter: once the
// follower has not heard from etcd for that long (etcd unreachable, or
// never reached), it fails safe by aborting the local rollout, so every
// key gets the baseline, since it can no longer know whether the
// evaluator rolled back. Freshness reports since when the view is stale.
// A damaged record is logged, reported by Err and not acted on.
//
// FollowRollout starts a goroutine that follows the record until Close. A
// RolloutFollower is safe for concurrent use.
type RolloutFollower struct {
	store  *RolloutStore
	r      *rollout.Rollout
	follow *follower

	mu      sync.Mutex // guards rec, version and bad
	rec     rollout.Record
	version uint64
	bad     error
}

// FollowRollout follows the record of the rollout called name and applies
// its end to r. The caller keeps ownership of c and must call Close before
// closing c. It returns an error naming the field for invalid settings.
func FollowRollout(c *clientv3.Client, name string, r *rollout.Rollout, settings Settings) (*RolloutFollower, error) {
	if r == nil {
		return nil, errors.New("etcd: rollout follower: nil Rollout")
	}
	store, err := NewRolloutStore(c, name, settings)
	if err != nil {
		return nil, err
	}
	rf := &RolloutFollower{store: store, r: r}
	s := store.s
	s.OnFreshness = func(f Freshness) {
		if f.Stale {
			// ErrTransition only says the local rollout has already ended.
			_ = r.Abort(fmt.Sprintf("fleet view stale since %v: every key to the baseline", f.Since.UTC().Format(time.RFC3339)))
		}
		if store.s.OnFreshness != nil {
			store.s.OnFreshness(f)
		}
	}
	rf.follow = &follower{
		c: c, key: store.key, what: "rollout " + name, s: s,
		reset: func(kvs []*mvccpb.KeyValue, _ int64) {
			if len(kvs) == 1 {
				rf.take(kvs[0])
			}
		},
		event: func(ev *clientv3.Event) {
			if ev.Type == clientv3.EventTypePut {
				rf.take(ev.Kv)
			}
		},
	}
	rf.follow.start()
	return rf, nil
}

// take records kv and ends the local rollout if the fleet's has ended.
func (rf *RolloutFollower) take(kv *mvccpb.KeyValue) {
	rec, err := rf.store.decode(kv.Value)
	rf.mu.Lock()
	rf.bad = err
	if err == nil && uint64(kv.ModRevision) > rf.version {
		rf.rec, rf.version = rec, uint64(kv.ModRevision)
	}
	rf.mu.Unlock()
	if err != nil {
		rf.store.s.Logger.Error("ringfence: damaged rollout record in etcd; not acting on it", "key", rf.store.key, "error", err)
		return
	}
	switch rec.State {
	case rollout.RolledBack:
		// ErrTransition only says the local rollout has already ended.
		_ = rf.r.Abort("fleet evaluator: " + rec.Reason)
	case rollout.Promoted:
		_ = rf.r.Promote("fleet evaluator: " + rec.Reason)
	}
}

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
