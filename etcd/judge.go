package etcd

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/ringfence/ringfence/rollout"
)

// RolloutJudge runs the fleet's rollout on the instance that leads the
// election: a [rollout.Rollout] whose Store is the fenced [RolloutStore]
// Campaign returned and whose Evidence is [FleetEvidence.Merge], so it is
// judged on the fleet's sum and written by this leader alone.
//
// The judge's fleet view has the same time to live as a follower's,
// Settings.StaleAfter: while the [Evaluator]'s view of the election or the
// [FleetEvidence]'s view of the evidence is stale (etcd unreachable), the
// judged rollout cannot advance (Merge fails, so the core judges local
// evidence only), and Rollout returns a stand-in that gives every key the
// baseline, RolledBack with a reason saying since when and why. The
// judged rollout and the fleet's record are left as they are, since the
// leader cannot write them; when both views are fresh again Rollout
// returns the judged rollout once more, at its state and stage. The judge
// checks both views three times per StaleAfter while Run runs. Once the
// rollout has ended (Promoted or RolledBack) Rollout returns it for good;
// a judge whose lease is lost keeps the baseline stand-in for good.
//
// Call Rollout for Variant, Observe and Evidence on each request (one
// atomic load), and Judged for the operator controls and Status of the
// fleet's rollout. A RolloutJudge starts no goroutine until Run and is
// safe for concurrent use.
type RolloutJudge struct {
	e      *Evaluator
	fe     *FleetEvidence
	plan   rollout.Plan // of the stand-in: no Store, Evidence or callbacks
	store  *RolloutStore
	judged *rollout.Rollout
	// claimed is the revision of this judge's latest claim of an operator
	// intent; only the control follower's goroutine uses it.
	claimed int64
	cur     atomic.Pointer[rollout.Rollout]
}

// JudgeRollout returns the judge of the rollout plan describes, saving
// through store (which Campaign returned, fenced by this leadership) and
// judging fe's merged evidence. plan must not set Store or Evidence (the
// judge sets both), and must name the evaluator's rollout, as must fe. It
// returns an error naming the field for invalid arguments or plan.
func (e *Evaluator) JudgeRollout(plan rollout.Plan, store *RolloutStore, fe *FleetEvidence) (*RolloutJudge, error) {
	name := plan.Name
	if name == "" {
		name = rollout.DefaultName
	}
	switch {
	case plan.Store != nil || plan.Evidence != nil:
		return nil, errors.New("etcd: rollout judge: Plan.Store and Plan.Evidence must be nil")
	case name != e.name:
		return nil, fmt.Errorf("etcd: rollout judge: Plan.Name %q is not the evaluator's rollout %q", name, e.name)
	case store == nil || store.fenceKey == "":
		return nil, errors.New("etcd: rollout judge: store must be the one Evaluator.Campaign returned")
	case fe == nil || fe.name != e.name:
		return nil, fmt.Errorf("etcd: rollout judge: fleet evidence must be of rollout %q", e.name)
	}
	p := plan
	p.Store, p.Evidence = store, fe.Merge
	judged, err := rollout.New(p)
	if err != nil {
		return nil, err
	}
	safe := plan
	safe.OnEvent, safe.Validate = nil, nil
	j := &RolloutJudge{e: e, fe: fe, plan: safe, store: store, judged: judged}
	j.cur.Store(judged)
	return j, nil
}

// Rollout returns the rollout to call Variant, Observe and Evidence on:
// the judged rollout, or while the fleet view is stale a stand-in that
// gives every key the baseline. It is one atomic load; call it per request.
func (j *RolloutJudge) Rollout() *rollout.Rollout { return j.cur.Load() }

// Judged returns the fleet's rollout as this leader judges it, for Status,
// Err, History and the operator controls (Pause, Resume, Promote, Abort),
// whose effects are saved to the fleet's record.
func (j *RolloutJudge) Judged() *rollout.Rollout { return j.judged }

// Run starts the judged rollout if it has not started (resuming the
// fleet's record if there is one), evaluates it every Plan.Interval as
// rollout.Rollout.Run does, and checks the fleet view three times per
// Settings.StaleAfter, until ctx is done, the rollout ends or the lease is
// lost. While it runs it also applies the operator intents that any
// instance's [Admin] writes to the rollout's control key ([RolloutControl]),
// each once, and records the result there. It returns Start's error, what the rollout's Run returns, or an
// error wrapping ErrDeposed once the lease is lost. Call it once.
func (j *RolloutJudge) Run(ctx context.Context) error {
	if err := j.judged.Start(ctx); err != nil {
		return err
	}
	ctl := j.controls() // operator intents from any instance's Admin
	defer ctl.stop()
	rctx, cancel := context.WithCancel(ctx)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- j.judged.Run(rctx) }()
	beat := time.NewTicker(min(j.e.s.StaleAfter, j.fe.s.StaleAfter) / 3)
	defer beat.Stop()
	for {
		select {
		case err := <-done:
			if st := j.judged.Status().State; st == rollout.Promoted || st == rollout.RolledBack {
				// An ended rollout needs no fleet view: a promotion was
				// saved to the record, and a rollback serves the baseline.
				j.cur.Store(j.judged)
			}
			return err
		case <-j.e.Done():
			cancel()
			<-done
			j.failSafe("the evaluator's lease was lost", time.Now())
			return fmt.Errorf("etcd: rollout judge %s: %w: lease lost", j.e.s.ID, ErrDeposed)
		case <-beat.C:
			j.check(ctx)
		}
	}
}

// check puts the stand-in in place while either view is stale, and the
// judged rollout back once both are fresh.
func (j *RolloutJudge) check(ctx context.Context) {
	j.fe.probe(ctx)
	ef, ff := j.e.Freshness(), j.fe.Freshness()
	switch {
	case ef.Stale && (!ff.Stale || !ff.Since.Before(ef.Since)):
		j.failSafe(fmt.Sprintf("election view stale: %v", ef.Err), ef.Since)
	case ff.Stale:
		j.failSafe(fmt.Sprintf("evidence view stale: %v", ff.Err), ff.Since)
	default:
		select {
		case <-j.e.Done():
			return // Run fails safe for good
		default:
		}
		if j.cur.Swap(j.judged) != j.judged {
			j.e.s.Logger.Info("ringfence: fleet view is current again; judging the fleet's rollout",
				"rollout", j.e.name, "state", j.judged.Status().State.String())
		}
	}
}

// failSafe puts in place a stand-in that gives every key the baseline,
// unless one is in place.
func (j *RolloutJudge) failSafe(why string, since time.Time) {
	if j.cur.Load() != j.judged {
		return
	}
	safe, err := rollout.New(j.plan)
	if err != nil {
		// The judged rollout was made from the same plan.
		j.e.s.Logger.Error("ringfence: cannot make the baseline stand-in", "rollout", j.e.name, "error", err)
		return
	}
	reason := fmt.Sprintf("fleet view stale since %v (%s): every key to the baseline",
		since.UTC().Format(time.RFC3339), why)
	// A new rollout is Pending, which Abort always leaves.
	_ = safe.Abort(reason)
	j.cur.Store(safe)
	j.e.s.Logger.Warn("ringfence: fleet view is stale; every key of the rollout gets the baseline",
		"rollout", j.e.name, "since", since, "reason", why)
}
