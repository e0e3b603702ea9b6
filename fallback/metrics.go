package fallback

import (
	"context"
	"fmt"
	"log/slog"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"

	"github.com/ringfence/ringfence/internal/tally"
)

// meterName is the instrumentation scope of the package's instruments.
const meterName = "github.com/ringfence/ringfence/fallback"

func instrumentErr(err error) error {
	return fmt.Errorf("fallback: creating instruments: %w", err)
}

// Switch

// instrument registers the mode gauge of s with mp. The registration
// lasts as long as the provider.
func (s *Switch) instrument(mp metric.MeterProvider) error {
	if mp == nil {
		return nil
	}
	m := mp.Meter(meterName)
	g, err := m.Int64ObservableGauge("ringfence.fallback.mode",
		metric.WithDescription("Whether the switch is in the mode: 1 for its current mode, 0 for the others."),
		metric.WithUnit("{mode}"))
	if err != nil {
		return instrumentErr(err)
	}
	name := attribute.String("ringfence.switch.name", s.name)
	var sets [len(modeNames)]metric.ObserveOption
	for i := range sets {
		sets[i] = metric.WithAttributeSet(attribute.NewSet(name, attribute.String("mode", Mode(i).String())))
	}
	_, err = m.RegisterCallback(func(_ context.Context, o metric.Observer) error {
		now := s.Mode()
		for i := range sets {
			var v int64
			if Mode(i) == now {
				v = 1
			}
			o.ObserveInt64(g, v, sets[i])
		}
		return nil
	}, g)
	if err != nil {
		return instrumentErr(err)
	}
	return nil
}

// logUnreadable logs, at Error, that NewSwitch could not read the store
// and starts in the initial mode, and returns err.
func (s *Switch) logUnreadable(err error) error {
	if s.logger != nil {
		s.logger.LogAttrs(context.Background(), slog.LevelError, "fallback mode unreadable",
			slog.String("switch", s.name),
			slog.String("mode", s.Mode().String()),
			slog.String("error", err.Error()))
	}
	return err
}

// logChange logs a change Set made or a store pushed: Warn when the
// chains no longer fall back on their own (ModeManual, ModePrimary), Info
// when they do again. The actor is logged when the change names one.
func (s *Switch) logChange(c ModeChange) {
	if s.logger == nil {
		return
	}
	level := slog.LevelWarn
	if c.To == ModeAuto {
		level = slog.LevelInfo
	}
	attrs := []slog.Attr{
		slog.String("switch", s.name),
		slog.String("from", c.From.String()),
		slog.String("to", c.To.String()),
		slog.String("reason", c.Reason),
	}
	if c.Actor != "" {
		attrs = append(attrs, slog.String("actor", c.Actor))
	}
	s.logger.LogAttrs(context.Background(), level, "fallback mode change", attrs...)
}

// Chain

// chainObs is a chain's logger and answer counts. A nil *chainObs does
// nothing.
type chainObs struct {
	name   string
	logger *slog.Logger
	// answers counts Run's answers by Kind; index 0 counts the calls
	// that got none.
	answers *tally.Counters
}

// noAnswer is the source.kind reported for a Run that returned an error.
const noAnswer = "none"

// newChainObs returns the observers of the chain called name, or nil when
// the settings ask for neither logs nor metrics.
func newChainObs(name string, s ChainSettings) (*chainObs, error) {
	if s.Logger == nil && s.MeterProvider == nil {
		return nil, nil
	}
	c := &chainObs{name: name, logger: s.Logger}
	if s.MeterProvider == nil {
		return c, nil
	}
	c.answers = tally.New()
	m := s.MeterProvider.Meter(meterName)
	ctr, err := m.Int64ObservableCounter("ringfence.fallback.answers",
		metric.WithDescription("Answers of the chain by the kind of step that gave them; none for calls that got an error."),
		metric.WithUnit("{answer}"))
	if err != nil {
		return nil, instrumentErr(err)
	}
	chain := attribute.String("ringfence.chain.name", name)
	var sets [len(kindNames)]metric.ObserveOption
	for k := range sets {
		kind := noAnswer
		if k > 0 {
			kind = Kind(k).String()
		}
		sets[k] = metric.WithAttributeSet(attribute.NewSet(chain, attribute.String("source.kind", kind)))
	}
	_, err = m.RegisterCallback(func(_ context.Context, o metric.Observer) error {
		for k := range sets {
			o.ObserveInt64(ctr, int64(c.answers.Sum(k)), sets[k])
		}
		return nil
	}, ctr)
	if err != nil {
		return nil, instrumentErr(err)
	}
	return c, nil
}

// answered counts an answer from step (of kind k) and logs it at Debug
// when it came from a fallback.
func (c *chainObs) answered(ctx context.Context, step string, k Kind) {
	if c == nil {
		return
	}
	if c.answers != nil {
		c.answers.Add(int(k), 1)
	}
	if k != KindPrimary && c.logger != nil {
		c.logAnswer(ctx, step, k)
	}
}

