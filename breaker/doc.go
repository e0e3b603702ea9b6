// Package breaker stops calling a dependency while it is failing, and
// finds out when to call it again.
//
// A [Breaker] wraps calls to one dependency (a cloud API, a database, a
// region). While calls succeed it lets them through and counts them; once
// too many fail it trips and rejects calls at once, so the caller can fall
// back instead of waiting on timeouts and piling load on a struggling
// service. After a wait it lets a few probe calls through, and closes again
// when they succeed.
//
//	b, err := breaker.New(breaker.Settings{Name: "payments"})
//	if err != nil {
//		return err
//	}
//	receipt, err := breaker.Do(ctx, b, func(ctx context.Context) (*Receipt, error) {
//		return client.Charge(ctx, order)
//	})
//	if errors.Is(err, breaker.ErrOpen) {
//		// Not called: serve a fallback, or retry after err's RetryAfter().
//	}
//
// One breaker guards calls of any result type: [Do] is a generic function,
// so the breaker itself is not.
//
// # States
//
// A breaker is in one of five [State]s:
//
//   - Closed: calls go through and their outcomes are counted.
//   - Open: calls are rejected with an [*OpenError] until the open wait
//     has passed; then the breaker moves to HalfOpen.
//   - HalfOpen: up to Settings.HalfOpenRequests probe calls go through and
//     the rest are rejected. If all probes succeed the breaker closes; if
//     one fails it opens again, for a longer wait. A probe that has not
//     finished Settings.HalfOpenTimeout (default 60s) after the round's
//     first probe went counts as failed, so a hung probe cannot hold the
//     breaker half-open.
//   - ForcedOpen and ForcedClosed: set by an operator, see below.
//
// # When the breaker trips
//
// In the Closed state a breaker trips on whichever comes first:
//
//   - Settings.ConsecutiveFailures failures in a row (default 5) within
//     the window; a success resets the run, and failures that have left
//     the window no longer count towards it.
//   - A failure ratio of at least Settings.FailureRatio (default 0.5) over
//     the rolling Settings.Window (default 60s), once the window holds at
//     least Settings.MinRequests calls (default 20).
//
// The window is cut into 10 buckets, so it covers between 0.9 and 1.0
// times Window of history. A call counts as a failure when fn returns an
// error (Settings.IsFailure may excuse some), when it panics, or when it
// took at least Settings.SlowCall. A call whose error is context.Canceled,
// or whose caller canceled its context, is not counted at all, unless
// Settings.CountCanceled is set: the caller gave up, not the dependency.
// context.DeadlineExceeded is a failure. A call whose context is already
// done when [Do] is called is neither made nor counted.
//
// # The open wait
//
// The first open wait is Settings.OpenTimeout (default 30s). Each failed
// probe round doubles it, up to Settings.MaxOpenTimeout (default ten times
// OpenTimeout), and it returns to OpenTimeout once the breaker closes.
// Every wait is shortened by a random jitter of up to 20%, so that many
// clients that tripped on the same outage do not all probe at the same
// moment. While Open, each rejection carries the same [*OpenError], whose
// RetryAfter method says how long until the next probe may go.
//
// # Recovery ramp
//
// A service that has just recovered can fall over again if every client
// sends it full traffic at once. With Settings.Ramp set, a breaker that
// closes after probing admits a share of calls that rises linearly from
// 10% to 100% over the ramp. Admission is deterministic: each call adds its
// share to a credit, and a call goes through when the credit passes a
// whole unit, so over any stretch of the ramp the calls admitted are
// within one of the summed shares. Calls held back get an [*OpenError] in
// the Closed state. [Snapshot].Ramping reports a ramp in progress.
//
// # Operator control
//
// During an incident an operator can override the breaker:
// [Breaker.ForceOpen] rejects every call (so fallbacks take over),
// [Breaker.ForceClose] lets every call through while still counting, and
// [Breaker.Release] returns to automatic control in a fresh Closed state.
// The reasons given reach Settings.OnChange and the log, and show in
// [Breaker.Snapshot].
//
// # Callbacks and logs
//
// Settings.OnChange receives each change as a [Change] with its states,
// reason and time, and Settings.Logger, if set, logs each change with its
// reason (Warn when the breaker opens). Neither is ever called while the
// breaker holds a lock, so a callback may read or even call through the
// breaker. Changes are
// delivered one at a time, in order, on the goroutine of the call that
// caused them or of one already delivering earlier changes; a call that
// causes a change may therefore return before its callback has run. The
// move from Open to HalfOpen, which no call causes, is delivered on the
// goroutine of the breaker's timer (see [time.AfterFunc]).
//
// # Two-step use
//
// Calls that cannot be wrapped in one function — a stream, a gRPC
// interceptor, a request whose outcome is known only when its body has
// been read — use [Breaker.Allow] and [Permit.Done] instead of [Do]:
//
//	p, err := b.Allow(ctx)
//	if err != nil {
//		return err // rejected, or ctx is done
//	}
//	err = stream.Run(ctx)
//	p.Done(ctx, err)
//
// Allow admits and rejects exactly as Do does, and Done counts the
// outcome as Do counts fn's, at the same cost and with no allocation in
// the Closed and Open states. Call Done exactly once. A Permit never done
// is not counted; if it was a probe, the half-open deadline
// (Settings.HalfOpenTimeout) takes its slot back by counting it as failed.
//
// # Groups
//
// A [Group] holds one breaker per key (per host, region or tenant), all
// configured alike, created on first use by [Group.Get] and named
// "Name/key". It is bounded by GroupOptions.MaxKeys: at the bound, idle
// breakers (Closed, no call in flight, nothing counted within the window)
// are evicted to make room, and a breaker that is open, half-open, forced,
// counting or waiting for an outcome never is. If nothing can be evicted,
// new keys share one overflow breaker named "Name/*" until room frees up;
// the group looks for idle breakers again at most once per bucket period
// (a tenth of the Window), and routing a key to the overflow breaker takes
// no lock. [Group.Snapshots] lists every breaker with its counts.
//
// # HTTP
//
// [Transport] wraps an http.RoundTripper, so the *http.Client handed to a
// cloud SDK gets a breaker per host:
//
//	g, _ := breaker.NewGroup(breaker.Settings{Name: "s3"}, breaker.GroupOptions{})
//	client := &http.Client{Transport: breaker.Transport(http.DefaultTransport, g, breaker.TransportOptions{})}
//
// Transport errors, 5xx and 429 count as failures; other statuses,
// including 404 and the other 4xx, count as successes, since the
// dependency answered. Responses are returned untouched, bodies unread. A
// rejected request returns an error matching [ErrOpen] without touching
// the network.
//
// # Errors
//
// Rejections match [ErrOpen] with errors.Is, and errors.As finds the
// [*OpenError] with the breaker's name, state, and RetryAfter. The error of
// a call that went through is returned as fn returned it. [New] and
// [NewGroup] return errors matching [ErrInvalidSettings] that name the
// offending field.
//
// # How it is built, and what it costs
//
// The state machine is gobreaker's (github.com/sony/gobreaker/v2): it
// decides the half-open admission and every transition out of Closed and
// HalfOpen. But the two paths almost every call takes never reach it. A
// success in the Closed state is one atomic load of the breaker's state
// word and one atomic add to a rolling window of striped counters; it
// reads no clock (unless SlowCall is set), takes no lock and allocates
// nothing. A rejection in the Open state is two atomic loads: the state
// word and the open period's [*OpenError]. Failures, probes and state
// changes go through gobreaker, under the breaker's mutex. The Open state
// is ours too: gobreaker's own Timeout is a nanosecond, and a timer ends
// our (doubling, jittered) open wait by moving the breaker to HalfOpen,
// after which gobreaker is asked about each probe.
//
// # Timers and goroutines
//
// A breaker starts no goroutine of its own and needs no Close. It arms
// timers while it needs them: the window's bucket timer runs while the
// window holds counts (so up to Window after the last call) and then
// stops, each open wait has one timer, and so does each half-open
// deadline. A Group arms one timer after each scan for idle breakers. Their callbacks run briefly on
// goroutines of their own. A breaker that is no longer used is garbage once
// those timers have run out.
//
// In tests, run anything that involves time inside a testing/synctest
// bubble: open waits, windows and ramps then follow the bubble's fake
// clock, and a test that leaves counts behind still ends, the bucket timer
// running out instantly on the fake clock.
//
// All types in this package are safe for concurrent use.
package breaker
