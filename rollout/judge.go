package rollout

import (
	"math"
	"time"
)

// Outcome is the judge's finding about the current stage.
type Outcome uint8

const (
	// Gathering means the stage has found no regression but does not yet
	// have its minimum canary samples.
	Gathering Outcome = iota
	// Healthy means the stage has its minimum canary samples and no
	// regression; it advances once its bake time has passed.
	Healthy
	// Regressed means a rule found the canary worse; the rollout rolls
	// back.
	Regressed
	// Inconclusive means the stage missed its deadline for gathering its
	// minimum samples; missing evidence is never success.
	Inconclusive
)

// String returns the outcome's name in lower case.
func (o Outcome) String() string {
	switch o {
	case Gathering:
		return "gathering"
	case Healthy:
		return "healthy"
	case Regressed:
		return "regressed"
	case Inconclusive:
		return "inconclusive"
	}
	return "outcome(?)"
}

// Rule names the rule behind a verdict of Regressed or Inconclusive.
type Rule string

// The judge's rules.
const (
	// RuleErrorRate is the sequential test of the canary's error rate
	// against the baseline's.
	RuleErrorRate Rule = "error-rate"
	// RuleErrorCeiling is Judge.MaxErrorRate.
	RuleErrorCeiling Rule = "error-ceiling"
	// RuleP99Ceiling is Judge.MaxP99.
	RuleP99Ceiling Rule = "p99-ceiling"
	// RuleP99Factor is Judge.P99Factor.
	RuleP99Factor Rule = "p99-factor"
	// RuleSilence is the check that the canary reports its share of
	// observations.
	RuleSilence Rule = "silence"
	// RuleDeadline is Stage.Deadline.
	RuleDeadline Rule = "deadline"
)

// Figures are one variant's observations in the current stage.
type Figures struct {
	Samples   uint64        // observations
	Errors    uint64        // observations that carried an error
	ErrorRate float64       // Errors/Samples, 0 without samples
	P99       time.Duration // upper bound of the 99th-percentile bucket, 0 without samples
}

// Verdict is the judge's finding with the figures and thresholds behind
// it.
type Verdict struct {
	Outcome Outcome // what the judge concluded
	Rule    Rule    // set when Outcome is Regressed or Inconclusive

	// Baseline and Canary are each variant's observations in the stage.
	Baseline, Canary Figures

	// CanaryShare is the share of keys in the canary, and ExpectedCanary
	// the canary observations that share predicts out of all the stage's
	// observations.
	CanaryShare    float64
	ExpectedCanary float64

	// LikelihoodRatio is the error-rate test's mixture likelihood ratio;
	// the canary regressed when it reaches Threshold (1/alpha of the
	// stage) and the canary's error rate exceeds the baseline's by at least
	// MinRegression. It is 1 while either variant has no samples.
	LikelihoodRatio float64
	Threshold       float64
	MinRegression   float64

	// Guardrails and stage requirements in force.
	MaxErrorRate        float64
	MaxP99              time.Duration // 0 when there is no ceiling
	P99Limit            time.Duration // P99Factor times the baseline's P99, 0 when not judged
	GuardrailMinSamples int
	SilenceRatio        float64
	SilenceZ            float64
	MinSamples          int
}

func figures(s snapshot) Figures {
	f := Figures{Samples: s.samples, Errors: s.errors, P99: s.p99}
	if s.samples > 0 {
		f.ErrorRate = float64(s.errors) / float64(s.samples)
	}
	return f
}

// stageAlpha is the false-rollback probability given to each stage's
// error-rate test: Alpha split evenly over the stages that keep a baseline.
func (p *plan) stageAlpha() float64 {
	k := 0
	for _, s := range p.stages {
		if s.ppm < Buckets {
			k++
		}
	}
	return p.Judge.Alpha / float64(max(k, 1))
}

