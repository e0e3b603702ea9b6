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
// Plan.Store set to the [RolloutStore] Campaign returns (compare-and-swap
// on the record's revision, fenced by the leadership: a deposed leader's
// Save is refused with [ErrDeposed]) and Plan.Evidence set to
// [FleetEvidence.Merge], so Evaluate judges the fleet's sum. When etcd
// cannot be read, Merge fails and the core judges local evidence only,
// never advancing. The other instances follow with [RolloutFollower],
// which keeps a local rollout at the record's state and stage (each ring,
// the rollback, the promotion) and fails safe to the baseline once its
// view is older than Settings.StaleAfter.
//
// # When etcd is unreachable
//
// Every object keeps acting on its last known state: switches keep their
// mode and breakers their forced state. Freshness reports whether the view
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
