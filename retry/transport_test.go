package retry_test

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/ringfence/ringfence/retry"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// step is one scripted answer of a fakeBackend: a status with an optional
// Retry-After header, or a transport error.
type step struct {
	status     int
	retryAfter string
	err        error
}

// fakeBackend is an http.RoundTripper that answers with its steps in order
// (repeating the last) and counts the response bodies closed.
type fakeBackend struct {
	steps []step

	mu     sync.Mutex
	calls  int
	bodies []string // request bodies received
	closed int      // response bodies closed
}

func (f *fakeBackend) RoundTrip(req *http.Request) (*http.Response, error) {
	var body string
	if req.Body != nil {
		b, err := io.ReadAll(req.Body)
		req.Body.Close()
		if err != nil {
			return nil, err
		}
		body = string(b)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	s := f.steps[min(f.calls, len(f.steps)-1)]
	f.calls++
	f.bodies = append(f.bodies, body)
	if s.err != nil {
		return nil, s.err
	}
	h := http.Header{}
	if s.retryAfter != "" {
		h.Set("Retry-After", s.retryAfter)
	}
	return &http.Response{
		StatusCode: s.status,
		Header:     h,
		Body:       &trackedBody{Reader: strings.NewReader(strconv.Itoa(s.status)), f: f},
		Request:    req,
	}, nil
}

func (f *fakeBackend) counts() (calls, closed int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.calls, f.closed
}

type trackedBody struct {
	io.Reader
	f *fakeBackend
}

func (b *trackedBody) Close() error {
	b.f.mu.Lock()
	defer b.f.mu.Unlock()
	b.f.closed++
	return nil
}

func statuses(codes ...int) []step {
	s := make([]step, len(codes))
	for i, c := range codes {
		s[i] = step{status: c}
	}
	return s
}

func readBody(t *testing.T, resp *http.Response) string {
	t.Helper()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	require.NoError(t, resp.Body.Close())
	return string(b)
}

var pinned = retry.Policy{Rand: fixed(0.5)}

func TestTransportRetriesStatuses(t *testing.T) {
	tests := []struct {
		name       string
		steps      []step
		wantCalls  int
		wantStatus int
	}{
		{"a 503 then a 200 returns the 200", statuses(503, 200), 2, 200},
		{"a 429 is retried", statuses(429, 200), 2, 200},
		{"a 502 is retried", statuses(502, 200), 2, 200},
		{"a 504 is retried", statuses(504, 200), 2, 200},
		{"a 500 is returned as is", statuses(500, 200), 1, 500},
		{"a 404 is returned as is", statuses(404, 200), 1, 404},
		{"exhausted retries return the last response", statuses(503, 503, 502, 200), 3, 502},
		{"a transport error is retried", []step{{err: errBoom}, {status: 200}}, 2, 200},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				f := &fakeBackend{steps: tt.steps}
				req, err := http.NewRequest(http.MethodGet, "http://backend/items", nil)
				require.NoError(t, err)
				resp, err := retry.Transport(f, pinned).RoundTrip(req)
				require.NoError(t, err)
				calls, _ := f.counts()
				assert.Equal(t, tt.wantCalls, calls, "calls to the backend")
				assert.Equal(t, tt.wantStatus, resp.StatusCode, "RoundTrip status")
				assert.Equal(t, strconv.Itoa(tt.wantStatus), readBody(t, resp), "body of the returned response")
				discarded := calls - 1
				for _, s := range tt.steps[:calls] {
					if s.err != nil {
						discarded--
					}
				}
				_, closed := f.counts()
				assert.Equal(t, discarded+1, closed, "response bodies closed (discarded ones plus ours)")
			})
		})
	}
}

func TestTransportGivesUpOnTransportErrors(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := &fakeBackend{steps: []step{{err: errBoom}}}
		req, err := http.NewRequest(http.MethodGet, "http://backend/items", nil)
		require.NoError(t, err)
		resp, err := retry.Transport(f, pinned).RoundTrip(req)
		assert.Nil(t, resp, "RoundTrip response")
		require.ErrorIs(t, err, errBoom)
		var re *retry.Error
		require.ErrorAs(t, err, &re)
		assert.Equal(t, 3, re.Attempts, "Error.Attempts")
	})
}

