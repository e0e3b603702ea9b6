package rollout

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"time"

	"go.opentelemetry.io/otel/metric"
)

// Defaults used for zero fields of a Plan, its Stages and its Judge.
const (
	DefaultName                = "rollout"        // Plan.Name
	DefaultMinSamples          = 500              // Stage.MinSamples
	DefaultMinDeadline         = time.Hour        // lower bound of the default Stage.Deadline
	DefaultInterval            = time.Second      // Plan.Interval
	DefaultCheckpoint          = 10 * time.Second // Plan.Checkpoint
	DefaultAlpha               = 0.05             // Judge.Alpha
	DefaultMinRegression       = 0.5              // Judge.MinRegression
	DefaultMaxErrorRate        = 0.5              // Judge.MaxErrorRate
	DefaultLatencyQuantile     = 0.99             // Judge.LatencyQuantile
	DefaultLatencyMinBaseline  = 1000             // Judge.LatencyMinBaseline
	DefaultGuardrailMinSamples = 100              // Judge.GuardrailMinSamples
	DefaultSilenceRatio        = 0.8              // Judge.SilenceRatio
	DefaultShadowTimeout       = 10 * time.Second // Plan.ShadowTimeout
	DefaultShadowConcurrency   = 64               // Plan.ShadowConcurrency
)

// DefaultStages returns the ring list used when Plan.Stages is empty:
// 0.1%, 1%, 10%, 50% and 100% of keys, baking 30 minutes at each of the
// first two rings, an hour at 10% and 50%, and none at 100%. The first
// ring has six hours to gather its samples; the others have the default
// Deadline (four times Bake, at least an hour).
//
// These rings need traffic: the first holds one key in a thousand and must
// gather DefaultMinSamples (500) canary calls within its six hours, so
// the plan needs about 23 calls per second over all keys when each call
// is assigned on its own (500 / (0.001 × 21,600 s)). With keys as hosts,
// the first ring's share of calls follows the hosts it happens to hold
// (about 10 ± 3 of 10,000), and [CheckTraffic] asks that a ring two
// standard deviations short of keys still gathers its samples: over
// 10,000 hosts the plan needs about 63 calls per second, and it needs a
// few thousand hosts for the first ring to hold any. Below that, use
// CheckTraffic to find a first ring that can gather its samples, or set
// Plan.Traffic so that New refuses a plan that cannot.
func DefaultStages() []Stage {
	return []Stage{
		{Percent: 0.1, Bake: 30 * time.Minute, Deadline: 6 * time.Hour},
		{Percent: 1, Bake: 30 * time.Minute},
		{Percent: 10, Bake: time.Hour},
		{Percent: 50, Bake: time.Hour},
		{Percent: 100},
	}
}

// Stage is one ring of a rollout: a share of keys that gets the canary
// for at least a bake time.
type Stage struct {
	// Percent is the share of keys in the canary, in (0, 100]. It is
	// exact to 0.0001% (one key in a million); a value between two such
	// steps is an error, not rounded. With BucketingUnleash it must be a
	// whole number.
	Percent float64

	// Bake is how long the stage runs, while the rollout is Running, before
	// it may advance. Zero means the stage advances as soon as its samples
	// are in and the judge finds no regression. It must not be negative.
	Bake time.Duration

	// MinSamples is the number of canary observations the stage must
	// gather before it may advance. Zero means DefaultMinSamples (500).
	MinSamples int

	// Deadline bounds the running time a stage may take to gather
	// MinSamples; a stage that misses it is inconclusive (see
	// Plan.OnInconclusive). Zero means four times Bake, but at least
	// DefaultMinDeadline (1h). It must not be below Bake.
	Deadline time.Duration

	// Shadow runs the stage as a dark launch: through Do, the keys assigned
	// to the canary run both variants, get the baseline's result, and the
	// canary's errors and mismatches count against it.
	Shadow bool
}

// InconclusiveAction is what a rollout does when a stage misses its deadline.
type InconclusiveAction uint8

const (
	// PauseOnInconclusive pauses the rollout at its current stage, for an
	// operator to decide. It is the default.
	PauseOnInconclusive InconclusiveAction = iota
	// RollBackOnInconclusive rolls the rollout back.
	RollBackOnInconclusive
)

