package chaos_test

import (
	"context"
	"errors"
	"io"
	"math"
	"net"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"testing/synctest"
	"time"

	"github.com/ringfence/ringfence/chaos"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// fakeNext is a round tripper that answers 200 "ok" and counts its calls.
type fakeNext struct{ calls atomic.Int64 }

func (f *fakeNext) RoundTrip(req *http.Request) (*http.Response, error) {
	f.calls.Add(1)
	if req.Body != nil {
		req.Body.Close()
	}
	return &http.Response{
		StatusCode: http.StatusOK,
		Status:     "200 OK",
		Proto:      "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1,
		Header:  http.Header{},
		Body:    io.NopCloser(strings.NewReader("ok")),
		Request: req,
	}, nil
}

// trackedBody is a request body that records whether it was closed.
type trackedBody struct {
	io.Reader
	closed atomic.Bool
}

func (b *trackedBody) Close() error { b.closed.Store(true); return nil }

func newRequest(t *testing.T, ctx context.Context, method string) (*http.Request, *trackedBody) {
	t.Helper()
	body := &trackedBody{Reader: strings.NewReader("payload")}
	req, err := http.NewRequestWithContext(ctx, method, "http://booking.example:8080/seats", body)
	require.NoError(t, err)
	return req, body
}

func TestTransportInjectsResponses(t *testing.T) {
	tests := []struct {
		name           string
		faults         chaos.Faults
		wantRetryAfter string
	}{
		{"a 503 with Retry-After in whole seconds", chaos.Faults{ErrorRate: 1, Status: 503, RetryAfter: 1500 * time.Millisecond}, "2"},
		{"a 503 without Retry-After", chaos.Faults{ErrorRate: 1, Status: 503}, ""},
		{"a 429 with Retry-After", chaos.Faults{ErrorRate: 1, Status: 429, RetryAfter: 30 * time.Second}, "30"},
		{"a 503 with the longest Retry-After", chaos.Faults{ErrorRate: 1, Status: 503, RetryAfter: math.MaxInt64}, "9223372037"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				next := &fakeNext{}
				in := newInjector(t, chaos.Settings{Faults: tt.faults})
				rt := chaos.Transport(next, in)
				req, body := newRequest(t, context.Background(), http.MethodPost)

				resp, err := rt.RoundTrip(req)
				require.NoError(t, err)
				assert.Equal(t, tt.faults.Status, resp.StatusCode, "StatusCode")
				assert.Equal(t, tt.wantRetryAfter, resp.Header.Get("Retry-After"), "Retry-After header")
				assert.Same(t, req, resp.Request, "Response.Request")
				assert.Equal(t, 1, resp.ProtoMajor, "ProtoMajor")
				b, err := io.ReadAll(resp.Body)
				require.NoError(t, err)
				assert.Equal(t, resp.ContentLength, int64(len(b)), "ContentLength against the body read")
				require.NoError(t, resp.Body.Close())

				assert.True(t, body.closed.Load(), "request body closed")
				assert.Equal(t, int64(0), next.calls.Load(), "calls that reached next")
				assert.Equal(t, chaos.Stats{Calls: 1, Statuses: 1}, in.Stats(), "Stats")
			})
		})
	}
}

func TestTransportHeadResponseHasNoBody(t *testing.T) {
	in := newInjector(t, chaos.Settings{Faults: chaos.Faults{ErrorRate: 1, Status: 503}})
	req, _ := newRequest(t, context.Background(), http.MethodHead)
	resp, err := chaos.Transport(&fakeNext{}, in).RoundTrip(req)
	require.NoError(t, err)
	assert.Equal(t, http.NoBody, resp.Body, "Body of a HEAD response")
}

func TestTransportConnectionErrors(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		next := &fakeNext{}
		in := newInjector(t, chaos.Settings{Faults: chaos.Faults{ErrorRate: 1}})
		req, body := newRequest(t, context.Background(), http.MethodPut)

		resp, err := chaos.Transport(next, in).RoundTrip(req)
		assert.Nil(t, resp, "response with an injected connection error")
		require.ErrorIs(t, err, chaos.ErrInjected)
		require.ErrorIs(t, err, syscall.ECONNREFUSED)
		var op *net.OpError
		require.ErrorAs(t, err, &op)
		assert.Equal(t, "dial", op.Op, "OpError.Op")
		assert.Equal(t, "booking.example:8080", op.Addr.String(), "OpError.Addr")
		assert.True(t, body.closed.Load(), "request body closed")
		assert.Equal(t, int64(0), next.calls.Load(), "calls that reached next")
		assert.Equal(t, chaos.Stats{Calls: 1, Errors: 1}, in.Stats(), "Stats")
	})
}

