package etcd

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/ringfence/ringfence/admin"
	"github.com/ringfence/ringfence/breaker"
	"github.com/ringfence/ringfence/fallback"
)

// ScopeFleet is the Scope of [Admin]: its actions take effect on every
// instance that follows the same etcd store.
const ScopeFleet = "fleet"

// DefaultAdminTimeout is AdminSettings.Timeout when zero.
const DefaultAdminTimeout = 5 * time.Second

// followWait bounds how long Apply waits for this instance's own switch or
// breaker to follow a change it stored, and followPoll how often it looks.
const (
	followWait = time.Second
	followPoll = 5 * time.Millisecond
)

// modeAttempts is how many times Admin reads and saves a mode record that
// another writer keeps changing before it gives up.
const modeAttempts = 3

// AdminSettings configures an [Admin]. Objects, Modes and Breakers describe
// the same instance: the objects the admin.Handler shows, and the fleet
// stores they follow.
type AdminSettings struct {
	// Objects are this instance's objects, the same as the admin.Settings
	// of the Handler the Admin serves. Their names tell which objects
	// exist; outbox requeues are applied to them.
	Objects admin.Objects

	// Modes maps the name of each switch in Objects.Switches to the
	// ModeStore that Switch keeps its mode in (its SwitchSettings.Store).
	// Every switch needs one, and every entry must name a switch.
	Modes map[string]*ModeStore

	// Breakers is the control that this instance's breakers are attached
	// to: each of Objects.Breakers under its name, and each member of
	// Objects.Groups with the group's name (BreakerControl.Attach(member,
	// groupName)). It is required when Objects has breakers or groups.
	Breakers *BreakerControl

	// Rollouts maps the name of a rollout in Objects.Rollouts to its
	// RolloutControl, through which the rollout's pause, resume, promote
	// and abort reach the elected judge. A rollout without one is refused
	// those actions; every entry must name a rollout.
	Rollouts map[string]*RolloutControl

	// Timeout bounds the etcd requests of one action, on top of the
	// action's own context (an HTTP request's context has no deadline of
	// its own). Zero means DefaultAdminTimeout (5 s); it must not be
	// negative.
	Timeout time.Duration
}

// Admin is the [admin.Actions] that acts for the whole fleet through etcd:
// plug it into admin.Settings.Actions, and every answer of the Handler
// says "scope": "fleet".
//
// Setting a switch's mode saves the change, with the actor and the reason,
// in the switch's [ModeStore] (a read and a revision-checked write), so
// every instance's Switch follows it, this one included. Forcing a
// breaker or a group open or closed, or releasing it, stores an [Intent]
// with the actor and the reason through [BreakerControl.Set], which every
// instance's control applies to its attached breakers; the intent lasts
// until released. Both reach the other instances through their watches,
// typically well within a second. Once the change is stored, Apply waits
// up to a second (and no longer than ctx) for this instance's own switch
// or named breaker to follow, so that the Handler's answer shows the new
// state; it does not wait for the members of a group.
//
// Some actions are not made fleet-wide, and each says so:
//   - Requeueing a dead letter acts on this instance's outbox, through
//     admin.Local: outboxes are per instance (each keeps its own durable
//     queue), so ScopeOf reports "local" for them.
//   - An action on one member of a group (Action.Key) is refused with
//     admin.ErrTransition, since fleet intents name a breaker or a whole
//     group; force the group, or the member on each instance.
//
// Pausing, resuming, promoting or aborting a rollout goes to the elected
// judge through the rollout's [RolloutControl] (AdminSettings.Rollouts):
// the fleet's record is written only by the leader's [RolloutJudge], fenced
// by its leadership, so Apply does not write it. It reads the record (a
// rollout that has ended, Promoted or RolledBack, is refused at once with
// admin.ErrTransition and nothing written), writes the intent (verb,
// reason, actor, time and a random id) to RolloutControl.Key, replacing any
// earlier intent, and waits, no longer than Timeout or ctx, for the judge's
// answer on that key. The judge first claims the intent (a write checked
// against the intent's revision), applies it to its rollout with the
// reason "REASON (by ACTOR, intent ID)", and records the result; both
// writes are fenced by its leadership. A new leader answers an intent it
// finds unanswered; one whose id the record's reason names was applied by
// its predecessor and is not applied again. Apply returns nil once the
// judge applied it (the followers follow the record through their
// watches), an error wrapping admin.ErrTransition when the rollout refused
// it (nothing changed), and an error wrapping admin.ErrUnavailable when
// etcd could not be read (nothing written) or no judge answered in time.
// In that last case Apply withdraws the intent with a delete checked
// against the revision it wrote, so no judge can claim it afterwards, and
// nothing was changed. If the delete fails, or a judge claimed the intent
// but did not answer in time, or a later intent replaced it, Apply returns
// an error that says the intent may still take effect (not wrapping
// ErrUnavailable), which the Handler reports as such, as it does for a
// failed write.
// A rollout with no RolloutControl is refused with admin.ErrTransition.
//
// Releasing a breaker or group that no fleet intent forces, and setting a
// switch to the mode the fleet record already holds, are refused with
// admin.ErrTransition; so is an action over a damaged record, which is
// never overwritten. An unknown name is refused with admin.ErrUnknownObject.
// When etcd cannot be read within AdminSettings.Timeout (or before ctx
// ends), Apply returns an error wrapping admin.ErrUnavailable, saying since
// when this instance's view is stale if it is, and nothing is changed. If
// a write fails after its read succeeded, the write may or may not have
// reached etcd; Apply then returns an error saying so, which the Handler
// reports as an action that may have taken effect.
//
// An Admin starts no goroutine and is safe for concurrent use.
type Admin struct {
	local    *admin.Local
	modes    map[string]*ModeStore
	switches map[string]*fallback.Switch
	bc       *BreakerControl
	timeout  time.Duration
	breakers map[string]*breaker.Breaker
	groups   map[string]bool
	rollouts map[string]bool
	controls map[string]*RolloutControl
}