// Judge configures how a stage's canary is judged against its baseline.
// Every zero field means the default documented on it.
type Judge struct {
	// Alpha bounds the probability, over the whole rollout and however
	// often it is evaluated, that a canary no worse than the baseline is
	// rolled back by the sequential tests (error rate, latency, silence),
	// under the assumptions stated in the package documentation (section
	// "What the bound promises"): half goes to the error-rate test, a
	// quarter to the latency test and an eighth to each silence test, each
	// test's evidence carried across the stages. The guardrails
	// (MaxErrorRate, MaxP99) are outside it. Zero means DefaultAlpha
	// (0.05). It must be in (0, 0.5].
	Alpha float64

	// MinRegression is the smallest relative increase of the canary's
	// error rate worth rolling back for: 0.5 means 50% more errors than
	// the baseline. The error-rate test is tuned to detect it, and it never
	// rolls back while the observed increase is smaller. Zero means
	// DefaultMinRegression (0.5). It must be positive.
	MinRegression float64

	// MaxErrorRate is a ceiling on the canary's error rate that rolls back
	// at once, in (0, 1]; 1 disables it. Zero means DefaultMaxErrorRate
	// (0.5).
	MaxErrorRate float64

	// MaxP99 is a ceiling on the canary's 99th-percentile latency that
	// rolls back at once, once the canary has GuardrailMinSamples
	// observations. Zero means no ceiling. It compares a point estimate
	// with a fixed bound: it is a guardrail, outside the Alpha bound.
	MaxP99 time.Duration

	// LatencyQuantile is the quantile of the baseline's latency above
	// which a call counts as slow for the latency test, in (0, 1). The
	// latency test rolls back a canary whose share of slow calls exceeds
	// the baseline's by at least MinRegression, with the sequential
	// guarantee of the error-rate test. Zero means DefaultLatencyQuantile
	// (0.99).
	LatencyQuantile float64

	// LatencyThreshold, if set, is the latency above which a call is
	// slow, in place of the baseline's LatencyQuantile. Set it when several
	// processes' Evidence is merged: evidence merges only between equal
	// thresholds, and a threshold each process learns from its own
	// baseline may differ. Zero means learnt from the baseline.
	LatencyThreshold time.Duration

	// LatencyMinBaseline is the number of baseline observations, from the
	// current and earlier stages, needed before the threshold is learnt.
	// Zero means DefaultLatencyMinBaseline (1,000).
	LatencyMinBaseline int

	// GuardrailMinSamples is the number of canary observations needed
	// before the ceilings above judge it, and before the latency test
	// may roll back. Zero means DefaultGuardrailMinSamples (100).
	GuardrailMinSamples int

	// SilenceRatio defines a silent canary: with keys, one whose share of
	// assigned keys that never report is at least 1-SilenceRatio (a fifth
	// by default) and significantly above the baseline's; without keys,
	// one that reports less than SilenceRatio of the calls its share of
	// keys predicts. Zero means DefaultSilenceRatio (0.8); it must be in
	// (0, 1).
	SilenceRatio float64
}

