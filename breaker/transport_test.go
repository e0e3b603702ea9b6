package breaker

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// statusServer answers /<code> with that status and a body naming it, and
// counts the requests it served.
func statusServer(t *testing.T) (*httptest.Server, *atomic.Int64) {
	t.Helper()
	var hits atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		code, err := strconv.Atoi(strings.TrimPrefix(r.URL.Path, "/"))
		if err != nil {
			code = http.StatusOK
		}
		w.WriteHeader(code)
		_, _ = io.WriteString(w, "status "+strconv.Itoa(code))
	}))
	t.Cleanup(srv.Close)
	return srv, &hits
}

func TestTransportCountsByStatus(t *testing.T) {
	srv, _ := statusServer(t)
	tests := []struct {
		name     string
		code     int
		wantFail uint64
	}{
		{"200 is a success", 200, 0},
		{"404 is a success: the dependency answered", 404, 0},
		{"429 is a failure", 429, 1},
		{"503 is a failure", 503, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g := mustGroup(t, Settings{Name: "http"}, GroupOptions{})
			client := &http.Client{Transport: Transport(nil, g, TransportOptions{})}
			resp, err := client.Get(srv.URL + "/" + strconv.Itoa(tt.code))
			require.NoError(t, err, "Get(%d)", tt.code)
			defer resp.Body.Close()
			assert.Equal(t, tt.code, resp.StatusCode, "StatusCode")
			// The body is handed back unread.
			body, err := io.ReadAll(resp.Body)
			require.NoError(t, err, "reading the body")
			assert.Equal(t, "status "+strconv.Itoa(tt.code), string(body), "body")

			host := strings.TrimPrefix(srv.URL, "http://")
			sn := g.Get(host).Snapshot()
			assert.Equal(t, "http/"+host, sn.Name, "breaker name")
			assert.Equal(t, uint64(1), sn.Requests, "Snapshot().Requests")
			assert.Equal(t, tt.wantFail, sn.Failures, "Snapshot().Failures")
		})
	}
}

func TestTransportErrorIsAFailure(t *testing.T) {
	srv := httptest.NewServer(http.NotFoundHandler())
	url := srv.URL
	srv.Close() // nothing listens there now
	g := mustGroup(t, Settings{}, GroupOptions{})
	client := &http.Client{Transport: Transport(nil, g, TransportOptions{})}
	_, err := client.Get(url)
	require.Error(t, err, "Get(closed server)")
	assert.NotErrorIs(t, err, ErrOpen, "Get(closed server)")
	sn := g.Get(strings.TrimPrefix(url, "http://")).Snapshot()
	assert.Equal(t, uint64(1), sn.Failures, "Snapshot().Failures")
}

// trackedBody records whether it was closed.
type trackedBody struct {
	io.Reader
	closed bool
}

func (b *trackedBody) Close() error { b.closed = true; return nil }

func TestTransportRejectsWithoutTheNetwork(t *testing.T) {
	srv, hits := statusServer(t)
	g := mustGroup(t, Settings{Name: "http"}, GroupOptions{})
	rt := Transport(nil, g, TransportOptions{})
	host := strings.TrimPrefix(srv.URL, "http://")
	g.Get(host).ForceOpen("test")

	body := &trackedBody{Reader: strings.NewReader("payload")}
	req, err := http.NewRequest(http.MethodPost, srv.URL+"/200", body)
	require.NoError(t, err, "NewRequest")
	resp, err := rt.RoundTrip(req)
	require.ErrorIs(t, err, ErrOpen, "RoundTrip() while forced open")
	assert.Nil(t, resp, "RoundTrip() response while forced open")
	var oe *OpenError
	require.ErrorAs(t, err, &oe, "RoundTrip() while forced open")
	assert.Equal(t, "http/"+host, oe.Name, "OpenError.Name")
	assert.Equal(t, int64(0), hits.Load(), "requests that reached the server")
	assert.True(t, body.closed, "request body closed")
}

