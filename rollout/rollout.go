package rollout

import (
	"context"
	"errors"
	"fmt"
	"math"
	"sync"
	"sync/atomic"
	"time"
)

// State is the lifecycle state of a rollout.
type State uint8

// The lifecycle states.
const (
	// Pending is the state before Start: every key gets the baseline.
	Pending State = iota
	// Running exposes the current stage's share of keys to the canary and
	// judges it; the stage advances when it has baked.
	Running
	// Paused keeps the current stage's exposure and keeps judging it (a
	// regression still rolls back), but the stage neither bakes nor
	// advances.
	Paused
	// Promoted is final: every key gets the canary.
	Promoted
	// RolledBack is final: every key gets the baseline.
	RolledBack
)

var stateNames = [...]string{"pending", "running", "paused", "promoted", "rolled-back"}

// String returns the state's name in lower case.
func (s State) String() string {
	if int(s) < len(stateNames) {
		return stateNames[s]
	}
	return "state(?)"
}

// MarshalText encodes the state as its name.
func (s State) MarshalText() ([]byte, error) {
	if int(s) >= len(stateNames) {
		return nil, fmt.Errorf("rollout: unknown state %d", s)
	}
	return []byte(stateNames[s]), nil
}

// UnmarshalText decodes a state's name.
func (s *State) UnmarshalText(b []byte) error {
	for i, n := range stateNames {
		if n == string(b) {
			*s = State(i)
			return nil
		}
	}
	return fmt.Errorf("rollout: unknown state %q", b)
}

// Errors returned by a Rollout's methods, checked with errors.Is.
var (
	// ErrTransition means an operator control was called in a state that
	// does not allow it (for example Resume on a running rollout).
	ErrTransition = errors.New("rollout: transition not allowed")
	// ErrValidation wraps the error of Plan.Validate when Start fails the
	// pre-flight check.
	ErrValidation = errors.New("rollout: validation failed")
	// ErrFailSafe means the rollout could not use its stored state and
	// gives every key the baseline; it wraps the cause.
	ErrFailSafe = errors.New("rollout: stored state unusable, failing safe to baseline")
	// ErrMismatch is the error recorded against the canary when, in a
	// shadow stage, its result differs from the baseline's.
	ErrMismatch = errors.New("rollout: canary result differs from baseline")
)

// Event is one transition of a rollout, automatic or manual.
type Event struct {
	Time     time.Time // when the transition happened
	Rollout  string    // Plan.Name
	From, To State     // the states before and after
	// Stage is the index of the stage the transition leads to (for a roll
	// back or promotion, the stage it happened at); Percent is the canary
	// percent after it (0 after a roll back, 100 after a promotion).
	Stage   int
	Percent float64
	Reason  string // why: the judge's rule or the operator's words
	// Verdict is the judge's finding at the time of the transition.
	Verdict Verdict
}

// Status is a rollout's state at one moment.
type Status struct {
	State   State   // where the rollout is in its lifecycle
	Stage   int     // index into the plan's stages
	Percent float64 // share of keys getting the canary now
	Shadow  bool    // the current stage is a dark launch
	// BakeLeft is the bake time the stage still needs while Running.
	BakeLeft time.Duration
	// Reason is the reason of the last transition.
	Reason string
	// Verdict is the judge's current finding over the stage's
	// observations: the local ones, or, with Plan.Evidence, those of the
	// last Evaluate that had the fleet's evidence of this stage.
	Verdict Verdict
	// Err is the error that made the rollout fail safe, or the last error
	// saving its state, or the error of Plan.Evidence that keeps it on
	// local evidence (with the time since when), or nil; see Rollout.Err.
	Err error
}

// route packs the stage's canary share in parts per million (low 32 bits)
// and the shadow flag (bit 32), read on every Variant call.
const shadowBit = 1 << 32

