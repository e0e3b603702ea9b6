package admin

import (
	"context"
	"math"
	"sort"
	"time"

	"github.com/ringfence/ringfence/breaker"
	"github.com/ringfence/ringfence/fallback"
	"github.com/ringfence/ringfence/rollout"
)

// The JSON documents of the API. Times are RFC 3339, durations are seconds
// (fields ending in _seconds), absent times are null. A figure JSON cannot
// hold is shown as the nearest it can: NaN as 0, an infinite likelihood
// ratio as the largest float64.

// BreakerView is a breaker as the API shows it.
type BreakerView struct {
	Name                string     `json:"name"`
	State               string     `json:"state"`
	Forced              bool       `json:"forced"`
	Since               *time.Time `json:"since"`
	Reason              string     `json:"reason"`
	Requests            uint64     `json:"requests"`
	Failures            uint64     `json:"failures"`
	SlowCalls           uint64     `json:"slow_calls"`
	FailureRatio        float64    `json:"failure_ratio"`
	ConsecutiveFailures uint64     `json:"consecutive_failures"`
	Ramping             bool       `json:"ramping"`
	NextProbe           *time.Time `json:"next_probe"`
	OpenWaitSeconds     float64    `json:"open_wait_seconds"`
}

// GroupView is a breaker group as the API shows it: its members, sorted by
// name.
type GroupView struct {
	Name    string        `json:"name"`
	Members []BreakerView `json:"members"`
}

// SwitchView is a switch as the API shows it.
type SwitchView struct {
	Name    string           `json:"name"`
	Mode    string           `json:"mode"`
	History []ModeChangeView `json:"history"`
}

// ModeChangeView is one change of a switch's mode.
type ModeChangeView struct {
	Time   time.Time `json:"time"`
	From   string    `json:"from"`
	To     string    `json:"to"`
	Reason string    `json:"reason"`
}

// OutboxView is an outbox as the API shows it, with its recent backlog.
type OutboxView struct {
	Name          string          `json:"name"`
	Pending       int             `json:"pending"`
	Dead          int             `json:"dead"`
	InFlight      int             `json:"in_flight"`
	Delivered     uint64          `json:"delivered"`
	Failures      uint64          `json:"failures"`
	DeadLettered  uint64          `json:"dead_lettered"`
	LastError     string          `json:"last_error"`
	Replaying     bool            `json:"replaying"`
	Segments      int             `json:"segments"`
	Bytes         int64           `json:"bytes"`
	Oldest        *time.Time      `json:"oldest"`
	OldestSeconds float64         `json:"oldest_age_seconds"`
	Backlog       []BacklogSample `json:"backlog"`
}

// BacklogSample is an outbox's backlog at one moment.
type BacklogSample struct {
	Time    time.Time `json:"time"`
	Pending int       `json:"pending"`
	Dead    int       `json:"dead"`
}

// DeadLetterView is a dead letter as the API shows it. The payload itself
// is not shown, only its size.
type DeadLetterView struct {
	Key          string    `json:"key"`
	Stream       string    `json:"stream"`
	Enqueued     time.Time `json:"enqueued"`
	Reason       string    `json:"reason"`
	PayloadBytes int       `json:"payload_bytes"`
}

// RolloutView is a rollout as the API shows it: status, rings, current
// verdict and history.
type RolloutView struct {
	Name            string      `json:"name"`
	State           string      `json:"state"`
	Stage           int         `json:"stage"`
	Percent         float64     `json:"percent"`
	Shadow          bool        `json:"shadow"`
	BakeLeftSeconds float64     `json:"bake_left_seconds"`
	Reason          string      `json:"reason"`
	Error           string      `json:"error"`
	Stages          []StageView `json:"stages"`
	Verdict         VerdictView `json:"verdict"`
	History         []EventView `json:"history"`
}

// StageView is one ring of a rollout.
type StageView struct {
	Percent     float64 `json:"percent"`
	BakeSeconds float64 `json:"bake_seconds"`
	MinSamples  int     `json:"min_samples"`
	Shadow      bool    `json:"shadow"`
}