func TestTransportUsesTheCallersError(t *testing.T) {
	in := newInjector(t, chaos.Settings{Faults: chaos.Faults{ErrorRate: 1, Err: errBoom}})
	req, _ := newRequest(t, context.Background(), http.MethodGet)
	_, err := chaos.Transport(&fakeNext{}, in).RoundTrip(req)
	require.ErrorIs(t, err, errBoom)
	require.ErrorIs(t, err, chaos.ErrInjected)
}

func TestTransportPassesThrough(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		next := &fakeNext{}
		in := newInjector(t, chaos.Settings{})
		req, _ := newRequest(t, context.Background(), http.MethodGet)
		resp, err := chaos.Transport(next, in).RoundTrip(req)
		require.NoError(t, err)
		assert.Equal(t, http.StatusOK, resp.StatusCode, "StatusCode")
		resp.Body.Close()
		assert.Equal(t, int64(1), next.calls.Load(), "calls that reached next")
		assert.Equal(t, chaos.Stats{Calls: 1, Passed: 1}, in.Stats(), "Stats")
	})
}

func TestTransportSlowResponse(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		next := &fakeNext{}
		in := newInjector(t, chaos.Settings{Faults: chaos.Faults{Latency: 3 * time.Second}})
		req, _ := newRequest(t, context.Background(), http.MethodGet)
		start := time.Now()
		resp, err := chaos.Transport(next, in).RoundTrip(req)
		require.NoError(t, err)
		resp.Body.Close()
		assert.Equal(t, 3*time.Second, time.Since(start), "time the round trip took")
		assert.Equal(t, int64(1), next.calls.Load(), "calls that reached next")
		assert.Equal(t, chaos.Stats{Calls: 1, Passed: 1, Delayed: 1}, in.Stats(), "Stats")
	})
}

func TestTransportHangsUntilTheContextEnds(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		next := &fakeNext{}
		in := newInjector(t, chaos.Settings{Faults: chaos.Faults{HangRate: 1}})
		ctx, cancel := context.WithCancel(context.Background())
		time.AfterFunc(7*time.Second, cancel)
		req, body := newRequest(t, ctx, http.MethodPost)

		start := time.Now()
		resp, err := chaos.Transport(next, in).RoundTrip(req)
		assert.Nil(t, resp, "response of a hung round trip")
		require.ErrorIs(t, err, context.Canceled)
		assert.False(t, errors.Is(err, chaos.ErrInjected), "a hang's context error matches ErrInjected")
		assert.Equal(t, 7*time.Second, time.Since(start), "time the hang lasted")
		assert.True(t, body.closed.Load(), "request body closed")
		assert.Equal(t, int64(0), next.calls.Load(), "calls that reached next")
		assert.Equal(t, chaos.Stats{Calls: 1, Hangs: 1}, in.Stats(), "Stats")
	})
}

func TestTransportNilArguments(t *testing.T) {
	next := &fakeNext{}
	assert.Equal(t, http.RoundTripper(next), chaos.Transport(next, nil), "Transport(next, nil)")
	assert.Equal(t, http.DefaultTransport, chaos.Transport(nil, nil), "Transport(nil, nil)")
}

// The tests below use a real server and client and no fake time.

func newServer(t *testing.T) (*httptest.Server, *atomic.Int64) {
	t.Helper()
	var hits atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		io.WriteString(w, "seat 14C")
	}))
	t.Cleanup(srv.Close)
	return srv, &hits
}

