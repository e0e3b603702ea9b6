// Package retry calls a failing dependency again, after a wait, without
// letting a fleet of clients turn a short failure into an outage.
//
// Retries are how one client survives a blip and how many clients turn a
// blip into an outage: when every client tries each call three times, a
// struggling service gets three times the load. This package makes retries
// safe by construction: waits back off exponentially with jitter, never run
// past the caller's deadline and honour the delay a server or circuit
// breaker asks for; a shared [Budget] caps the extra load retries may add;
// and a [Throttle] sheds load on the client before it reaches a service that
// is refusing it.
//
// # Retrying a call
//
// [Do] runs a function under a [Policy]:
//
//	user, err := retry.Do(ctx, retry.Policy{}, func(ctx context.Context) (User, error) {
//		return client.GetUser(ctx, id)
//	})
//
// The zero Policy makes up to three attempts. Every zero field of a Policy
// means the default documented on it, and [Policy.Validate] names the field
// of a Policy that makes no sense. When the first attempt succeeds, Do
// neither allocates nor reads the clock: it costs a few nanoseconds more
// than calling the function directly.
//
// # What is retried
//
// After a failed attempt, Do tries again unless one of these holds:
//
//   - the error is wrapped by [Permanent] (or by backoff.Permanent from
//     github.com/cenkalti/backoff/v4), or is context.Canceled;
//   - the error, or one it wraps, has a method Forced() bool that reports
//     true: an operator's decision, such as a circuit breaker forced open
//     (breaker.OpenError has it), which no wait can outlast;
//   - Policy.IsRetryable returns false for the error; without it, the
//     error is a certificate error or DNS does not know the host (a
//     *net.DNSError with IsNotFound), which no wait mends;
//   - the context is done;
//   - the attempts allowed by Policy.MaxAttempts are used up;
//   - the next wait would end at or after the context's deadline, or past
//     Policy.MaxElapsed;
//   - the error asks for a delay longer than the remaining retries could
//     wait at Policy.MaxInterval each (see below);
//   - Policy.Budget has no token to spare, or Policy.Throttle rejects the
//     next attempt.
//
// When Do gives up it returns an [*Error] with the number of attempts made
// and the last attempt's error: errors.Is and errors.As see that error, and
// also the reason retrying ended early, if there was one
// ([ErrBudgetExhausted], [ErrThrottled], context.Canceled or
// context.DeadlineExceeded).
//
// # Waiting
//
// The wait before retry n is drawn from the exponential interval
// InitialInterval × Multiplier^(n-1), capped at MaxInterval, spread by
// ±Jitter of itself, and capped at MaxInterval again. With the defaults the
// first three waits fall in [50ms, 150ms), [100ms, 300ms) and [200ms,
// 600ms). The intervals come from github.com/cenkalti/backoff/v4; the jitter
// is drawn from Policy.Rand, which tests pin to make waits exact. Do owns its
// loop and waits on a timer that stops as soon as the context is done, so it
// never sleeps past a deadline: if the next wait would cross it, Do returns
// at once.
//
// An error may ask for a longer wait by implementing
//
//	interface{ RetryAfter() time.Duration }
//
// as [*StatusError] does for a server's Retry-After header, and as a circuit
// breaker's open error does for the time until it lets calls through again.
// Do then waits at least that long. A requested delay longer than the
// remaining retries would wait in total (remaining retries × MaxInterval),
// or one that would cross the deadline, is not worth waiting for: Do returns
// the error at once, so the caller can fall back instead of hanging.
//
// # Budgets
//
// A [Budget] is shared by all calls to one dependency. It is a token bucket:
// each successful call deposits a fraction (ratio, 0.1 by default) of a
// token, each retry withdraws one, and retries stop while the bucket is at
// or below half full. However the dependency fails, retries stay below
// ratio × calls + max/2 + 1; in a total outage they stop after max/2 + 1,
// where a plain three-attempt policy would double the load. Set
// Policy.Budget to use one.
//
// # Adaptive throttling
//
// A [Throttle] implements the client-side adaptive throttling of the Site
// Reliability Engineering book: over a trailing two-minute window it counts
// the requests the client attempted and those the backend accepted, and
// rejects a new request locally with probability
// max(0, (requests − K×accepts) / (requests + 1)). It is an alternative to a
// circuit breaker that never cuts traffic off completely. Use it on its own
// with [Throttle.Allow] and [Throttle.Record], or set Policy.Throttle so that
// Do and [Transport] consult it before every attempt.
//
// # HTTP
//
// [Transport] wraps an http.RoundTripper. It retries only requests that are
// safe to send twice — GET, HEAD, OPTIONS, TRACE, PUT and DELETE, and any
// request with an Idempotency-Key header — and only if their body can be
// rewound with GetBody. It retries transport errors and the statuses 429,
// 502, 503 and 504, honours Retry-After in both its forms, and drains and
// closes every response it discards. When retrying ends on such a status,
// the caller receives that last response, not an error, so it sees the
// server's own answer. [CheckResponse] turns such a response into a
// [*StatusError] for code that calls an HTTP API inside Do.
//
// # Composing with circuit breakers
//
// Put retry outside and the breaker inside:
//
//	v, err := retry.Do(ctx, p, func(ctx context.Context) (T, error) {
//		return breaker.Do(ctx, b, call)
//	})
//
// Every attempt then passes through the breaker, so the breaker counts each
// real call and its failure ratio reflects the dependency, while the retry
// policy decides how long to keep trying. If the breaker opens in the middle
// of a retry loop, the next attempt is rejected at once with the breaker's
// open error; its RetryAfter tells Do how long the breaker stays open, and
// Do either waits for it (when it fits within the deadline and the remaining
// retries) or gives up at once with that error. A Budget alongside caps what
// the retries cost the dependency in the meantime.
//
// The other order, a breaker around a retry loop, counts a whole loop as one
// call and keeps hammering the dependency while the breaker stays closed; it
// is not recommended. For HTTP, stack the transports in the same order:
//
//	client := &http.Client{Transport: retry.Transport(
//		breaker.Transport(http.DefaultTransport, group, breaker.TransportOptions{}),
//		retry.Policy{Budget: budget},
//	)}
//
// Each retry then passes through the breaker for the request's host. When
// that breaker opens during the loop, the breaker transport's rejection is
// an error, so RoundTrip either waits it out as above or returns an
// [*Error] wrapping the breaker's open error; the caller can check for it
// with errors.Is, through the *url.Error that http.Client adds.
//
// # Testing
//
// Waits use the time package, so code that retries can be tested inside a
// testing/synctest bubble, where they take no real time and are exact. Set
// Policy.Rand and ThrottleSettings.Rand to fixed values to pin jitter and
// throttling decisions.
//
// # Concurrency
//
// Do, Transport, Budget and Throttle are safe for concurrent use. A Policy
// is a plain value. Callbacks (IsRetryable, OnRetry, Rand) run on the
// calling goroutine with no lock held. Nothing in this package starts a
// goroutine.
package retry