// VerdictView is the judge's finding with the figures behind it.
type VerdictView struct {
	Outcome         string      `json:"outcome"`
	Rule            string      `json:"rule"`
	Baseline        FiguresView `json:"baseline"`
	Canary          FiguresView `json:"canary"`
	CanaryShare     float64     `json:"canary_share"`
	LikelihoodRatio float64     `json:"likelihood_ratio"`
	Threshold       float64     `json:"threshold"`
	MinRegression   float64     `json:"min_regression"`
	MaxErrorRate    float64     `json:"max_error_rate"`
	MinSamples      int         `json:"min_samples"`
}

// FiguresView is one variant's observations in a stage.
type FiguresView struct {
	Samples    uint64  `json:"samples"`
	Errors     uint64  `json:"errors"`
	ErrorRate  float64 `json:"error_rate"`
	P99Seconds float64 `json:"p99_seconds"`
}

// EventView is one transition of a rollout.
type EventView struct {
	Time    time.Time   `json:"time"`
	From    string      `json:"from"`
	To      string      `json:"to"`
	Stage   int         `json:"stage"`
	Percent float64     `json:"percent"`
	Reason  string      `json:"reason"`
	Verdict VerdictView `json:"verdict"`
}

// Change is one action applied through the Handler, as kept in its audit
// trail.
type Change struct {
	Time   time.Time `json:"time"`
	Actor  string    `json:"actor"`
	Kind   Kind      `json:"kind"`
	Name   string    `json:"name"`
	Verb   Verb      `json:"verb"`
	Key    string    `json:"key,omitempty"`
	Mode   string    `json:"mode,omitempty"`
	Reason string    `json:"reason"`
	Scope  string    `json:"scope"`
	// Error is set when the action failed after it may have taken effect
	// in part (for example a rollout whose new state could not be saved).
	Error string `json:"error,omitempty"`
}

// TokenView says which token a request was made with, never its secret.
type TokenView struct {
	Name  string `json:"name"`
	Write bool   `json:"write"`
}

// Overview is every object at once, with the recent changes, newest first.
type Overview struct {
	Scope    string        `json:"scope"`
	Time     time.Time     `json:"time"`
	Token    TokenView     `json:"token"`
	Breakers []BreakerView `json:"breakers"`
	Groups   []GroupView   `json:"groups"`
	Switches []SwitchView  `json:"switches"`
	Outboxes []OutboxView  `json:"outboxes"`
	Rollouts []RolloutView `json:"rollouts"`
	Changes  []Change      `json:"changes"`
}

// finite returns f, or for a value JSON cannot hold the nearest it can:
// 0 for NaN, the largest float64 (with its sign) for an infinity.
func finite(f float64) float64 {
	switch {
	case math.IsNaN(f):
		return 0
	case math.IsInf(f, 1):
		return math.MaxFloat64
	case math.IsInf(f, -1):
		return -math.MaxFloat64
	}
	return f
}

func optTime(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	return &t
}

func breakerView(s breaker.Snapshot) BreakerView {
	return BreakerView{
		Name:                s.Name,
		State:               s.State.String(),
		Forced:              forced(s.State),
		Since:               optTime(s.Since),
		Reason:              s.Reason,
		Requests:            s.Requests,
		Failures:            s.Failures,
		SlowCalls:           s.SlowCalls,
		FailureRatio:        s.FailureRatio,
		ConsecutiveFailures: s.ConsecutiveFailures,
		Ramping:             s.Ramping,
		NextProbe:           optTime(s.NextProbe),
		OpenWaitSeconds:     s.OpenWait.Seconds(),
	}
}

func groupView(name string, g *breaker.Group) GroupView {
	snaps := g.Snapshots()
	v := GroupView{Name: name, Members: make([]BreakerView, 0, len(snaps))}
	for _, s := range snaps {
		v.Members = append(v.Members, breakerView(s))
	}
	return v
}

