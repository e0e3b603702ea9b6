package chaos

import (
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Transport returns a round tripper that injects in's faults into the
// requests it sends through next:
//
//   - a hang blocks until the request's context ends and returns the
//     context's error;
//   - a delay (Latency, Jitter) waits before forwarding the request, or
//     before failing it, and returns the context's error if the context
//     ends first;
//   - a failure with Faults.Status set returns a made-up response with that
//     status, a short text body and, if Faults.RetryAfter is set, a
//     Retry-After header in seconds;
//   - any other failure returns Faults.Err, or by default a
//     connection-refused error: an *net.OpError wrapping
//     syscall.ECONNREFUSED, as a dial to a dead host gives. Either matches
//     ErrInjected.
//
// Requests that go ahead are passed to next unchanged. The others never
// reach next, and their body is closed, as the http.RoundTripper contract
// asks. A nil next means http.DefaultTransport; a nil in returns
// next itself.
//
// The round tripper is safe for concurrent use if next is.
func Transport(next http.RoundTripper, in *Injector) http.RoundTripper {
	if next == nil {
		next = http.DefaultTransport
	}
	if in == nil {
		return next
	}
	return &transport{next: next, in: in}
}

type transport struct {
	next http.RoundTripper
	in   *Injector
}

func (t *transport) RoundTrip(req *http.Request) (*http.Response, error) {
	s, o, err := t.in.enter(req.Context())
	if o == forward {
		return t.next.RoundTrip(req)
	}
	if req.Body != nil {
		req.Body.Close()
	}
	if o == stopped {
		return nil, err
	}
	f := &s.phase.Faults
	if f.Status != 0 {
		t.in.statuses.Add(1)
		return response(req, f), nil
	}
	t.in.errs.Add(1)
	if f.Err != nil {
		return nil, s.err
	}
	return nil, &injectedError{err: &net.OpError{
		Op:   "dial",
		Net:  "tcp",
		Addr: hostAddr(req.URL.Host),
		Err:  os.NewSyscallError("connect", syscall.ECONNREFUSED),
	}}
}

// response makes up the response to req for an injected failure.
func response(req *http.Request, f *Faults) *http.Response {
	text := http.StatusText(f.Status)
	body := "chaos: injected " + strconv.Itoa(f.Status) + " " + text + "\n"
	h := http.Header{
		"Content-Type":           {"text/plain; charset=utf-8"},
		"X-Content-Type-Options": {"nosniff"},
	}
	if f.RetryAfter > 0 {
		secs := f.RetryAfter / time.Second // rounded up below, without overflow
		if f.RetryAfter%time.Second != 0 {
			secs++
		}
		h["Retry-After"] = []string{strconv.FormatInt(int64(secs), 10)}
	}
	resp := &http.Response{
		Status:        strconv.Itoa(f.Status) + " " + text,
		StatusCode:    f.Status,
		Proto:         "HTTP/1.1",
		ProtoMajor:    1,
		ProtoMinor:    1,
		Header:        h,
		Body:          io.NopCloser(strings.NewReader(body)),
		ContentLength: int64(len(body)),
		Request:       req,
	}
	if req.Method == http.MethodHead {
		resp.Body = http.NoBody
	}
	return resp
}

// hostAddr is the remote address an injected connection error names: the
// request's host as written in its URL.
type hostAddr string

func (a hostAddr) Network() string { return "tcp" }
func (a hostAddr) String() string  { return string(a) }
