package rollout

import (
	"math"
	"time"
)

// Traffic is the load a rollout expects, for [CheckTraffic] and
// Plan.Traffic.
type Traffic struct {
	// CallsPerSecond is the expected rate of observed calls over all keys
	// and both variants, in calls per second. It must be positive.
	CallsPerSecond float64
	// Keys is the expected number of distinct keys that make calls (hosts,
	// tenants); zero means unknown. With it, a stage is viable only if it
	// gathers its samples even when its ring draws two standard deviations
	// fewer keys than its percent predicts (the keys in a ring of
	// expected size k vary by about sqrt(k)), and holds at least one key.
	Keys int
}

// StageTraffic is CheckTraffic's finding about one stage.
type StageTraffic struct {
	Percent float64 // the stage's share of keys
	// CanaryCallsPerSecond is the canary traffic the stage expects; with
	// Traffic.Keys, the traffic of a ring two standard deviations short of
	// keys.
	CanaryCallsPerSecond float64
	// Gather is the expected running time to gather the stage's
	// MinSamples canary calls, and Deadline the time the stage has for it.
	Gather, Deadline time.Duration
	// Keys is the expected number of keys in the canary, 0 when
	// Traffic.Keys is unknown.
	Keys float64
	// Viable reports whether the stage is expected to gather its samples
	// before its deadline (and, with Traffic.Keys, to hold a key).
	Viable bool
}

// TrafficReport is CheckTraffic's finding about a plan.
type TrafficReport struct {
	Stages []StageTraffic
	// Viable reports whether every stage is viable.
	Viable bool
	// NeededCallsPerSecond is the traffic at which every stage gathers
	// its samples just in time (+Inf when, with Traffic.Keys, a ring holds
	// too few keys for any traffic to make up for it).
	NeededCallsPerSecond float64
	// FirstViablePercent is the smallest first-ring percent (at the
	// 0.0001% resolution of a Stage) that gathers the first stage's
	// MinSamples before its deadline at this traffic, and holds at least
	// one key when Traffic.Keys is known; 100 when even 100% cannot.
	FirstViablePercent float64
}

// CheckTraffic says whether plan p can gather its samples at traffic t:
// for each stage, the canary traffic it expects, the time it needs to
// gather its MinSamples canary calls, and whether that fits its Deadline;
// for the plan, the traffic it needs and the smallest viable first ring.
// It assumes calls spread evenly over keys. It returns an error wrapping
// ErrPlan when p is invalid or t.CallsPerSecond is not positive.
func CheckTraffic(p Plan, t Traffic) (TrafficReport, error) {
	p.Traffic = Traffic{}
	cp, err := compile(p)
	if err != nil {
		return TrafficReport{}, err
	}
	return cp.traffic(t)
}

func (p *plan) traffic(t Traffic) (TrafficReport, error) {
	if !(t.CallsPerSecond > 0) || math.IsInf(t.CallsPerSecond, 0) {
		return TrafficReport{}, planError("Plan.Traffic.CallsPerSecond must be positive, got %v", t.CallsPerSecond)
	}
	if t.Keys < 0 {
		return TrafficReport{}, planError("Plan.Traffic.Keys must not be negative, got %d", t.Keys)
	}
	rep := TrafficReport{Viable: true}
	for _, s := range p.stages {
		share := float64(s.ppm) / Buckets
		st := StageTraffic{Percent: s.Percent, CanaryCallsPerSecond: t.canaryRate(share), Deadline: s.Deadline}
		secs := float64(s.MinSamples) / st.CanaryCallsPerSecond
		st.Gather = time.Duration(min(secs*float64(time.Second), math.MaxInt64))
		st.Viable = st.Gather <= s.Deadline
		if t.Keys > 0 {
			st.Keys = float64(t.Keys) * share
			st.Viable = st.Viable && st.Keys >= 1
		}
		rep.Viable = rep.Viable && st.Viable
		need := float64(s.MinSamples) / (t.canaryRate(share) / t.CallsPerSecond * s.Deadline.Seconds())
		rep.NeededCallsPerSecond = max(rep.NeededCallsPerSecond, need)
		rep.Stages = append(rep.Stages, st)
	}
	// The smallest first ring that gathers its samples: canaryRate grows
	// with the share, so search the parts per million.
	first := p.stages[0]
	viable := func(ppm uint32) bool {
		share := float64(ppm) / Buckets
		ok := t.canaryRate(share)*first.Deadline.Seconds() >= float64(first.MinSamples)
		return ok && (t.Keys == 0 || float64(t.Keys)*share >= 1)
	}
	lo, hi := uint32(1), uint32(Buckets)
	for lo < hi {
		mid := lo + (hi-lo)/2
		if viable(mid) {
			hi = mid
		} else {
			lo = mid + 1
		}
	}
	rep.FirstViablePercent = float64(lo) / 10_000
	return rep, nil
}

// canaryRate is the canary traffic at share: with Keys, that of a ring two
// standard deviations short of its expected keys.
func (t Traffic) canaryRate(share float64) float64 {
	r := t.CallsPerSecond * share
	if t.Keys > 0 && share < 1 {
		r *= max(0, 1-2/math.Sqrt(float64(t.Keys)*share))
	}
	return r
}

// checkTraffic is New's check of Plan.Traffic.
func (p *plan) checkTraffic(t Traffic) error {
	rep, err := p.traffic(t)
	if err != nil {
		return err
	}
	for i, st := range rep.Stages {
		if st.Viable {
			continue
		}
		if t.Keys > 0 && st.Keys < 1 {
			return planError("Plan.Stages[%d].Percent %v%% holds %.2g of the %d expected keys; the first ring must hold at least %v%%", i, st.Percent, st.Keys, t.Keys, rep.FirstViablePercent)
		}
		return planError("Plan.Stages[%d] at %v%% gets %.3g canary calls per second and needs %v to gather its MinSamples, past its Deadline %v; the plan needs %.3g calls per second (expected %v), or a first ring of at least %v%%",
			i, st.Percent, st.CanaryCallsPerSecond, st.Gather.Round(time.Second), st.Deadline, rep.NeededCallsPerSecond, t.CallsPerSecond, rep.FirstViablePercent)
	}
	return nil
}
