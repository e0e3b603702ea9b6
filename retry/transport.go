package retry

import (
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"
)

// StatusError reports an HTTP response whose status code asks the client to
// come back later: 429 Too Many Requests, 502 Bad Gateway, 503 Service
// Unavailable or 504 Gateway Timeout. Its RetryAfter method returns the delay
// from the response's Retry-After header, which Do and Transport honour.
type StatusError struct {
	// StatusCode is the response's status code.
	StatusCode int
	// Delay is the delay the Retry-After header asked for, or zero if the
	// header was absent, malformed or negative.
	Delay time.Duration
}

// Error describes the status.
func (e *StatusError) Error() string {
	return "retry: http status " + strconv.Itoa(e.StatusCode) + " " + http.StatusText(e.StatusCode)
}

// RetryAfter returns the delay the server asked for, or zero.
func (e *StatusError) RetryAfter() time.Duration { return e.Delay }

// CheckResponse returns a *StatusError if resp has one of the status codes
// Transport retries (429, 502, 503, 504), with Delay parsed from its
// Retry-After header, and nil otherwise. It lets a function called through
// Do report such responses; it does not touch resp.Body.
func CheckResponse(resp *http.Response) error {
	if !retryableStatus(resp.StatusCode) {
		return nil
	}
	d, _ := parseRetryAfter(resp.Header.Get("Retry-After"), time.Now())
	return &StatusError{StatusCode: resp.StatusCode, Delay: d}
}

func retryableStatus(code int) bool {
	switch code {
	case http.StatusTooManyRequests, http.StatusBadGateway,
		http.StatusServiceUnavailable, http.StatusGatewayTimeout:
		return true
	}
	return false
}

// maxRetryAfter caps parsed delays; a longer request is as good as "never".
const maxRetryAfter = time.Duration(1<<63 - 1)

// parseRetryAfter parses a Retry-After header value, either delay-seconds
// (a string of digits) or an HTTP-date, relative to now. It reports false
// for an empty, malformed or negative value. A date in the past means no
// delay.
func parseRetryAfter(v string, now time.Time) (time.Duration, bool) {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0, false
	}
	if isDigits(v) {
		n, err := strconv.ParseUint(v, 10, 64)
		if err != nil || n > uint64(maxRetryAfter/time.Second) {
			return maxRetryAfter, true // syntactically valid, just enormous
		}
		return time.Duration(n) * time.Second, true
	}
	t, err := http.ParseTime(v)
	if err != nil {
		return 0, false
	}
	return max(t.Sub(now), 0), true
}

func isDigits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return len(s) > 0
}

// A discarded response body is read, up to drainLimit bytes and for at
// most drainTimeout, so that its connection can be reused; a longer or
// slower body is closed unread.
const (
	drainLimit   = 64 << 10
	drainTimeout = 500 * time.Millisecond
)

// discard drains and closes a response that is not returned. A body that
// stalls is closed when drainTimeout has passed, which ends the read.
func discard(resp *http.Response) {
	if resp == nil || resp.Body == nil {
		return
	}
	c := &onceCloser{body: resp.Body}
	t := time.AfterFunc(drainTimeout, c.close)
	io.CopyN(io.Discard, resp.Body, drainLimit)
	t.Stop()
	c.close()
}

// onceCloser closes a body once, from whichever goroutine comes first.
type onceCloser struct {
	once sync.Once
	body io.Closer
}

func (c *onceCloser) close() { c.once.Do(func() { c.body.Close() }) }

// Transport returns an http.RoundTripper that sends each request through
// next (http.DefaultTransport if nil) and retries it according to p.
//
// Only requests that are safe to send twice are retried: methods GET, HEAD,
// OPTIONS, TRACE, PUT and DELETE, and any request with an Idempotency-Key
// or X-Idempotency-Key header. A request with a body is retried only if its
// GetBody is set (http.NewRequest sets it for in-memory bodies), and each
// retry sends a fresh body from GetBody; a body that cannot be rewound is
// sent once. Other requests are passed to next once, unchanged.
//
// A retryable request is retried after a transport error and after a
// response with status 429, 502, 503 or 504, under the same rules as Do
// (Policy.IsRetryable sees the error or a *StatusError); so, by default, a
// certificate error or a host that DNS does not know ends it at once. A Retry-After
// header, in seconds or as an HTTP-date, sets the least wait before the next
// attempt; malformed and negative values are ignored. Waits honour the
// request's context and never run past its deadline. Every response that is
// not returned is drained (up to 64 KiB, for at most 500ms: a body that
// stalls is closed unread) and closed.
//
// When retrying ends on a retryable status — attempts exhausted, Budget
// spent, deadline near — RoundTrip returns that last response with a nil
// error, so the caller sees the server's own answer, body included. When it
// ends on a transport error, or the context ends during a wait, RoundTrip
// returns an *Error wrapping the last error. A Throttle rejection of the
// first attempt returns an *Error matching ErrThrottled.
//
// If p is invalid, every RoundTrip returns p.Validate's error. The returned
// RoundTripper is safe for concurrent use.
func Transport(next http.RoundTripper, p Policy) http.RoundTripper {
	if next == nil {
		next = http.DefaultTransport
	}
	return &transport{next: next, p: p, err: p.Validate()}
}

