package etcd

import (
	"context"
	"log/slog"
	"slices"
	"sync"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/goleak"
	"go.uber.org/zap"
	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"

	"github.com/ringfence/ringfence/etcd/internal/etcdtest"
)

// testWait bounds every wait of the tests for something etcd does.
const testWait = 10 * time.Second

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// newClient returns a client of endpoints, closed in t.Cleanup.
func newClient(t testing.TB, endpoints ...string) *clientv3.Client {
	t.Helper()
	c, err := clientv3.New(clientv3.Config{
		Endpoints:            endpoints,
		DialTimeout:          2 * time.Second,
		DialKeepAliveTime:    time.Second,
		DialKeepAliveTimeout: time.Second,
		Logger:               zap.NewNop(),
		// Reconnect quickly once etcd is back, rather than after gRPC's
		// default backoff of up to two minutes.
		DialOptions: []grpc.DialOption{grpc.WithConnectParams(grpc.ConnectParams{
			Backoff:           backoff.Config{BaseDelay: 50 * time.Millisecond, Multiplier: 1.6, MaxDelay: 500 * time.Millisecond},
			MinConnectTimeout: time.Second,
		})},
	})
	if err != nil {
		t.Fatalf("clientv3.New(%v): %v", endpoints, err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// newProxy returns a proxy to srv, closed in t.Cleanup.
func newProxy(t testing.TB, srv *etcdtest.Server) *etcdtest.Proxy {
	t.Helper()
	p, err := etcdtest.NewProxy(srv.Addr())
	if err != nil {
		t.Fatalf("etcdtest.NewProxy: %v", err)
	}
	t.Cleanup(p.Close)
	return p
}

// quick is Settings that notice an outage within a second, without logs.
func quick() Settings {
	return Settings{
		StaleAfter:     600 * time.Millisecond,
		RequestTimeout: 300 * time.Millisecond,
		Logger:         slog.New(slog.DiscardHandler),
	}
}

// levels is a slog.Handler that keeps the level of every record whose
// "object" attribute is set, for tests that check a line was logged.
type levels struct {
	mu  sync.Mutex
	got []slog.Level
}

func (l *levels) Enabled(context.Context, slog.Level) bool { return true }
func (l *levels) WithAttrs([]slog.Attr) slog.Handler       { return l }
func (l *levels) WithGroup(string) slog.Handler            { return l }
func (l *levels) Handle(_ context.Context, r slog.Record) error {
	r.Attrs(func(a slog.Attr) bool {
		if a.Key == "object" {
			l.mu.Lock()
			l.got = append(l.got, r.Level)
			l.mu.Unlock()
			return false
		}
		return true
	})
	return nil
}

func (l *levels) logged() []slog.Level {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.got)
}

// waitCtx returns a context that ends after testWait or with the test.
func waitCtx(t testing.TB) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), testWait)
	t.Cleanup(cancel)
	return ctx
}

// freshnessLog returns Settings whose OnFreshness sends to the channel it
// returns, which never blocks the sender.
func freshnessLog(s Settings) (Settings, <-chan Freshness) {
	ch := make(chan Freshness, 64)
	s.OnFreshness = func(f Freshness) {
		select {
		case ch <- f:
		default:
		}
	}
	return s, ch
}

// awaitFreshness waits for a Freshness with the given Stale on ch.
func awaitFreshness(t *testing.T, ch <-chan Freshness, stale bool, what string) Freshness {
	t.Helper()
	timeout := time.NewTimer(testWait)
	defer timeout.Stop()
	for {
		select {
		case f := <-ch:
			if f.Stale == stale {
				return f
			}
		case <-timeout.C:
			t.Fatalf("%s: no Freshness{Stale: %v} within %v", what, stale, testWait)
		}
	}
}
