package breaker

import (
	"context"
	"net/http"
)

// TransportOptions configures [Transport]. The zero value means the
// defaults stated on each field.
type TransportOptions struct {
	// Key picks the breaker of the group for a request. Default: the
	// request's URL host (host:port as written in the URL).
	Key func(*http.Request) string

	// IsFailure reports whether a round trip counts as a failure. It is
	// called after the round trip with the response or the error, on the
	// calling goroutine, and must not read or close the body. Default: an
	// error (except a cancellation, see Settings.CountCanceled, and
	// errors Settings.IsFailure excuses), a 5xx status or 429 Too Many
	// Requests is a failure; every other status, including other 4xx, is
	// a success, since the dependency answered.
	IsFailure func(*http.Response, error) bool
}

// Transport returns a round tripper that sends each request through the
// group's breaker for its key, then through next (http.DefaultTransport
// if nil). A nil group means a new group with default settings.
//
// When the breaker rejects a request, the round tripper returns an
// [*OpenError] (which matches [ErrOpen]) without touching the network,
// and closes the request body as the http.RoundTripper contract demands.
// Otherwise the response from next is returned untouched, even when it
// counts as a failure (a 503 is still a response); its body is never read.
// A request whose context is already done returns the context's error,
// also without touching the network. The round tripper is safe for
// concurrent use if next is.
func Transport(next http.RoundTripper, g *Group, opts TransportOptions) http.RoundTripper {
	if next == nil {
		next = http.DefaultTransport
	}
	if g == nil {
		g, _ = NewGroup(Settings{}, GroupOptions{}) // zero settings are valid
	}
	return &transport{next: next, g: g, opts: opts}
}

type transport struct {
	next http.RoundTripper
	g    *Group
	opts TransportOptions
}

func (t *transport) RoundTrip(req *http.Request) (*http.Response, error) {
	key := req.URL.Host
	if t.opts.Key != nil {
		key = t.opts.Key(req)
	}
	b := t.g.Get(key)
	sent := false
	resp, err := call(req.Context(), b, func(context.Context) (*http.Response, error) {
		sent = true
		return t.next.RoundTrip(req)
	}, t.judge)
	if !sent && req.Body != nil {
		req.Body.Close()
	}
	return resp, err
}

// judge counts a round trip by its status as well as its error.
func (t *transport) judge(ctx context.Context, resp *http.Response, err error) verdict {
	s := &t.g.s
	switch {
	case err != nil && s.canceled(ctx, err):
		return excluded
	case t.opts.IsFailure != nil:
		if t.opts.IsFailure(resp, err) {
			return failure
		}
		return success
	case err != nil:
		return s.classify(ctx, err)
	case resp.StatusCode >= 500 || resp.StatusCode == http.StatusTooManyRequests:
		return failure
	}
	return success
}