func switchView(s *fallback.Switch) SwitchView {
	h := s.History()
	v := SwitchView{Name: s.Name(), Mode: s.Mode().String(), History: make([]ModeChangeView, 0, len(h))}
	for _, c := range h {
		v.History = append(v.History, ModeChangeView{Time: c.Time, From: c.From.String(), To: c.To.String(), Reason: c.Reason})
	}
	return v
}

func outboxView(name string, o *fallback.Outbox, backlog []BacklogSample) OutboxView {
	st := o.Stats()
	v := OutboxView{
		Name:         name,
		Pending:      st.Pending,
		Dead:         st.Dead,
		InFlight:     st.InFlight,
		Delivered:    st.Delivered,
		Failures:     st.Failures,
		DeadLettered: st.DeadLettered,
		Replaying:    st.Replaying,
		Segments:     st.Segments,
		Bytes:        st.Bytes,
		Backlog:      backlog,
	}
	if st.LastError != nil {
		v.LastError = st.LastError.Error()
	}
	if oldest, ok, err := o.Oldest(); err == nil && ok {
		v.Oldest = &oldest
		v.OldestSeconds = time.Since(oldest).Seconds()
	}
	return v
}

func deadLetterViews(ctx context.Context, o *fallback.Outbox) ([]DeadLetterView, int, error) {
	dl, err := o.DeadLetters(ctx)
	if err != nil {
		return nil, 0, err
	}
	n := min(len(dl), maxDeadLetterOut)
	out := make([]DeadLetterView, 0, n)
	for _, d := range dl[:n] {
		out = append(out, DeadLetterView{
			Key: d.Item.Key, Stream: d.Item.Stream, Enqueued: d.Item.Enqueued,
			Reason: d.Reason, PayloadBytes: len(d.Item.Payload),
		})
	}
	return out, len(dl), nil
}

func verdictView(v rollout.Verdict) VerdictView {
	return VerdictView{
		Outcome:         v.Outcome.String(),
		Rule:            string(v.Rule),
		Baseline:        figuresView(v.Baseline),
		Canary:          figuresView(v.Canary),
		CanaryShare:     finite(v.CanaryShare),
		LikelihoodRatio: finite(v.LikelihoodRatio),
		Threshold:       finite(v.Threshold),
		MinRegression:   finite(v.MinRegression),
		MaxErrorRate:    finite(v.MaxErrorRate),
		MinSamples:      v.MinSamples,
	}
}

func figuresView(f rollout.Figures) FiguresView {
	return FiguresView{Samples: f.Samples, Errors: f.Errors, ErrorRate: finite(f.ErrorRate), P99Seconds: f.P99.Seconds()}
}

func rolloutView(r *rollout.Rollout) RolloutView {
	st := r.Status()
	v := RolloutView{
		Name:            r.Name(),
		State:           st.State.String(),
		Stage:           st.Stage,
		Percent:         st.Percent,
		Shadow:          st.Shadow,
		BakeLeftSeconds: st.BakeLeft.Seconds(),
		Reason:          st.Reason,
		Verdict:         verdictView(st.Verdict),
	}
	if st.Err != nil {
		v.Error = st.Err.Error()
	}
	for _, s := range r.Stages() {
		v.Stages = append(v.Stages, StageView{Percent: s.Percent, BakeSeconds: s.Bake.Seconds(), MinSamples: s.MinSamples, Shadow: s.Shadow})
	}
	hist := r.History()
	v.History = make([]EventView, 0, len(hist))
	for _, e := range hist {
		v.History = append(v.History, EventView{
			Time: e.Time, From: e.From.String(), To: e.To.String(), Stage: e.Stage,
			Percent: e.Percent, Reason: e.Reason, Verdict: verdictView(e.Verdict),
		})
	}
	return v
}

// sortedKeys returns m's keys in order.
func sortedKeys[T any](m map[string]T) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
