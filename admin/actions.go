package admin

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/ringfence/ringfence/breaker"
	"github.com/ringfence/ringfence/fallback"
	"github.com/ringfence/ringfence/rollout"
)

// Kind is the kind of object an action applies to.
type Kind string

// The kinds of object.
const (
	KindBreaker Kind = "breaker"
	KindGroup   Kind = "group"
	KindSwitch  Kind = "switch"
	KindOutbox  Kind = "outbox"
	KindRollout Kind = "rollout"
)

// Verb is what an action does.
type Verb string

// The verbs, and the kinds each applies to.
const (
	VerbForceOpen  Verb = "force-open"  // breaker, group
	VerbForceClose Verb = "force-close" // breaker, group
	VerbRelease    Verb = "release"     // breaker, group
	VerbSetMode    Verb = "set-mode"    // switch
	VerbRequeue    Verb = "requeue"     // outbox
	VerbPause      Verb = "pause"       // rollout
	VerbResume     Verb = "resume"      // rollout
	VerbPromote    Verb = "promote"     // rollout
	VerbAbort      Verb = "abort"       // rollout
)

// allows reports whether kind k accepts verb v.
func (k Kind) allows(v Verb) bool {
	switch k {
	case KindBreaker, KindGroup:
		return v == VerbForceOpen || v == VerbForceClose || v == VerbRelease
	case KindSwitch:
		return v == VerbSetMode
	case KindOutbox:
		return v == VerbRequeue
	case KindRollout:
		return v == VerbPause || v == VerbResume || v == VerbPromote || v == VerbAbort
	}
	return false
}

// Action is one operator action, checked by the Handler (a known kind and
// verb, a reason, a token allowed to write) before it reaches Actions.
type Action struct {
	Kind Kind
	Name string // the object's name
	Verb Verb
	// Key is the member of a group to act on (empty: every member), or the
	// key of the dead letter to requeue.
	Key string
	// Mode is the mode to set, for VerbSetMode.
	Mode fallback.Mode
	// Reason is the operator's reason, as given. It is never empty.
	Reason string
	// Actor is the name of the token the action was made with.
	Actor string
}

// Actions carries out operator actions: it is where the Handler sends
// them. Local applies them to the objects of this process; an
// implementation backed by a fleet-wide store would record the operator's
// intent there, for every instance to apply.
//
// Implementations must be safe for concurrent use.
type Actions interface {
	// Scope names where actions take effect: "local" for this process
	// only. The Handler reports it in every response.
	Scope() string
	// Apply carries out a and returns nil once it has taken effect.
	// An error wrapping ErrUnknownObject or ErrTransition means nothing
	// was changed; any other error means the action failed or took effect
	// only in part, and the error says which, except for one wrapping
	// ErrUnavailable or ctx's error, which also means nothing was changed.
	Apply(ctx context.Context, a Action) error
}

// KindScoper is implemented by an Actions whose scope depends on the kind
// of object, such as a fleet-wide backend that acts on switches for the
// whole fleet but on outboxes, which are per instance, locally. The
// Handler then reports ScopeOf(kind) in the answer to each action and in
// its audit trail, and Scope (the scope of most actions) everywhere else.
type KindScoper interface {
	// ScopeOf names where actions on objects of kind k take effect.
	ScopeOf(k Kind) string
}

// ScopeLocal is the Scope of Local.
const ScopeLocal = "local"

// Local is the Actions that applies actions to the objects of this process
// through their own methods. Create one with NewLocal; it is safe for
// concurrent use.
//
// A switch's history records the actor in ModeChange.Actor. Breakers and
// rollouts have no field for who acted, so Local passes the reason on to
// them as "REASON (by ACTOR)": a breaker's snapshot and a rollout's events
// show the actor that way. Breaker.Release
// and Outbox.Requeue take no reason; for them the actor and the reason are
// kept only in the Handler's audit trail and log.
type Local struct {
	ix *index
}

// NewLocal returns the Local that acts on o. It returns an error wrapping
// ErrInvalidSettings, naming the field, for a nil object or a missing or
// duplicate name.
func NewLocal(o Objects) (*Local, error) {
	ix, err := newIndex(o)
	if err != nil {
		return nil, err
	}
	return &Local{ix: ix}, nil
}

// Scope returns ScopeLocal.
func (l *Local) Scope() string { return ScopeLocal }

