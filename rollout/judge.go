package rollout

import (
	"math"
	"math/bits"
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
	// RuleLatency is the sequential test of the canary's share of calls
	// slower than the baseline's high quantile (Judge.LatencyQuantile).
	RuleLatency Rule = "latency"
	// RuleErrorCeiling is Judge.MaxErrorRate.
	RuleErrorCeiling Rule = "error-ceiling"
	// RuleP99Ceiling is Judge.MaxP99.
	RuleP99Ceiling Rule = "p99-ceiling"
	// RuleSilence is the sequential test that the canary's keys report as
	// often as the baseline's (or, without keys, that the canary reports
	// its share of calls).
	RuleSilence Rule = "silence"
	// RuleDeadline is Stage.Deadline.
	RuleDeadline Rule = "deadline"
	// RuleEmptyRing means the stage's deadline passed with no key
	// assigned to the canary and no canary call, while keyed calls went to
	// the baseline: the ring is too small for the keys there are. The
	// rollout pauses, whatever Plan.OnInconclusive says.
	RuleEmptyRing Rule = "empty-ring"
)

// Figures are one variant's observations in the current stage.
type Figures struct {
	Samples   uint64        // observations
	Errors    uint64        // observations that carried an error
	ErrorRate float64       // Errors/Samples, 0 without samples
	P99       time.Duration // upper bound of the 99th-percentile bucket, 0 without samples
	// Judged is the number of observations made since the stage's latency
	// threshold was set, and Slow those of them above it.
	Judged, Slow uint64
	// Assigned and Reporting estimate the distinct keys Variant assigned
	// to this variant and the distinct keys that reported through a keyed
	// Observe, in the stage; both are 0 when the stage follows no keys
	// (at 100%, or when Variant is not used).
	Assigned, Reporting float64
}

// Verdict is the judge's finding with the figures and thresholds behind
// it.
type Verdict struct {
	Outcome Outcome // what the judge concluded
	Rule    Rule    // set when Outcome is Regressed or Inconclusive

	// Baseline and Canary are each variant's observations in the stage.
	Baseline, Canary Figures

	// CanaryShare is the share of keys in the canary.
	CanaryShare float64

	// Dispersion is the factor by which the spread of error counts
	// between key-hash buckets exceeds that of independent calls (1 when
	// the calls are independent); the error-rate test divides its counts
	// by it. LatencyDispersion is the same for slow calls.
	Dispersion, LatencyDispersion float64

	// LikelihoodRatio is the error-rate test's mixture likelihood ratio;
	// the canary regressed when it reaches Threshold and the canary's
	// error rate exceeds the baseline's by at least MinRegression. It is 1
	// while either variant has no errors.
	LikelihoodRatio float64
	Threshold       float64
	MinRegression   float64

	// LatencyRatio is the latency test's mixture likelihood ratio and
	// LatencyThreshold its threshold; LatencyLimit is the latency above
	// which a call is slow, 0 while the stage has none.
	LatencyRatio     float64
	LatencyThreshold float64
	LatencyLimit     time.Duration

	// SilenceRatio is the silence test's likelihood ratio, and
	// SilenceThreshold its threshold. SilentKeys and SilentBaselineKeys
	// count the followed key slots assigned to each variant that never
	// reported.
	SilenceRatio                   float64
	SilenceThreshold               float64
	SilentKeys, SilentBaselineKeys int

	// Guardrails and stage requirements in force.
	MaxErrorRate        float64
	MaxP99              time.Duration // 0 when there is no ceiling
	GuardrailMinSamples int
	MinSamples          int
}

// Shares of each stage's alpha: the error-rate test gets half, the latency
// test a quarter, and the two silence tests (keyed and per call) an eighth
// each.
const (
	errorShare   = 0.5
	latencyShare = 0.25
	silenceShare = 0.125
)

// gridPoints is the number of alternatives each mixture averages over.
const gridPoints = 8

// maxRelativeRisk is the largest relative risk in the mixtures' grids.
const maxRelativeRisk = 32.0

// riskGrid returns gridPoints relative risks spread geometrically from lo
// to hi.
func riskGrid(lo, hi float64) [gridPoints]float64 {
	var g [gridPoints]float64
	for i := range g {
		g[i] = lo * math.Pow(hi/lo, float64(i)/(gridPoints-1))
	}
	return g
}

// stageAlpha is the false-rollback probability given to each stage: Alpha
// split evenly over the stages that keep a baseline.
func (p *plan) stageAlpha() float64 {
	k := 0
	for _, s := range p.stages {
		if s.ppm < Buckets {
			k++
		}
	}
	return p.Judge.Alpha / float64(max(k, 1))
}

