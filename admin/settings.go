package admin

import (
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"unicode"

	"github.com/ringfence/ringfence/breaker"
	"github.com/ringfence/ringfence/fallback"
	"github.com/ringfence/ringfence/rollout"
)

// Errors of the package, checked with errors.Is.
var (
	// ErrInvalidSettings is wrapped by the error New and NewLocal return
	// for settings they cannot use. The message names the field.
	ErrInvalidSettings = errors.New("admin: invalid settings")
	// ErrUnknownObject is wrapped by the error Actions.Apply returns for an
	// action on an object (or a group member, or a dead letter) that does
	// not exist. The Handler answers it with 404 Not Found.
	ErrUnknownObject = errors.New("admin: unknown object")
	// ErrTransition is wrapped by the error Actions.Apply returns for an
	// action the object's state does not allow, such as promoting a rolled
	// back rollout, releasing a breaker that is not forced or setting a
	// switch to the mode it is already in. Nothing was changed. The
	// Handler answers it with 409 Conflict.
	ErrTransition = errors.New("admin: transition not allowed")
	// ErrUnavailable is wrapped by the error Actions.Apply returns when the
	// store it acts through (such as a fleet-wide store) could not be
	// reached before anything was written. Nothing was changed. The
	// Handler answers it with 503 Service Unavailable.
	ErrUnavailable = errors.New("admin: store unavailable")
)

// MinSecretLen is the shortest Token.Secret New accepts, in bytes.
// Generate secrets with crypto/rand, for example 32 random bytes in hex.
const MinSecretLen = 16

// Defaults for zero Settings fields.
const (
	DefaultMaxBody   = 4 << 10 // Settings.MaxBody, in bytes
	DefaultAuditLen  = 256     // Settings.AuditLen
	DefaultBacklogN  = 180     // Settings.BacklogSamples
	maxNameLen       = 200     // longest object or token name
	maxReasonLen     = 1000    // longest reason, in bytes
	maxDeadLetterOut = 1000    // most dead letters listed in one response
)

// Token is a bearer token the application hands out to an operator or a
// script. The Handler compares secrets in constant time and never logs
// them.
type Token struct {
	// Name identifies the holder ("alice", "oncall-bot"). It is the actor
	// recorded with every action made with the token. It is required.
	Name string
	// Secret is the token itself, sent as "Authorization: Bearer SECRET".
	// It must be at least MinSecretLen bytes; there is no default.
	Secret string
	// Write allows the token's holder to act (force breakers, set modes,
	// steer rollouts, requeue dead letters). Default false: the token may
	// only read.
	Write bool
}

// Objects are the resilience objects of one process that a Handler shows
// and acts on. Every name must be unique within its kind and non-empty.
// The slices and maps are copied by New and NewLocal; the objects are used
// as they are and must outlive the Handler.
type Objects struct {
	// Breakers are shown and acted on by their Name.
	Breakers []*breaker.Breaker
	// Groups maps each group's name to the group. The name must be the
	// group's breaker.Settings.Name, so that a member breaker named
	// "Name/key" is known by its key.
	Groups map[string]*breaker.Group
	// Switches are shown and acted on by their Name.
	Switches []*fallback.Switch
	// Outboxes maps a name of the application's choice to each outbox.
	Outboxes map[string]*fallback.Outbox
	// Rollouts are shown and acted on by their Name.
	Rollouts []*rollout.Rollout
}

// Settings configures a Handler. Every zero field but Tokens means the
// default its comment states; Tokens has no default, so New refuses
// Settings{}.
type Settings struct {
	// Tokens are the bearer tokens the Handler accepts. At least one is
	// required: the Handler never serves without a token. Names and secrets
	// must be unique.
	Tokens []Token

	// Objects are the objects to show and act on.
	Objects Objects

	// Actions carries out the actions the Handler accepts. Nil means the
	// objects themselves, in this process only: NewLocal(Objects). A
	// fleet-wide implementation plugs in here; its Scope is reported in
	// every response.
	Actions Actions

	// Logger receives one record per action (Info when applied, Warn when
	// refused) and per rejected credential (Warn), never a secret. Nil
	// means slog.Default().
	Logger *slog.Logger

	// MaxBody bounds the size of a request body, in bytes. Zero means
	// DefaultMaxBody (4 KiB); it must not be negative.
	MaxBody int64

	// AuditLen is how many applied actions the Handler's audit trail keeps
	// (the "recent changes" of the page). Zero means DefaultAuditLen (256);
	// it must not be negative.
	AuditLen int

	// BacklogSamples is how many backlog samples the Handler keeps per
	// outbox for the page's chart. A sample is taken at most once a second,
	// when an outbox is read through the Handler. Zero means
	// DefaultBacklogN (180); it must not be negative.
	BacklogSamples int
}

