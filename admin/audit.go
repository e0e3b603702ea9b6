package admin

import (
	"sync"
	"time"
)

// trail is the Handler's bounded audit trail of applied actions. It is
// safe for concurrent use.
type trail struct {
	mu      sync.Mutex // guards changes and next
	changes []Change   // ring of at most cap(changes) entries
	next    int        // where the next entry goes once the ring is full
}

func newTrail(n int) *trail {
	return &trail{changes: make([]Change, 0, n)}
}

// add records c, dropping the oldest entry when the trail is full.
func (t *trail) add(c Change) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if len(t.changes) < cap(t.changes) {
		t.changes = append(t.changes, c)
		return
	}
	t.changes[t.next] = c
	t.next = (t.next + 1) % len(t.changes)
}

// recent returns the recorded changes, newest first.
func (t *trail) recent() []Change {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := make([]Change, 0, len(t.changes))
	for i := range t.changes {
		j := (t.next - 1 - i + 2*len(t.changes)) % len(t.changes)
		out = append(out, t.changes[j])
	}
	return out
}

// backlog keeps recent backlog samples of one outbox, at most one a
// second. It is safe for concurrent use.
type backlog struct {
	mu      sync.Mutex      // guards samples
	samples []BacklogSample // oldest first, at most max
	max     int
}

// record adds a sample unless the last one is less than a second old, and
// returns a copy of the samples, oldest first.
func (b *backlog) record(now time.Time, pending, dead int) []BacklogSample {
	b.mu.Lock()
	defer b.mu.Unlock()
	if n := len(b.samples); n == 0 || now.Sub(b.samples[n-1].Time) >= time.Second {
		if n == b.max {
			copy(b.samples, b.samples[1:])
			b.samples = b.samples[:n-1]
		}
		b.samples = append(b.samples, BacklogSample{Time: now, Pending: pending, Dead: dead})
	}
	return append([]BacklogSample(nil), b.samples...)
}