// mixtureLogLR returns the log of the mixture likelihood ratio of x
// events of n falling on the canary, against the null that each does with
// probability pi, averaging with equal weights over the alternatives in
// which the canary's rate is r times the baseline's, for each r of grid.
// Counts may be fractional (effective counts). With grid above 1 the ratio
// is, under any null in which the canary's rate is at most the baseline's,
// a nonnegative supermartingale in the order the events arrive.
func mixtureLogLR(x, n, pi float64, grid *[gridPoints]float64) float64 {
	if n <= 0 || !(pi > 0 && pi < 1) {
		return 0
	}
	var terms [gridPoints]float64
	best := math.Inf(-1)
	for i, r := range grid {
		q := pi * r / (pi*r + 1 - pi)
		terms[i] = x*math.Log(q/pi) + (n-x)*math.Log((1-q)/(1-pi))
		best = max(best, terms[i])
	}
	var sum float64
	for _, t := range terms {
		sum += math.Exp(t - best)
	}
	return best + math.Log(sum/gridPoints)
}

// dispersion estimates, from the spread of counts between key-hash
// buckets, the factor by which the variance of an arm's event count
// exceeds the binomial's: Pearson's chi-square over the keyed buckets of
// both arms, each around its own rate, divided by its degrees of freedom,
// raised by one standard error of that estimate and never below 1. n and
// e give each bucket's trials and events.
func dispersion(n, e [2]*[KeyBuckets + 1]uint64) float64 {
	var x2, df float64
	for a := range 2 {
		var tn, te float64
		k := 0
		for b := range KeyBuckets {
			if n[a][b] > 0 {
				tn += float64(n[a][b])
				te += float64(e[a][b])
				k++
			}
		}
		if k < 2 || te == 0 || te == tn {
			continue
		}
		p := te / tn
		for b := range KeyBuckets {
			if nb := float64(n[a][b]); nb > 0 {
				d := float64(e[a][b]) - nb*p
				x2 += d * d / (nb * p * (1 - p))
			}
		}
		df += float64(k - 1)
	}
	if df < 1 {
		return 1
	}
	return max(x2/df*(1+math.Sqrt(2/df)), 1)
}

// sums returns the totals of an arm's per-bucket counts.
func sum(c *[KeyBuckets + 1]uint64) uint64 {
	var s uint64
	for _, n := range c {
		s += n
	}
	return s
}

func popcount(w *[SketchWords]uint64) int {
	n := 0
	for _, x := range w {
		n += bits.OnesCount64(x)
	}
	return n
}

// distinct estimates the distinct keys behind set of the sketch's slots
// (linear counting).
func distinct(set int) float64 {
	if set >= sketchSlots {
		set = sketchSlots - 1
	}
	return -sketchSlots * math.Log1p(-float64(set)/sketchSlots)
}

// silentSlots counts the slots assigned but never reported.
func silentSlots(a *ArmEvidence) (assigned, silent int) {
	for i := range a.Assigned {
		assigned += bits.OnesCount64(a.Assigned[i])
		silent += bits.OnesCount64(a.Assigned[i] &^ a.Reported[i])
	}
	return assigned, silent
}

func figures(a *ArmEvidence) Figures {
	f := Figures{Samples: sum(&a.Samples), Errors: sum(&a.Errors), Judged: sum(&a.Judged), Slow: sum(&a.Slow)}
	if f.Samples > 0 {
		f.ErrorRate = float64(f.Errors) / float64(f.Samples)
	}
	if i, ok := quantileBucket(&a.Latency, 0.99); ok {
		f.P99 = histUpper(i)
	}
	return f
}

