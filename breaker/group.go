package breaker

import (
	"slices"
	"strings"
	"sync"
)

// GroupOptions configures a [Group]. The zero value means the defaults
// stated on each field.
type GroupOptions struct {
	// MaxKeys bounds how many per-key breakers the group keeps. Default
	// 1024. When a new key arrives at the bound, the group evicts one
	// idle breaker (Closed, not ramping, no failures in a row, and no
	// call counted within its Window); it never evicts a breaker that is
	// open, half-open, forced or still counting. If none can be evicted,
	// the key is served by the group's shared overflow breaker, named
	// "Name/*", until a slot frees up; its state then covers every
	// overflowing key together.
	MaxKeys int
}

const defaultMaxKeys = 1024

// overflowKey names the shared breaker for keys beyond MaxKeys.
const overflowKey = "*"

// Group holds one breaker per key (per host, region or tenant), all made
// from the same Settings and created on first use. Create one with
// [NewGroup]; the zero value is not usable. A Group is safe for concurrent
// use.
type Group struct {
	s       Settings // normalized
	maxKeys int
	m       sync.Map // key string -> *Breaker; read without locking

	mu       sync.Mutex // guards the fields below and every store into m
	n        int        // keys in m, overflow not included
	overflow *Breaker   // created on first need
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
	return &Group{s: s, maxKeys: opts.MaxKeys}, nil
}

// Get returns the breaker for key, creating it on first use (see
// [GroupOptions.MaxKeys] for what happens at the bound). Looking up an
// existing key takes no lock and allocates nothing. A breaker evicted
// while idle is replaced by a fresh one on the next Get, so call Get for
// each call rather than keeping the breaker.
func (g *Group) Get(key string) *Breaker {
	if b, ok := g.m.Load(key); ok {
		return b.(*Breaker)
	}
	return g.create(key)
}

// create adds a breaker for key, evicting an idle one at the bound.
func (g *Group) create(key string) *Breaker {
	g.mu.Lock()
	defer g.mu.Unlock()
	if b, ok := g.m.Load(key); ok {
		return b.(*Breaker)
	}
	if g.n >= g.maxKeys && !g.evictIdle() {
		if g.overflow == nil {
			g.overflow = g.newMember(overflowKey)
		}
		return g.overflow
	}
	b := g.newMember(key)
	g.m.Store(key, b)
	g.n++
	return b
}

func (g *Group) newMember(key string) *Breaker {
	s := g.s
	s.Name = g.s.Name + "/" + key
	return newBreaker(s)
}

// evictIdle removes one idle breaker and reports whether it found one.
// The caller holds mu.
func (g *Group) evictIdle() bool {
	evicted := false
	g.m.Range(func(k, v any) bool {
		if v.(*Breaker).idle() {
			g.m.Delete(k)
			g.n--
			evicted = true
			return false
		}
		return true
	})
	return evicted
}

// idle reports whether the breaker is Closed with nothing in its window
// and no failures in a row, so that a fresh breaker would behave the same.
func (b *Breaker) idle() bool {
	return b.word.Load()&modeMask == modeClosed &&
		b.consec.Load() == 0 &&
		b.win.Sum(countRequests) == 0
}

// Len returns how many per-key breakers the group holds, not counting the
// overflow breaker.
func (g *Group) Len() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.n
}

// Snapshots returns a snapshot of every breaker in the group, including
// the overflow breaker once it has been used, sorted by name.
func (g *Group) Snapshots() []Snapshot {
	var all []*Breaker
	g.mu.Lock()
	g.m.Range(func(_, v any) bool {
		all = append(all, v.(*Breaker))
		return true
	})
	if g.overflow != nil {
		all = append(all, g.overflow)
	}
	g.mu.Unlock()
	snaps := make([]Snapshot, 0, len(all))
	for _, b := range all {
		snaps = append(snaps, b.Snapshot())
	}
	slices.SortFunc(snaps, func(a, b Snapshot) int { return strings.Compare(a.Name, b.Name) })
	return snaps
}