// Rollout stages a change through the rings of a Plan, judges the canary
// against the baseline and promotes or rolls back. Create one with [New];
// the zero value is not usable.
//
// Variant, Observe and ObserveKey are lock-free and allocate nothing; the other
// methods take a mutex that the hot path never touches. A Rollout is safe
// for concurrent use.
type Rollout struct {
	p     *plan
	route atomic.Uint64
	stats atomic.Pointer[stats]

	mu sync.Mutex // guards the fields below
	// state and stage are the lifecycle position; reason the last
	// transition's reason.
	state  State
	stage  int
	reason string
	// elapsed is the running time spent in the stage before runningSince;
	// runningSince is set while Running. deadlineFrom is the elapsed time at
	// which the stage's deadline started.
	elapsed      time.Duration
	runningSince time.Time
	deadlineFrom time.Duration
	starting     bool
	loaded       bool
	version      uint64
	lastSave     time.Time
	failErr      error // non-nil: fail safe, every key gets Baseline
	saveErr      error // last failed save, cleared by a successful one
	// evidenceErr is the last failure of Plan.Evidence, cleared by a
	// success; evidenceSince is when the failures began.
	evidenceErr   error
	evidenceSince time.Time
	// epoch counts transitions, so that Evaluate can tell that the stage
	// moved while Plan.Evidence ran; fleet holds the verdict on the last
	// fleet evidence, valid while fleetEpoch is epoch.
	epoch      uint64
	fleet      Verdict
	fleetEpoch uint64
	hasFleet   bool
	// carried is the tests' evidence from the stages before this one.
	carried    carried
	history    []Event
	pending    []Event // events awaiting delivery to OnEvent
	delivering bool

	obs *rolloutObs // verdict counts; nil without Plan.MeterProvider
}

// New returns a Pending rollout of p; no key gets the canary before
// [Rollout.Start]. It returns an error wrapping ErrPlan, naming the field,
// when p is invalid. New does not read the Store; Start does.
func New(p Plan) (*Rollout, error) {
	cp, err := compile(p)
	if err != nil {
		return nil, err
	}
	r := &Rollout{p: cp}
	r.stats.Store(r.newStats(0, nil))
	if err := r.instrument(); err != nil {
		return nil, err
	}
	return r, nil
}

// Name returns the plan's name.
func (r *Rollout) Name() string { return r.p.Name }

// Stages returns a copy of the plan's stages with defaults applied.
func (r *Rollout) Stages() []Stage {
	out := make([]Stage, len(r.p.stages))
	for i, s := range r.p.stages {
		out[i] = s.Stage
	}
	return out
}

// Start begins the rollout. When Plan.Store holds a record, Start resumes
// from it: same state, same stage, the remaining bake time, the stored
// counts; a record that cannot be read or does not match the plan makes
// the rollout fail safe (every key gets Baseline) and Start returns an
// error wrapping ErrFailSafe and the cause. Otherwise Start runs
// Plan.Validate; a failure rolls the rollout back, with no key ever exposed,
// and returns an error wrapping ErrValidation and Validate's error. On
// success the rollout is Running at its first stage.
//
// Start on a rollout that has already started, here or in the process that
// saved the stored record, does nothing and returns nil (or the fail-safe
// error). An error saving the first state leaves the rollout Pending. If
// Abort is called while Validate runs, Start returns an error wrapping
// ErrTransition and the rollout stays RolledBack.
func (r *Rollout) Start(ctx context.Context) error {
	r.mu.Lock()
	if r.failErr != nil {
		r.mu.Unlock()
		return r.failErr
	}
	if r.state != Pending || r.starting {
		r.mu.Unlock()
		return nil
	}
	if resumed, err := r.load(ctx); resumed || err != nil {
		r.mu.Unlock()
		r.deliver()
		r.logStart(err)
		return err
	}
	r.starting = true
	r.mu.Unlock()

	var verr error
	if r.p.Validate != nil {
		verr = r.p.Validate(ctx)
	}

	r.mu.Lock()
	r.starting = false
	if r.state != Pending {
		// Aborted while validating.
		r.mu.Unlock()
		return fmt.Errorf("%w: aborted during validation", ErrTransition)
	}
	now := time.Now()
	var err error
	if verr != nil {
		err = fmt.Errorf("%w: %w", ErrValidation, verr)
		if serr := r.retreat(ctx, now, RolledBack, 0, "validation failed: "+verr.Error(), Verdict{}); serr != nil {
			err = errors.Join(err, serr)
		}
	} else {
		err = r.commit(ctx, now, Running, 0, "started", Verdict{})
	}
	r.mu.Unlock()
	r.deliver()
	return err
}

