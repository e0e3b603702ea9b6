package rollout

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
)

// rules lists the judge's rules in the order of their verdict counters;
// index 0 stands for a verdict without a rule (gathering, healthy) and the
// last for a rule this list does not know.
var rules = [...]Rule{"", RuleErrorRate, RuleLatency, RuleErrorCeiling, RuleP99Ceiling, RuleSilence, RuleDeadline, RuleEmptyRing, "other"}

const numOutcomes = int(Inconclusive) + 1

// rolloutObs holds a rollout's verdict counts for its instruments. A nil
// *rolloutObs counts nothing.
type rolloutObs struct {
	verdicts [numOutcomes][len(rules)]atomic.Uint64
}

// instrument registers the rollout's instruments with Plan.MeterProvider,
// if set: the stage percent, the state and the staleness of the fleet's
// evidence as gauges, and the verdicts of Evaluate by outcome and rule. The registration lasts as long as the
// provider.
func (r *Rollout) instrument() error {
	mp := r.p.MeterProvider
	if mp == nil {
		return nil
	}
	m := mp.Meter("github.com/ringfence/ringfence/rollout")
	percent, err := m.Float64ObservableGauge("ringfence.rollout.stage.percent",
		metric.WithDescription("Share of keys the rollout gives the canary now; 0 while failing safe."),
		metric.WithUnit("%"))
	if err != nil {
		return fmt.Errorf("rollout: creating instrument: %w", err)
	}
	state, err := m.Int64ObservableGauge("ringfence.rollout.state",
		metric.WithDescription("Whether the rollout is in the state: 1 for its current state, 0 for the others."),
		metric.WithUnit("{state}"))
	if err != nil {
		return fmt.Errorf("rollout: creating instrument: %w", err)
	}
	verdicts, err := m.Int64ObservableCounter("ringfence.rollout.verdicts",
		metric.WithDescription("Verdicts of the judge on the running stage, by outcome and rule."),
		metric.WithUnit("{verdict}"))
	if err != nil {
		return fmt.Errorf("rollout: creating instrument: %w", err)
	}
	stale, err := m.Float64ObservableGauge("ringfence.rollout.evidence.staleness",
		metric.WithDescription("How long the rollout has judged on local evidence only because Plan.Evidence fails; 0 otherwise."),
		metric.WithUnit("s"))
	if err != nil {
		return fmt.Errorf("rollout: creating instrument: %w", err)
	}
	name := attribute.String("ringfence.rollout.name", r.p.Name)
	all := metric.WithAttributeSet(attribute.NewSet(name))
	var states [len(stateNames)]metric.ObserveOption
	for s := range states {
		states[s] = metric.WithAttributeSet(attribute.NewSet(name, attribute.String("state", State(s).String())))
	}
	var sets [numOutcomes][len(rules)]metric.ObserveOption
	for o := range sets {
		for i, rule := range rules {
			rs := string(rule)
			if rs == "" {
				rs = "none"
			}
			sets[o][i] = metric.WithAttributeSet(attribute.NewSet(name,
				attribute.String("outcome", Outcome(o).String()), attribute.String("rule", rs)))
		}
	}
	obs := &rolloutObs{}
	_, err = m.RegisterCallback(func(_ context.Context, o metric.Observer) error {
		o.ObserveFloat64(percent, float64(uint32(r.route.Load()))*100/Buckets, all)
		r.mu.Lock()
		now := r.state
		var staleness time.Duration
		if r.evidenceErr != nil {
			staleness = time.Since(r.evidenceSince)
		}
		r.mu.Unlock()
		o.ObserveFloat64(stale, staleness.Seconds(), all)
		for s := range states {
			var v int64
			if State(s) == now {
				v = 1
			}
			o.ObserveInt64(state, v, states[s])
		}
		for out := range sets {
			for i := range rules {
				if n := obs.verdicts[out][i].Load(); n > 0 {
					o.ObserveInt64(verdicts, int64(n), sets[out][i])
				}
			}
		}
		return nil
	}, percent, state, verdicts, stale)
	if err != nil {
		return fmt.Errorf("rollout: registering callback: %w", err)
	}
	r.obs = obs
	return nil
}

// verdict counts one verdict of Evaluate.
func (o *rolloutObs) verdict(v Verdict) {
	if o == nil || int(v.Outcome) >= numOutcomes {
		return
	}
	i := len(rules) - 1
	for j, rule := range rules[:len(rules)-1] {
		if rule == v.Rule {
			i = j
			break
		}
	}
	o.verdicts[v.Outcome][i].Add(1)
}

// logEvent logs a transition, with no lock held: Warn when the rollout
// rolls back or pauses, Info otherwise.
func (r *Rollout) logEvent(e Event) {
	l := r.p.Logger
	if l == nil {
		return
	}
	level := slog.LevelInfo
	if e.To == RolledBack || e.To == Paused {
		level = slog.LevelWarn
	}
	l.LogAttrs(context.Background(), level, "rollout transition",
		slog.String("rollout", e.Rollout),
		slog.String("from", e.From.String()),
		slog.String("to", e.To.String()),
		slog.Int("stage", e.Stage),
		slog.Float64("percent", e.Percent),
		slog.String("reason", e.Reason),
		slog.String("outcome", e.Verdict.Outcome.String()),
		slog.String("rule", string(e.Verdict.Rule)))
}

// logStart logs, at Error, that Start found the stored state unusable and
// the rollout fails safe to the baseline.
func (r *Rollout) logStart(err error) {
	if l := r.p.Logger; l != nil && errors.Is(err, ErrFailSafe) {
		l.LogAttrs(context.Background(), slog.LevelError, "rollout failing safe",
			slog.String("rollout", r.p.Name),
			slog.String("error", err.Error()))
	}
}