// index holds the objects by kind and name. It is built once and never
// changed, so it is safe for concurrent use.
type index struct {
	breakers map[string]*breaker.Breaker
	groups   map[string]*breaker.Group
	switches map[string]*fallback.Switch
	outboxes map[string]*fallback.Outbox
	rollouts map[string]*rollout.Rollout
}

// newIndex checks o's names and indexes the objects.
func newIndex(o Objects) (*index, error) {
	ix := &index{
		breakers: make(map[string]*breaker.Breaker, len(o.Breakers)),
		groups:   make(map[string]*breaker.Group, len(o.Groups)),
		switches: make(map[string]*fallback.Switch, len(o.Switches)),
		outboxes: make(map[string]*fallback.Outbox, len(o.Outboxes)),
		rollouts: make(map[string]*rollout.Rollout, len(o.Rollouts)),
	}
	for i, b := range o.Breakers {
		if b == nil {
			return nil, invalid("Objects.Breakers[%d] is nil", i)
		}
		if err := addNamed(ix.breakers, b.Name(), b, "Objects.Breakers", i); err != nil {
			return nil, err
		}
	}
	for name, g := range o.Groups {
		if g == nil {
			return nil, invalid("Objects.Groups[%q] is nil", name)
		}
		if err := checkName(name); err != nil {
			return nil, invalid("Objects.Groups: %v", err)
		}
		for _, s := range g.Snapshots() {
			if !strings.HasPrefix(s.Name, name+"/") {
				return nil, invalid("Objects.Groups[%q]: member %q does not start with %q; the name must be the group's Settings.Name", name, s.Name, name+"/")
			}
		}
		ix.groups[name] = g
	}
	for i, s := range o.Switches {
		if s == nil {
			return nil, invalid("Objects.Switches[%d] is nil", i)
		}
		if err := addNamed(ix.switches, s.Name(), s, "Objects.Switches", i); err != nil {
			return nil, err
		}
	}
	for name, ob := range o.Outboxes {
		if ob == nil {
			return nil, invalid("Objects.Outboxes[%q] is nil", name)
		}
		if err := checkName(name); err != nil {
			return nil, invalid("Objects.Outboxes: %v", err)
		}
		ix.outboxes[name] = ob
	}
	for i, r := range o.Rollouts {
		if r == nil {
			return nil, invalid("Objects.Rollouts[%d] is nil", i)
		}
		if err := addNamed(ix.rollouts, r.Name(), r, "Objects.Rollouts", i); err != nil {
			return nil, err
		}
	}
	return ix, nil
}

// addNamed adds v to m under name, refusing a bad or duplicate name.
func addNamed[T any](m map[string]T, name string, v T, field string, i int) error {
	if err := checkName(name); err != nil {
		return invalid("%s[%d]: %v", field, i, err)
	}
	if _, dup := m[name]; dup {
		return invalid("%s[%d]: name %q is used twice", field, i, name)
	}
	m[name] = v
	return nil
}

// checkName refuses names the API and the page cannot show or address.
func checkName(name string) error {
	if name == "" {
		return errors.New("empty name")
	}
	if len(name) > maxNameLen {
		return fmt.Errorf("name %.20q... is longer than %d bytes", name, maxNameLen)
	}
	for _, r := range name {
		if !unicode.IsPrint(r) {
			return fmt.Errorf("name %q holds a non-printable character", name)
		}
	}
	return nil
}

// checkTokens refuses a token list the Handler cannot serve with.
func checkTokens(tokens []Token) error {
	if len(tokens) == 0 {
		return invalid("Tokens: at least one token is required; the handler never serves without one")
	}
	names := make(map[string]bool, len(tokens))
	secrets := make(map[string]bool, len(tokens))
	for i, t := range tokens {
		if err := checkName(t.Name); err != nil {
			return invalid("Tokens[%d].Name: %v", i, err)
		}
		if names[t.Name] {
			return invalid("Tokens[%d].Name: %q is used twice", i, t.Name)
		}
		names[t.Name] = true
		if len(t.Secret) < MinSecretLen {
			return invalid("Tokens[%d].Secret (of %q): shorter than %d bytes", i, t.Name, MinSecretLen)
		}
		if secrets[t.Secret] {
			return invalid("Tokens[%d].Secret (of %q): the same secret is given to another token", i, t.Name)
		}
		secrets[t.Secret] = true
	}
	return nil
}

// invalid returns an error wrapping ErrInvalidSettings.
func invalid(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrInvalidSettings, fmt.Sprintf(format, args...))
}
