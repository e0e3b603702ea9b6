package breaker

import (
	"strconv"
	"time"
)

// State is where a breaker is in its cycle. The zero value is Closed.
type State uint8

// The states of a breaker. Closed, HalfOpen and Open are automatic;
// ForcedOpen and ForcedClosed are set by an operator with
// [Breaker.ForceOpen] and [Breaker.ForceClose] and left with
// [Breaker.Release].
const (
	// Closed lets calls through and counts their outcomes.
	Closed State = iota
	// HalfOpen lets a few probe calls through to learn whether the
	// dependency has recovered; the rest are rejected.
	HalfOpen
	// Open rejects every call until the open wait has passed.
	Open
	// ForcedOpen rejects every call until the breaker is released.
	ForcedOpen
	// ForcedClosed lets every call through, counting outcomes but never
	// tripping, until the breaker is released.
	ForcedClosed
)

// String returns the state's name in lower case, such as "half-open".
func (s State) String() string {
	switch s {
	case Closed:
		return "closed"
	case HalfOpen:
		return "half-open"
	case Open:
		return "open"
	case ForcedOpen:
		return "forced-open"
	case ForcedClosed:
		return "forced-closed"
	default:
		return "state(" + strconv.Itoa(int(s)) + ")"
	}
}

// Change describes one state change of a breaker, as passed to
// Settings.OnChange. Unlike [Breaker.Snapshot], which shows only the latest
// change, a Change keeps the reason of the change it reports.
type Change struct {
	// Name is the breaker's name.
	Name string
	// From and To are the states before and after the change.
	From, To State
	// Reason says why the change happened, in the words of
	// [Snapshot].Reason, such as "5 consecutive failures" or
	// "forced open: " and the operator's reason.
	Reason string
	// At is when the change happened (the Since of the new state).
	At time.Time
}