// load reads the store once, before the rollout first leaves Pending. It
// reports whether a stored record was resumed; an unusable record makes
// the rollout fail safe. r.mu must be held.
func (r *Rollout) load(ctx context.Context) (resumed bool, err error) {
	if r.p.Store == nil || r.loaded {
		return false, nil
	}
	rec, ver, err := r.p.Store.Load(ctx)
	switch {
	case errors.Is(err, ErrNoState):
		r.loaded = true
		return false, nil
	case err != nil:
		return false, r.failSafe(err)
	}
	return true, r.restore(rec, ver)
}

// restore resumes from a stored record. r.mu must be held.
func (r *Rollout) restore(rec Record, ver uint64) error {
	switch {
	case rec.Name != r.p.Name || rec.Salt != r.p.Salt:
		return r.failSafe(fmt.Errorf("stored state is for rollout %q (salt %q), not %q (salt %q)", rec.Name, rec.Salt, r.p.Name, r.p.Salt))
	case rec.Stages != len(r.p.stages) || rec.Stage < 0 || rec.Stage >= len(r.p.stages):
		return r.failSafe(fmt.Errorf("stored state has stage %d of %d, the plan has %d stages", rec.Stage, rec.Stages, len(r.p.stages)))
	case rec.Percent != r.p.stages[rec.Stage].Percent:
		return r.failSafe(fmt.Errorf("stored stage %d is at %v%%, the plan's at %v%%", rec.Stage, rec.Percent, r.p.stages[rec.Stage].Percent))
	case rec.State == Pending || rec.State > RolledBack:
		return r.failSafe(fmt.Errorf("stored state %v cannot be resumed", rec.State))
	case rec.Elapsed < 0 || rec.DeadlineFrom < 0 || rec.DeadlineFrom > rec.Elapsed:
		return r.failSafe(fmt.Errorf("stored elapsed time %v (deadline from %v) is invalid", rec.Elapsed, rec.DeadlineFrom))
	}
	now := time.Now()
	r.loaded = true
	r.version = ver
	r.lastSave = now
	r.state, r.stage, r.reason = rec.State, rec.Stage, rec.Reason
	r.elapsed, r.deadlineFrom = rec.Elapsed, rec.DeadlineFrom
	if r.state == Running {
		r.runningSince = now
	}
	s := newStats(r.p.stages[r.stage].ppm)
	if err := r.restoreCounts(s, rec); err != nil {
		return r.failSafe(err)
	}
	if err := r.restoreCarried(rec.Carried); err != nil {
		return r.failSafe(err)
	}
	r.stats.Store(s)
	r.setRoute()
	r.record(Event{Time: now, Rollout: r.p.Name, From: rec.State, To: rec.State, Stage: r.stage,
		Percent: r.percent(), Reason: "resumed from stored state", Verdict: r.verdictLocked()})
	return nil
}

// restoreCounts loads a stored record's counts into s: its evidence, or,
// for a record without one, its totals as calls observed without a key.
func (r *Rollout) restoreCounts(s *stats, rec Record) error {
	if rec.Evidence == nil {
		for v, c := range [2]Counts{rec.Baseline, rec.Canary} {
			if c.Errors > c.Samples {
				return fmt.Errorf("stored %v counts have %d errors in %d samples", Variant(v), c.Errors, c.Samples)
			}
			var a ArmEvidence
			a.Samples[KeyBuckets], a.Errors[KeyBuckets] = c.Samples, c.Errors
			s.load(Variant(v), &a)
		}
		r.learnLatency(s)
		return nil
	}
	e := rec.Evidence
	if err := e.Validate(); err != nil {
		return fmt.Errorf("stored evidence: %w", err)
	}
	want := Evidence{Rollout: r.p.Name, Salt: r.p.Salt, Stages: len(r.p.stages), Stage: r.stage, PPM: r.p.stages[r.stage].ppm}
	if err := want.sameStage(e); err != nil {
		return fmt.Errorf("stored evidence: %w", err)
	}
	s.load(Baseline, &e.Baseline)
	s.load(Canary, &e.Canary)
	if e.LatencyBucket > 0 {
		s.lat.Store(int32(e.LatencyBucket))
	} else {
		r.learnLatency(s)
	}
	return nil
}

