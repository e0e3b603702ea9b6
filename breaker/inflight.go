package breaker

import (
	"math/bits"
	"runtime"
	"sync/atomic"

	"github.com/ringfence/ringfence/internal/stripe"
)

// inflight counts the calls a breaker has admitted and not yet settled,
// so that a [Group] never evicts a breaker whose outcomes are still to
// come. Each call adds to the stripe of the processor it runs on and
// subtracts from the stripe of the processor it ends on, so a stripe may
// go negative; only the sum means anything. It is safe for concurrent use
// and takes no lock.
type inflight struct {
	stripes []inflightLine
	picker  *stripe.Picker
}

// inflightLine is one stripe, alone on its cache line.
type inflightLine struct {
	n atomic.Int64
	_ [56]byte
}

// newInflight returns a counter with a few stripes per processor.
func newInflight() *inflight {
	n := min(max(2*runtime.GOMAXPROCS(0), 4), 64)
	n = 1 << bits.Len(uint(n-1))
	return &inflight{stripes: make([]inflightLine, n), picker: stripe.New(n)}
}

// add adds d to the count.
func (c *inflight) add(d int64) {
	t := c.picker.Get()
	c.stripes[t.Stripe()].n.Add(d)
	c.picker.Put(t)
}

// busy reports whether some call is in flight. A call that starts or ends
// while busy reads the stripes may or may not be seen.
func (c *inflight) busy() bool {
	var sum int64
	for i := range c.stripes {
		sum += c.stripes[i].n.Load()
	}
	return sum != 0
}
