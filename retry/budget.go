package retry

import (
	"math"
	"sync/atomic"
)

// Defaults used by NewBudget for zero arguments and by the zero Budget.
const (
	DefaultBudgetRatio = 0.1 // tokens deposited per successful call
	DefaultBudgetMax   = 10  // tokens a full Budget holds
)

// tokenUnit is one token in the fixed-point representation of a Budget.
const tokenUnit = 1_000_000

// Budget is a retry budget shared by all calls to one dependency, so that
// retries add at most a fixed share of extra load however badly the
// dependency fails. It is a token bucket: it starts full with max tokens,
// each successful call deposits ratio tokens (never beyond max), and each
// retry withdraws one token; a retry is allowed only while more than half of
// max tokens remain.
//
// The guarantee: over any stretch of time, the retries a Budget allows are at
// most
//
//	ratio × successes + max/2 + 1
//
// and successes never exceed calls, so retries <= ratio × calls + max/2 + 1.
// In a total outage, when no call succeeds, that is at most max/2 + 1 retries
// in all, after which every call is tried once. With the defaults (ratio 0.1,
// max 10) a healthy service's callers can retry about one call in ten.
//
// A Budget is safe for concurrent use and lock-free. The zero Budget is a
// full bucket with the default ratio and max.
type Budget struct {
	ratio int64 // tokens per success, in units of tokenUnit; 0 means default
	max   int64 // capacity in units of tokenUnit; 0 means default

	// deficit is max minus the tokens held, in units of tokenUnit, so that
	// the zero value is a full bucket.
	deficit atomic.Int64
}

// NewBudget returns a full Budget that lets each success pay for ratio of a
// retry and holds at most maxTokens tokens. A zero ratio means
// DefaultBudgetRatio (0.1) and a zero maxTokens means DefaultBudgetMax (10).
// ratio must be in [0.000001, 1] and maxTokens in [1, 1000000]; otherwise
// NewBudget returns an error that wraps ErrInvalidSettings and names the
// argument.
func NewBudget(ratio float64, maxTokens int) (*Budget, error) {
	if ratio != 0 && !(ratio >= 1.0/tokenUnit && ratio <= 1) {
		return nil, invalid("NewBudget ratio must be in [0.000001,1], got %v", ratio)
	}
	if maxTokens < 0 || maxTokens > 1_000_000 {
		return nil, invalid("NewBudget maxTokens must be in [1,1000000], got %d", maxTokens)
	}
	b := &Budget{}
	if ratio != 0 {
		b.ratio = int64(math.Round(ratio * tokenUnit))
	}
	if maxTokens != 0 {
		b.max = int64(maxTokens) * tokenUnit
	}
	return b, nil
}

func (b *Budget) capacity() int64 {
	if b.max == 0 {
		return DefaultBudgetMax * tokenUnit
	}
	return b.max
}

func (b *Budget) deposit() int64 {
	if b.ratio == 0 {
		return DefaultBudgetRatio * tokenUnit
	}
	return b.ratio
}

// AllowRetry reports whether a retry may be made now, and if so withdraws
// one token for it. Do and Transport call it; call it yourself only when
// running your own retry loop.
func (b *Budget) AllowRetry() bool {
	c := b.capacity()
	limit := c - c/2 // allowed while tokens > c/2, that is deficit < c - c/2
	for {
		d := b.deficit.Load()
		if d >= limit {
			return false
		}
		if b.deficit.CompareAndSwap(d, d+tokenUnit) {
			return true
		}
	}
}

// refund gives back the token of a retry that AllowRetry allowed but that
// was not made.
func (b *Budget) refund() {
	for {
		d := b.deficit.Load()
		if b.deficit.CompareAndSwap(d, max(d-tokenUnit, 0)) {
			return
		}
	}
}

// RecordSuccess deposits ratio tokens for a successful call, up to max. Do
// and Transport call it once per successful call.
func (b *Budget) RecordSuccess() {
	r := b.deposit()
	for {
		d := b.deficit.Load()
		if d == 0 {
			return // full: no write, so a healthy service shares no cache line
		}
		if b.deficit.CompareAndSwap(d, max(d-r, 0)) {
			return
		}
	}
}

// Tokens returns the number of tokens the Budget holds now.
func (b *Budget) Tokens() float64 {
	return float64(b.capacity()-b.deficit.Load()) / tokenUnit
}