// judge applies every rule to one stage's snapshots.
func (p *plan) judge(st stage, base, can snapshot) Verdict {
	j := p.Judge
	v := Verdict{
		Baseline:      figures(base),
		Canary:        figures(can),
		CanaryShare:   float64(st.ppm) / Buckets,
		Threshold:     1 / p.stageAlpha(),
		MinRegression: j.MinRegression,
		MaxErrorRate:  j.MaxErrorRate,
		MaxP99:        j.MaxP99,
		MinSamples:    st.MinSamples,

		GuardrailMinSamples: j.GuardrailMinSamples,
		SilenceRatio:        j.SilenceRatio,
		SilenceZ:            j.SilenceZ,
		LikelihoodRatio:     1,
	}
	n := float64(base.samples + can.samples)
	v.ExpectedCanary = n * v.CanaryShare
	minG := uint64(j.GuardrailMinSamples)
	if base.samples >= minG && base.p99 > 0 && !math.IsInf(j.P99Factor, 1) {
		v.P99Limit = time.Duration(float64(base.p99) * j.P99Factor)
	}

	regress := func(r Rule) Verdict {
		v.Outcome, v.Rule = Regressed, r
		return v
	}
	if can.samples >= minG {
		if j.MaxErrorRate < 1 && v.Canary.ErrorRate > j.MaxErrorRate {
			return regress(RuleErrorCeiling)
		}
		if j.MaxP99 > 0 && can.p99 > j.MaxP99 {
			return regress(RuleP99Ceiling)
		}
		if v.P99Limit > 0 && can.p99 > v.P99Limit {
			return regress(RuleP99Factor)
		}
	}
	if silent(v.CanaryShare, base.samples, can.samples, j) {
		return regress(RuleSilence)
	}
	if base.samples > 0 && can.samples > 0 {
		logLR, worse := errorTest(base, can, j.MinRegression)
		v.LikelihoodRatio = math.Exp(min(logLR, 700))
		if worse && logLR >= math.Log(v.Threshold) {
			return regress(RuleErrorRate)
		}
	}
	if can.samples >= uint64(st.MinSamples) {
		v.Outcome = Healthy
	}
	return v
}

// silent reports whether the canary reported markedly fewer observations
// than its share of keys predicts.
func silent(share float64, nb, nc uint64, j Judge) bool {
	if share <= 0 || share >= 1 {
		return false
	}
	n := float64(nb + nc)
	expected := n * share
	if expected < float64(j.SilenceMinExpected) {
		return false
	}
	if float64(nc) >= j.SilenceRatio*expected {
		return false
	}
	sd := math.Sqrt(n * share * (1 - share))
	return (expected-float64(nc))/sd > j.SilenceZ
}

// errorTest is a one-sided mixture sequential probability ratio test
// (mSPRT) of the log relative risk of error, canary over baseline. It
// returns the log of the mixture likelihood ratio against "the canary is no
// worse", with a normal mixing distribution of standard deviation
// ln(1+minRegression), and whether the canary's observed error rate exceeds
// the baseline's by at least minRegression (relative). Half a count is added
// to each cell so that empty cells stay finite.
func errorTest(base, can snapshot, minRegression float64) (logLR float64, worse bool) {
	a := float64(can.errors) + 0.5
	b := float64(base.errors) + 0.5
	nc := float64(can.samples) + 1
	nb := float64(base.samples) + 1
	theta := math.Log(a/nc) - math.Log(b/nb)
	variance := 1/a - 1/nc + 1/b - 1/nb
	tau := math.Log1p(minRegression)
	tau2 := tau * tau
	if theta <= 0 || variance <= 0 {
		return 0, false
	}
	logLR = 0.5*math.Log(variance/(variance+tau2)) + tau2*theta*theta/(2*variance*(variance+tau2))
	// The observed relative increase, without the half counts:
	// can.errors/can.samples >= (1+minRegression) * base.errors/base.samples.
	worse = can.errors > 0 && float64(can.errors)*float64(base.samples) >= (1+minRegression)*float64(base.errors)*float64(can.samples)
	return logLR, worse
}
