package retry

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"

	"github.com/ringfence/ringfence/internal/tally"
)

// Counts kept by Metrics.
const (
	countRetries = iota
	countBudgetExhausted
	countThrottled
	numCounts
)

// Metrics reports what the policies that refer to it do as OpenTelemetry
// instruments: ringfence.retry.retries, the retries made, and
// ringfence.retry.denied, the retries refused by the Budget
// (reason budget_exhausted) or the Throttle (reason throttled); see
// METRICS.md at the root of the module. A Policy is a value copied into
// every call, so its instruments live here, created once by [NewMetrics]
// and shared through Policy.Metrics; a call adds only to striped
// counters, which the provider reads when it collects.
//
// A Metrics stays registered with its provider as long as the provider
// lives. It is safe for concurrent use; the zero value is not usable. A
// nil *Metrics counts nothing.
type Metrics struct {
	counts *tally.Counters
}

// NewMetrics returns instruments for the retries named name (the
// ringfence.retry.name attribute), created from mp. It returns an error if
// mp is nil or refuses an instrument.
func NewMetrics(mp metric.MeterProvider, name string) (*Metrics, error) {
	if mp == nil {
		return nil, fmt.Errorf("%w: NewMetrics needs a MeterProvider", ErrInvalidSettings)
	}
	m := mp.Meter("github.com/ringfence/ringfence/retry")
	retries, err := m.Int64ObservableCounter("ringfence.retry.retries",
		metric.WithDescription("Retries made: attempts after the first."),
		metric.WithUnit("{retry}"))
	if err != nil {
		return nil, fmt.Errorf("retry: creating instrument: %w", err)
	}
	denied, err := m.Int64ObservableCounter("ringfence.retry.denied",
		metric.WithDescription("Retries refused by the budget or the throttle."),
		metric.WithUnit("{retry}"))
	if err != nil {
		return nil, fmt.Errorf("retry: creating instrument: %w", err)
	}
	nm := attribute.String("ringfence.retry.name", name)
	all := metric.WithAttributeSet(attribute.NewSet(nm))
	budget := metric.WithAttributeSet(attribute.NewSet(nm, attribute.String("reason", "budget_exhausted")))
	throttled := metric.WithAttributeSet(attribute.NewSet(nm, attribute.String("reason", "throttled")))
	rm := &Metrics{counts: tally.New()}
	_, err = m.RegisterCallback(func(_ context.Context, o metric.Observer) error {
		o.ObserveInt64(retries, int64(rm.counts.Sum(countRetries)), all)
		o.ObserveInt64(denied, int64(rm.counts.Sum(countBudgetExhausted)), budget)
		o.ObserveInt64(denied, int64(rm.counts.Sum(countThrottled)), throttled)
		return nil
	}, retries, denied)
	if err != nil {
		return nil, fmt.Errorf("retry: registering callback: %w", err)
	}
	return rm, nil
}

// add counts one event c.
func (m *Metrics) add(c int) {
	if m != nil {
		m.counts.Add(c, 1)
	}
}

// logRetry logs, at Debug, a retry about to wait.
func (p *Policy) logRetry(attempt int, err error, wait time.Duration) {
	if l := p.Logger; l != nil && l.Enabled(context.Background(), slog.LevelDebug) {
		l.LogAttrs(context.Background(), slog.LevelDebug, "retry",
			slog.Int("attempt", attempt),
			slog.Duration("wait", wait),
			slog.String("error", err.Error()))
	}
}

// denied counts and logs, at Debug, a retry refused for reason stop.
func (p *Policy) denied(stop error) {
	c := countThrottled
	if stop == ErrBudgetExhausted {
		c = countBudgetExhausted
	}
	p.Metrics.add(c)
	if l := p.Logger; l != nil && l.Enabled(context.Background(), slog.LevelDebug) {
		l.LogAttrs(context.Background(), slog.LevelDebug, "retry denied",
			slog.String("reason", stop.Error()))
	}
}
