// Package chaos injects faults into calls and HTTP requests, so that tests
// can prove that retries, circuit breakers and fallbacks work before a real
// outage does it for them.
//
// Faults are data. A [Faults] value says what happens to calls: how many
// fail and with which error, how many hang, how much latency is added. A
// schedule of [Phase] values places different faults on a timeline — healthy,
// then an outage, then a degraded service failing half of its calls, then
// healthy again. An [Injector], made by [New] from [Settings], applies them
// and counts what it did.
//
// # Injecting faults
//
// [Wrap] puts an injector in front of a function:
//
//	in, err := chaos.New(chaos.Settings{
//		Faults: chaos.Faults{ErrorRate: 0.3, Latency: 50 * time.Millisecond},
//	})
//	getSeats := chaos.Wrap(client.GetSeats, in)
//	seats, err := getSeats(ctx) // 30% fail with chaos.ErrInjected, all wait 50ms
//
// [Transport] puts one in front of an http.RoundTripper, so that every
// client built on it, including a cloud SDK's, meets the faults:
//
//	httpClient := &http.Client{Transport: chaos.Transport(http.DefaultTransport, in)}
//
// [Injector.Inject] serves everything else, such as the handler of a fake
// server built with net/http/httptest.
//
// # What a call meets
//
// For each call the injector picks the faults that apply at that moment
// (see Schedules) and draws one number, which gives the call one of three
// fates. With probability HangRate it hangs: it blocks until its context
// ends and returns the context's error, as when a dependency accepts a
// connection and never answers. With probability ErrorRate it fails, and
// otherwise it goes ahead; either way only after a wait of Latency plus a
// random part of Jitter. Hangs and waits honour the context: a call whose
// context ends returns the context's error without being forwarded.
//
// A failed call returns [Faults.Err], or [ErrInjected] by default; every
// made-up error matches ErrInjected through errors.Is, and a caller's own
// error keeps its identity and message. In Transport a failure is, by
// default, a connection-refused error (an *net.OpError wrapping
// syscall.ECONNREFUSED), and with [Faults.Status] set it is a response with
// that status, such as 503 Service Unavailable, with an optional
// Retry-After header. Made-up responses are complete: they carry the
// request, a small text body and its length. Requests that are not
// forwarded have their body closed, as an http.RoundTripper must.
//
// # Schedules
//
// Settings.Phases is a list of phases in order of Start, each an offset
// from Settings.Start (by default, the time New was called). A phase applies
// from its Start up to, not including, its end: Start + Duration, or, with
// a zero Duration, the next phase's Start, or for ever for the last one.
// Outside every phase, Settings.Faults apply. Phases must not overlap; New
// rejects a schedule out of order or overlapping, and any rate outside
// [0, 1], with an error wrapping [ErrInvalidSettings] that names the field.
//
// The time of a call is read with time.Now, so inside a testing/synctest
// bubble the whole timeline runs on the bubble's fake clock: a test sleeps
// to one nanosecond before a boundary, sees the old phase, sleeps one more
// nanosecond and sees the new one, without waiting at all.
// [Injector.Current] reports the phase that applies now.
//
// # Switching faults by hand
//
// A test that drives a story step by step — healthy, then "outage now",
// then "recovered now" — need not compute offsets on a timeline.
// [Injector.Set] makes its Faults apply to every call from then on, and
// [Injector.Clear] hands control back to the timeline:
//
//	in.Set(chaos.Faults{ErrorRate: 1})              // connection refused
//	in.Set(chaos.Faults{ErrorRate: 1, Status: 503}) // overloaded
//	in.Clear()                                      // Settings again
//
// Faults set by hand win: while they are set, neither Settings.Faults nor
// any phase applies, whatever the clock says, and Set(Faults{}) switches
// every fault off even during a scheduled outage. Clear returns to the
// phase (or Settings.Faults) that applies at that moment. Set and Clear
// are safe to call while calls run on other goroutines; a call meets the
// faults in force when it reaches the injector, read through one atomic
// load, so an injector nobody switches costs what it cost before.
//
// # Determinism
//
// Decisions come from a counter-based generator, not a shared random
// source: within each phase (and within the time outside all phases) the
// injector numbers the calls 0, 1, 2, … in the order they reach it, and the
// fate of call n — hang, fail or go ahead, and its jitter — is a fixed
// function of Settings.Seed, the phase and n. Therefore:
//
//   - Calls made one after another get the same decisions for the same seed
//     and the same timeline, run after run. The default seed, zero, is
//     deterministic too.
//   - Calls made concurrently may receive those decisions in another order,
//     since which goroutine gets number n depends on scheduling; but N calls
//     falling in one phase always draw the numbers 0 to N−1 of that phase,
//     so the numbers of hangs, failures and delays among them, and hence
//     [Stats], are the same as in a serial run.
//
// Faults set with Set count as a phase of their own that begins at the
// Set: the calls after Set(f) draw as the first calls of a new injector
// with Faults f and the same seed would. The timeline's own numbering
// pauses meanwhile and resumes after Clear.
//
// What is left to chance is only which calls fall in which phase when calls
// race a phase boundary, or a Set; under synctest the former is exact, and
// a test that calls Set between its calls makes the latter exact too.
//
// # Counting
//
// [Injector.Stats] returns how many calls the injector saw, how many it
// passed on, failed with an error or a made-up response, hung and delayed,
// and how many ended during a delay because their context did. Tests
// compare these with what the code under test reports, for example the
// number of calls a circuit breaker let through to a dead service.
//
// # Concurrency
//
// An Injector is safe for concurrent use; its counters are atomic and
// nothing in this package holds a lock. The functions returned by Wrap and
// the round tripper returned by Transport are safe for concurrent use if
// what they wrap is. Nothing in this package starts a goroutine.
package chaos
