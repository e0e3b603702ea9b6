package etcd

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/ringfence/ringfence/breaker"
)

// Action is what an operator asks of the breakers an [Intent] names.
type Action string

// The actions of an Intent.
const (
	// ForceOpen makes the breakers reject every call (breaker.ForceOpen).
	ForceOpen Action = "force-open"
	// ForceClosed makes the breakers let every call through
	// (breaker.ForceClose).
	ForceClosed Action = "force-closed"
	// Release hands the breakers back to automatic control
	// (breaker.Release). A stored Release records who released and why.
	Release Action = "release"
)

// ErrBadIntent is wrapped by the error [BreakerControl.Set] returns for an
// intent it refuses to store.
var ErrBadIntent = errors.New("etcd: bad breaker intent")

// Intent is an operator's wish for one named breaker or for every breaker
// attached with a group name, shared by the fleet.
type Intent struct {
	// Breaker is the name of the breaker (its Settings.Name); Group is a
	// group name given to Attach. Exactly one of them is set.
	Breaker string `json:"breaker,omitempty"`
	Group   string `json:"group,omitempty"`
	// Action is ForceOpen, ForceClosed or Release.
	Action Action `json:"action"`
	// Reason and Actor say why and who; they show in the breakers'
	// snapshots and logs.
	Reason string `json:"reason,omitempty"`
	Actor  string `json:"actor,omitempty"`
	// Time is when the intent was made; Set fills it when zero.
	Time time.Time `json:"time"`
	// Expires, if not zero, is when the intent lapses by itself, as if
	// released, read on each instance's own clock. Zero means until
	// released.
	Expires time.Time `json:"expires,omitzero"`
}

// active reports whether the intent forces its breakers at now.
func (in Intent) active(now time.Time) bool {
	return in.Action != Release && (in.Expires.IsZero() || now.Before(in.Expires))
}

// describe says why a breaker is forced, for its reason.
func (in Intent) describe() string {
	var b strings.Builder
	b.WriteString(in.Reason)
	if in.Actor != "" {
		fmt.Fprintf(&b, " (by %s", in.Actor)
	} else {
		b.WriteString(" (")
	}
	if in.Group != "" {
		fmt.Fprintf(&b, ", fleet intent for group %s)", in.Group)
	} else {
		b.WriteString(", fleet intent)")
	}
	return b.String()
}

// intentDoc is the JSON document kept in etcd.
type intentDoc struct {
	Format int    `json:"format"`
	Intent Intent `json:"intent"`
}

// BreakerControl applies the fleet's operator intents to this instance's
// breakers: an intent stored with Set (by any instance or tool) reaches
// every BreakerControl on the same etcd through a watch, typically well
// within a second, and each applies it to the breakers attached to it
// with ForceOpen, ForceClose or Release. Automatic trips stay local: only
// operator intent crosses the network, never call outcomes, and no call
// of a breaker waits for etcd.
//
// A breaker follows the intent for its own name if there is one in force,
// otherwise the newest intent in force for one of its groups, otherwise
// nothing: it is released if the control had forced it, and left alone if
// not. While etcd is unreachable the breakers keep their forced state
// (expiries still apply), Freshness reports since when the view is stale,
// and a line is logged when it goes stale and when it is fresh again. A
// damaged intent record is logged, reported by Err and ignored.
//
// Intents live under Prefix + "breaker/name/" and Prefix + "breaker/group/".
// NewBreakerControl starts goroutines that follow them until Close. A
// BreakerControl is safe for concurrent use.
type BreakerControl struct {
	c      *clientv3.Client
	s      Settings
	follow *follower
	wake   chan struct{} // signals the apply goroutine; capacity 1
	done   chan struct{} // closed by Close
	ended  chan struct{} // closed when the apply goroutine ends
	once   sync.Once

	mu       sync.Mutex        // guards intents, bad and attached
	intents  map[string]Intent // by key, as read
	bad      map[string]error  // keys whose record is damaged
	attached map[*attachment]struct{}
}

// attachment is one breaker attached to the control.
type attachment struct {
	b      *breaker.Breaker
	groups []string
	// applied is the intent last applied, touched only by the apply
	// goroutine; nil when the control has not forced the breaker.
	applied *Intent
}