func TestTransportWithAServer(t *testing.T) {
	tests := []struct {
		name       string
		faults     chaos.Faults
		wantStatus int
		wantBody   string
		wantHits   int64
		wantErr    error
		want       chaos.Stats
	}{
		{
			name:       "a pass-through reaches the server",
			wantStatus: http.StatusOK,
			wantBody:   "seat 14C",
			wantHits:   1,
			want:       chaos.Stats{Calls: 1, Passed: 1},
		},
		{
			name:       "a slow response still reaches the server",
			faults:     chaos.Faults{Latency: time.Millisecond},
			wantStatus: http.StatusOK,
			wantBody:   "seat 14C",
			wantHits:   1,
			want:       chaos.Stats{Calls: 1, Passed: 1, Delayed: 1},
		},
		{
			name:       "a 503 never reaches the server",
			faults:     chaos.Faults{ErrorRate: 1, Status: 503, RetryAfter: 2 * time.Second},
			wantStatus: http.StatusServiceUnavailable,
			wantBody:   "chaos: injected 503 Service Unavailable\n",
			want:       chaos.Stats{Calls: 1, Statuses: 1},
		},
		{
			name:    "a connection error never reaches the server",
			faults:  chaos.Faults{ErrorRate: 1},
			wantErr: syscall.ECONNREFUSED,
			want:    chaos.Stats{Calls: 1, Errors: 1},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv, hits := newServer(t)
			in := newInjector(t, chaos.Settings{Faults: tt.faults})
			client := &http.Client{Transport: chaos.Transport(srv.Client().Transport, in)}

			resp, err := client.Post(srv.URL, "text/plain", strings.NewReader("check in"))
			if tt.wantErr != nil {
				require.ErrorIs(t, err, tt.wantErr)
				require.ErrorIs(t, err, chaos.ErrInjected)
			} else {
				require.NoError(t, err)
				b, err := io.ReadAll(resp.Body)
				require.NoError(t, err)
				require.NoError(t, resp.Body.Close())
				assert.Equal(t, tt.wantStatus, resp.StatusCode, "StatusCode")
				assert.Equal(t, tt.wantBody, string(b), "body")
			}
			assert.Equal(t, tt.wantHits, hits.Load(), "requests that reached the server")
			assert.Equal(t, tt.want, in.Stats(), "Stats")
		})
	}
}

func TestTransportHangWithAServerEndsOnCancel(t *testing.T) {
	srv, hits := newServer(t)
	in := newInjector(t, chaos.Settings{Faults: chaos.Faults{HangRate: 1}})
	client := &http.Client{Transport: chaos.Transport(srv.Client().Transport, in)}

	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		// Cancel once the request hangs; no clock involved.
		for in.Stats().Hangs == 0 {
			runtime.Gosched()
		}
		cancel()
	}()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, srv.URL, nil)
	require.NoError(t, err)
	resp, err := client.Do(req)
	assert.Nil(t, resp, "response of a hung request")
	require.ErrorIs(t, err, context.Canceled)
	assert.Equal(t, int64(0), hits.Load(), "requests that reached the server")
	assert.Equal(t, chaos.Stats{Calls: 1, Hangs: 1}, in.Stats(), "Stats")
}

func TestTransportConcurrentRequestsGiveTheSameCounts(t *testing.T) {
	const goroutines, each = 8, 500
	s := chaos.Settings{Seed: 5, Faults: chaos.Faults{ErrorRate: 0.3, Status: 503}}
	run := func(in *chaos.Injector, n int) {
		rt := chaos.Transport(&fakeNext{}, in)
		for range n {
			// No require here: this runs on goroutines other than the test's.
			req, err := http.NewRequest(http.MethodGet, "http://booking.example/seats", nil)
			if !assert.NoError(t, err, "NewRequest") {
				return
			}
			resp, err := rt.RoundTrip(req)
			if !assert.NoError(t, err, "RoundTrip") {
				return
			}
			resp.Body.Close()
		}
	}
	serial := newInjector(t, s)
	run(serial, goroutines*each)

	in := newInjector(t, s)
	var wg sync.WaitGroup
	for range goroutines {
		wg.Go(func() { run(in, each) })
	}
	wg.Wait()
	assert.Equal(t, serial.Stats(), in.Stats(), "Stats of concurrent and serial requests")
	assert.True(t, withinBinomial(int(in.Stats().Statuses), goroutines*each, 0.3),
		"Stats().Statuses = %d, want near %v", in.Stats().Statuses, 0.3*goroutines*each)
}