func TestTransportRetriesOnlyReplayableRequests(t *testing.T) {
	tests := []struct {
		name      string
		method    string
		key       string
		body      func() io.Reader
		noRewind  bool
		wantCalls int
	}{
		{"GET without a body is retried", http.MethodGet, "", nil, false, 3},
		{"HEAD is retried", http.MethodHead, "", nil, false, 3},
		{"OPTIONS is retried", http.MethodOptions, "", nil, false, 3},
		{"DELETE is retried", http.MethodDelete, "", nil, false, 3},
		{"PUT with a rewindable body is retried", http.MethodPut, "", body, false, 3},
		{"POST without an Idempotency-Key is sent once", http.MethodPost, "", body, false, 1},
		{"PATCH without an Idempotency-Key is sent once", http.MethodPatch, "", body, false, 1},
		{"POST with an Idempotency-Key is retried", http.MethodPost, "Idempotency-Key", body, false, 3},
		{"POST with an X-Idempotency-Key is retried", http.MethodPost, "X-Idempotency-Key", body, false, 3},
		{"PUT with a body that cannot be rewound is sent once", http.MethodPut, "", body, true, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				f := &fakeBackend{steps: statuses(503)}
				var r io.Reader
				if tt.body != nil {
					r = tt.body()
				}
				req, err := http.NewRequest(tt.method, "http://backend/items", r)
				require.NoError(t, err)
				if tt.noRewind {
					req.GetBody = nil
					req.Body = io.NopCloser(tt.body())
				}
				if tt.key != "" {
					req.Header.Set(tt.key, "order-42")
				}
				resp, err := retry.Transport(f, pinned).RoundTrip(req)
				require.NoError(t, err)
				assert.Equal(t, 503, resp.StatusCode, "RoundTrip status")
				readBody(t, resp)
				assert.Equal(t, tt.wantCalls, f.calls, "calls to the backend")
				if tt.body != nil {
					for i, got := range f.bodies {
						assert.Equal(t, "payload", got, "request body of attempt %d", i+1)
					}
				}
				assert.Equal(t, tt.wantCalls, f.closed, "response bodies closed")
			})
		})
	}
}

func body() io.Reader { return strings.NewReader("payload") }

func TestTransportHonoursRetryAfter(t *testing.T) {
	// Inside a bubble the clock starts at a whole second, so HTTP-dates,
	// which have one-second precision, are exact.
	in := func(d time.Duration) string { return time.Now().Add(d).UTC().Format(http.TimeFormat) }
	tests := []struct {
		name      string
		header    func() string
		wantWait  time.Duration
		wantCalls int
	}{
		{"seconds set the wait", func() string { return "3" }, 3 * time.Second, 2},
		{"seconds with spaces set the wait", func() string { return " 2 " }, 2 * time.Second, 2},
		{"an HTTP-date sets the wait", func() string { return in(5 * time.Second) }, 5 * time.Second, 2},
		{"an RFC 850 date sets the wait", func() string {
			return time.Now().Add(4 * time.Second).UTC().Format(time.RFC850)
		}, 4 * time.Second, 2},
		{"a date in the past leaves the backoff", func() string { return in(-time.Hour) }, 100 * time.Millisecond, 2},
		{"zero seconds leaves the backoff", func() string { return "0" }, 100 * time.Millisecond, 2},
		{"a negative value is ignored", func() string { return "-5" }, 100 * time.Millisecond, 2},
		{"a fraction is ignored", func() string { return "1.5" }, 100 * time.Millisecond, 2},
		{"a word is ignored", func() string { return "soon" }, 100 * time.Millisecond, 2},
		{"a broken date is ignored", func() string { return "Mon, 99 Foo 2020 25:61:00 GMT" }, 100 * time.Millisecond, 2},
		{"a delay longer than the retries could wait is not waited for", func() string { return "3600" }, 0, 1},
		{"an absurdly long delay is not waited for", func() string { return "99999999999999999999999" }, 0, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				f := &fakeBackend{steps: []step{{status: 503, retryAfter: tt.header()}, {status: 200}}}
				req, err := http.NewRequest(http.MethodGet, "http://backend/items", nil)
				require.NoError(t, err)
				start := time.Now()
				resp, err := retry.Transport(f, pinned).RoundTrip(req)
				require.NoError(t, err)
				readBody(t, resp)
				assert.Equal(t, tt.wantWait, time.Since(start), "time spent in RoundTrip")
				assert.Equal(t, tt.wantCalls, f.calls, "calls to the backend")
			})
		})
	}
}