// NewBreakerControl returns a control following the intents on etcd. The
// caller keeps ownership of c and must call Close before closing c. It
// returns an error naming the field for invalid settings.
func NewBreakerControl(c *clientv3.Client, settings Settings) (*BreakerControl, error) {
	if c == nil {
		return nil, errors.New("etcd: breaker control: nil client")
	}
	s, err := settings.withDefaults("breaker control")
	if err != nil {
		return nil, err
	}
	bc := &BreakerControl{
		c: c, s: s,
		wake:     make(chan struct{}, 1),
		done:     make(chan struct{}),
		ended:    make(chan struct{}),
		intents:  make(map[string]Intent),
		bad:      make(map[string]error),
		attached: make(map[*attachment]struct{}),
	}
	bc.follow = &follower{
		c: c, key: s.Prefix + "breaker/", prefix: true, what: "breaker control", s: s,
		reset: bc.reset, event: bc.event,
	}
	bc.follow.start()
	go bc.apply()
	return bc, nil
}

// key returns the etcd key of an intent, or an error for a bad target.
func (bc *BreakerControl) key(in Intent) (string, error) {
	switch {
	case (in.Breaker == "") == (in.Group == ""):
		return "", fmt.Errorf("%w: set exactly one of Breaker and Group, got %q and %q", ErrBadIntent, in.Breaker, in.Group)
	case strings.ContainsAny(in.Breaker+in.Group, "/\x00"):
		return "", fmt.Errorf("%w: name %q contains \"/\"", ErrBadIntent, in.Breaker+in.Group)
	case in.Breaker != "":
		return bc.s.Prefix + "breaker/name/" + in.Breaker, nil
	}
	return bc.s.Prefix + "breaker/group/" + in.Group, nil
}

// Set stores in for the whole fleet, replacing the intent for the same
// breaker or group, and fills in.Time when it is zero. Every instance's
// control applies it shortly after. It returns an error wrapping
// ErrBadIntent for an intent that names no target or both, has an unknown
// Action or has already expired, and ctx's or the client's error when etcd
// cannot be written.
func (bc *BreakerControl) Set(ctx context.Context, in Intent) error {
	key, err := bc.key(in)
	if err != nil {
		return err
	}
	switch in.Action {
	case ForceOpen, ForceClosed, Release:
	default:
		return fmt.Errorf("%w: unknown Action %q (want %q, %q or %q)", ErrBadIntent, in.Action, ForceOpen, ForceClosed, Release)
	}
	if in.Time.IsZero() {
		in.Time = time.Now()
	}
	if !in.Expires.IsZero() && !in.Expires.After(in.Time) {
		return fmt.Errorf("%w: Expires %v is not after Time %v", ErrBadIntent, in.Expires, in.Time)
	}
	data, err := json.Marshal(intentDoc{Format: FormatVersion, Intent: in})
	if err != nil {
		return fmt.Errorf("etcd: breaker control: encode: %w", err)
	}
	if len(data) > bc.s.MaxRecordSize {
		return fmt.Errorf("%w: record of %d bytes exceeds MaxRecordSize %d", ErrBadIntent, len(data), bc.s.MaxRecordSize)
	}
	if _, err := bc.c.Put(ctx, key, string(data)); err != nil {
		return fmt.Errorf("etcd: breaker control: write %s: %w", key, err)
	}
	return nil
}

// Attach makes the control apply the fleet's intents to b: those for its
// name and those for any of groups. It returns a function that detaches b;
// a breaker the control forced stays as it is after detaching.
func (bc *BreakerControl) Attach(b *breaker.Breaker, groups ...string) (detach func()) {
	a := &attachment{b: b, groups: slices.Clone(groups)}
	bc.mu.Lock()
	bc.attached[a] = struct{}{}
	bc.mu.Unlock()
	bc.signal()
	return func() {
		bc.mu.Lock()
		delete(bc.attached, a)
		bc.mu.Unlock()
	}
}

// Intents returns the intents stored in etcd as the control last read
// them, including releases and expired ones, sorted by breaker then group.
func (bc *BreakerControl) Intents() []Intent {
	bc.mu.Lock()
	out := slices.Collect(maps.Values(bc.intents))
	bc.mu.Unlock()
	slices.SortFunc(out, func(a, b Intent) int {
		return strings.Compare(a.Breaker+"\x00"+a.Group, b.Breaker+"\x00"+b.Group)
	})
	return out
}

// Freshness reports how current the control's view of the intents is.
func (bc *BreakerControl) Freshness() Freshness { return bc.follow.freshness() }

// Err returns an error wrapping ErrBadRecord for each damaged intent
// record the control has seen and not yet seen replaced, or nil.
func (bc *BreakerControl) Err() error {
	bc.mu.Lock()
	defer bc.mu.Unlock()
	var errs []error
	for _, k := range slices.Sorted(maps.Keys(bc.bad)) {
		errs = append(errs, bc.bad[k])
	}
	return errors.Join(errs...)
}