// Plan describes a staged rollout. It is passed by value to [New]; every
// zero field means the default documented on it, so New(Plan{}) rolls out
// through DefaultStages under the default Judge.
type Plan struct {
	// Name identifies the rollout in events and in its stored state.
	// Empty means DefaultName.
	Name string

	// Salt makes this rollout's assignment independent of other
	// rollouts': two rollouts with the same salt put the same keys in the
	// canary first. Empty means Name. With BucketingUnleash it is the
	// Unleash groupId.
	Salt string

	// Bucketing selects the assignment of keys; zero is BucketingDefault.
	Bucketing Bucketing

	// Stages are the rings, in strictly increasing Percent, the last at
	// 100. Empty means DefaultStages(), without the rings below 1% when
	// Bucketing is BucketingUnleash (whose percents are whole numbers).
	Stages []Stage

	// Judge configures the verdicts.
	Judge Judge

	// OnInconclusive says what happens when a stage misses its deadline;
	// zero is PauseOnInconclusive.
	OnInconclusive InconclusiveAction

	// Validate, if set, is the pre-flight check Start runs before any key
	// is exposed. A non-nil error rolls the rollout back with the error as
	// its reason. Validate the change with the very code that will run it
	// in production (see the package documentation).
	Validate func(ctx context.Context) error

	// FallbackToBaseline makes Do call the baseline, for that call only,
	// when the canary returns an error. The failure still counts against
	// the canary.
	FallbackToBaseline bool

	// OnEvent, if set, receives every transition, in order, after it is
	// recorded. It runs with no lock held, so it may call the Rollout's
	// methods, and one call at a time: usually on the goroutine that caused
	// the transition, but if another goroutine is still delivering earlier
	// events, that goroutine delivers this one too, after them.
	OnEvent func(Event)

	// Logger, if set, receives one record per transition, with no lock
	// held: Warn when the rollout rolls back or pauses, Info otherwise,
	// with the name, both states, the stage, the percent, the reason and
	// the verdict's outcome and rule; and an Error record when Start
	// finds the stored state unusable and the rollout fails safe. Nil
	// means no logging.
	Logger *slog.Logger

	// MeterProvider, if set, gets the rollout's stage percent, state,
	// verdicts and the staleness of the fleet's evidence (see Evidence)
	// as OpenTelemetry instruments (see METRICS.md at the root
	// of the module), created by New; Variant and Observe add nothing.
	// The rollout stays registered with the provider as long as the
	// provider lives. Nil means no instruments.
	MeterProvider metric.MeterProvider

	// Store keeps the rollout's state across restarts. Nil keeps it in
	// memory only.
	Store Store

	// Interval is the period of Run's evaluations. Zero means
	// DefaultInterval (1s).
	Interval time.Duration

	// Checkpoint is the longest time Evaluate lets pass between saves of
	// the bake progress to Store; a restart may lose at most this much
	// bake time (the stage then bakes longer, never shorter). Transitions
	// are saved at once. Zero means DefaultCheckpoint (10s).
	Checkpoint time.Duration

	// Evidence, if set, is called by Evaluate, with no lock held, with
	// this process's evidence of the current stage, and returns the
	// evidence to judge instead: typically the sum, by Evidence.Merge, of
	// every process's latest evidence from a shared store. The result
	// must be evidence of the same rollout and stage. When it fails, or
	// returns evidence that is unusable, Evaluate judges the local
	// evidence alone, acts only on a regression (never advances), and
	// reports the error, wrapping ErrEvidence, with the time since when it
	// has failed, in Status and Err.
	Evidence func(ctx context.Context, local Evidence) (Evidence, error)

	// Traffic, if set, is the traffic the rollout expects; New then
	// refuses a plan whose stages cannot gather their MinSamples canary
	// calls before their deadlines at that traffic (see CheckTraffic).
	Traffic Traffic

	// ShadowTimeout bounds each shadow call of the canary (see Do). Zero
	// means DefaultShadowTimeout (10s).
	ShadowTimeout time.Duration

	// ShadowConcurrency bounds the shadow calls of the canary in flight
	// at once; a shadow call that would exceed it is skipped and not
	// counted. Zero means DefaultShadowConcurrency (64).
	ShadowConcurrency int
}

// ErrPlan is wrapped by every error New returns for an invalid Plan.
var ErrPlan = errors.New("rollout: invalid plan")

// stage is a validated Stage.
type stage struct {
	Stage
	ppm uint32 // Percent in parts per million
}

// plan is a validated Plan with defaults applied.
type plan struct {
	Plan
	stages []stage
	hash   hasher
	// worseGrid and fewerGrid are the relative risks the mixtures of the
	// "canary worse" and "canary reports fewer calls" tests average over.
	worseGrid, fewerGrid [gridPoints]float64
	shadowSlots          chan struct{} // one token per shadow call in flight
}

func planError(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{ErrPlan}, args...)...)
}

// percentPPM converts a percent to parts per million, exactly. It refuses
// a percent too small to hold one part per million.
func percentPPM(p float64) (uint32, bool) {
	if math.IsNaN(p) || p <= 0 || p > 100 {
		return 0, false
	}
	x := p * 10_000
	r := math.Round(x)
	if r < 1 || math.Abs(x-r) > 1e-6*math.Max(1, x) {
		return 0, false
	}
	return uint32(r), true
}