func TestTransportPassesStatusErrorsToOnRetry(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := &fakeBackend{steps: []step{{status: 429, retryAfter: "7"}, {status: 200}}}
		var got *retry.StatusError
		p := pinned
		p.OnRetry = func(_ int, err error, wait time.Duration) {
			require.ErrorAs(t, err, &got)
			assert.Equal(t, 7*time.Second, wait, "wait passed to OnRetry")
		}
		req, err := http.NewRequest(http.MethodGet, "http://backend/items", nil)
		require.NoError(t, err)
		resp, err := retry.Transport(f, p).RoundTrip(req)
		require.NoError(t, err)
		readBody(t, resp)
		assert.Equal(t, &retry.StatusError{StatusCode: 429, Delay: 7 * time.Second}, got, "error passed to OnRetry")
	})
}

func TestTransportRespectsTheRequestContext(t *testing.T) {
	t.Run("returns the last response when the next wait would cross the deadline", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 150*time.Millisecond)
			defer cancel()
			f := &fakeBackend{steps: statuses(503)}
			req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://backend/items", nil)
			require.NoError(t, err)
			start := time.Now()
			resp, err := retry.Transport(f, retry.Policy{MaxAttempts: 5, Rand: fixed(0.5)}).RoundTrip(req)
			require.NoError(t, err)
			assert.Equal(t, 503, resp.StatusCode, "RoundTrip status")
			readBody(t, resp)
			assert.Equal(t, 2, f.calls, "calls to the backend")
			assert.Equal(t, 100*time.Millisecond, time.Since(start), "time spent in RoundTrip")
		})
	})
	t.Run("returns an error when canceled during a wait", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			ctx, cancel := context.WithCancel(context.Background())
			time.AfterFunc(50*time.Millisecond, cancel)
			f := &fakeBackend{steps: statuses(503)}
			req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://backend/items", nil)
			require.NoError(t, err)
			resp, err := retry.Transport(f, pinned).RoundTrip(req)
			assert.Nil(t, resp, "RoundTrip response")
			require.ErrorIs(t, err, context.Canceled)
			var se *retry.StatusError
			require.ErrorAs(t, err, &se)
			assert.Equal(t, 503, se.StatusCode, "StatusError.StatusCode")
			assert.Equal(t, 1, f.calls, "calls to the backend")
			assert.Equal(t, 1, f.closed, "response bodies closed")
		})
	})
}

