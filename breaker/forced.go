package breaker

import "time"

// ForceOpen makes the breaker reject every call, whatever the outcomes,
// until [Breaker.Release]. The reason is logged and kept in the snapshot.
func (b *Breaker) ForceOpen(reason string) {
	b.mu.Lock()
	b.reject.Store(&OpenError{Name: b.s.Name, State: ForcedOpen})
	b.probeAt = time.Time{}
	b.setMode(modeForcedOpen, ForcedOpen, "forced open: "+reason)
	b.unlockAndDeliver()
}

// ForceClose makes the breaker let every call through until
// [Breaker.Release]. Outcomes are still counted (and show in the
// snapshot), but never trip the breaker. The reason is logged and kept in
// the snapshot.
func (b *Breaker) ForceClose(reason string) {
	b.mu.Lock()
	b.probeAt = time.Time{}
	b.setMode(modeForcedClosed, ForcedClosed, "forced closed: "+reason)
	b.unlockAndDeliver()
}

// Release returns a forced breaker to automatic control in a fresh Closed
// state: empty counts, the first open wait, no ramp. It does nothing if
// the breaker is not forced.
func (b *Breaker) Release() {
	b.mu.Lock()
	if b.state != ForcedOpen && b.state != ForcedClosed {
		b.mu.Unlock()
		return
	}
	b.newGobreaker()
	b.win.Reset()
	b.consec.Store(0)
	b.bo.Reset()
	b.probeAt, b.wait = time.Time{}, 0
	b.setMode(modeClosed, Closed, "released")
	b.unlockAndDeliver()
}