func TestTransportOptions(t *testing.T) {
	srv, _ := statusServer(t)
	g := mustGroup(t, Settings{}, GroupOptions{})
	rt := Transport(nil, g, TransportOptions{
		Key: func(r *http.Request) string { return r.Header.Get("Tenant") },
		// Only 500 counts; 503 is planned maintenance here.
		IsFailure: func(resp *http.Response, err error) bool { return err != nil || resp.StatusCode == 500 },
	})
	for _, code := range []string{"500", "503"} {
		req, err := http.NewRequest(http.MethodGet, srv.URL+"/"+code, nil)
		require.NoError(t, err, "NewRequest")
		req.Header.Set("Tenant", "acme")
		resp, err := rt.RoundTrip(req)
		require.NoError(t, err, "RoundTrip(%s)", code)
		resp.Body.Close()
	}
	sn := g.Get("acme").Snapshot()
	assert.Equal(t, uint64(2), sn.Requests, "Snapshot().Requests")
	assert.Equal(t, uint64(1), sn.Failures, "Snapshot().Failures")
}

// fakeRoundTripper answers with the status its func returns, without a
// network, so it can run inside a synctest bubble.
type fakeRoundTripper struct {
	calls  int
	answer func() (int, error)
}

func (f *fakeRoundTripper) RoundTrip(req *http.Request) (*http.Response, error) {
	f.calls++
	code, err := f.answer()
	if err != nil {
		return nil, err
	}
	return &http.Response{
		StatusCode: code,
		Body:       io.NopCloser(strings.NewReader("")),
		Request:    req,
	}, nil
}

func TestTransportTripsAndRecovers(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		up := false
		fake := &fakeRoundTripper{answer: func() (int, error) {
			if up {
				return 200, nil
			}
			return 503, nil
		}}
		g := mustGroup(t, Settings{Name: "s3", ConsecutiveFailures: 3, OpenTimeout: 10 * time.Second}, GroupOptions{})
		client := &http.Client{Transport: Transport(fake, g, TransportOptions{})}
		get := func() (*http.Response, error) {
			resp, err := client.Get("http://storage.test/bucket/key")
			if err == nil {
				resp.Body.Close()
			}
			return resp, err
		}

		for i := range 3 {
			resp, err := get()
			require.NoError(t, err, "Get() %d", i)
			assert.Equal(t, 503, resp.StatusCode, "Get() %d status", i)
		}
		_, err := get()
		require.ErrorIs(t, err, ErrOpen, "Get() after three 503s")
		assert.Equal(t, 3, fake.calls, "round trips made")

		up = true
		sleep(10 * time.Second)
		resp, err := get()
		require.NoError(t, err, "probe Get()")
		assert.Equal(t, 200, resp.StatusCode, "probe status")
		assert.Equal(t, Closed, g.Get("storage.test").State(), "State() after the probe")
	})
}

func TestTransportErrorsInsideABubble(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		errReset := errors.New("connection reset")
		fake := &fakeRoundTripper{answer: func() (int, error) { return 0, errReset }}
		g := mustGroup(t, Settings{ConsecutiveFailures: 2}, GroupOptions{})
		rt := Transport(fake, g, TransportOptions{})
		for range 2 {
			req, err := http.NewRequest(http.MethodGet, "http://db.test/", nil)
			require.NoError(t, err, "NewRequest")
			_, err = rt.RoundTrip(req)
			require.ErrorIs(t, err, errReset, "RoundTrip()")
		}
		assert.Equal(t, Open, g.Get("db.test").State(), "State() after two transport errors")

		// A canceled request is not counted, and a done context skips the
		// network.
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://other.test/", nil)
		require.NoError(t, err, "NewRequest")
		_, err = rt.RoundTrip(req)
		require.ErrorIs(t, err, context.Canceled, "RoundTrip(canceled)")
		assert.Equal(t, 2, fake.calls, "round trips made")
		assert.Equal(t, uint64(0), g.Get("other.test").Snapshot().Requests, "requests counted for the canceled call")
	})
}

func TestTransportDefaults(t *testing.T) {
	srv, hits := statusServer(t)
	// A nil next means http.DefaultTransport, a nil group a default group.
	client := &http.Client{Transport: Transport(nil, nil, TransportOptions{})}
	resp, err := client.Get(srv.URL + "/204")
	require.NoError(t, err, "Get()")
	resp.Body.Close()
	assert.Equal(t, 204, resp.StatusCode, "StatusCode")
	assert.Equal(t, int64(1), hits.Load(), "requests served")
}