// Apply implements Actions on the local objects.
//
// Releasing a breaker or group that is not forced, and setting a switch to
// the mode it is in, are refused with ErrTransition, as are the rollout
// transitions rollout refuses with rollout.ErrTransition or rollout.ErrFailSafe.
// A group action without a Key applies to every member the group holds now
// (not to members created later, nor to the shared overflow breaker); one
// with a Key applies to that member, which must exist.
func (l *Local) Apply(ctx context.Context, a Action) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if !a.Kind.allows(a.Verb) {
		return fmt.Errorf("%w: a %s cannot %s", ErrTransition, a.Kind, a.Verb)
	}
	reason := Annotate(a.Reason, a.Actor)
	switch a.Kind {
	case KindBreaker:
		b, ok := l.ix.breakers[a.Name]
		if !ok {
			return unknown(a.Kind, a.Name)
		}
		return applyBreaker(b, a.Verb, reason)
	case KindGroup:
		return l.applyGroup(a, reason)
	case KindSwitch:
		s, ok := l.ix.switches[a.Name]
		if !ok {
			return unknown(a.Kind, a.Name)
		}
		if s.Mode() == a.Mode {
			return fmt.Errorf("%w: switch %q is already in mode %s", ErrTransition, a.Name, a.Mode)
		}
		return s.Set(ctx, a.Mode, a.Actor, a.Reason)
	case KindOutbox:
		o, ok := l.ix.outboxes[a.Name]
		if !ok {
			return unknown(a.Kind, a.Name)
		}
		err := o.Requeue(a.Key)
		if errors.Is(err, fallback.ErrNoDeadLetter) {
			return fmt.Errorf("%w: outbox %q has no dead letter with key %q", ErrUnknownObject, a.Name, a.Key)
		}
		return err
	case KindRollout:
		r, ok := l.ix.rollouts[a.Name]
		if !ok {
			return unknown(a.Kind, a.Name)
		}
		return applyRollout(r, a.Verb, reason)
	}
	return fmt.Errorf("%w: unknown kind %q", ErrUnknownObject, a.Kind)
}

// Annotate returns the reason Local passes to an object: the operator's
// reason followed by " (by ACTOR)".
func Annotate(reason, actor string) string {
	return reason + " (by " + actor + ")"
}

// applyBreaker applies v to b.
func applyBreaker(b *breaker.Breaker, v Verb, reason string) error {
	switch v {
	case VerbForceOpen:
		b.ForceOpen(reason)
	case VerbForceClose:
		b.ForceClose(reason)
	case VerbRelease:
		if !forced(b.State()) {
			return fmt.Errorf("%w: breaker %q is %s, not forced", ErrTransition, b.Name(), b.State())
		}
		b.Release()
	}
	return nil
}

// forced reports whether s is set by an operator.
func forced(s breaker.State) bool {
	return s == breaker.ForcedOpen || s == breaker.ForcedClosed
}

// applyGroup applies a to one or every member of its group.
func (l *Local) applyGroup(a Action, reason string) error {
	g, ok := l.ix.groups[a.Name]
	if !ok {
		return unknown(a.Kind, a.Name)
	}
	var keys []string
	for _, s := range g.Snapshots() {
		key, ok := strings.CutPrefix(s.Name, a.Name+"/")
		if !ok || key == "*" {
			continue // the overflow breaker cannot be reached by key
		}
		if a.Key != "" && key != a.Key {
			continue
		}
		if a.Verb == VerbRelease && !forced(s.State) {
			continue
		}
		keys = append(keys, key)
	}
	if len(keys) == 0 {
		switch {
		case a.Key != "" && a.Verb == VerbRelease && memberExists(g, a.Name, a.Key):
			return fmt.Errorf("%w: member %q of group %q is not forced", ErrTransition, a.Key, a.Name)
		case a.Key != "":
			return fmt.Errorf("%w: group %q has no member %q", ErrUnknownObject, a.Name, a.Key)
		case a.Verb == VerbRelease:
			return fmt.Errorf("%w: no member of group %q is forced", ErrTransition, a.Name)
		default:
			return fmt.Errorf("%w: group %q has no members yet", ErrTransition, a.Name)
		}
	}
	for _, key := range keys {
		if err := applyBreaker(g.Get(key), a.Verb, reason); err != nil {
			return err
		}
	}
	return nil
}

// memberExists reports whether group g, called name, holds a breaker for key.
func memberExists(g *breaker.Group, name, key string) bool {
	for _, s := range g.Snapshots() {
		if s.Name == name+"/"+key {
			return true
		}
	}
	return false
}

// applyRollout applies v to r.
func applyRollout(r *rollout.Rollout, v Verb, reason string) error {
	var err error
	switch v {
	case VerbPause:
		err = r.Pause(reason)
	case VerbResume:
		err = r.Resume(reason)
	case VerbPromote:
		err = r.Promote(reason)
	case VerbAbort:
		err = r.Abort(reason)
	}
	if errors.Is(err, rollout.ErrTransition) || errors.Is(err, rollout.ErrFailSafe) {
		return fmt.Errorf("%w: rollout %q is %s: %w", ErrTransition, r.Name(), r.Status().State, err)
	}
	return err
}

// unknown returns the error for an object that does not exist.
func unknown(k Kind, name string) error {
	return fmt.Errorf("%w: no %s named %q", ErrUnknownObject, k, name)
}