func compile(p Plan) (*plan, error) {
	if p.Name == "" {
		p.Name = DefaultName
	}
	if p.Salt == "" {
		p.Salt = p.Name
	}
	if p.Bucketing > BucketingUnleash {
		return nil, planError("Plan.Bucketing %d is unknown", p.Bucketing)
	}
	if p.OnInconclusive > RollBackOnInconclusive {
		return nil, planError("Plan.OnInconclusive %d is unknown", p.OnInconclusive)
	}
	if len(p.Stages) == 0 {
		for _, s := range DefaultStages() {
			if p.Bucketing != BucketingUnleash || s.Percent == math.Trunc(s.Percent) {
				p.Stages = append(p.Stages, s)
			}
		}
	}
	if p.Interval < 0 {
		return nil, planError("Plan.Interval must not be negative, got %v", p.Interval)
	}
	if p.Interval == 0 {
		p.Interval = DefaultInterval
	}
	if p.Checkpoint < 0 {
		return nil, planError("Plan.Checkpoint must not be negative, got %v", p.Checkpoint)
	}
	if p.Checkpoint == 0 {
		p.Checkpoint = DefaultCheckpoint
	}
	j, err := p.Judge.withDefaults()
	if err != nil {
		return nil, err
	}
	p.Judge = j
	if p.ShadowTimeout < 0 {
		return nil, planError("Plan.ShadowTimeout must not be negative, got %v", p.ShadowTimeout)
	}
	if p.ShadowTimeout == 0 {
		p.ShadowTimeout = DefaultShadowTimeout
	}
	if p.ShadowConcurrency < 0 {
		return nil, planError("Plan.ShadowConcurrency must not be negative, got %d", p.ShadowConcurrency)
	}
	if p.ShadowConcurrency == 0 {
		p.ShadowConcurrency = DefaultShadowConcurrency
	}
	out := &plan{Plan: p, hash: newHasher(p.Salt), shadowSlots: make(chan struct{}, p.ShadowConcurrency)}
	out.worseGrid = riskGrid(1+j.MinRegression, max(maxRelativeRisk, 2*(1+j.MinRegression)))
	out.fewerGrid = riskGrid(1/maxRelativeRisk, j.SilenceRatio)
	var prev uint32
	for i, s := range p.Stages {
		ppm, ok := percentPPM(s.Percent)
		if !ok {
			return nil, planError("Plan.Stages[%d].Percent must be in (0, 100] in steps of 0.0001, got %v", i, s.Percent)
		}
		if p.Bucketing == BucketingUnleash && ppm%10_000 != 0 {
			return nil, planError("Plan.Stages[%d].Percent must be a whole number with BucketingUnleash, got %v", i, s.Percent)
		}
		if ppm <= prev {
			return nil, planError("Plan.Stages[%d].Percent must be above the previous stage's %v, got %v", i, float64(prev)/10_000, s.Percent)
		}
		prev = ppm
		if s.Bake < 0 {
			return nil, planError("Plan.Stages[%d].Bake must not be negative, got %v", i, s.Bake)
		}
		if s.MinSamples < 0 {
			return nil, planError("Plan.Stages[%d].MinSamples must not be negative, got %d", i, s.MinSamples)
		}
		if s.MinSamples == 0 {
			s.MinSamples = DefaultMinSamples
		}
		if s.Deadline < 0 {
			return nil, planError("Plan.Stages[%d].Deadline must not be negative, got %v", i, s.Deadline)
		}
		if s.Deadline == 0 {
			if s.Bake > maxDefaultDeadlineBake {
				return nil, planError("Plan.Stages[%d].Bake %v is too long for the default Deadline of four times Bake; at most %v, or set Deadline", i, s.Bake, maxDefaultDeadlineBake)
			}
			s.Deadline = max(4*s.Bake, DefaultMinDeadline)
		}
		if s.Deadline < s.Bake {
			return nil, planError("Plan.Stages[%d].Deadline %v must not be below its Bake %v", i, s.Deadline, s.Bake)
		}
		out.stages = append(out.stages, stage{Stage: s, ppm: ppm})
	}
	if prev != Buckets {
		return nil, planError("Plan.Stages[%d].Percent must be 100 for the last stage, got %v", len(p.Stages)-1, float64(prev)/10_000)
	}
	out.Stages = nil // the compiled stages are the truth
	if p.Traffic != (Traffic{}) {
		if err := out.checkTraffic(p.Traffic); err != nil {
			return nil, err
		}
	}
	return out, nil
}