func TestTransportWithBudgetAndThrottle(t *testing.T) {
	t.Run("a spent budget returns the server's answer", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			b, err := retry.NewBudget(0.1, 2) // one retry while full
			require.NoError(t, err)
			f := &fakeBackend{steps: statuses(503)}
			rt := retry.Transport(f, retry.Policy{Budget: b, Rand: fixed(0.5)})
			for range 3 {
				req, err := http.NewRequest(http.MethodGet, "http://backend/items", nil)
				require.NoError(t, err)
				resp, err := rt.RoundTrip(req)
				require.NoError(t, err)
				assert.Equal(t, 503, resp.StatusCode, "RoundTrip status")
				readBody(t, resp)
			}
			assert.Equal(t, 4, f.calls, "calls to the backend: 3 requests and 1 retry")
		})
	})
	t.Run("a throttled request never reaches the backend", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			th, err := retry.NewThrottle(retry.ThrottleSettings{Rand: fixed(0)})
			require.NoError(t, err)
			f := &fakeBackend{steps: statuses(503)}
			rt := retry.Transport(f, retry.Policy{MaxAttempts: 1, Throttle: th})
			req, err := http.NewRequest(http.MethodGet, "http://backend/items", nil)
			require.NoError(t, err)
			resp, err := rt.RoundTrip(req)
			require.NoError(t, err)
			readBody(t, resp)
			resp, err = rt.RoundTrip(req)
			assert.Nil(t, resp, "RoundTrip response")
			require.ErrorIs(t, err, retry.ErrThrottled)
			assert.Equal(t, 1, f.calls, "calls to the backend")
		})
	})
	t.Run("a healthy backend is never throttled", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			th, err := retry.NewThrottle(retry.ThrottleSettings{Rand: fixed(0)})
			require.NoError(t, err)
			f := &fakeBackend{steps: statuses(404)}
			rt := retry.Transport(f, retry.Policy{Throttle: th})
			for range 50 {
				req, err := http.NewRequest(http.MethodPost, "http://backend/items", body())
				require.NoError(t, err)
				resp, err := rt.RoundTrip(req)
				require.NoError(t, err)
				readBody(t, resp)
			}
			assert.Equal(t, 50, f.calls, "calls to the backend")
			assert.Equal(t, 0.0, th.RejectProbability(), "RejectProbability()")
		})
	})
}

func TestTransportRejectsAnInvalidPolicy(t *testing.T) {
	f := &fakeBackend{steps: statuses(200)}
	req, err := http.NewRequest(http.MethodGet, "http://backend/items", nil)
	require.NoError(t, err)
	p := retry.Policy{MaxAttempts: -1}
	resp, err := retry.Transport(f, p).RoundTrip(req)
	assert.Nil(t, resp, "RoundTrip response")
	assert.Equal(t, p.Validate(), err, "RoundTrip error")
	assert.Equal(t, 0, f.calls, "calls to the backend")
}

func TestCheckResponse(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		tests := []struct {
			status int
			header string
			want   error
		}{
			{200, "", nil},
			{404, "5", nil},
			{503, "", &retry.StatusError{StatusCode: 503}},
			{429, "12", &retry.StatusError{StatusCode: 429, Delay: 12 * time.Second}},
			{502, "nonsense", &retry.StatusError{StatusCode: 502}},
		}
		for _, tt := range tests {
			resp := &http.Response{StatusCode: tt.status, Header: http.Header{}}
			if tt.header != "" {
				resp.Header.Set("Retry-After", tt.header)
			}
			got := retry.CheckResponse(resp)
			assert.Equal(t, tt.want, got, "CheckResponse(%d, Retry-After %q)", tt.status, tt.header)
		}
	})
}

// TestTransportRewindsBodiesOverTheNetwork uses a real server and a real
// client; it needs no fake time because every wait is a millisecond.
func TestTransportRewindsBodiesOverTheNetwork(t *testing.T) {
	var mu sync.Mutex
	var got []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		mu.Lock()
		got = append(got, string(b))
		n := len(got)
		mu.Unlock()
		if n < 3 {
			w.Header().Set("Retry-After", "0")
			http.Error(w, "busy", http.StatusServiceUnavailable)
			return
		}
		io.WriteString(w, "stored")
	}))
	defer srv.Close()

	client := &http.Client{Transport: retry.Transport(srv.Client().Transport,
		retry.Policy{InitialInterval: time.Millisecond, Rand: fixed(0.5)})}
	req, err := http.NewRequest(http.MethodPost, srv.URL, strings.NewReader(`{"id":42}`))
	require.NoError(t, err)
	req.Header.Set("Idempotency-Key", "order-42")
	resp, err := client.Do(req)
	require.NoError(t, err)
	assert.Equal(t, http.StatusOK, resp.StatusCode, "client.Do status")
	assert.Equal(t, "stored", readBody(t, resp), "client.Do body")
	assert.Equal(t, []string{`{"id":42}`, `{"id":42}`, `{"id":42}`}, got, "bodies the server received")
}
