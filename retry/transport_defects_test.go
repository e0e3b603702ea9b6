package retry_test

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/ringfence/ringfence/retry"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// stalledBody sends a few bytes, then stalls until it is closed.
type stalledBody struct {
	mu     sync.Mutex
	head   *strings.Reader
	closed chan struct{}
	closes int
}

func newStalledBody() *stalledBody {
	return &stalledBody{head: strings.NewReader("overloa"), closed: make(chan struct{})}
}

func (b *stalledBody) Read(p []byte) (int, error) {
	b.mu.Lock()
	if b.head.Len() > 0 {
		defer b.mu.Unlock()
		return b.head.Read(p)
	}
	b.mu.Unlock()
	<-b.closed
	return 0, errors.New("read on closed body")
}

func (b *stalledBody) Close() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closes == 0 {
		close(b.closed)
	}
	b.closes++
	return nil
}

// stallingBackend answers 503 with a body that stalls, then 200.
type stallingBackend struct {
	mu     sync.Mutex
	calls  int
	bodies []*stalledBody
}

func (s *stallingBackend) RoundTrip(req *http.Request) (*http.Response, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.calls++
	if s.calls == 1 {
		b := newStalledBody()
		s.bodies = append(s.bodies, b)
		return &http.Response{StatusCode: 503, Header: http.Header{}, Body: b, Request: req}, nil
	}
	return &http.Response{StatusCode: 200, Header: http.Header{}, Body: io.NopCloser(strings.NewReader("ok")), Request: req}, nil
}

func TestTransportBoundsTheDrainOfAStalledBody(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := &stallingBackend{}
		rt := retry.Transport(f, pinned)
		req, err := http.NewRequest(http.MethodGet, "http://backend/items", nil)
		require.NoError(t, err)
		done := make(chan struct{})
		var resp *http.Response
		go func() {
			defer close(done)
			resp, err = rt.RoundTrip(req)
		}()
		select {
		case <-done:
		case <-time.After(time.Hour):
			t.Fatal("RoundTrip hung on a stalled body for an hour")
		}
		require.NoError(t, err, "RoundTrip")
		assert.Equal(t, 200, resp.StatusCode, "RoundTrip status")
		readBody(t, resp)
		require.Len(t, f.bodies, 1, "stalled bodies")
		assert.Equal(t, 1, f.bodies[0].closes, "Close calls on the discarded body")
	})
}

func TestTransportDoesNotRetryCertificateAndNotFoundErrors(t *testing.T) {
	cases := []struct {
		name string
		err  error
		want int // calls
	}{
		{"an unknown authority is not retried", &url502{x509.UnknownAuthorityError{}}, 1},
		{"a hostname mismatch is not retried", &url502{x509.HostnameError{Host: "example.com", Certificate: &x509.Certificate{}}}, 1},
		{"an invalid certificate is not retried", &url502{x509.CertificateInvalidError{Reason: x509.Expired}}, 1},
		{"no such host is not retried", &url502{&net.DNSError{Err: "no such host", Name: "nowhere.example", IsNotFound: true}}, 1},
		{"a DNS timeout is retried", &url502{&net.DNSError{Err: "i/o timeout", Name: "slow.example", IsTimeout: true}}, 3},
		{"a refused connection is retried", &url502{&net.OpError{Op: "dial", Net: "tcp", Err: errors.New("connection refused")}}, 3},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				f := &fakeBackend{steps: []step{{err: c.err}}}
				rt := retry.Transport(f, pinned)
				req, err := http.NewRequest(http.MethodGet, "http://backend/items", nil)
				require.NoError(t, err)
				_, err = rt.RoundTrip(req)
				require.Error(t, err, "RoundTrip")
				calls, _ := f.counts()
				assert.Equal(t, c.want, calls, "calls to the backend")

				n := 0
				_, _ = retry.Do(context.Background(), pinned, func(context.Context) (int, error) {
					n++
					return 0, c.err
				})
				assert.Equal(t, c.want, n, "Do attempts")
			})
		})
	}
	t.Run("IsRetryable may still retry them", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			f := &fakeBackend{steps: []step{{err: &net.DNSError{Err: "no such host", IsNotFound: true}}}}
			rt := retry.Transport(f, retry.Policy{Rand: fixed(0.5), IsRetryable: func(error) bool { return true }})
			req, err := http.NewRequest(http.MethodGet, "http://backend/items", nil)
			require.NoError(t, err)
			_, err = rt.RoundTrip(req)
			require.Error(t, err, "RoundTrip")
			calls, _ := f.counts()
			assert.Equal(t, 3, calls, "calls to the backend")
		})
	})
}

// url502 wraps an error as the transport does, one level deep.
type url502 struct{ err error }

func (e *url502) Error() string { return fmt.Sprintf("round trip: %v", e.err) }
func (e *url502) Unwrap() error { return e.err }

func TestTransportGivesBackWhatAFailedRewindSpent(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b, err := retry.NewBudget(0.1, 10)
		require.NoError(t, err)
		th, err := retry.NewThrottle(retry.ThrottleSettings{Rand: fixed(0.99)})
		require.NoError(t, err)
		f := &fakeBackend{steps: statuses(503)}
		rt := retry.Transport(f, retry.Policy{Budget: b, Throttle: th, Rand: fixed(0.5)})
		req, err := http.NewRequest(http.MethodPut, "http://backend/items", body())
		require.NoError(t, err)
		req.GetBody = func() (io.ReadCloser, error) { return nil, errors.New("cannot rewind") }
		resp, err := rt.RoundTrip(req)
		require.NoError(t, err, "RoundTrip")
		assert.Equal(t, 503, resp.StatusCode, "RoundTrip status: the server's answer")
		readBody(t, resp)
		calls, _ := f.counts()
		assert.Equal(t, 1, calls, "calls to the backend")
		assert.Equal(t, 10.0, b.Tokens(), "Budget.Tokens() after a rewind failed")
		// One request refused, none accepted: (1 - 2*0) / (1+1).
		assert.Equal(t, 0.5, th.RejectProbability(), "Throttle.RejectProbability() after a rewind failed")
	})
}