func (j Judge) withDefaults() (Judge, error) {
	if j.Alpha == 0 {
		j.Alpha = DefaultAlpha
	}
	if !(j.Alpha > 0 && j.Alpha <= 0.5) {
		return j, planError("Plan.Judge.Alpha must be in (0, 0.5], got %v", j.Alpha)
	}
	if j.MinRegression == 0 {
		j.MinRegression = DefaultMinRegression
	}
	if !(j.MinRegression > 0) || math.IsInf(j.MinRegression, 0) {
		return j, planError("Plan.Judge.MinRegression must be positive, got %v", j.MinRegression)
	}
	if j.MaxErrorRate == 0 {
		j.MaxErrorRate = DefaultMaxErrorRate
	}
	if !(j.MaxErrorRate > 0 && j.MaxErrorRate <= 1) {
		return j, planError("Plan.Judge.MaxErrorRate must be in (0, 1], got %v", j.MaxErrorRate)
	}
	if j.MaxP99 < 0 {
		return j, planError("Plan.Judge.MaxP99 must not be negative, got %v", j.MaxP99)
	}
	if j.LatencyQuantile == 0 {
		j.LatencyQuantile = DefaultLatencyQuantile
	}
	if !(j.LatencyQuantile > 0 && j.LatencyQuantile < 1) {
		return j, planError("Plan.Judge.LatencyQuantile must be in (0, 1), got %v", j.LatencyQuantile)
	}
	if j.LatencyThreshold < 0 {
		return j, planError("Plan.Judge.LatencyThreshold must not be negative, got %v", j.LatencyThreshold)
	}
	if j.LatencyMinBaseline < 0 {
		return j, planError("Plan.Judge.LatencyMinBaseline must not be negative, got %d", j.LatencyMinBaseline)
	}
	if j.LatencyMinBaseline == 0 {
		j.LatencyMinBaseline = DefaultLatencyMinBaseline
	}
	if j.GuardrailMinSamples < 0 {
		return j, planError("Plan.Judge.GuardrailMinSamples must not be negative, got %d", j.GuardrailMinSamples)
	}
	if j.GuardrailMinSamples == 0 {
		j.GuardrailMinSamples = DefaultGuardrailMinSamples
	}
	if j.SilenceRatio == 0 {
		j.SilenceRatio = DefaultSilenceRatio
	}
	if !(j.SilenceRatio > 0 && j.SilenceRatio < 1) {
		return j, planError("Plan.Judge.SilenceRatio must be in (0, 1), got %v", j.SilenceRatio)
	}
	return j, nil
}

// maxDefaultDeadlineBake is the longest Bake whose default Deadline, four
// times Bake, fits in a time.Duration.
const maxDefaultDeadlineBake = time.Duration(math.MaxInt64 / 4)

// maxGeometricRings bounds the schedules Geometric makes.
const maxGeometricRings = 64

// Geometric returns a ring schedule that starts at start percent and
// multiplies the percent by factor at each ring, each ring baking for bake,
// until a last ring at 100% (which bakes too). Percents are rounded down to
// the 0.0001% resolution of a Stage. For example Geometric(0.01, 10,
// time.Hour) gives 0.01%, 0.1%, 1%, 10% and 100%.
//
// It returns an error wrapping ErrPlan when start is not in (0, 100],
// factor is not above 1, or bake is negative, and when the schedule would
// need more than 64 rings to reach 100% (a factor too close to 1). It also
// refuses a bake above about 64 years, whose default Stage.Deadline (four
// times Bake) would not fit in a time.Duration.
func Geometric(start, factor float64, bake time.Duration) ([]Stage, error) {
	ppm, ok := percentPPM(start)
	if !ok {
		return nil, planError("Geometric start must be in (0, 100] in steps of 0.0001, got %v", start)
	}
	if !(factor > 1) || math.IsInf(factor, 0) {
		return nil, planError("Geometric factor must be above 1, got %v", factor)
	}
	if bake < 0 {
		return nil, planError("Geometric bake must not be negative, got %v", bake)
	}
	if bake > maxDefaultDeadlineBake {
		return nil, planError("Geometric bake %v is too long: the stages' default Deadline, four times the bake, would overflow; at most %v", bake, maxDefaultDeadlineBake)
	}
	// A factor barely above 1 would take billions of steps to reach 100%;
	// refuse schedules longer than any rollout needs.
	if rings := math.Log(float64(Buckets)/float64(ppm)) / math.Log(factor); rings > maxGeometricRings {
		return nil, planError("Geometric factor %v from %v%% needs %.0f rings to reach 100%%, more than %d", factor, start, math.Ceil(rings), maxGeometricRings)
	}
	var out []Stage
	x := float64(ppm)
	last := uint32(0)
	for {
		p := uint32(min(math.Floor(x+1e-9), Buckets))
		if p > last {
			out = append(out, Stage{Percent: float64(p) / 10_000, Bake: bake})
			last = p
		}
		if p >= Buckets {
			return out, nil
		}
		x *= factor
	}
}