// restoreCarried resumes the evidence carried from earlier stages. A
// record without it resumes with none, which only makes the tests need
// more evidence.
func (r *Rollout) restoreCarried(c []float64) error {
	if c == nil {
		r.carried = carried{}
		return nil
	}
	if len(c) != tests {
		return fmt.Errorf("stored carried evidence has %d tests, want %d", len(c), tests)
	}
	for i, x := range c {
		if math.IsNaN(x) || math.IsInf(x, 0) {
			return fmt.Errorf("stored carried evidence %d is %v", i, x)
		}
		r.carried[i] = x
	}
	return nil
}

// failSafe routes every key to the baseline and remembers why. r.mu must
// be held.
func (r *Rollout) failSafe(cause error) error {
	r.failErr = fmt.Errorf("%w: %w", ErrFailSafe, cause)
	r.route.Store(0)
	return r.failErr
}

// Err returns the error that made the rollout fail safe, or else the last
// error saving its state, or else the error of Plan.Evidence that keeps
// the rollout on its local evidence, or nil.
func (r *Rollout) Err() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.errLocked()
}

// errLocked is Err. r.mu must be held.
func (r *Rollout) errLocked() error {
	switch {
	case r.failErr != nil:
		return r.failErr
	case r.saveErr != nil:
		return r.saveErr
	}
	return r.evidenceErr
}

// percent returns the canary percent of the current state. r.mu must be
// held.
func (r *Rollout) percent() float64 {
	switch r.state {
	case Running, Paused:
		return r.p.stages[r.stage].Percent
	case Promoted:
		return 100
	}
	return 0
}

// setRoute publishes the current exposure to Variant. r.mu must be held.
func (r *Rollout) setRoute() {
	if r.failErr != nil {
		r.route.Store(0)
		return
	}
	var rt uint64
	switch r.state {
	case Running, Paused:
		st := r.p.stages[r.stage]
		rt = uint64(st.ppm)
		if st.Shadow {
			rt |= shadowBit
		}
	case Promoted:
		rt = Buckets
	}
	r.route.Store(rt)
}

// elapsedAt returns the stage's running time at now. r.mu must be held.
func (r *Rollout) elapsedAt(now time.Time) time.Duration {
	if r.state == Running {
		return r.elapsed + now.Sub(r.runningSince)
	}
	return r.elapsed
}

// transition moves to state to at stage and records the event. It does
// not publish the new exposure; the caller calls setRoute. r.mu must be
// held.
func (r *Rollout) transition(now time.Time, to State, stage int, reason string, v Verdict) {
	from := r.state
	newStage := stage != r.stage || from == Pending
	if newStage && from != Pending && stage == r.stage+1 {
		// The stage ends healthy: its evidence carries into the next.
		r.carried = r.carried.add(v)
	}
	if r.state == Running {
		r.elapsed += now.Sub(r.runningSince)
	}
	if newStage {
		r.elapsed, r.deadlineFrom = 0, 0
	}
	if to == Running && from == Paused {
		// A resumed stage gets a fresh deadline.
		r.deadlineFrom = r.elapsed
	}
	r.state, r.stage, r.reason = to, stage, reason
	r.runningSince = time.Time{}
	if to == Running {
		r.runningSince = now
	}
	if newStage {
		ppm := uint32(0)
		if to == Running || to == Paused {
			ppm = r.p.stages[stage].ppm
		}
		r.stats.Store(r.newStats(ppm, r.stats.Load()))
	}
	r.epoch++
	r.record(Event{Time: now, Rollout: r.p.Name, From: from, To: to, Stage: stage,
		Percent: r.percent(), Reason: reason, Verdict: v})
}

