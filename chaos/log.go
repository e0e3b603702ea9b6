package chaos

import (
	"context"
	"log/slog"
)

// logSet logs, at Warn, faults switched on by Set: injected faults are a
// deliberate outage, which an operator reading the logs must not mistake
// for a real one.
func (in *Injector) logSet(f Faults) {
	if in.logger == nil {
		return
	}
	in.logger.LogAttrs(context.Background(), slog.LevelWarn, "chaos faults set", faultAttrs(f)...)
}

// logClear logs, at Info, that Clear handed the calls back to the
// timeline.
func (in *Injector) logClear() {
	if in.logger != nil {
		in.logger.LogAttrs(context.Background(), slog.LevelInfo, "chaos faults cleared")
	}
}

// notePhase logs, once per change, that calls have moved to another part
// of the timeline: Warn when it injects faults, Info when it does not. It
// costs one atomic load per call, and only with a logger.
func (in *Injector) notePhase(s *slot) {
	if in.logger == nil {
		return
	}
	last := in.lastSlot.Load()
	if last == s || !in.lastSlot.CompareAndSwap(last, s) {
		return
	}
	if last == nil && s.none {
		return // the first call, and nothing injected: nothing changed
	}
	level := slog.LevelWarn
	if s.none {
		level = slog.LevelInfo
	}
	attrs := append([]slog.Attr{slog.String("phase", s.phase.Name)}, faultAttrs(s.phase.Faults)...)
	in.logger.LogAttrs(context.Background(), level, "chaos phase", attrs...)
}

// faultAttrs describes f by the faults it injects.
func faultAttrs(f Faults) []slog.Attr {
	var a []slog.Attr
	if f.ErrorRate > 0 {
		a = append(a, slog.Float64("error_rate", f.ErrorRate))
		if f.Status != 0 {
			a = append(a, slog.Int("status", f.Status))
		}
		if f.Err != nil {
			a = append(a, slog.String("error", f.Err.Error()))
		}
	}
	if f.HangRate > 0 {
		a = append(a, slog.Float64("hang_rate", f.HangRate))
	}
	if f.Latency > 0 || f.Jitter > 0 {
		a = append(a, slog.Duration("latency", f.Latency), slog.Duration("jitter", f.Jitter))
	}
	return a
}