// Close stops following and applying intents and waits for the control's
// goroutines. Breakers keep the state the control last gave them. Calling
// Close more than once does nothing.
func (bc *BreakerControl) Close() {
	bc.once.Do(func() {
		bc.follow.stop()
		close(bc.done)
		<-bc.ended
	})
}

func (bc *BreakerControl) reset(kvs []*mvccpb.KeyValue, _ int64) {
	bc.mu.Lock()
	clear(bc.intents)
	clear(bc.bad)
	bc.mu.Unlock()
	for _, kv := range kvs {
		bc.take(string(kv.Key), kv.Value)
	}
	bc.signal()
}

func (bc *BreakerControl) event(ev *clientv3.Event) {
	key := string(ev.Kv.Key)
	if ev.Type == clientv3.EventTypeDelete {
		bc.mu.Lock()
		delete(bc.intents, key)
		delete(bc.bad, key)
		bc.mu.Unlock()
	} else {
		bc.take(key, ev.Kv.Value)
	}
	bc.signal()
}

// take decodes the record at key.
func (bc *BreakerControl) take(key string, data []byte) {
	in, err := bc.decode(key, data)
	bc.mu.Lock()
	if err != nil {
		delete(bc.intents, key)
		bc.bad[key] = err
	} else {
		bc.intents[key] = in
		delete(bc.bad, key)
	}
	bc.mu.Unlock()
	if err != nil {
		bc.s.Logger.Error("ringfence: damaged breaker intent in etcd; ignoring it", "key", key, "error", err)
	}
}

func (bc *BreakerControl) decode(key string, data []byte) (Intent, error) {
	if len(data) > bc.s.MaxRecordSize {
		return Intent{}, fmt.Errorf("%w: %s: %d bytes, limit %d", ErrBadRecord, key, len(data), bc.s.MaxRecordSize)
	}
	var doc intentDoc
	if err := json.Unmarshal(data, &doc); err != nil {
		return Intent{}, fmt.Errorf("%w: %s: %v", ErrBadRecord, key, err)
	}
	if doc.Format != FormatVersion {
		return Intent{}, fmt.Errorf("%w: %s: format %d, want %d", ErrBadRecord, key, doc.Format, FormatVersion)
	}
	want, err := bc.key(doc.Intent)
	if err != nil || want != key {
		return Intent{}, fmt.Errorf("%w: %s: intent names breaker %q, group %q", ErrBadRecord, key, doc.Intent.Breaker, doc.Intent.Group)
	}
	switch doc.Intent.Action {
	case ForceOpen, ForceClosed, Release:
	default:
		return Intent{}, fmt.Errorf("%w: %s: unknown action %q", ErrBadRecord, key, doc.Intent.Action)
	}
	return doc.Intent, nil
}

func (bc *BreakerControl) signal() {
	select {
	case bc.wake <- struct{}{}:
	default:
	}
}

// apply brings every attached breaker in line with the intents whenever
// they or the attachments change and when an intent expires, until Close.
// Breaker methods (and so their OnChange callbacks) run here, with no lock
// held.
func (bc *BreakerControl) apply() {
	defer close(bc.ended)
	expiry := time.NewTimer(time.Hour)
	defer expiry.Stop()
	for {
		select {
		case <-bc.done:
			return
		case <-bc.wake:
		case <-expiry.C:
		}
		now := time.Now()
		bc.mu.Lock()
		byName := make(map[string]Intent)
		byGroup := make(map[string]Intent)
		next := time.Time{}
		for _, in := range bc.intents {
			if !in.active(now) {
				continue
			}
			if !in.Expires.IsZero() && (next.IsZero() || in.Expires.Before(next)) {
				next = in.Expires
			}
			if in.Breaker != "" {
				byName[in.Breaker] = in
			} else {
				byGroup[in.Group] = in
			}
		}
		as := slices.Collect(maps.Keys(bc.attached))
		bc.mu.Unlock()

		for _, a := range as {
			want, ok := byName[a.b.Name()]
			if !ok {
				for _, g := range a.groups {
					if gi, found := byGroup[g]; found && (!ok || gi.Time.After(want.Time)) {
						want, ok = gi, true
					}
				}
			}
			switch {
			case !ok && a.applied != nil:
				a.applied = nil
				a.b.Release()
			case ok && (a.applied == nil || *a.applied != want):
				a.applied = &want
				if want.Action == ForceOpen {
					a.b.ForceOpen(want.describe())
				} else {
					a.b.ForceClose(want.describe())
				}
			}
		}
		expiry.Stop()
		if !next.IsZero() {
			expiry.Reset(time.Until(next))
		}
	}
}