// record appends e to the history and queues it for OnEvent. r.mu must be
// held.
func (r *Rollout) record(e Event) {
	r.history = append(r.history, e)
	if r.p.OnEvent != nil || r.p.Logger != nil {
		r.pending = append(r.pending, e)
	}
}

// deliver hands queued events to OnEvent, in order, with no lock held. If
// another goroutine is already delivering, that goroutine delivers these
// events too, after its current ones.
func (r *Rollout) deliver() {
	if r.p.OnEvent == nil && r.p.Logger == nil {
		return
	}
	r.mu.Lock()
	if r.delivering {
		r.mu.Unlock()
		return
	}
	r.delivering = true
	finished := false
	defer func() {
		if !finished { // OnEvent panicked: let the next caller deliver
			r.mu.Lock()
			r.delivering = false
			r.mu.Unlock()
		}
	}()
	for len(r.pending) > 0 {
		batch := r.pending
		r.pending = nil
		r.mu.Unlock()
		for _, e := range batch {
			r.logEvent(e)
			if r.p.OnEvent != nil {
				r.p.OnEvent(e)
			}
		}
		r.mu.Lock()
	}
	r.delivering = false
	finished = true
	r.mu.Unlock()
}

// snapshotRecord returns the durable state at now. r.mu must be held.
func (r *Rollout) snapshotRecord(now time.Time) Record {
	e := r.localEvidence(r.stats.Load())
	base := Counts{Samples: sum(&e.Baseline.Samples), Errors: sum(&e.Baseline.Errors)}
	canary := Counts{Samples: sum(&e.Canary.Samples), Errors: sum(&e.Canary.Errors)}
	return Record{
		Name: r.p.Name, Salt: r.p.Salt, Stages: len(r.p.stages), Stage: r.stage,
		Percent: r.p.stages[r.stage].Percent, State: r.state, Reason: r.reason,
		Elapsed: r.elapsedAt(now), DeadlineFrom: r.deadlineFrom,
		Baseline: base, Canary: canary, Evidence: &e, Carried: r.carried[:],
		Saved: now,
	}
}

// save writes the current state to the store, if any. r.mu must be held.
func (r *Rollout) save(ctx context.Context, now time.Time) error {
	if r.p.Store == nil {
		return nil
	}
	v, err := r.p.Store.Save(ctx, r.snapshotRecord(now), r.version)
	if err != nil {
		r.saveErr = err
		return err
	}
	r.version, r.saveErr, r.lastSave = v, nil, now
	return nil
}

// commit makes a transition that may expose more keys: the new state is
// saved first, and if that fails the transition does not happen. r.mu must
// be held.
func (r *Rollout) commit(ctx context.Context, now time.Time, to State, stage int, reason string, v Verdict) error {
	if r.p.Store == nil {
		r.transition(now, to, stage, reason, v)
		r.setRoute()
		return nil
	}
	// Build the record of the state after the transition.
	state, st, rs := r.state, r.stage, r.reason
	el, since, dl := r.elapsed, r.runningSince, r.deadlineFrom
	oldStats, epoch, carried := r.stats.Load(), r.epoch, r.carried
	hist, pend := len(r.history), len(r.pending)
	r.transition(now, to, stage, reason, v)
	if err := r.save(ctx, now); err != nil {
		r.state, r.stage, r.reason = state, st, rs
		r.elapsed, r.runningSince, r.deadlineFrom = el, since, dl
		r.stats.Store(oldStats)
		r.epoch, r.carried = epoch, carried
		r.history, r.pending = r.history[:hist], r.pending[:pend]
		return err
	}
	r.setRoute()
	return nil
}

// retreat makes a transition that exposes no more keys: it happens at
// once, and an error saving it is returned and kept for Err. r.mu must be
// held.
func (r *Rollout) retreat(ctx context.Context, now time.Time, to State, stage int, reason string, v Verdict) error {
	r.transition(now, to, stage, reason, v)
	r.setRoute()
	return r.save(ctx, now)
}
