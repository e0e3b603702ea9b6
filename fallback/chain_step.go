package fallback

import (
	"context"
	"time"
)

// Step is one way of producing a chain's value. Make steps with [Primary],
// [Alternate], [Stale], [Static], [Manual] and [Deferred]; the zero Step is
// rejected by NewChain. A Step is an immutable value and may be shared by
// several chains.
type Step[Req, Resp any] struct {
	name string
	kind Kind

	// do is the primary's function; nil for other kinds.
	do func(context.Context, Req) (Resp, error)
	// run produces a fallback value and its age; nil for primary and
	// deferred steps.
	run func(context.Context, Req) (Resp, time.Duration, error)
	// feed, if not nil, records a successful primary result.
	feed func(Req, Resp)
	// deferred is set for a deferred step only.
	deferred *deferral[Req, Resp]
}

// Name returns the step's name.
func (s Step[Req, Resp]) Name() string { return s.name }

// Kind returns the step's kind.
func (s Step[Req, Resp]) Kind() Kind { return s.kind }

// Primary returns the primary step: fn calls the dependency itself. Its
// successful results feed the caches of the chain's stale steps. The
// chain's ChainSettings.Breaker and Retry guard it.
func Primary[Req, Resp any](name string, fn func(ctx context.Context, req Req) (Resp, error)) Step[Req, Resp] {
	if fn == nil {
		return Step[Req, Resp]{}
	}
	return Step[Req, Resp]{name: name, kind: KindPrimary, do: fn}
}

// Alternate returns a fallback step that calls another copy of the
// dependency, such as a second region or a replica, with fn. It runs
// under the caller's context and gets no time past its deadline, unlike
// the local steps (see ChainSettings.FallbackTimeout).
func Alternate[Req, Resp any](name string, fn func(ctx context.Context, req Req) (Resp, error)) Step[Req, Resp] {
	return funcStep(name, KindAlternate, fn)
}

// Manual returns a fallback step that runs a manual procedure in place of
// the dependency, such as handing the request to a person's work queue or
// printing a form to fill in by hand; fn returns what the caller should
// tell the user. It counts as local work: once the caller's deadline has
// passed, fn runs under the chain's own short context (see
// ChainSettings.FallbackTimeout), so a procedure that calls another
// service at length belongs in an Alternate step instead.
func Manual[Req, Resp any](name string, fn func(ctx context.Context, req Req) (Resp, error)) Step[Req, Resp] {
	return funcStep(name, KindManual, fn)
}

func funcStep[Req, Resp any](name string, kind Kind, fn func(context.Context, Req) (Resp, error)) Step[Req, Resp] {
	if fn == nil {
		return Step[Req, Resp]{}
	}
	return Step[Req, Resp]{name: name, kind: kind, run: func(ctx context.Context, req Req) (Resp, time.Duration, error) {
		v, err := fn(ctx, req)
		return v, 0, err
	}}
}

// Static returns a fallback step that always succeeds with v, a default
// such as a list price or an empty page. Req cannot be inferred from v, so
// name it: Static[string]("list price", price).
func Static[Req, Resp any](name string, v Resp) Step[Req, Resp] {
	return Step[Req, Resp]{name: name, kind: KindStatic, run: func(context.Context, Req) (Resp, time.Duration, error) {
		return v, 0, nil
	}}
}

// Stale returns a fallback step that serves last-known-good data from
// cache: the value the primary last returned for key(req), if it is no
// older than the cache's MaxAge. The Source then reports its age. Every
// successful primary call of a chain holding this step stores its result
// in cache under key(req); the cache may also be fed by hand with Put.
// The step fails with ErrNotCached when no young enough value is held.
func Stale[Req any, K comparable, Resp any](name string, cache *Cache[K, Resp], key func(Req) K) Step[Req, Resp] {
	if cache == nil || key == nil {
		return Step[Req, Resp]{}
	}
	return Step[Req, Resp]{
		name: name,
		kind: KindStale,
		run: func(_ context.Context, req Req) (Resp, time.Duration, error) {
			v, age, ok := cache.Get(key(req))
			if !ok {
				return v, 0, ErrNotCached
			}
			return v, age, nil
		},
		feed: func(req Req, v Resp) { cache.Put(key(req), v) },
	}
}
