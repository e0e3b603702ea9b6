// Package fallback decides what to serve when a dependency is unavailable:
// an alternate, last-known-good data, a static default, a manual procedure,
// or, for writes, a durable promise to apply them later. It also holds the
// operator's switch that takes a dependency out of service during an
// incident, and the outbox that keeps deferred writes until they are
// delivered.
//
// A value always comes back with a [Source] that says where it came from,
// so the caller can tell the user "offline copy from 12 minutes ago" or
// "accepted; will sync".
//
// # Chains
//
// A [Chain] is built once per operation and run for every request. Req is
// the operation's input, Resp its result:
//
//	cache, _ := fallback.NewCache[string, Price](fallback.CacheSettings{MaxAge: time.Hour})
//	prices, err := fallback.NewChain("get price",
//		fallback.ChainSettings{Switch: sw, Breaker: br, Retry: &retry.Policy{}},
//		fallback.Primary("pricing", pricingAPI.Get),
//		fallback.Alternate("pricing-eu", pricingEU.Get),
//		fallback.Stale("last known", cache, func(sku string) string { return sku }),
//		fallback.Static[string]("list price", listPrice),
//	)
//	...
//	price, src, err := prices.Run(ctx, sku)
//
// [Chain.Run] calls the primary, guarded by ChainSettings.Retry outside and
// ChainSettings.Breaker inside (each retry passes through the breaker, and
// an open breaker ends the retries), and if it fails, each fallback step in
// the order given until one produces a value. The steps are:
//
//   - [Primary]: the dependency itself; its successful results feed the
//     chain's stale steps.
//   - [Alternate]: another copy of the dependency, such as a second region.
//   - [Stale]: last-known-good data from a [Cache].
//   - [Static]: a fixed default.
//   - [Manual]: a manual procedure standing in for the dependency.
//   - [Deferred]: for writes, a durable entry in an [Outbox].
//
// A Chain is immutable and safe for concurrent use. Run adds a few
// nanoseconds and no allocation to the steps' own cost, both when the
// primary answers and when a fallback does, which is every call during an
// outage (see the package benchmarks); only the error of a call that
// fails outright, and the fallbacks' own context once a deadline has
// passed, are built on the heap.
//
// # Sources
//
// Run returns a [Source] with the name and [Kind] of the step that produced
// the value, the age of stale data, and the [Mode] the call ran in.
// [Source.String] reads well in a log line; [Source.Fallback] reports
// whether anything but the primary answered.
//
// # When a chain falls back
//
// Only "the dependency is unavailable" should lead to a fallback, so a
// failed step leads to the next one unless:
//
//   - its error is wrapped with [NoFallback]: the request itself is wrong,
//     and a validation error must not be hidden behind stale data (the
//     retry policy does not retry it and the breaker counts it as a
//     success, since the dependency answered);
//   - ChainSettings.ShouldFallback, the chain's classifier, says the error
//     is not an outage. The default, [Unavailable], says so for an error
//     carrying an HTTP status of 4xx other than 408 and 429 (a
//     *retry.StatusError, or any error with an HTTPStatusCode() int
//     method, found through wrapping): a deleted blob's 404 is returned,
//     not served stale, and is neither retried nor counted by the breaker.
//     An SDK whose error keeps the status in a field plugs in with a
//     classifier of its own (see [UnavailableStatus]);
//   - the caller's own context was canceled: the caller has gone.
//
// Then Run returns at once. A passed deadline is different: a dependency's
// own context.Canceled or a deadline that passed still falls back, since
// serving stale data when the primary is too slow is the point. Once the
// caller's deadline has passed, the local steps (Stale, Static, Manual,
// Deferred) run under a context of the chain's own, which keeps the
// caller's values but not its deadline and is bounded by
// ChainSettings.FallbackTimeout (DefaultFallbackTimeout, 250ms, by
// default); Alternate steps, which call a remote copy, get no extra time.
//
// When every step fails, Run's error joins an error wrapping
// [ErrAllFailed] with each step's [*StepError] (which names the step and
// wraps its error), so errors.Is finds every cause:
//
//	if errors.Is(err, breaker.ErrOpen) { ... } // the primary's breaker was open
//
// # Modes: the operator's switch
//
// A [Switch] holds the mode of one dependency, and every chain given it in
// ChainSettings.Switch reads the mode at the start of each Run:
//
//   - [ModeAuto] calls the primary and falls back when it fails.
//   - [ModeManual] does not call the primary at all: every call goes
//     straight to the fallbacks, and the Source says so. It is the
//     operator's "go manual" during an incident, when the dependency must
//     not be called (it returns wrong data, or needs all its capacity to
//     recover).
//   - [ModePrimary] calls only the primary and never falls back, so its
//     errors surface; it is meant for diagnosis.
//
// [Switch.Set] changes the mode with an actor and a reason, keeps a bounded history of
// changes ([Switch.History]) and notifies SwitchSettings.OnChange once the
// change is in effect, outside any lock. [Switch.Mode] is one atomic load.
// A Mode marshals to and from the text "auto", "manual" and "primary", so
// it can come from flags (flag.TextVar), environment variables and config
// files; other text is an error wrapping [ErrUnknownMode].
//
// # Keeping the mode across restarts
//
// With SwitchSettings.Store set, [NewSwitch] starts in the stored mode,
// and Set saves every change before it takes effect; if the save fails,
// Set returns the error and the mode does not change, so the mode in
// effect is always the one a restart comes back to. A [ModeStore] holds
// one versioned record and saves with compare-and-swap; [FileModeStore]
// keeps it in a local file, written atomically and checksummed, and a
// fleet-wide store can implement the same interface; one that also
// implements [ModeWatcher] pushes other writers' changes to the Switch.
//
// If the store cannot be read, NewSwitch fails safe: it returns a usable
// Switch in SwitchSettings.Initial (ModeAuto by default: it calls the
// dependency while it works and protects the caller when it does not)
// together with an error wrapping [ErrModeUnreadable], and leaves the
// damaged record alone. The caller decides whether to start anyway.
//
// # Last-known-good data
//
// A [Cache] is a bounded store (least recently used keys are evicted past
// CacheSettings.MaxEntries) that remembers when each value was put. A
// [Stale] step serves from it only values no older than CacheSettings.MaxAge
// and reports their age in the Source. Every successful primary call of a
// chain with a stale step stores its result under the key the step derives
// from the request, so the cache fills itself while the dependency is up.
//
// # Deferred writes and the outbox
//
// An [Outbox] is a durable, ordered store-and-forward queue in a directory
// ([OpenOutbox]). A [Deferred] step turns a write into an [Item] (an
// idempotency key, a stream that scopes the ordering, and a payload) and
// enqueues it when the primary write fails or the switch is in manual
// mode; [Outbox.Enqueue] returns only once the item is on disk, and the
// chain returns a Source of kind [KindDeferred]: "accepted; will sync".
//
// While a stream still has items in the outbox, a chain with a deferred
// step queues new writes on that stream behind them instead of calling
// the primary, so no write overtakes an earlier one. (In ModePrimary,
// which never falls back, such a write fails with [ErrStreamPending].)
//
// A write that timed out has an unknown outcome: it may have reached the
// dependency and been applied. In a chain with a deferred step, a primary
// write any of whose attempts timed out, was canceled in flight or got
// 504 Gateway Timeout skips the steps before the deferred one and is
// deferred: its item carries the idempotency key, so the replay makes the
// outcome certain without applying it twice, and the Source says
// [KindDeferred]. ChainSettings.ReportUnknownOutcome opts out: Run then
// returns an error wrapping [ErrUnknownOutcome] instead. A different write
// under a key the outbox still holds is not stored, and the deferred step
// says so with an error wrapping [ErrDuplicate] rather than "accepted".
//
// To decide that, the step builds the item before the primary is called
// whenever the outbox holds anything, so the item function must not refuse
// a write merely because it could not be deferred: an error from it stops
// the chain for the online write too.
//
// [Outbox.Replay] delivers the items once the dependency is back: in order
// within each stream, removing each only after delivery succeeded (so at
// least once; the key lets the receiver apply it exactly once), pacing
// deliveries so a recovering service is not stampeded, and moving items
// that fail with [retry.Permanent] to dead letters ([Outbox.DeadLetters],
// [Outbox.Requeue]) rather than dropping them. When a delivery fails, only
// its stream is held back, with exponential backoff or the longer delay the
// error asks for (a breaker's RetryAfter, a server's Retry-After); other
// streams keep flowing. Deliver through the dependency's breaker: while it
// is open, its rejections wait out its RetryAfter and are not counted as
// delivery attempts.
//
// A full disk (ENOSPC, EDQUOT) is met in place, without a reopen. A
// write it refuses before anything of that write was synced is undone:
// the log file is cut back to the end of its last durable record, and
// what the write carried is handled by kind:
//
//   - New items: every Enqueue in that write returns an error wrapping
//     [ErrDiskFull] and stored nothing (its key is free, nothing of it is
//     acknowledged or replayed). Each later Enqueue tries a real write
//     again, so the outbox stores again as soon as there is room.
//   - A requeue: [Outbox.Requeue] returns ErrDiskFull and the dead letter
//     stays where it was.
//   - Delivery and dead-letter records: the delivery happened, so Replay
//     counts the item as settled and goes on; the record is owed, kept in
//     memory and written before any later record, so the log never holds
//     anything newer without it. [OutboxStats].Unrecorded counts the owed
//     records. If the process stops before they are written, their items
//     are delivered again after a reopen, as at-least-once allows; none
//     is lost.
//
// So Replay delivers on a full disk, and it gives space back as it goes:
// once every item of a segment is settled, the segment is deleted, which
// needs no free space (the log's floor is rewritten in place, then the
// file is unlinked), and the owed records of its items are no longer
// needed. A segment holding a dead letter is kept until the letter can be
// copied forward. OpenOutbox frees delivered segments the same way before
// it writes anything, and opens on a full disk after a crash in the
// middle of starting a new segment file (it removes the new, empty file
// instead of finishing the old one). Close reports owed records it could
// not write.
//
// Any other write failure, a failed fsync (whatever its error, since the
// kernel may have dropped the pages) and a file that cannot be cut back
// stop the outbox: every later write fails with that error until it is
// reopened, which reads back what is really on disk.
//
// # Errors
//
// Errors are checked with errors.Is:
//
//   - [ErrAllFailed]: every step of a chain failed.
//   - [ErrManualMode]: the primary was skipped because the switch is in
//     manual mode (found in a chain's joined error).
//   - [ErrStreamPending]: the primary was skipped because earlier writes on
//     the stream wait in the outbox.
//   - [ErrUnknownOutcome]: a write may or may not have been applied and
//     was not deferred.
//   - [ErrNotCached]: a stale step had no young enough value.
//   - [ErrUnknownMode]: text or a value that names no Mode.
//   - [ErrNoMode], [ErrModeConflict], [ErrModeCorrupt]: a ModeStore holds
//     no record, was changed concurrently, or holds a damaged record.
//   - [ErrModeUnreadable]: NewSwitch could not read its store and started
//     in SwitchSettings.Initial.
//   - [ErrCorrupt]: an outbox file failed its checksums, or a segment the
//     log needs is missing, swapped or cut short; the error names the file
//     and offset, and no data from it is returned.
//   - [ErrOutboxFormat]: the outbox files are in an older on-disk format.
//   - [ErrDuplicate]: Enqueue was given a different item under the key of
//     one the outbox holds.
//   - [ErrInUse]: another Outbox holds the directory.
//   - [ErrDiskFull]: the disk or quota was full; see above for what was
//     stored.
//   - [ErrClosed], [ErrReplayRunning], [ErrNoDeadLetter], [ErrInvalidItem]:
//     see [Outbox].
//
// Every type in the package is safe for concurrent use.
package fallback
