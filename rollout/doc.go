// Package rollout stages a change through rings of keys, judges the canary
// against the baseline, and promotes or rolls back on its own.
//
// A change shipped to every machine at once fails everywhere at once. This
// package lets a program expose a change (a new code path, a new
// configuration or content version, a new SDK or endpoint) to a small ring
// of its keys first (hosts, tenants, users, requests), watch that ring
// against the rest, and widen the ring only while the evidence says the
// change is healthy. A bad change then reaches a few keys, for minutes,
// instead of all of them.
//
// # Quick start
//
//	r, err := rollout.New(rollout.Plan{
//		Name:     "parser-v2",
//		Validate: func(ctx context.Context) error { return parserV2.Check(content) },
//		Store:    store, // from rollout.NewFileStore(path); nil keeps state in memory
//	})
//	if err != nil { ... }              // the plan is invalid; the error names the field
//	if err := r.Start(ctx); err != nil { ... }
//	go r.Run(ctx)                      // judges every second until promoted or rolled back
//
//	// On every call:
//	cfg, err := rollout.Do(ctx, r, hostID, parseV1, parseV2)
//
// # Plans and stages
//
// A [Plan] is a list of [Stage] values, each a percent of keys that gets
// the canary, how long it must bake, and how many canary observations it
// needs. Percents strictly increase and the last is 100; they are exact to
// 0.0001% (one key in a million), so a first ring of one host in ten
// thousand is Percent: 0.01. An empty list means [DefaultStages] (0.1%, 1%,
// 10%, 50%, 100%); [Geometric] generates a ring list from a start percent
// and a factor. [New] checks the plan and names the offending field of a
// bad one; every zero field means the default documented on it.
//
// # Lifecycle
//
// A rollout is [Pending] until [Rollout.Start], which first runs
// Plan.Validate. A failed validation ends the rollout [RolledBack] with the
// error as its reason, before any key is exposed. Otherwise the rollout is
// [Running] at its first stage. A stage advances when its bake time has
// passed, its minimum canary samples are in, and the judge finds no
// regression; the last stage ends [Promoted], with every key on the canary.
// A regression ends it RolledBack, with every key on the baseline.
// [Paused] holds the current exposure without baking or advancing; the
// judge still rolls back a paused rollout that regresses.
//
// Operators steer with [Rollout.Pause], [Rollout.Resume], [Rollout.Promote]
// (straight to 100%) and [Rollout.Abort] (straight to 0%). Every
// transition, automatic or manual, is an [Event] with its time, states,
// stage, reason and the judge's figures; [Rollout.History] lists them and
// Plan.OnEvent receives them in order, with no lock held. [Rollout.Status]
// shows the state, the exposure, the bake time left and the current
// verdict.
//
// [Rollout.Run] evaluates every Plan.Interval until the rollout ends or its
// context is done; [Rollout.Evaluate] performs one step, for tests and for
// programs with their own scheduler.
//
// # Validate with the runtime's own decoder
//
// Plan.Validate is the pre-flight check that stops a malformed change
// before it reaches a single key. Make it run the very code that will
// consume the change in production: the same parser, the same decoder, the
// same interpreter, on the same bytes. A separate validator, however
// careful, can disagree with the runtime about the shape of the content;
// that disagreement is how a content update passed validation and then
// crashed millions of machines in July 2024.
//
// # Assignment
//
// [Rollout.Variant] maps a key to [Baseline] or [Canary]. The mapping is
// deterministic across processes, machines and restarts, allocates nothing,
// spreads keys uniformly, and is monotone: a key in the canary at p% is in
// it at every higher percent, so widening a ring never moves a key back.
// Rollouts with different salts choose independent keys.
//
// The default bucketing hashes the message
//
//	M = uint32be(len(salt)) || salt || zero bytes up to a multiple of 8 || key
//
// (the length prefix makes every (salt, key) pair a distinct message) with
// a 64-bit hash built from the xxHash64 primes P1 = 0x9E3779B185EBCA87,
// P2 = 0xC2B2AE3D27D4EB4F, P3 = 0x165667B19E3779F9 and
// P4 = 0x85EBCA77C2B2AE63:
//
//	h = 0x636E656667696E72                      // "ringfenc", little-endian
//	for each 8-byte little-endian word w of M   // the last word zero-padded
//		k = rotl64(w*P2, 31) * P1
//		h = rotl64(h^k, 27)*P1 + P4
//	h ^= len(M)                                 // in bytes, before padding the key
//	h ^= h >> 33; h *= P2; h ^= h >> 29; h *= P3; h ^= h >> 32
//
// (all arithmetic modulo 2^64). The bucket is ((h >> 32) * 1,000,000) >> 32,
// in [0, 1,000,000), and the key is in the canary when its bucket is below
// percent × 10,000. Another language can reproduce the assignment from this
// description; the package's tests hold reference vectors.
//
// With Plan.Bucketing set to [BucketingUnleash] the assignment reproduces
// Unleash's gradual rollout instead: the bucket is MurmurHash3 (x86,
// 32-bit, seed 0) of the UTF-8 bytes of Salt + ":" + key, modulo 100, plus
// 1, and the key is in the canary when the bucket is at most the percent.
// With Salt set to the feature's groupId, a team moving from Unleash keeps
// the same cohort; percents are then whole numbers.
//
// # Health input
//
// [Do] assigns a key, runs the baseline or canary function, times it,
// records the outcome with its key and returns the result. With
// Plan.FallbackToBaseline a failed canary call is answered by the
// baseline, and the failure still counts against the canary.
//
// Programs that dispatch themselves call [Rollout.Variant] to assign and
// [Rollout.ObserveKey] after each call, with the same key. Observe every
// call of both variants, or sample both at the same rate. [Rollout.Observe]
// records a call without its key: the judge then treats it as a unit of
// its own, which is right only when every call is assigned on its own (the
// key is the request). Both are lock-free and allocate nothing.
//
// # The judge
//
// Each evaluation applies these rules to the current stage's evidence; the
// first that fires rolls back, and every [Verdict] carries the figures and
// thresholds behind it.
//
//   - Guardrails act at once, once the canary has Judge.GuardrailMinSamples
//     observations: its error rate above Judge.MaxErrorRate, or its
//     99th-percentile latency above Judge.MaxP99. They compare point
//     estimates with fixed bounds and are outside the Alpha bound.
//   - Silence: a crashed host reports nothing. With keys, the judge
//     compares the keys Variant assigned that never reported: among the
//     keys it follows (the canary's, and a baseline range up to 16
//     times as wide), each silent key is, if the canary's keys report as
//     reliably as the baseline's, a canary key with probability equal to
//     the canary's share of the followed assigned keys. The canary is
//     silent when the sequential test below rejects that and at least
//     1-Judge.SilenceRatio of its assigned keys are silent. Keys are
//     followed in a sketch of 4,096 slots per variant, so a small ring is
//     never silent for being small. Without keys (no Variant calls in the
//     stage), the canary's share of the unkeyed calls is tested against its
//     share of keys instead.
//   - The error-rate test: conditional on the number of errors, each
//     error is a canary error with probability π = canary calls / all
//     calls if the canary is no worse than the baseline. The judge
//     computes the likelihood ratio of the canary's errors against that,
//     averaged over eight alternatives in which the canary's rate is 1 +
//     Judge.MinRegression up to 32 times the baseline's. It rolls back
//     when that mixture reaches its threshold and the observed increase is
//     at least MinRegression. The counts are exact binomial counts, not a
//     normal approximation, so one failed call on a new ring (a ratio of
//     at most about 11, against a threshold of 40 at the default Alpha)
//     never ends a rollout.
//   - The latency test is the same test on slow calls: a call is slow
//     when it is above the baseline's Judge.LatencyQuantile (99th
//     percentile), learnt once the baseline has Judge.LatencyMinBaseline
//     observations, over the current stage and the earlier ones (the
//     baseline is not thrown away when the stage changes), or above
//     Judge.LatencyThreshold. It judges the calls made after the threshold
//     is set, once the canary has GuardrailMinSamples of them.
//
// Missing evidence is never success: a stage that cannot gather its minimum
// canary samples within its Deadline is [Inconclusive], and the rollout
// pauses (the default) or rolls back, as Plan.OnInconclusive says. A ring
// that holds no key at all pauses with [RuleEmptyRing]. [CheckTraffic]
// says, from an expected traffic, whether each stage can gather its
// samples in time and which first ring can; with Plan.Traffic set, New
// refuses a plan that cannot. The default plan needs about 23 calls per
// second, or about 63 over 10,000 hosts as keys (see [DefaultStages]).
//
// # What the bound promises
//
// The unit of randomisation is the key: Variant puts a key in the canary
// by a hash of the key, independently of how the key behaves. A key's
// calls land in one of 32 key-hash buckets (the hash's low bits, which the
// assignment does not use), so each bucket holds whole keys of each
// variant.
//
// For independent calls (request-level traffic, or keys whose calls do
// not resemble each other), each test's ratio is, under "the canary is no
// worse", a nonnegative supermartingale in the order the events arrive: a
// mixture of likelihood ratios of a Bernoulli whose probability is at most
// π. A stage's ratio starts at 1 on the stage's own calls, and the ratio at
// the end of a healthy stage multiplies into the next stage's, so the
// product over the rollout is a supermartingale too, and evidence that a
// canary is a little worse at every ring adds up. By Ville's inequality the
// chance that it ever reaches 1/a is at most a, however often it is looked
// at: one Evaluate a second or one a day. Judge.Alpha is split half to the
// error-rate test, a quarter to the latency test and an eighth to each
// silence test (thresholds 40, 80 and 160 at the default 0.05), so that by
// the union bound a rollout whose canary is no worse is rolled back by
// these tests with probability at most Alpha.
//
// When calls are clustered by key (the calls of one host share that
// host's error rate), the count of canary errors varies more than a
// binomial: by a factor that grows with the calls per key and the spread
// of rates between keys. The judge measures that factor from the spread of
// rates between the key-hash buckets of each variant (Pearson's chi-square
// over its degrees of freedom, raised by one standard error and never
// below 1, shown as Verdict.Dispersion) and divides the counts by it
// before testing, so that the evidence a few keys can give is bounded by
// their number. This correction is a quasi-likelihood one, not an exact
// martingale: its level is the one the package's simulations measure (see
// rollout/JUDGE.md in the repository: every A/A setting, with 1,000 or
// 10,000 hosts and identical or Beta-spread rates, within Alpha).
//
// What it does not promise: it does not bound roll backs by the guardrails;
// it assumes the canary's share of calls stays steady within a stage (a
// canary whose traffic share swings widely within a stage weakens the
// exactness of π); it needs keys observed through ObserveKey or Do for the
// clustering correction and the keyed silence test (unkeyed observations
// of host traffic are judged as independent calls, which they are not);
// it treats keys as independent of each other (a shared incident that hits
// both variants alike cancels, one that hits only some keys' hosts may
// not); and a canary no worse on average but worse for a few keys is a
// canary no worse.
//
// # Fleets: mergeable evidence
//
// Each stage's counts are an [Evidence]: a fixed-size value (per-bucket
// calls, errors, judged and slow calls; a latency histogram; the key
// sketches) whose sum over processes is the evidence of the fleet.
// [Rollout.Evidence] snapshots this process's; [Evidence.Merge] adds
// another's, refusing evidence of another rollout, stage or latency
// threshold; its JSON encoding is versioned and validated when decoded.
// Plan.Evidence lets Evaluate judge merged evidence: a process publishes
// its Evidence, one evaluator sums the latest of each and judges the sum.
// When the merged evidence cannot be had, Evaluate judges the local
// evidence, rolls back on a regression, never advances, and reports the
// error with the time since when. Set Judge.LatencyThreshold for a fleet,
// so that every process counts slow calls against the same bound.
//
// # Shadow stages
//
// A stage with Shadow set is a dark launch: through [Do] or [DoCompare], a
// key assigned to the canary gets the baseline's result at once, and the
// canary runs detached on a goroutine of its own, with the caller's values
// but not its cancellation, bounded by Plan.ShadowTimeout and
// Plan.ShadowConcurrency, a panic recovered. The canary's errors, time-outs
// and results that differ from the baseline's (by DoCompare's equality
// function) count against it.
//
// # Persistence
//
// Plan.Store keeps the rollout's state across restarts behind the small
// [Store] interface (load, and save with compare-and-swap on a version), so
// a fleet-wide store can plug in later. [NewFileStore] keeps it in one file,
// written atomically with a checksum. Transitions are saved at once (one
// that would expose more keys is not made unless it is saved); bake
// progress is saved every Plan.Checkpoint. A restarted process calls Start
// as before and resumes at the same state, stage, counts and remaining
// bake time; time spent down does not count as bake time.
//
// A state that cannot be read, is damaged, or belongs to another plan makes
// the rollout fail safe: every key gets the baseline, Start, Evaluate, Run
// and the controls return an error wrapping [ErrFailSafe] and the cause,
// Status and Err report it, and the damaged state is left untouched.
// Nothing is reset silently; to start afresh, move the state aside.
//
// # Concurrency
//
// A [Rollout] is safe for concurrent use. Variant, Observe and ObserveKey
// touch only atomics; the other methods take one mutex, which is never held
// while OnEvent, Validate or Plan.Evidence runs.
package rollout
