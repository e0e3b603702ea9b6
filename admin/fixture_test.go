package admin

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"golang.org/x/time/rate"

	"github.com/ringfence/ringfence/breaker"
	"github.com/ringfence/ringfence/fallback"
	"github.com/ringfence/ringfence/retry"
	"github.com/ringfence/ringfence/rollout"
)

const (
	writeSecret = "alice-secret-0123456789abcdef"
	readSecret  = "viewer-secret-0123456789abcdef"
)

// fixture is a Handler over one real object of each kind.
type fixture struct {
	h        *Handler
	payments *breaker.Breaker
	s3       *breaker.Group
	desk     *fallback.Switch
	outbox   *fallback.Outbox
	parser   *rollout.Rollout
	logs     *syncBuffer
}

// syncBuffer is a bytes.Buffer safe for concurrent writes.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// newObjects returns one real object of each kind: a breaker "payments",
// a group "s3" with members "eu" and "us", a switch "desk", an outbox
// "bookings" holding one pending item and one dead letter "bad-1", and a
// running rollout "parser-v2".
func newObjects(t testing.TB) fixture {
	t.Helper()
	var f fixture
	var err error
	f.payments, err = breaker.New(breaker.Settings{Name: "payments"})
	require.NoError(t, err)
	f.s3, err = breaker.NewGroup(breaker.Settings{Name: "s3"}, breaker.GroupOptions{})
	require.NoError(t, err)
	f.s3.Get("eu")
	f.s3.Get("us")
	f.desk, err = fallback.NewSwitch(context.Background(), "desk", fallback.SwitchSettings{})
	require.NoError(t, err)
	f.outbox, err = fallback.OpenOutbox(filepath.Join(t.TempDir(), "outbox"), fallback.OutboxOptions{Rate: rate.Inf})
	require.NoError(t, err)
	t.Cleanup(func() { f.outbox.Close() })
	ctx := context.Background()
	require.NoError(t, f.outbox.Enqueue(ctx, fallback.Item{Key: "bad-1", Stream: "RF101", Payload: []byte("seat 12A")}))
	require.NoError(t, f.outbox.Replay(ctx, func(context.Context, fallback.Item) error {
		return retry.Permanent(errors.New("booking rejected the record"))
	}))
	require.NoError(t, f.outbox.Enqueue(ctx, fallback.Item{Key: "ok-2", Stream: "RF202", Payload: []byte("seat 3C")}))
	f.parser, err = rollout.New(rollout.Plan{Name: "parser-v2", Stages: []rollout.Stage{{Percent: 1}, {Percent: 10}, {Percent: 100}}})
	require.NoError(t, err)
	require.NoError(t, f.parser.Start(ctx))
	return f
}

func (f fixture) objects() Objects {
	return Objects{
		Breakers: []*breaker.Breaker{f.payments},
		Groups:   map[string]*breaker.Group{"s3": f.s3},
		Switches: []*fallback.Switch{f.desk},
		Outboxes: map[string]*fallback.Outbox{"bookings": f.outbox},
		Rollouts: []*rollout.Rollout{f.parser},
	}
}

func testTokens() []Token {
	return []Token{{Name: "alice", Secret: writeSecret, Write: true}, {Name: "viewer", Secret: readSecret}}
}

// newFixture returns the objects of newObjects behind a Handler with the
// tokens "alice" (read-write) and "viewer" (read-only), logging as JSON.
func newFixture(t testing.TB) fixture {
	t.Helper()
	f := newObjects(t)
	f.logs = &syncBuffer{}
	h, err := New(Settings{
		Tokens:  testTokens(),
		Objects: f.objects(),
		Logger:  slog.New(slog.NewJSONHandler(f.logs, nil)),
	})
	require.NoError(t, err)
	f.h = h
	return f
}

// answer is a decoded response.
type answer struct {
	status int
	header http.Header
	body   map[string]any
	raw    string
}

// call sends one request to h and decodes the JSON answer. Every JSON
// answer must carry the scope.
func call(t *testing.T, h http.Handler, method, path, secret, body string) answer {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req := httptest.NewRequest(method, path, rd)
	if secret != "" {
		req.Header.Set("Authorization", "Bearer "+secret)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	a := answer{status: rec.Code, header: rec.Header(), raw: rec.Body.String()}
	if strings.HasPrefix(rec.Header().Get("Content-Type"), "application/json") {
		require.NoError(t, json.Unmarshal(rec.Body.Bytes(), &a.body), "%s %s: answer is not JSON: %s", method, path, a.raw)
		require.Equal(t, "local", a.body["scope"], "%s %s: scope of %s", method, path, a.raw)
	}
	return a
}

// state is everything an action could change, for before/after checks.
func (f fixture) state(t testing.TB) string {
	t.Helper()
	type snap struct {
		Payments breaker.State
		Reason   string
		S3       []breaker.Snapshot
		Mode     fallback.Mode
		History  int
		Pending  int
		Dead     int
		Rollout  rollout.State
		Events   int
		Changes  int
	}
	s := snap{
		Payments: f.payments.State(), Reason: f.payments.Snapshot().Reason,
		Mode: f.desk.Mode(), History: len(f.desk.History()),
		Pending: f.outbox.Pending(), Dead: f.outbox.Stats().Dead,
		Rollout: f.parser.Status().State, Events: len(f.parser.History()),
		Changes: len(f.h.trail.recent()),
	}
	for _, m := range f.s3.Snapshots() {
		m.Since = m.Since.Round(0)
		s.S3 = append(s.S3, breaker.Snapshot{Name: m.Name, State: m.State, Reason: m.Reason})
	}
	b, err := json.Marshal(s)
	require.NoError(t, err)
	return string(b)
}

func discard() *slog.Logger { return slog.New(slog.DiscardHandler) }

func timeZero() time.Time { return time.Date(2024, 7, 19, 4, 9, 0, 0, time.UTC) }

func secondsDur(n int) time.Duration { return time.Duration(n) * time.Second }
