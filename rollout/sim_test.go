package rollout

import (
	"math"
	"math/rand/v2"
	"testing"
)

// The tests in this file check the judge's statistics by simulation. Each
// simulated rollout draws, per batch of traffic, how many calls land on
// the canary and how many of each variant fail, adds those counts to the
// stage, and evaluates: the judge looks after every batch, as Run would.

// binomial draws from Binomial(n, p): by inversion for small means, by
// the normal approximation (rounded and clamped) for large ones.
func binomial(rng *rand.Rand, n int, p float64) int {
	switch {
	case n <= 0 || p <= 0:
		return 0
	case p >= 1:
		return n
	case p > 0.5:
		return n - binomial(rng, n, 1-p)
	}
	mean := float64(n) * p
	if v := mean * (1 - p); v > 25 {
		x := math.Round(mean + rng.NormFloat64()*math.Sqrt(v))
		return int(min(max(x, 0), float64(n)))
	}
	q := 1 - p
	pmf := math.Pow(q, float64(n))
	cdf := pmf
	u := rng.Float64()
	k := 0
	for u > cdf && k < n {
		pmf *= float64(n-k) / float64(k+1) * p / q
		k++
		cdf += pmf
	}
	return k
}

// feed adds samples and errors of variant v to the current stage.
func feed(r *Rollout, v Variant, samples, errors int) {
	r.stats.Load().add(v, uint64(samples), uint64(errors))
}

type simulation struct {
	stages       []Stage
	batch        int     // calls per batch
	baseErr      float64 // baseline error rate
	canaryErr    float64 // canary error rate
	canarySilent bool    // canary units report nothing
	maxBatches   int
}

type simResult struct {
	state   State
	rule    Rule
	exposed int // canary calls made before the rollout ended
}

func (s simulation) run(t testing.TB, seed uint64) simResult {
	r, err := New(Plan{Name: "sim", Stages: s.stages})
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(seed, 0x5eed))
	exposed := 0
	for range s.maxBatches {
		st := r.Status()
		if st.State != Running {
			break
		}
		nc := binomial(rng, s.batch, st.Percent/100)
		nb := s.batch - nc
		exposed += nc
		feed(r, Baseline, nb, binomial(rng, nb, s.baseErr))
		if !s.canarySilent {
			feed(r, Canary, nc, binomial(rng, nc, s.canaryErr))
		}
		if _, err := r.Evaluate(); err != nil {
			t.Fatal(err)
		}
	}
	st := r.Status()
	h := r.History()
	return simResult{state: st.State, rule: h[len(h)-1].Verdict.Rule, exposed: exposed}
}

// simStages is a four-ring rollout that needs 2,000 canary calls per ring.
var simStages = []Stage{
	{Percent: 1, MinSamples: 2000},
	{Percent: 10, MinSamples: 2000},
	{Percent: 50, MinSamples: 2000},
	{Percent: 100, MinSamples: 2000},
}

// maxFalseRollbacks is the most false roll backs of runs rollouts that
// still fits a rate of alpha: the expected count plus three binomial
// standard deviations.
func maxFalseRollbacks(runs int, alpha float64) int {
	n := float64(runs)
	return int(n*alpha + 3*math.Sqrt(n*alpha*(1-alpha)))
}

func TestSimulatedAATestsRarelyRollBack(t *testing.T) {
	tests := []struct {
		name string
		sim  simulation
	}{
		{"four rings with a 2% error rate", simulation{stages: simStages, batch: 5000, baseErr: 0.02, canaryErr: 0.02, maxBatches: 1000}},
		{"one long ring watched for 200 batches", simulation{
			stages: []Stage{{Percent: 10, MinSamples: 100_000}, {Percent: 100}},
			batch:  5000, baseErr: 0.01, canaryErr: 0.01, maxBatches: 200}},
		{"four rings with a rare error rate of 0.1%", simulation{stages: simStages, batch: 5000, baseErr: 0.001, canaryErr: 0.001, maxBatches: 1000}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			const runs = 1000
			rolledBack, promoted := 0, 0
			for i := range runs {
				res := tt.sim.run(t, uint64(i))
				switch res.state {
				case RolledBack:
					rolledBack++
				case Promoted:
					promoted++
				}
			}
			limit := maxFalseRollbacks(runs, DefaultAlpha)
			t.Logf("%d of %d A/A rollouts rolled back (limit %d: 5%% plus 3 binomial standard deviations)", rolledBack, runs, limit)
			if rolledBack > limit {
				t.Errorf("false roll backs = %d of %d, want <= %d", rolledBack, runs, limit)
			}
			if tt.sim.stages[0].MinSamples <= 2000 && promoted+rolledBack != runs {
				t.Errorf("promoted %d and rolled back %d of %d, want every run finished", promoted, rolledBack, runs)
			}
		})
	}
}

func TestSimulatedBadCanariesRollBack(t *testing.T) {
	tests := []struct {
		name string
		sim  simulation
	}{
		{"5x a 2% baseline error rate", simulation{stages: simStages, batch: 5000, baseErr: 0.02, canaryErr: 0.10, maxBatches: 1000}},
		{"5x a 0.2% baseline error rate", simulation{stages: simStages, batch: 5000, baseErr: 0.002, canaryErr: 0.01, maxBatches: 1000}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			const runs = 1000
			rolledBack, exposed := 0, 0
			for i := range runs {
				res := tt.sim.run(t, uint64(i))
				if res.state == RolledBack {
					rolledBack++
					exposed += res.exposed
				}
			}
			t.Logf("%d of %d rolled back; mean canary calls before roll back: %.0f", rolledBack, runs, float64(exposed)/float64(max(rolledBack, 1)))
			if rolledBack < runs*99/100 {
				t.Errorf("roll backs = %d of %d, want >= %d", rolledBack, runs, runs*99/100)
			}
		})
	}
}

func TestSimulatedSilentCanaryRollsBack(t *testing.T) {
	sim := simulation{stages: simStages, batch: 5000, baseErr: 0.01, canarySilent: true, maxBatches: 1000}
	for i := range 100 {
		res := sim.run(t, uint64(i))
		if res.state != RolledBack || res.rule != RuleSilence {
			t.Fatalf("run %d ended %v by rule %q, want %v by rule %q", i, res.state, res.rule, RolledBack, RuleSilence)
		}
	}
}
