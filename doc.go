// Package ringfence keeps client code working when the cloud services it
// depends on fail, and keeps the client's own updates from taking a whole
// fleet down at once.
//
// This package holds no code; it is the overview. The work is done by five
// packages, each one idea, which compose through plain functions and small
// interfaces:
//
//   - [github.com/ringfence/ringfence/breaker]: circuit breakers. Stop
//     calling a dependency that is failing, probe it carefully, let an
//     operator force it open or closed, ramp traffic back up after recovery.
//   - [github.com/ringfence/ringfence/retry]: retries with jittered
//     exponential backoff that honour Retry-After, never sleep past a
//     deadline, and stay inside a retry budget so that a fleet of clients
//     does not multiply the load on a service that is already struggling.
//   - [github.com/ringfence/ringfence/fallback]: what to do instead.
//     Fallback chains (alternate, last-known-good, static, manual), an
//     operator's manual-mode switch that survives restarts, and a durable
//     outbox that accepts writes during an outage and replays them, in
//     order and without loss, once the service is back.
//   - [github.com/ringfence/ringfence/rollout]: staged canary rollouts of
//     code paths, configuration or content. A change reaches a small ring
//     first, is judged against the baseline with a sequential test that
//     stays valid under continuous monitoring, and is promoted or rolled
//     back automatically.
//   - [github.com/ringfence/ringfence/chaos]: fault injection for tests, so
//     that the wiring above is proven before a real outage proves it.
//
// # Why
//
// In July 2024 a routine content update was shipped to every machine at
// once. It crashed them, and cloud-dependent services across airlines,
// banks, hospitals and retailers went down together; recovery took days.
// The lessons are old ones: stage every update, test the failure paths,
// degrade gracefully, recover quickly. Each package turns one of them into
// library code.
//
// # How a call flows
//
// A call that uses everything passes through the layers from the outside in:
//
//	caller
//	  └─ rollout.Do(key)            picks baseline or canary, records the outcome
//	       └─ fallback chain        Auto: primary first; Manual: skip to fallbacks
//	            ├─ primary: retry.Do → breaker.Do → the cloud SDK call
//	            ├─ alternate / last-known-good / static / manual procedure
//	            └─ deferred write → outbox (durable) → replay when the service is back
//
// Retries sit outside the breaker: every attempt passes through it and is
// counted, and an open breaker's rejection carries a RetryAfter that tells
// the retry loop whether waiting is worthwhile. A value comes back with its
// fallback.Source, so a user interface can say "offline copy from 12
// minutes ago" or "accepted; will sync".
//
// For HTTP, the same layers are http.RoundTripper wrappers, stacked on the
// *http.Client that cloud SDKs accept in their options:
//
//	client := &http.Client{Transport: retry.Transport(
//		breaker.Transport(http.DefaultTransport, group, breaker.TransportOptions{}),
//		retry.Policy{Budget: budget},
//	)}
//
// In tests, chaos.Transport takes the place of the network, innermost, so
// that the faults it injects meet the retries and the breakers exactly as
// real ones would:
//
//	retry.Transport → breaker.Transport → chaos.Transport → http.DefaultTransport
//
// # Using ringfence with cloud SDKs
//
// Hand the SDK the *http.Client built above, and follow five rules (the
// README's guide has the SDK code, and Example_cloudSDKClient runs the
// stack against an offline object store):
//
//   - One retry layer only. Retries stacked on the SDK's own multiply the
//     load on a failing service (three by three is nine requests per call),
//     so turn the SDK's off: Azure with azcore.ClientOptions{Retry:
//     policy.RetryOptions{MaxRetries: -1}}, Google Cloud Storage with
//     client.SetRetry(storage.WithPolicy(storage.RetryNever)) (and
//     storage.WithJSONReads(), so that reads too have the /b/{bucket}/ path
//     a breaker key can parse), AWS with config.WithRetryer(func()
//     aws.Retryer { return aws.NopRetryer{} }). Or keep the SDK's and drop
//     retry.Transport, keeping breaker.Transport beneath the SDK.
//   - Authentication goes beneath ringfence's transports:
//     retry.Transport → breaker.Transport → the authenticating transport →
//     the network, so that every attempt, however long after the first, is
//     authorized afresh.
//   - One breaker per bucket or account, through
//     breaker.TransportOptions.Key: the default key, the URL's host, is one
//     per Azure storage account, but a single one shared by every Cloud
//     Storage bucket.
//   - A POST upload is retried only with an Idempotency-Key (or
//     X-Idempotency-Key) header; without one it is sent once. Durable writes
//     go through a fallback.Deferred step, whose outbox item carries the key.
//   - Tell fallback chains which SDK errors mean "unavailable": the
//     default, fallback.Unavailable, never falls back on a 4xx other than
//     408 and 429 carried by a *retry.StatusError or an error with an
//     HTTPStatusCode() int method (as the AWS SDK's have); errors that keep
//     the status in a field (Azure's *azcore.ResponseError StatusCode,
//     Google's *googleapi.Error Code) plug in through
//     fallback.ChainSettings.ShouldFallback and fallback.UnavailableStatus.
//
// Give each call a deadline: when the primary uses it up, a chain's local
// fallbacks still run, under a short time of the chain's own
// (fallback.ChainSettings.FallbackTimeout), and a write that timed out,
// whose outcome is unknown, is deferred to the outbox rather than lost or
// sent elsewhere.
//
// # Metrics and logs
//
// The breakers, retries, fallbacks, outboxes and rollouts report through
// the OpenTelemetry metric API (go.opentelemetry.io/otel/metric; the
// application chooses the SDK and exporter), each object taking a
// MeterProvider in its settings (retry.Policy takes a *retry.Metrics made
// once by retry.NewMetrics), and every package logs through log/slog when
// given a Logger. Nil, the default, means no instruments and no logging,
// for one nil check on the call path; with instruments a call adds to
// striped counters only. METRICS.md at the root of the module lists every
// instrument with its unit and attributes, and what each package logs at
// which level; examples/metrics serves them all in Prometheus format.
//
// # Operators and fleets
//
// The admin package is the operator's console: an http.Handler, mounted on
// the application's own mux, with a token-protected JSON API and an
// embedded page to see and act on every breaker, switch, outbox and
// rollout; cmd/ringfence speaks the same API from a terminal. Both act on
// this process's objects unless given a fleet backend.
//
// Integrations that pull heavy dependencies are modules of their own in
// this repository, so users of the core never download them:
//
//   - github.com/ringfence/ringfence/etcd keeps the fleet's shared state on
//     etcd: one manual-mode switch and one set of forced breaker intents
//     for every instance, fleet rollouts judged by one elected, fenced
//     evaluator on every instance's merged counts, and an admin backend
//     that makes the console act fleet-wide. Only intent and evidence
//     cross the network; hot paths read local state, and a stale view is
//     reported and fails safe.
//   - github.com/ringfence/ringfence/grpc has the client interceptors for
//     gRPC (breaker, retry with pushback, chaos), unary and stream.
//
// # Errors callers check
//
// Every rejection is a sentinel error matched with errors.Is; errors that
// carry data are matched with errors.As:
//
//   - breaker.ErrOpen: the breaker rejected the call without making it;
//     *breaker.OpenError says which breaker and, through RetryAfter, when
//     to try again.
//   - retry.ErrBudgetExhausted, retry.ErrThrottled: retrying stopped to
//     protect the dependency; *retry.Error reports the attempts made and
//     unwraps to the last attempt's error.
//   - fallback.ErrAllFailed: every step of a chain failed; the error joins
//     each step's error, so errors.Is finds every cause.
//   - fallback.ErrUnknownOutcome: a write may or may not have been applied,
//     and was not deferred.
//   - fallback.ErrCorrupt: the outbox's files failed their checksums.
//   - fallback.ErrDuplicate: the outbox already holds a different write
//     with the same key; the new one was not stored.
//   - fallback.ErrModeUnreadable: a switch could not read its stored mode
//     and started in its initial mode.
//   - rollout.ErrFailSafe: the stored rollout state could not be trusted,
//     so every key is served the baseline; it wraps the cause, such as
//     rollout.ErrCorruptState.
//   - rollout.ErrValidation: the pre-flight check of a rollout's content
//     failed, so the rollout ended rolled back having exposed no key.
//   - chaos.ErrInjected: the failure was injected by a test.
//
// Invalid settings are rejected by each constructor with an error that
// names the field (breaker.ErrInvalidSettings and its counterparts).
//
// # Guarantees
//
// Every type in every package is safe for concurrent use and says what its
// zero value does. No package keeps global state or starts goroutines from
// init; the few types that own a goroutine have a Close method. When
// ringfence itself cannot decide (its stored state is unreadable), it takes
// the conservative path: the baseline version, the fallback, the queued
// write, and it reports why.
package ringfence
