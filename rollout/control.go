package rollout

import (
	"context"
	"fmt"
	"time"
)

// Pause holds the rollout at its current stage: the stage keeps its
// exposure and is still judged (a regression still rolls back), but it
// neither bakes nor advances until Resume. It is allowed while Running and
// returns an error wrapping ErrTransition otherwise. An error saving the
// state is returned after the pause has taken effect.
func (r *Rollout) Pause(reason string) error {
	return r.control(Paused, reason)
}

// Resume lets a paused rollout bake and advance again, with a fresh
// deadline for the stage. It is allowed while Paused and returns an error
// wrapping ErrTransition otherwise. If the state cannot be saved the
// rollout stays paused and Resume returns the error.
func (r *Rollout) Resume(reason string) error {
	return r.control(Running, reason)
}

// Promote sends every key to the canary at once and ends the rollout as
// Promoted. It is allowed while Running or Paused and returns an error
// wrapping ErrTransition otherwise. If the state cannot be saved nothing
// changes and Promote returns the error.
func (r *Rollout) Promote(reason string) error {
	return r.control(Promoted, reason)
}

// Abort sends every key back to the baseline and ends the rollout as
// RolledBack. It is allowed while Pending (even while Start is validating),
// Running or Paused and returns an error wrapping ErrTransition otherwise. An error saving the state is
// returned after the abort has taken effect.
func (r *Rollout) Abort(reason string) error {
	return r.control(RolledBack, reason)
}

func (r *Rollout) control(to State, reason string) error {
	ctx := context.Background()
	r.mu.Lock()
	if r.failErr != nil {
		err := r.failErr
		r.mu.Unlock()
		return err
	}
	if r.state == Pending && !r.starting {
		// A stored record decides where the rollout is.
		if _, err := r.load(ctx); err != nil {
			r.mu.Unlock()
			r.deliver()
			return err
		}
	}
	from := r.state
	allowed := false
	switch to {
	case Paused:
		allowed = from == Running
	case Running:
		allowed = from == Paused
	case Promoted:
		allowed = from == Running || from == Paused
	case RolledBack:
		allowed = from == Pending || from == Running || from == Paused
	}
	if !allowed || (r.starting && to != RolledBack) {
		r.mu.Unlock()
		r.deliver()
		return fmt.Errorf("%w: cannot go from %v to %v", ErrTransition, from, to)
	}
	now := time.Now()
	v := r.verdictLocked()
	var err error
	switch to {
	case Paused:
		err = r.retreat(ctx, now, Paused, r.stage, reason, v)
	case Running, Promoted:
		err = r.commit(ctx, now, to, r.stage, reason, v)
	case RolledBack:
		err = r.retreat(ctx, now, RolledBack, r.stage, reason, v)
	}
	r.mu.Unlock()
	r.deliver()
	return err
}

// History returns a copy of every event so far, oldest first.
func (r *Rollout) History() []Event {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]Event(nil), r.history...)
}

// Status returns the rollout's state, stage, exposure, remaining bake time
// and the judge's current verdict over the stage's observations.
func (r *Rollout) Status() Status {
	r.mu.Lock()
	defer r.mu.Unlock()
	st := Status{State: r.state, Stage: r.stage, Percent: r.percent(), Reason: r.reason,
		Verdict: r.verdictLocked(), Err: r.errLocked()}
	if r.hasFleet && r.fleetEpoch == r.epoch {
		st.Verdict = r.fleet
	}
	if r.failErr != nil {
		st.Percent = 0
	}
	if r.state == Running || r.state == Paused {
		st.Shadow = r.p.stages[r.stage].Shadow
		st.BakeLeft = max(r.p.stages[r.stage].Bake-r.elapsedAt(time.Now()), 0)
	}
	return st
}

// verdictLocked judges the current stage's local observations. r.mu must
// be held.
func (r *Rollout) verdictLocked() Verdict {
	e := r.localEvidence(r.stats.Load())
	return r.p.judge(r.p.stages[r.stage], &e, r.carried)
}

// Evaluate runs the judge once over the current stage and acts on its
// verdict: a regression rolls back; a stage that has baked, has its minimum
// canary samples and shows no regression advances (the last one to
// Promoted); a stage past its deadline without its samples is
// Inconclusive and pauses or rolls back as the plan says (an empty ring
// always pauses). While Paused only a regression acts. Between transitions
// Evaluate saves the bake progress every Plan.Checkpoint.
//
// With Plan.Evidence set, Evaluate judges the evidence it returns; if that
// fails, it judges the local evidence and acts only on a regression.
//
// It returns the verdict and any error saving the state; for a rollout
// that is failing safe it returns the error wrapping ErrFailSafe. Run calls
// Evaluate every Plan.Interval; call it directly to step a rollout by hand.
func (r *Rollout) Evaluate() (Verdict, error) {
	return r.evaluate(context.Background())
}