// NewAdmin returns the Admin for s. It returns an error naming the field
// for objects admin.NewLocal refuses (wrapping admin.ErrInvalidSettings),
// a switch without a ModeStore, a ModeStore for no switch, breakers or
// groups without a BreakerControl, a RolloutControl for no rollout of
// Objects.Rollouts (or of another rollout than its key in Rollouts), and a
// negative Timeout.
func NewAdmin(s AdminSettings) (*Admin, error) {
	local, err := admin.NewLocal(s.Objects)
	if err != nil {
		return nil, fmt.Errorf("etcd: admin: AdminSettings: %w", err)
	}
	if s.Timeout < 0 {
		return nil, fmt.Errorf("etcd: admin: AdminSettings.Timeout must be >= 0, got %v", s.Timeout)
	}
	a := &Admin{
		local:    local,
		modes:    make(map[string]*ModeStore, len(s.Modes)),
		switches: make(map[string]*fallback.Switch, len(s.Modes)),
		bc:       s.Breakers,
		timeout:  s.Timeout,
		breakers: make(map[string]*breaker.Breaker),
		groups:   make(map[string]bool),
		rollouts: make(map[string]bool),
		controls: make(map[string]*RolloutControl, len(s.Rollouts)),
	}
	if a.timeout == 0 {
		a.timeout = DefaultAdminTimeout
	}
	for _, sw := range s.Objects.Switches {
		m := s.Modes[sw.Name()]
		if m == nil {
			return nil, fmt.Errorf("etcd: admin: AdminSettings.Modes has no ModeStore for switch %q", sw.Name())
		}
		a.modes[sw.Name()], a.switches[sw.Name()] = m, sw
	}
	for name := range s.Modes {
		if a.modes[name] == nil {
			return nil, fmt.Errorf("etcd: admin: AdminSettings.Modes[%q] names no switch of Objects.Switches", name)
		}
	}
	for _, b := range s.Objects.Breakers {
		a.breakers[b.Name()] = b
	}
	for name := range s.Objects.Groups {
		a.groups[name] = true
	}
	if (len(a.breakers) > 0 || len(a.groups) > 0) && a.bc == nil {
		return nil, errors.New("etcd: admin: AdminSettings.Breakers is required when Objects has breakers or groups")
	}
	for _, r := range s.Objects.Rollouts {
		a.rollouts[r.Name()] = true
	}
	for name, rc := range s.Rollouts {
		if !a.rollouts[name] || rc == nil || rc.key != controlKey(rc.s.Prefix, name) {
			return nil, fmt.Errorf("etcd: admin: AdminSettings.Rollouts[%q] must be the RolloutControl of that rollout, one of Objects.Rollouts", name)
		}
		a.controls[name] = rc
	}
	return a, nil
}

