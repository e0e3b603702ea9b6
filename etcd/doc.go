// Package etcd keeps ringfence's fleet-wide state on etcd, so that one
// operator action reaches every instance of a service.
//
// What crosses the network is operator intent, never the call path:
// [ModeStore] shares a dependency's manual-mode switch (a
// fallback.ModeStore and fallback.ModeWatcher), and [BreakerControl]
// shares forced breaker states. A watch brings each change to every
// instance, which applies it to local atomics; Switch.Mode and
// breaker.Do never wait for etcd. Sliding windows and automatic trips stay
// local, so one bad instance cannot trip the fleet.
//
// # Rollouts
//
// A fleet rollout has one judge. Every instance publishes its mergeable
// per-stage counts with [FleetEvidence.Publish], under a key bound to its
// own lease, at most once per EvidenceSettings.Interval (1 s) and only
// when they changed; a dead instance's counts expire with its lease. The
// instances campaign with [Evaluator]; the leader runs the rollout with
// [Evaluator.JudgeRollout], given the [RolloutStore] Campaign returns
// (compare-and-swap on the record's revision, fenced by the leadership: a
// deposed leader's Save is refused with [ErrDeposed]) and the
// FleetEvidence, whose [FleetEvidence.Merge] becomes Plan.Evidence, so
// Evaluate judges the fleet's sum. When etcd cannot be read, Merge fails
// and the core judges local evidence only, never advancing.
//
// Every fleet rollout view has the same time to live, Settings.StaleAfter
// (3 s by default). The other instances follow with [RolloutFollower],
// which keeps a local rollout at the record's state and stage (each ring,
// the rollback, the promotion) and fails safe to the baseline once its
// view is older than that. The leader's [RolloutJudge] does the same: once
// the evaluator's view of the election or the evidence view is older than
// StaleAfter, RolloutJudge.Rollout gives every key the baseline, with a
// reason saying why and since when, while the judged rollout and the
// fleet's record stay as they were; when etcd answers again the judged
// rollout serves again. Operator controls (Pause, Resume, Promote, Abort)
// belong on the leader's RolloutJudge.Judged; on a follower's rollout they
// fail with [ErrFollower] and change nothing. From any instance, an
// operator steers the fleet's rollout through [Admin] with a
// [RolloutControl]: the intent is written to etcd, and the running judge
// applies it once (even across a change of leader), records the result
// for the console, and the followers follow the record.

// # When etcd is unreachable
//
// Every object keeps acting on its last known state: switches keep their
// mode, breakers their forced state, rollouts their stage until their
// time to live runs out. Freshness (on ModeStore, BreakerControl,
// RolloutFollower, Evaluator and FleetEvidence) reports whether the view
// is stale and since when, a line is logged (Settings.Logger) when it goes
// stale and when it is fresh again, and Settings.OnFreshness is called at
// both moments. When etcd answers again the objects read their keys anew
// and watch from there, with no restart; they do the same after a
// compaction overtakes their watch.
//
// The clientv3.Client is the caller's. Its gRPC reconnect backoff decides
// how soon an instance notices etcd's return; the default can grow to two
// minutes, so consider grpc.WithConnectParams with a MaxDelay of a second
// or so in clientv3.Config.DialOptions.
//
// # Bad data
//
// A record that is not this package's JSON, was written by another
// FormatVersion, or exceeds Settings.MaxRecordSize is reported with an
// error wrapping [ErrBadRecord] and logged, never trusted and never
// overwritten, as a damaged file is by the core's file stores.
package etcd