func (r *Rollout) evaluate(ctx context.Context) (Verdict, error) {
	r.mu.Lock()
	if r.failErr != nil {
		err := r.failErr
		r.mu.Unlock()
		return Verdict{}, err
	}
	if r.starting || (r.state != Running && r.state != Paused) {
		v := r.verdictLocked()
		r.mu.Unlock()
		return v, nil
	}
	s := r.stats.Load()
	r.learnLatency(s)
	ev := r.localEvidence(s)
	local := true
	if r.p.Evidence != nil {
		epoch := r.epoch
		r.mu.Unlock()
		fleet, ferr := r.fleetEvidence(ctx, ev)
		r.mu.Lock()
		if r.failErr != nil || r.epoch != epoch || (r.state != Running && r.state != Paused) {
			// The rollout moved on while the fleet's evidence was read.
			v := r.verdictLocked()
			r.mu.Unlock()
			r.deliver()
			return v, r.errLocked()
		}
		if ferr != nil {
			if r.evidenceErr == nil {
				r.evidenceSince = time.Now()
			}
			r.evidenceErr = fmt.Errorf("%w: judging local evidence only since %v: %w", ErrEvidence, r.evidenceSince.UTC().Format(time.RFC3339), ferr)
		} else {
			r.evidenceErr = nil
			ev, local = fleet, false
		}
	}
	now := time.Now()
	st := r.p.stages[r.stage]
	v := r.p.judge(st, &ev, r.carried)
	r.fleet, r.fleetEpoch, r.hasFleet = v, r.epoch, !local
	elapsed := r.elapsedAt(now)
	var err error
	switch {
	case v.Outcome == Regressed:
		err = r.retreat(ctx, now, RolledBack, r.stage, fmt.Sprintf("judge: %s at %v%%", v.Rule, st.Percent), v)
	case r.state != Running:
	case r.p.Evidence != nil && local:
		// Without the fleet's evidence, never advance and never give up.
	case v.Canary.Samples < uint64(st.MinSamples) && elapsed-r.deadlineFrom >= st.Deadline:
		v.Outcome, v.Rule = Inconclusive, RuleDeadline
		reason := fmt.Sprintf("judge: inconclusive at %v%%: %d of %d canary samples by the %v deadline",
			st.Percent, v.Canary.Samples, st.MinSamples, st.Deadline)
		to := Paused
		if r.p.OnInconclusive == RollBackOnInconclusive {
			to = RolledBack
		}
		if keyed := sum(&ev.Baseline.Samples) - ev.Baseline.Samples[KeyBuckets]; v.Canary.Assigned == 0 && v.Canary.Samples == 0 && keyed > 0 {
			v.Rule = RuleEmptyRing
			reason = fmt.Sprintf("judge: empty ring at %v%%: no key assigned to the canary by the %v deadline, while %d keyed calls went to the baseline",
				st.Percent, st.Deadline, keyed)
			to = Paused
		}
		err = r.retreat(ctx, now, to, r.stage, reason, v)
	case v.Outcome == Healthy && elapsed >= st.Bake:
		if r.stage == len(r.p.stages)-1 {
			err = r.commit(ctx, now, Promoted, r.stage, "judge: last stage healthy", v)
		} else {
			next := r.stage + 1
			err = r.commit(ctx, now, Running, next,
				fmt.Sprintf("judge: healthy at %v%%, advancing to %v%%", st.Percent, r.p.stages[next].Percent), v)
		}
	case r.p.Store != nil && now.Sub(r.lastSave) >= r.p.Checkpoint:
		err = r.save(ctx, now)
	}
	r.obs.verdict(v)
	r.mu.Unlock()
	r.deliver()
	return v, err
}

// fleetEvidence calls Plan.Evidence, with no lock held, and checks that
// its answer is evidence of the local stage.
func (r *Rollout) fleetEvidence(ctx context.Context, local Evidence) (e Evidence, err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("Plan.Evidence panicked: %v", p)
		}
	}()
	e, err = r.p.Evidence(ctx, local)
	if err != nil {
		return Evidence{}, err
	}
	if err := e.Validate(); err != nil {
		return Evidence{}, err
	}
	if err := local.sameStage(&e); err != nil {
		return Evidence{}, err
	}
	return e, nil
}

// Run evaluates the rollout every Plan.Interval until ctx is done or the
// rollout ends. It returns nil when the rollout is Promoted or RolledBack,
// the error wrapping ErrFailSafe when it fails safe, and ctx.Err() when ctx
// is done. Errors saving the state do not stop it; they are kept for Err
// and Status. Run may be called before Start: it waits for the rollout to
// start.
func (r *Rollout) Run(ctx context.Context) error {
	t := time.NewTicker(r.p.Interval)
	defer t.Stop()
	for {
		r.evaluate(ctx) // save errors are kept for Err and Status
		r.mu.Lock()
		failed, state := r.failErr, r.state
		r.mu.Unlock()
		if failed != nil {
			return failed
		}
		if state == Promoted || state == RolledBack {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
	}
}