// Scope returns ScopeFleet.
func (a *Admin) Scope() string { return ScopeFleet }

// ScopeOf implements admin.KindScoper: admin.ScopeLocal for outboxes,
// which are per instance, and ScopeFleet for every other kind.
func (a *Admin) ScopeOf(k admin.Kind) string {
	if k == admin.KindOutbox {
		return admin.ScopeLocal
	}
	return ScopeFleet
}

// Apply implements admin.Actions; see [Admin] for what each action does
// and the errors it returns.
func (a *Admin) Apply(ctx context.Context, act admin.Action) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if act.Kind == admin.KindOutbox {
		return a.local.Apply(ctx, act) // outboxes are per instance
	}
	ctx, cancel := context.WithTimeout(ctx, a.timeout)
	defer cancel()
	switch act.Kind {
	case admin.KindSwitch:
		m, ok := a.modes[act.Name]
		if !ok {
			return unknownObject(act)
		}
		if act.Verb != admin.VerbSetMode {
			return badVerb(act)
		}
		if _, err := act.Mode.MarshalText(); err != nil {
			return fmt.Errorf("%w: switch %q: %w", admin.ErrTransition, act.Name, err)
		}
		return a.setMode(ctx, m, act)
	case admin.KindBreaker, admin.KindGroup:
		known := a.groups[act.Name]
		if act.Kind == admin.KindBreaker {
			known = a.breakers[act.Name] != nil
		}
		if !known {
			return unknownObject(act)
		}
		return a.force(ctx, act)
	case admin.KindRollout:
		if !a.rollouts[act.Name] {
			return unknownObject(act)
		}
		rc := a.controls[act.Name]
		if rc == nil {
			return fmt.Errorf("%w: rollout %q has no RolloutControl (AdminSettings.Rollouts), so only its elected evaluator can %s it",
				admin.ErrTransition, act.Name, act.Verb)
		}
		switch act.Verb {
		case admin.VerbPause, admin.VerbResume, admin.VerbPromote, admin.VerbAbort:
			return rc.request(ctx, act)
		}
		return badVerb(act)
	}
	return fmt.Errorf("%w: unknown kind %q", admin.ErrUnknownObject, act.Kind)
}

// setMode saves act's mode in m for the whole fleet.
func (a *Admin) setMode(ctx context.Context, m *ModeStore, act admin.Action) error {
	for range modeAttempts {
		cur, version, err := m.Load(ctx)
		from := a.localMode(act.Name)
		switch {
		case errors.Is(err, fallback.ErrNoMode):
			version = 0
		case errors.Is(err, fallback.ErrModeCorrupt):
			return fmt.Errorf("%w: switch %q: the fleet record is damaged and is never overwritten (repair or delete %s): %w", admin.ErrTransition, act.Name, m.Key(), err)
		case err != nil:
			return unavailable(act, m.Freshness(), err)
		case cur.To == act.Mode:
			return fmt.Errorf("%w: switch %q is already in mode %s fleet-wide", admin.ErrTransition, act.Name, act.Mode)
		default:
			from = cur.To
		}
		change := fallback.ModeChange{Time: time.Now(), From: from, To: act.Mode, Reason: act.Reason, Actor: act.Actor}
		_, err = m.Save(ctx, change, version)
		switch {
		case err == nil:
			sw := a.switches[act.Name]
			follow(ctx, func() bool { return sw.Mode() == act.Mode })
			return nil
		case errors.Is(err, fallback.ErrModeConflict):
			continue // another writer came first: read its record and try again
		case errors.Is(err, fallback.ErrModeCorrupt):
			return fmt.Errorf("%w: switch %q: the fleet record is damaged and is never overwritten (repair or delete %s): %w", admin.ErrTransition, act.Name, m.Key(), err)
		}
		// %v, not %w: a context error would tell the Handler nothing changed.
		return fmt.Errorf("etcd: admin: set-mode switch %q: the write may or may not have reached etcd; check the switch: %v", act.Name, err)
	}
	return fmt.Errorf("%w: switch %q: its fleet record changed under %d attempts in a row; nothing was changed, try again", admin.ErrTransition, act.Name, modeAttempts)
}