type transport struct {
	next http.RoundTripper
	p    Policy
	err  error // p.Validate()
}

func (t *transport) RoundTrip(req *http.Request) (*http.Response, error) {
	if t.err != nil {
		closeRequestBody(req)
		return nil, t.err
	}
	p := &t.p
	if !replayable(req) {
		return t.once(req)
	}
	ctx := req.Context()
	var start time.Time
	if p.MaxElapsed > 0 {
		start = time.Now()
	}
	if p.Throttle != nil && !p.Throttle.allow() {
		closeRequestBody(req)
		return nil, &Error{Err: ErrThrottled, stop: ErrThrottled}
	}
	l := loop{start: start}
	r := req
	for attempt := 1; ; attempt++ {
		resp, err := t.next.RoundTrip(r)
		failure := err
		if err == nil && retryableStatus(resp.StatusCode) {
			d, _ := parseRetryAfter(resp.Header.Get("Retry-After"), time.Now())
			failure = &StatusError{StatusCode: resp.StatusCode, Delay: d}
		}
		if failure == nil {
			if p.Throttle != nil {
				p.Throttle.Record(true)
			}
			if p.Budget != nil {
				p.Budget.RecordSuccess()
			}
			return resp, nil
		}
		f := inspect(failure)
		ok := f.retryable(p, failure)
		if p.Throttle != nil {
			p.Throttle.Record(!ok)
		}
		var wait time.Duration
		var stop error
		if ok {
			wait, stop, ok = l.next(ctx, p, attempt, &f)
		}
		// Rewind the body before spending a Budget token and a Throttle
		// request on the retry: a body that cannot be rewound costs
		// nothing.
		var body io.ReadCloser
		if ok && req.Body != nil && req.Body != http.NoBody {
			var berr error
			if body, berr = req.GetBody(); berr != nil {
				ok, stop = false, nil
			}
		}
		if ok {
			if stop, ok = l.spend(p); !ok && body != nil {
				body.Close()
			}
		}
		if !ok {
			if err != nil {
				return nil, &Error{Attempts: attempt, Err: err, stop: stop}
			}
			return resp, nil
		}
		discard(resp)
		if p.OnRetry != nil {
			p.OnRetry(attempt, failure, wait)
		}
		p.logRetry(attempt, failure, wait)
		if serr := sleep(ctx, wait); serr != nil {
			if body != nil {
				body.Close()
			}
			return nil, &Error{Attempts: attempt, Err: failure, stop: serr}
		}
		r = new(http.Request)
		*r = *req
		if body != nil {
			r.Body = body
		}
	}
}

// once sends a request that must not be retried, still under the Throttle
// and Budget accounting.
func (t *transport) once(req *http.Request) (*http.Response, error) {
	p := &t.p
	if p.Throttle != nil && !p.Throttle.allow() {
		closeRequestBody(req)
		return nil, &Error{Err: ErrThrottled, stop: ErrThrottled}
	}
	resp, err := t.next.RoundTrip(req)
	ok := err == nil && !retryableStatus(resp.StatusCode)
	if p.Throttle != nil {
		p.Throttle.Record(ok || (err != nil && !retryable(p, err)))
	}
	if ok && p.Budget != nil {
		p.Budget.RecordSuccess()
	}
	return resp, err
}

// replayable reports whether req may be sent more than once.
func replayable(req *http.Request) bool {
	switch req.Method {
	case "", http.MethodGet, http.MethodHead, http.MethodOptions, http.MethodTrace,
		http.MethodPut, http.MethodDelete:
	default:
		if _, ok := req.Header["Idempotency-Key"]; !ok {
			if _, ok := req.Header["X-Idempotency-Key"]; !ok {
				return false
			}
		}
	}
	return req.Body == nil || req.Body == http.NoBody || req.GetBody != nil
}

func closeRequestBody(req *http.Request) {
	if req.Body != nil {
		req.Body.Close()
	}
}
