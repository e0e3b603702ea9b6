// Package stripe hands out stripe numbers so that goroutines running on
// different processors update different cache lines.
//
// Hot counters that every call increments (a breaker's window, a rollout's
// health counts) are split into stripes, and readers sum the stripes. A
// stripe is only worth having if concurrent writers rarely share one, so
// the stripe a goroutine uses should follow the processor it runs on. Go
// does not expose the processor, but sync.Pool keeps a private slot per
// processor: a [Picker] keeps numbered tokens in a pool, so that a token
// taken and put back on one processor is, almost always, the same token
// the next time. Tokens are numbered in the order they are made, so the
// processors that are busy at the same time hold different numbers.
package stripe

import (
	"sync"
	"sync/atomic"
)

// Token is a stripe number held by one goroutine between [Picker.Get] and
// [Picker.Put].
type Token struct{ n int }

// Stripe returns the token's stripe number, in [0, the Picker's count).
func (t *Token) Stripe() int { return t.n }

// Picker hands out stripe numbers below a power of two. It is safe for
// concurrent use. The zero value is not usable; call [New].
type Picker struct {
	mask uint32
	next atomic.Uint32 // number of the next token made
	pool sync.Pool
}

// New returns a Picker for count stripes, which must be a power of two.
func New(count int) *Picker {
	if count <= 0 || count&(count-1) != 0 {
		panic("stripe: count must be a power of two") // internal callers only
	}
	p := &Picker{mask: uint32(count - 1)}
	p.pool.New = func() any {
		return &Token{n: int((p.next.Add(1) - 1) & p.mask)}
	}
	return p
}

// Get returns a token for the calling goroutine. Put it back when the
// update is done; holding it longer only spreads stripes less evenly.
func (p *Picker) Get() *Token { return p.pool.Get().(*Token) }

// Put returns t to the processor the calling goroutine runs on.
func (p *Picker) Put(t *Token) { p.pool.Put(t) }
