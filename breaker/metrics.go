package breaker

import (
	"context"
	"fmt"
	"strings"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"

	"github.com/ringfence/ringfence/internal/tally"
)

// meterName is the instrumentation scope of the breaker's instruments.
const meterName = "github.com/ringfence/ringfence/breaker"

// Outcomes counted by ringfence.breaker.calls. The first three are the
// verdicts, in their order.
const (
	outcomeRejected = int(excluded) + 1
	numOutcomes     = outcomeRejected + 1
	numStates       = int(ForcedClosed) + 1
)

var outcomeNames = [numOutcomes]string{"success", "failure", "excluded", "rejected"}

// instruments are the instruments of a breaker or of a group, created once
// from Settings.MeterProvider.
type instruments struct {
	meter       metric.Meter
	state       metric.Int64ObservableGauge
	calls       metric.Int64ObservableCounter
	transitions metric.Int64Counter
}

// meters is one breaker's share of the instruments: its counts and its
// precomputed attribute sets. A nil *meters counts nothing.
type meters struct {
	ins      *instruments
	counts   *tally.Counters
	name     attribute.KeyValue
	states   [numStates]metric.ObserveOption
	outcomes [numOutcomes]metric.ObserveOption
}

// newInstruments creates the breaker instruments from mp, or returns nil
// for a nil mp.
func newInstruments(mp metric.MeterProvider) (*instruments, error) {
	if mp == nil {
		return nil, nil
	}
	m := mp.Meter(meterName)
	ins := &instruments{meter: m}
	var err error
	if ins.state, err = m.Int64ObservableGauge("ringfence.breaker.state",
		metric.WithDescription("Whether the breaker is in the state: 1 for its current state, 0 for the others."),
		metric.WithUnit("{state}")); err != nil {
		return nil, fmt.Errorf("breaker: creating instrument: %w", err)
	}
	if ins.calls, err = m.Int64ObservableCounter("ringfence.breaker.calls",
		metric.WithDescription("Calls the breaker has seen, by outcome."),
		metric.WithUnit("{call}")); err != nil {
		return nil, fmt.Errorf("breaker: creating instrument: %w", err)
	}
	if ins.transitions, err = m.Int64Counter("ringfence.breaker.transitions",
		metric.WithDescription("State changes of the breaker."),
		metric.WithUnit("{transition}")); err != nil {
		return nil, fmt.Errorf("breaker: creating instrument: %w", err)
	}
	return ins, nil
}

// member returns the meters of the breaker named name, or nil without
// instruments.
func (ins *instruments) member(name string) *meters {
	if ins == nil {
		return nil
	}
	m := &meters{ins: ins, counts: tally.New(), name: attribute.String("ringfence.breaker.name", name)}
	for s := range numStates {
		m.states[s] = metric.WithAttributeSet(attribute.NewSet(m.name, attribute.String("state", State(s).String())))
	}
	for o := range numOutcomes {
		m.outcomes[o] = metric.WithAttributeSet(attribute.NewSet(m.name, attribute.String("outcome", outcomeNames[o])))
	}
	return m
}

// instrument gives a breaker made by New its meters and registers the
// callback that reports them. The registration lasts as long as the
// meter provider: a breaker with instruments stays reachable from it.
func (b *Breaker) instrument() error {
	ins, err := newInstruments(b.s.MeterProvider)
	if ins == nil {
		return err
	}
	b.m = ins.member(b.s.Name)
	_, err = ins.meter.RegisterCallback(func(_ context.Context, o metric.Observer) error {
		b.m.observe(o, b.State())
		return nil
	}, ins.state, ins.calls)
	if err != nil {
		return fmt.Errorf("breaker: registering callback: %w", err)
	}
	return nil
}

// instrument creates a group's instruments and registers one callback that
// reports every breaker the group holds when it is read. An evicted
// breaker's series end with it.
func (g *Group) instrument() error {
	ins, err := newInstruments(g.s.MeterProvider)
	if ins == nil {
		return err
	}
	g.ins = ins
	_, err = ins.meter.RegisterCallback(func(_ context.Context, o metric.Observer) error {
		ms := g.members.Load()
		for _, m := range [2]map[string]*Breaker{ms.all, ms.recent} {
			for _, b := range m {
				b.m.observe(o, b.State())
			}
		}
		if b := g.overflow.Load(); b != nil {
			b.m.observe(o, b.State())
		}
		return nil
	}, ins.state, ins.calls)
	if err != nil {
		return fmt.Errorf("breaker: registering callback: %w", err)
	}
	return nil
}

// observe reports the breaker's state and counts.
func (m *meters) observe(o metric.Observer, now State) {
	for s := range numStates {
		var v int64
		if State(s) == now {
			v = 1
		}
		o.ObserveInt64(m.ins.state, v, m.states[s])
	}
	for c := range numOutcomes {
		o.ObserveInt64(m.ins.calls, int64(m.counts.Sum(c)), m.outcomes[c])
	}
}

// settled counts a finished call.
func (m *meters) settled(vd verdict) {
	if m != nil {
		m.counts.Add(int(vd), 1)
	}
}

// rejected counts a rejected call.
func (m *meters) rejected() {
	if m != nil {
		m.counts.Add(outcomeRejected, 1)
	}
}

// changed counts a state change. It runs without the breaker's lock.
func (m *meters) changed(c change) {
	if m == nil {
		return
	}
	m.ins.transitions.Add(context.Background(), 1, metric.WithAttributes(m.name,
		attribute.String("from", c.from.String()),
		attribute.String("to", c.to.String()),
		attribute.String("reason", reasonClass(c.reason))))
}

// reasonClass maps the reason of a change to one of a few fixed words,
// so that the reason attribute stays bounded: trip counts and operators'
// own words are left out.
func reasonClass(reason string) string {
	switch {
	case strings.HasSuffix(reason, "consecutive failures"):
		return "consecutive_failures"
	case strings.HasPrefix(reason, "failure ratio"):
		return "failure_ratio"
	case strings.HasPrefix(reason, "forced open:"):
		return "forced_open"
	case strings.HasPrefix(reason, "forced closed:"):
		return "forced_closed"
	}
	switch reason {
	case "open wait over", "probe failed", "probe timed out", "probes succeeded", "released":
		return strings.ReplaceAll(reason, " ", "_")
	}
	return "other"
}