// force stores act's intent for a breaker or a whole group.
func (a *Admin) force(ctx context.Context, act admin.Action) error {
	in := Intent{Reason: act.Reason, Actor: act.Actor, Time: time.Now()}
	what := fmt.Sprintf("%s %q", act.Kind, act.Name)
	if act.Kind == admin.KindGroup {
		if act.Key != "" {
			return fmt.Errorf("%w: fleet intents name a breaker or a whole group, not member %q of group %q; act on the group, or on the member on each instance",
				admin.ErrTransition, act.Key, act.Name)
		}
		in.Group = act.Name
	} else {
		in.Breaker = act.Name
	}
	switch act.Verb {
	case admin.VerbForceOpen:
		in.Action = ForceOpen
	case admin.VerbForceClose:
		in.Action = ForceClosed
	case admin.VerbRelease:
		in.Action = Release
	default:
		return badVerb(act)
	}
	key, err := a.bc.key(in)
	if err != nil {
		return fmt.Errorf("%w: %s cannot be addressed in etcd: %w", admin.ErrTransition, what, err)
	}
	resp, err := a.bc.c.Get(ctx, key)
	if err != nil {
		return unavailable(act, a.bc.Freshness(), err)
	}
	if len(resp.Kvs) == 1 {
		cur, err := a.bc.decode(key, resp.Kvs[0].Value)
		if err != nil {
			return fmt.Errorf("%w: %s: the fleet intent is damaged and is never overwritten (repair or delete %s): %w", admin.ErrTransition, what, key, err)
		}
		if in.Action == Release && !cur.active(in.Time) {
			return fmt.Errorf("%w: no fleet intent forces %s (the last one was %s, by %s)", admin.ErrTransition, what, cur.Action, cur.Actor)
		}
	} else if in.Action == Release {
		return fmt.Errorf("%w: no fleet intent forces %s", admin.ErrTransition, what)
	}
	if err := a.bc.Set(ctx, in); err != nil {
		if errors.Is(err, ErrBadIntent) {
			return fmt.Errorf("%w: %s: %w", admin.ErrTransition, what, err)
		}
		// %v, not %w: a context error would tell the Handler nothing changed.
		return fmt.Errorf("etcd: admin: %s %s: the write may or may not have reached etcd; check the breakers: %v", act.Verb, what, err)
	}
	if b := a.breakers[act.Name]; b != nil && act.Kind == admin.KindBreaker {
		want := map[Action]breaker.State{ForceOpen: breaker.ForcedOpen, ForceClosed: breaker.ForcedClosed}[in.Action]
		follow(ctx, func() bool {
			st := b.State()
			if in.Action == Release {
				return st != breaker.ForcedOpen && st != breaker.ForcedClosed
			}
			return st == want
		})
	}
	return nil
}

// follow waits until done reports true, for at most followWait or until
// ctx ends, whichever comes first.
func follow(ctx context.Context, done func() bool) {
	ctx, cancel := context.WithTimeout(ctx, followWait)
	defer cancel()
	tick := time.NewTicker(followPoll)
	defer tick.Stop()
	for !done() {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// localMode returns the mode of this instance's switch called name.
func (a *Admin) localMode(name string) fallback.Mode { return a.switches[name].Mode() }

// unknownObject returns the error for an action on an object that does
// not exist.
func unknownObject(act admin.Action) error {
	return fmt.Errorf("%w: no %s named %q", admin.ErrUnknownObject, act.Kind, act.Name)
}

// badVerb returns the error for a verb the kind does not take.
func badVerb(act admin.Action) error {
	return fmt.Errorf("%w: a %s cannot %s", admin.ErrTransition, act.Kind, act.Verb)
}

// unavailable returns the error for an action whose first read of etcd
// failed, before anything was written.
// f is the freshness of this instance's view of the object; a stale view
// is named with the time it went stale and the last time etcd answered.
func unavailable(act admin.Action, f Freshness, err error) error {
	view := ""
	if f.Stale {
		view = fmt.Sprintf(" (this instance's view is stale since %s", f.Since.UTC().Format(time.RFC3339))
		if !f.Heard.IsZero() {
			view += fmt.Sprintf(", etcd last answered at %s", f.Heard.UTC().Format(time.RFC3339))
		}
		view += ")"
	}
	return fmt.Errorf("%w: etcd: admin: %s %s %q: etcd could not be read, nothing was changed%s: %w",
		admin.ErrUnavailable, act.Verb, act.Kind, act.Name, view, err)
}
