package breaker

import "time"

// Snapshot is a breaker's state and counts at one moment.
type Snapshot struct {
	// Name is the breaker's name.
	Name string
	// State is the state the breaker was in.
	State State
	// Since is when the breaker entered State.
	Since time.Time
	// Reason says why the breaker entered State: "created",
	// "5 consecutive failures", "failure ratio 12/20", "open wait over",
	// "probe failed", "probe timed out", "probes succeeded", "released",
	// or "forced open: " or "forced closed: " and the operator's reason.
	Reason string
	// Requests, Failures and SlowCalls are counted over the window
	// (SlowCalls are also Failures). They start afresh when the breaker
	// closes.
	Requests, Failures, SlowCalls uint64
	// FailureRatio is Failures/Requests, or 0 without requests.
	FailureRatio float64
	// ConsecutiveFailures counts the failures since the last success
	// that are still in the window.
	ConsecutiveFailures uint64
	// Ramping reports whether the breaker is Closed but still ramping up.
	Ramping bool
	// NextProbe is when the open wait ends, in the Open state; zero
	// otherwise.
	NextProbe time.Time
	// OpenWait is the length of the current open wait (in HalfOpen, of
	// the wait that just ended); zero once the breaker has closed.
	OpenWait time.Duration
}

// Snapshot returns the breaker's state and counts. The counts are read
// without stopping calls, so they may be a few calls apart.
func (b *Breaker) Snapshot() Snapshot {
	b.mu.Lock()
	sn := Snapshot{
		Name:      b.s.Name,
		State:     b.state,
		Since:     b.since,
		Reason:    b.reason,
		NextProbe: b.probeAt,
		OpenWait:  b.wait,
	}
	b.mu.Unlock()
	if w := b.word.Load(); w&modeMask == modeRamp {
		// The ramp's end is otherwise noticed by the next call; without
		// traffic, end it here so that Ramping does not outlive it.
		if r := b.ramp.Load(); time.Since(r.start) >= r.length {
			b.endRamp(w)
		} else {
			sn.Ramping = true
		}
	}
	sn.Requests = b.win.Sum(countRequests)
	sn.Failures = b.win.Sum(countFailures)
	sn.SlowCalls = b.win.Sum(countSlow)
	sn.ConsecutiveFailures = b.consecutive()
	if sn.Requests > 0 {
		sn.FailureRatio = float64(sn.Failures) / float64(sn.Requests)
	}
	return sn
}
