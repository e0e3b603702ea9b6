package breaker

import (
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// GroupOptions configures a [Group]. The zero value means the defaults
// stated on each field.
type GroupOptions struct {
	// MaxKeys bounds how many per-key breakers the group keeps. Default
	// 1024. When a new key arrives at the bound, the group looks for idle
	// breakers (Closed, not ramping, no call in flight and no call counted
	// within its Window) and evicts them all, since a fresh breaker would
	// behave the same; it never evicts a breaker that is open, half-open,
	// forced, counting or still waiting for an outcome. It looks at most
	// once per bucket period (a tenth of Settings.Window). Until a slot
	// frees up, new keys are served by the group's shared overflow
	// breaker, named "Name/*", whose state covers every overflowing key
	// together.
	MaxKeys int
}

const defaultMaxKeys = 1024

// overflowKey names the shared breaker for keys beyond MaxKeys.
const overflowKey = "*"

// Group holds one breaker per key (per host, region or tenant), all made
// from the same Settings and created on first use. Create one with
// [NewGroup]; the zero value is not usable. A Group is safe for concurrent
// use.
//
// Looking up a key takes no lock, and neither does a key routed to the
// overflow breaker: each costs one or two map lookups and a few atomic
// loads. A group owns no goroutine; after a scan for idle breakers it arms
// one timer for a bucket period, to allow the next scan.
type Group struct {
	s        Settings // normalized
	maxKeys  int64
	members  atomic.Pointer[members] // replaced, never changed, under mu
	n        atomic.Int64            // keys in members; changed under mu
	overflow atomic.Pointer[Breaker] // created on first need
	ins      *instruments            // nil without Settings.MeterProvider
	// scanDue is set while a scan for idle breakers may run: a scan
	// clears it and a timer sets it again a bucket period later.
	scanDue atomic.Bool

	mu sync.Mutex // serialises the replacement of members
}

// members is the group's key to breaker map, read without locking and
// copied on write. New keys go to the small recent map, so that adding a
// key copies little; recent is merged into all once it holds mergeAt keys.
// A key is in one of the two maps at most.
type members struct {
	all, recent map[string]*Breaker
}

// mergeAt is how many keys recent holds before it is merged into all.
const mergeAt = 64

// lookup returns the breaker for key, if there is one.
func (ms *members) lookup(key string) (*Breaker, bool) {
	if b, ok := ms.all[key]; ok {
		return b, true
	}
	b, ok := ms.recent[key]
	return b, ok
}

// NewGroup returns an empty group whose breakers use s, each named
// s.Name + "/" + key. It returns an error wrapping [ErrInvalidSettings],
// naming the field, if s or opts cannot be used.
func NewGroup(s Settings, opts GroupOptions) (*Group, error) {
	s, err := s.normalize()
	if err != nil {
		return nil, err
	}
	switch {
	case opts.MaxKeys < 0:
		return nil, invalid("GroupOptions.MaxKeys must not be negative, got %d", opts.MaxKeys)
	case opts.MaxKeys == 0:
		opts.MaxKeys = defaultMaxKeys
	}
	g := &Group{s: s, maxKeys: int64(opts.MaxKeys)}
	g.members.Store(&members{})
	g.scanDue.Store(true)
	if err := g.instrument(); err != nil {
		return nil, err
	}
	return g, nil
}

// Get returns the breaker for key, creating it on first use (see
// [GroupOptions.MaxKeys] for what happens at the bound). Looking up an
// existing key takes no lock and allocates nothing; nor does a key routed
// to the overflow breaker. A breaker evicted while idle is replaced by a
// fresh one on the next Get, so call Get for each call rather than keeping
// the breaker: a call that starts on a breaker fetched before its eviction
// counts on the evicted one.
func (g *Group) Get(key string) *Breaker {
	if b, ok := g.members.Load().lookup(key); ok {
		return b
	}
	return g.create(key)
}

// create adds a breaker for key, or returns the overflow breaker at the
// bound. At the bound it waits for no lock: unless a scan is due and mu is
// free, it routes the key to the overflow breaker at once.
func (g *Group) create(key string) *Breaker {
	if g.n.Load() >= g.maxKeys {
		if !g.scanDue.Load() || !g.mu.TryLock() {
			return g.overflowBreaker()
		}
	} else {
		g.mu.Lock()
	}
	defer g.mu.Unlock()
	ms := g.members.Load()
	if b, ok := ms.lookup(key); ok {
		return b
	}
	if g.n.Load() >= g.maxKeys {
		if !g.scanDue.Load() {
			return g.overflowBreaker()
		}
		g.evictIdle()
		if g.n.Load() >= g.maxKeys {
			return g.overflowBreaker()
		}
		ms = g.members.Load()
	}
	b := g.newMember(key)
	next := &members{all: ms.all, recent: make(map[string]*Breaker, len(ms.recent)+1)}
	for k, v := range ms.recent {
		next.recent[k] = v
	}
	next.recent[key] = b
	if len(next.recent) >= mergeAt {
		next.all = make(map[string]*Breaker, len(ms.all)+len(next.recent))
		for k, v := range ms.all {
			next.all[k] = v
		}
		for k, v := range next.recent {
			next.all[k] = v
		}
		next.recent = nil
	}
	g.members.Store(next)
	g.n.Add(1)
	return b
}

// overflowBreaker returns the shared breaker for keys beyond the bound,
// creating it on first need.
func (g *Group) overflowBreaker() *Breaker {
	if b := g.overflow.Load(); b != nil {
		return b
	}
	b := g.newMember(overflowKey)
	if g.overflow.CompareAndSwap(nil, b) {
		return b
	}
	return g.overflow.Load()
}

func (g *Group) newMember(key string) *Breaker {
	s := g.s
	s.Name = g.s.Name + "/" + key
	b := newBreaker(s)
	b.calls = newInflight()
	b.m = g.ins.member(s.Name)
	return b
}

// evictIdle removes every idle breaker and allows the next scan a bucket
// period from now. The caller holds mu.
func (g *Group) evictIdle() {
	g.scanDue.Store(false)
	time.AfterFunc(g.s.Window/windowBuckets, func() { g.scanDue.Store(true) })
	ms := g.members.Load()
	var evicted []string
	kept := make(map[string]*Breaker, len(ms.all)+len(ms.recent))
	for _, m := range [2]map[string]*Breaker{ms.all, ms.recent} {
		for k, b := range m {
			if b.idle() {
				evicted = append(evicted, k)
			} else {
				kept[k] = b
			}
		}
	}
	if len(evicted) == 0 {
		return
	}
	g.members.Store(&members{all: kept})
	// A call that fetched a breaker before the new map was published may
	// have started on it since it was judged idle: keep such a breaker.
	var back []string
	for _, k := range evicted {
		if b, _ := ms.lookup(k); b.idle() {
			g.n.Add(-1)
		} else {
			back = append(back, k)
		}
	}
	if len(back) > 0 {
		again := make(map[string]*Breaker, len(kept)+len(back))
		for k, v := range kept {
			again[k] = v
		}
		for _, k := range back {
			again[k], _ = ms.lookup(k)
		}
		g.members.Store(&members{all: again})
	}
}

// idle reports whether the breaker is Closed with no call in flight and
// nothing in its window, so that a fresh breaker would behave the same.
// (A run of failures lives in the window too; see consecutive.)
func (b *Breaker) idle() bool {
	return b.word.Load()&modeMask == modeClosed &&
		(b.calls == nil || !b.calls.busy()) &&
		b.win.Sum(countRequests) == 0
}

// Len returns how many per-key breakers the group holds, not counting the
// overflow breaker.
func (g *Group) Len() int { return int(g.n.Load()) }

// Snapshots returns a snapshot of every breaker in the group, including
// the overflow breaker once it has been used, sorted by name.
func (g *Group) Snapshots() []Snapshot {
	ms := g.members.Load()
	all := make([]*Breaker, 0, len(ms.all)+len(ms.recent)+1)
	for _, m := range [2]map[string]*Breaker{ms.all, ms.recent} {
		for _, b := range m {
			all = append(all, b)
		}
	}
	if b := g.overflow.Load(); b != nil {
		all = append(all, b)
	}
	snaps := make([]Snapshot, 0, len(all))
	for _, b := range all {
		snaps = append(snaps, b.Snapshot())
	}
	slices.SortFunc(snaps, func(a, b Snapshot) int { return strings.Compare(a.Name, b.Name) })
	return snaps
}