// logAnswer logs, at Debug, an answer from a fallback step.
func (c *chainObs) logAnswer(ctx context.Context, step string, k Kind) {
	if c.logger.Enabled(ctx, slog.LevelDebug) {
		c.logger.LogAttrs(ctx, slog.LevelDebug, "fallback answer",
			slog.String("chain", c.name),
			slog.String("step", step),
			slog.String("kind", k.String()))
	}
}

// failed counts a Run without an answer and logs it at Debug.
func (c *chainObs) failed(ctx context.Context, mode Mode, err error) {
	if c == nil {
		return
	}
	if c.answers != nil {
		c.answers.Add(0, 1)
	}
	if c.logger != nil && c.logger.Enabled(ctx, slog.LevelDebug) {
		c.logger.LogAttrs(ctx, slog.LevelDebug, "fallback chain failed",
			slog.String("chain", c.name),
			slog.String("mode", mode.String()),
			slog.String("error", err.Error()))
	}
}

// Outbox

// instrument registers the outbox's gauges and counters with mp; Close
// unregisters them. They read the same state as [Outbox.Stats] and
// [Outbox.OldestAge] when the provider collects.
func (o *Outbox) instrument(mp metric.MeterProvider) error {
	if mp == nil {
		return nil
	}
	m := mp.Meter(meterName)
	depth, err := m.Int64ObservableGauge("ringfence.outbox.depth",
		metric.WithDescription("Items waiting in the outbox for delivery."),
		metric.WithUnit("{item}"))
	if err != nil {
		return instrumentErr(err)
	}
	age, err := m.Float64ObservableGauge("ringfence.outbox.oldest.age",
		metric.WithDescription("How long the oldest pending item has waited; 0 when none is pending."),
		metric.WithUnit("s"))
	if err != nil {
		return instrumentErr(err)
	}
	dead, err := m.Int64ObservableGauge("ringfence.outbox.dead_letters",
		metric.WithDescription("Dead letters kept in the outbox."),
		metric.WithUnit("{item}"))
	if err != nil {
		return instrumentErr(err)
	}
	deadTotal, err := m.Int64ObservableCounter("ringfence.outbox.dead_lettered",
		metric.WithDescription("Items moved to the dead letters since the outbox was opened."),
		metric.WithUnit("{item}"))
	if err != nil {
		return instrumentErr(err)
	}
	replayed, err := m.Int64ObservableCounter("ringfence.outbox.replayed",
		metric.WithDescription("Items delivered by Replay since the outbox was opened."),
		metric.WithUnit("{item}"))
	if err != nil {
		return instrumentErr(err)
	}
	failures, err := m.Int64ObservableCounter("ringfence.outbox.delivery_failures",
		metric.WithDescription("Failed delivery attempts since the outbox was opened."),
		metric.WithUnit("{attempt}"))
	if err != nil {
		return instrumentErr(err)
	}
	unrecorded, err := m.Int64ObservableGauge("ringfence.outbox.unrecorded",
		metric.WithDescription("Deliveries and dead letters a full disk has kept from being recorded; a restart would make them again."),
		metric.WithUnit("{item}"))
	if err != nil {
		return instrumentErr(err)
	}
	set := metric.WithAttributeSet(attribute.NewSet(attribute.String("ringfence.outbox.dir", o.dir)))
	o.reg, err = m.RegisterCallback(func(_ context.Context, ob metric.Observer) error {
		st := o.Stats()
		ob.ObserveInt64(depth, int64(st.Pending), set)
		ob.ObserveFloat64(age, o.OldestAge().Seconds(), set)
		ob.ObserveInt64(dead, int64(st.Dead), set)
		ob.ObserveInt64(deadTotal, int64(st.DeadLettered), set)
		ob.ObserveInt64(replayed, int64(st.Delivered), set)
		ob.ObserveInt64(failures, int64(st.Failures), set)
		ob.ObserveInt64(unrecorded, int64(st.Unrecorded), set)
		return nil
	}, depth, age, dead, deadTotal, replayed, failures, unrecorded)
	if err != nil {
		return instrumentErr(err)
	}
	return nil
}

// unregister ends the outbox's metrics registration, if any.
func (o *Outbox) unregister() {
	if o.reg != nil {
		_ = o.reg.Unregister()
	}
}

// logFailure logs a failed delivery attempt: at Warn when it moved the
// item to the dead letters, at Debug otherwise.
func (o *Outbox) logFailure(r obRecord, attempt int, dead bool, err error) {
	l := o.opts.Logger
	if l == nil {
		return
	}
	level, msg := slog.LevelDebug, "outbox delivery failed"
	if dead {
		level, msg = slog.LevelWarn, "outbox dead letter"
	}
	l.LogAttrs(context.Background(), level, msg,
		slog.String("outbox", o.dir),
		slog.String("key", r.key),
		slog.String("stream", r.stream),
		slog.Int("attempt", attempt),
		slog.String("error", err.Error()))
}