// judge applies every rule to one stage's evidence.
func (p *plan) judge(st stage, e *Evidence) Verdict {
	j := p.Judge
	alpha := p.stageAlpha()
	v := Verdict{
		Baseline:         figures(&e.Baseline),
		Canary:           figures(&e.Canary),
		CanaryShare:      float64(st.ppm) / Buckets,
		Threshold:        1 / (alpha * errorShare),
		LatencyThreshold: 1 / (alpha * latencyShare),
		SilenceThreshold: 1 / (alpha * silenceShare),
		MinRegression:    j.MinRegression,
		MaxErrorRate:     j.MaxErrorRate,
		MaxP99:           j.MaxP99,
		MinSamples:       st.MinSamples,

		GuardrailMinSamples: j.GuardrailMinSamples,
		LikelihoodRatio:     1,
		LatencyRatio:        1,
		SilenceRatio:        1,
		Dispersion:          1,
		LatencyDispersion:   1,
	}
	if e.LatencyBucket > 0 {
		v.LatencyLimit = histUpper(e.LatencyBucket - 1)
	}
	if wc, wb := trackWidths(st.ppm); wc > 0 {
		for _, f := range []struct {
			fig   *Figures
			a     *ArmEvidence
			scale float64
		}{{&v.Canary, &e.Canary, float64(st.ppm) / float64(wc)}, {&v.Baseline, &e.Baseline, float64(Buckets-st.ppm) / float64(wb)}} {
			f.fig.Assigned = math.Round(distinct(popcount(&f.a.Assigned)) * f.scale)
			f.fig.Reporting = math.Round(distinct(popcount(&f.a.Reported)) * f.scale)
		}
	}

	regress := func(r Rule) Verdict {
		v.Outcome, v.Rule = Regressed, r
		return v
	}
	if v.Canary.Samples >= uint64(j.GuardrailMinSamples) {
		if j.MaxErrorRate < 1 && v.Canary.ErrorRate > j.MaxErrorRate {
			return regress(RuleErrorCeiling)
		}
		if j.MaxP99 > 0 && v.Canary.P99 > j.MaxP99 {
			return regress(RuleP99Ceiling)
		}
	}
	if st.ppm < Buckets && p.silent(&v, e) {
		return regress(RuleSilence)
	}
	if st.ppm < Buckets && v.Baseline.Samples > 0 && v.Canary.Samples > 0 {
		nb, nc := float64(v.Baseline.Samples), float64(v.Canary.Samples)
		v.Dispersion = dispersion([2]*[KeyBuckets + 1]uint64{&e.Baseline.Samples, &e.Canary.Samples},
			[2]*[KeyBuckets + 1]uint64{&e.Baseline.Errors, &e.Canary.Errors})
		x, n := float64(v.Canary.Errors), float64(v.Canary.Errors+v.Baseline.Errors)
		logLR := mixtureLogLR(x/v.Dispersion, n/v.Dispersion, nc/(nc+nb), &p.worseGrid)
		v.LikelihoodRatio = math.Exp(min(logLR, 700))
		worse := x > 0 && x*nb >= (1+j.MinRegression)*float64(v.Baseline.Errors)*nc
		if worse && logLR >= math.Log(v.Threshold) {
			return regress(RuleErrorRate)
		}
	}
	if st.ppm < Buckets && v.Canary.Judged >= uint64(j.GuardrailMinSamples) && v.Baseline.Judged > 0 {
		nb, nc := float64(v.Baseline.Judged), float64(v.Canary.Judged)
		v.LatencyDispersion = dispersion([2]*[KeyBuckets + 1]uint64{&e.Baseline.Judged, &e.Canary.Judged},
			[2]*[KeyBuckets + 1]uint64{&e.Baseline.Slow, &e.Canary.Slow})
		x, n := float64(v.Canary.Slow), float64(v.Canary.Slow+v.Baseline.Slow)
		logLR := mixtureLogLR(x/v.LatencyDispersion, n/v.LatencyDispersion, nc/(nc+nb), &p.worseGrid)
		v.LatencyRatio = math.Exp(min(logLR, 700))
		worse := x > 0 && x*nb >= (1+j.MinRegression)*float64(v.Baseline.Slow)*nc
		if worse && logLR >= math.Log(v.LatencyThreshold) {
			return regress(RuleLatency)
		}
	}
	if v.Canary.Samples >= uint64(st.MinSamples) {
		v.Outcome = Healthy
	}
	return v
}

// silent runs the silence tests and reports whether the canary is silent.
//
// With keys (Variant assigns them and a keyed Observe reports them), the
// followed key slots that were assigned but never reported are compared:
// under "the canary's keys report as reliably as the baseline's", each
// silent slot is a canary slot with probability assigned canary slots over
// all assigned slots.
// Without keys, the canary's share of the calls is compared with its share
// of keys, which is valid only when the unit of randomisation is the call.
func (p *plan) silent(v *Verdict, e *Evidence) bool {
	j := p.Judge
	ac, sc := silentSlots(&e.Canary)
	ab, sb := silentSlots(&e.Baseline)
	v.SilentKeys, v.SilentBaselineKeys = sc, sb
	if ac+ab > 0 {
		logLR := mixtureLogLR(float64(sc), float64(sc+sb), float64(ac)/float64(ac+ab), &p.worseGrid)
		v.SilenceRatio = math.Exp(min(logLR, 700))
		worse := sc > 0 && float64(sc) >= (1-j.SilenceRatio)*float64(ac) && sc*ab > sb*ac
		return worse && logLR >= math.Log(v.SilenceThreshold)
	}
	// No key assigned through Variant: judge the calls made without a key.
	nc, nb := float64(e.Canary.Samples[KeyBuckets]), float64(e.Baseline.Samples[KeyBuckets])
	if nc+nb == 0 {
		return false
	}
	logLR := mixtureLogLR(nc, nc+nb, v.CanaryShare, &p.fewerGrid)
	v.SilenceRatio = math.Exp(min(logLR, 700))
	worse := nc < j.SilenceRatio*(nc+nb)*v.CanaryShare
	return worse && logLR >= math.Log(v.SilenceThreshold)
}
