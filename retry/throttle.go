package retry

import (
	"math/rand/v2"
	"sync"
	"time"
)

// Defaults used for zero fields of ThrottleSettings.
const (
	DefaultThrottleK      = 2.0             // ThrottleSettings.K
	DefaultThrottleWindow = 2 * time.Minute // ThrottleSettings.Window
)

// throttleBuckets is the number of counters the trailing window is split
// into; the window slides one bucket (Window/20) at a time.
const throttleBuckets = 20

// ThrottleSettings configures a Throttle. Every zero field means the default
// documented on it.
type ThrottleSettings struct {
	// K is how many requests the client sends per request the backend
	// accepts before it starts rejecting locally. Zero means
	// DefaultThrottleK (2); it must be at least 1. Lower values shed load
	// sooner; higher values waste more of the backend's effort on refusals.
	K float64

	// Window is the trailing period over which requests and accepts are
	// counted. Zero means DefaultThrottleWindow (2 minutes); otherwise it
	// must be at least one second.
	Window time.Duration

	// Rand returns uniform values in [0, 1) to decide rejections. Nil means
	// math/rand/v2.Float64. Tests pin it. It is called without any lock held.
	Rand func() float64
}

// Throttle is client-side adaptive throttling as described in the Site
// Reliability Engineering book ("Handling Overload"): the client counts, over
// a trailing window, the requests it attempted and the requests the backend
// accepted, and rejects a new request locally, without sending it, with
// probability
//
//	max(0, (requests - K×accepts) / (requests + 1))
//
// While the backend accepts everything no request is rejected; as it refuses
// more, the client sheds its own load in proportion, and it recovers on its
// own as accepts return. Unlike a circuit breaker it never cuts traffic off
// completely, so it keeps learning about the backend's health.
//
// Use it through Policy.Throttle (Do and Transport call Allow and Record for
// each attempt), or on its own: call Allow before each request, skip the
// request if it returns ErrThrottled, and otherwise call Record with whether
// the backend accepted it. A request "accepted" is one the backend processed,
// even with an application error such as "not found"; overload refusals,
// timeouts and transport failures are not accepted.
//
// A Throttle is safe for concurrent use. The zero Throttle uses the defaults;
// NewThrottle validates settings.
type Throttle struct {
	k      float64
	window time.Duration
	rand   func() float64

	mu       sync.Mutex // guards the fields below
	origin   time.Time  // set on first use; bucket numbers count from it
	newest   int64      // number of the newest bucket
	requests int64      // sum of requests over the buckets in the window
	accepts  int64      // sum of accepts over the buckets in the window
	buckets  [throttleBuckets]throttleBucket
}

// throttleBucket holds the counts of bucket number n in slot n%throttleBuckets.
type throttleBucket struct {
	requests int64
	accepts  int64
}

// NewThrottle returns a Throttle with settings s, or an error that wraps
// ErrInvalidSettings and names the invalid field.
func NewThrottle(s ThrottleSettings) (*Throttle, error) {
	if s.K != 0 && !(s.K >= 1 && s.K < 1e300) {
		return nil, invalid("ThrottleSettings.K must be >= 1 and finite, got %v", s.K)
	}
	if s.Window != 0 && s.Window < time.Second {
		return nil, invalid("ThrottleSettings.Window must be at least 1s, got %v", s.Window)
	}
	return &Throttle{k: s.K, window: s.Window, rand: s.Rand}, nil
}

// Allow counts a request and decides whether to send it. It returns nil to
// go ahead (then call Record with the outcome) or ErrThrottled if the
// request must be rejected locally.
func (t *Throttle) Allow() error {
	if !t.allow() {
		return ErrThrottled
	}
	return nil
}

func (t *Throttle) allow() bool {
	p := t.count(true)
	if p <= 0 {
		return true
	}
	var r float64
	if t.rand != nil {
		r = t.rand()
	} else {
		r = rand.Float64()
	}
	return r >= p
}

// Record reports the outcome of a request that Allow let through: accepted
// is true if the backend processed it.
func (t *Throttle) Record(accepted bool) {
	if accepted {
		t.count(false)
	}
}

// RejectProbability returns the probability with which Allow would reject a
// request now.
func (t *Throttle) RejectProbability() float64 {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.advance()
	return t.probability(t.requests, t.accepts)
}

// count adds a request (request true) or an accept to the newest bucket and
// returns the rejection probability seen before a request is added.
func (t *Throttle) count(request bool) float64 {
	t.mu.Lock()
	defer t.mu.Unlock()
	b := t.advance()
	if !request {
		b.accepts++
		t.accepts++
		return 0
	}
	p := t.probability(t.requests, t.accepts)
	b.requests++
	t.requests++
	return p
}

// advance moves the window to the current time, dropping the counts of
// buckets that left it, and returns the current bucket. t.mu must be held.
func (t *Throttle) advance() *throttleBucket {
	now := time.Now()
	if t.origin.IsZero() {
		t.origin = now
	}
	n := int64(now.Sub(t.origin) / (t.windowLen() / throttleBuckets))
	switch {
	case n <= t.newest:
		// Same bucket (or a clock that stepped back): nothing expires.
	case n-t.newest >= throttleBuckets:
		t.buckets = [throttleBuckets]throttleBucket{}
		t.requests, t.accepts = 0, 0
		t.newest = n
	default:
		for t.newest < n {
			t.newest++
			b := &t.buckets[t.newest%throttleBuckets]
			t.requests -= b.requests
			t.accepts -= b.accepts
			*b = throttleBucket{}
		}
	}
	return &t.buckets[t.newest%throttleBuckets]
}

func (t *Throttle) probability(requests, accepts int64) float64 {
	k := t.k
	if k == 0 {
		k = DefaultThrottleK
	}
	p := (float64(requests) - k*float64(accepts)) / float64(requests+1)
	return max(p, 0)
}

func (t *Throttle) windowLen() time.Duration {
	if t.window == 0 {
		return DefaultThrottleWindow
	}
	return t.window
}
