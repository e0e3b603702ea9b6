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
// records the outcome and returns the result. With Plan.FallbackToBaseline
// a failed canary call is answered by the baseline, and the failure still
// counts against the canary.
//
// Programs that dispatch themselves call [Rollout.Observe] for each call.
// Observe every call of both variants, or sample both at the same rate:
// the judge expects the canary's share of observations to match its share
// of keys (see Silence below), which holds only if every key's calls are
// observed alike. Observe is lock-free and allocates nothing.
//
// # The judge
//
// Each evaluation applies these rules to the current stage's observations;
// the first that fires rolls back, and every [Verdict] carries the figures
// and thresholds behind it.
//
//   - Guardrails act at once, as soon as the canary has
//     Judge.GuardrailMinSamples observations: its error rate above
//     Judge.MaxErrorRate; its 99th-percentile latency above Judge.MaxP99, or
//     above Judge.P99Factor times the baseline's. Latencies are counted in
//     log-spaced buckets (four per power of two), so p99 is known to within
//     a quarter.
//   - Silence is failure. A crashed host reports nothing, so a canary that
//     reports markedly fewer observations than its share of keys predicts
//     is a regression: fewer than Judge.SilenceRatio of the expected count
//     and more than Judge.SilenceZ standard deviations below it, once
//     Judge.SilenceMinExpected canary observations are expected.
//   - The error-rate test compares the canary with the baseline with a
//     sequential test that stays valid however often it is evaluated: a
//     one-sided mixture sequential probability ratio test (mSPRT, as in
//     "always valid inference") on the log relative risk of error, with a
//     normal mixing distribution of standard deviation
//     ln(1+Judge.MinRegression). It rolls back when the mixture likelihood
//     ratio reaches 1/alpha and the canary's observed error rate is at
//     least (1+MinRegression) times the baseline's. By Ville's inequality
//     the chance that a canary no worse than its baseline is ever rolled
//     back by this test within a stage is at most alpha (up to the normal
//     approximation of the log relative risk; the package's simulations
//     measure well below it); Judge.Alpha is split evenly over the stages
//     that keep a baseline, so it bounds the whole rollout. A fixed-horizon test re-checked every second would not
//     have this property. At 100% no baseline remains, and only the
//     guardrails judge.
//
// Missing evidence is never success: a stage that cannot gather its minimum
// canary samples within its Deadline is [Inconclusive], and the rollout
// pauses (the default) or rolls back, as Plan.OnInconclusive says.
//
// # Shadow stages
//
// A stage with Shadow set is a dark launch: through [Do] or [DoCompare], a
// key assigned to the canary runs both functions at once and always gets
// the baseline's result. The canary's errors, and its results that differ
// from the baseline's (by DoCompare's equality function), count against it.
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
// A [Rollout] is safe for concurrent use. Variant and Observe touch only
// atomics; the other methods take one mutex, which is never held while
// OnEvent or Validate runs.
package rollout
