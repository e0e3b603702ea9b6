package etcd

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/ringfence/ringfence/etcd/internal/etcdtest"
	"github.com/ringfence/ringfence/fallback"
)

// instance is one simulated member of a fleet: its own client, mode store
// and switch, and a channel of the changes its switch was told about.
type instance struct {
	client  *clientv3.Client
	store   *ModeStore
	sw      *fallback.Switch
	changes chan fallback.ModeChange
}

func newInstance(t *testing.T, name string, s ModeStoreSettings, endpoints ...string) (*instance, error) {
	t.Helper()
	in := &instance{client: newClient(t, endpoints...), changes: make(chan fallback.ModeChange, 64)}
	store, err := NewModeStore(in.client, name, s)
	require.NoError(t, err, "NewModeStore")
	in.store = store
	t.Cleanup(store.Close)
	in.sw, err = fallback.NewSwitch(waitCtx(t), name, fallback.SwitchSettings{
		Store:    store,
		OnChange: func(c fallback.ModeChange) { in.changes <- c },
	})
	require.NotNil(t, in.sw, "NewSwitch")
	t.Cleanup(in.sw.Close)
	return in, err
}

// awaitMode waits until in's switch reports mode m, bounded by d.
func (in *instance) awaitMode(t *testing.T, m fallback.Mode, d time.Duration) {
	t.Helper()
	timeout := time.NewTimer(d)
	defer timeout.Stop()
	for in.sw.Mode() != m {
		select {
		case <-in.changes:
		case <-timeout.C:
			t.Fatalf("switch %q: Mode() = %v after %v, want %v", in.sw.Name(), in.sw.Mode(), d, m)
		}
	}
}

func TestModeStoreFleetFollowsOneChange(t *testing.T) {
	srv := etcdtest.New(t)
	var fleet []*instance
	for range 5 {
		in, err := newInstance(t, "payments", ModeStoreSettings{Settings: quick()}, srv.Endpoints()...)
		require.NoError(t, err)
		fleet = append(fleet, in)
	}
	ctx := waitCtx(t)
	require.NoError(t, fleet[2].sw.Set(ctx, fallback.ModeManual, "alice", "provider outage"))
	for i, in := range fleet {
		in.awaitMode(t, fallback.ModeManual, time.Second)
		h := in.sw.History()
		require.NotEmpty(t, h, "instance %d History()", i)
		assert.Equal(t, "alice", h[len(h)-1].Actor, "instance %d last change's actor", i)
	}

	require.NoError(t, fleet[4].sw.Set(ctx, fallback.ModeAuto, "bob", "provider back"))
	for _, in := range fleet {
		in.awaitMode(t, fallback.ModeAuto, time.Second)
	}
	hist, err := fleet[0].store.History(ctx)
	require.NoError(t, err)
	require.Len(t, hist, 2, "fleet-wide History()")
	assert.Equal(t, []string{"alice", "bob"}, []string{hist[0].Actor, hist[1].Actor}, "actors in History()")
	assert.Equal(t, []fallback.Mode{fallback.ModeManual, fallback.ModeAuto}, []fallback.Mode{hist[0].To, hist[1].To})
	assert.Equal(t, "provider back", hist[1].Reason)
	assert.False(t, fleet[0].store.Freshness().Stale, "Freshness().Stale while etcd is up")
}

func TestModeStoreHistoryIsBounded(t *testing.T) {
	srv := etcdtest.New(t)
	in, err := newInstance(t, "db", ModeStoreSettings{Settings: quick(), HistoryLen: 3}, srv.Endpoints()...)
	require.NoError(t, err)
	ctx := waitCtx(t)
	for i := range 6 {
		require.NoError(t, in.sw.Set(ctx, fallback.Mode(1+i%2), "op", fmt.Sprint(i)))
	}
	hist, err := in.store.History(ctx)
	require.NoError(t, err)
	require.Len(t, hist, 3)
	assert.Equal(t, "5", hist[2].Reason, "the newest change is last")
}

func TestModeStoreConcurrentWritersOneWins(t *testing.T) {
	srv := etcdtest.New(t)
	ctx := waitCtx(t)
	first, err := NewModeStore(newClient(t, srv.Endpoints()...), "db", ModeStoreSettings{Settings: quick()})
	require.NoError(t, err)
	defer first.Close()
	v0, err := first.Save(ctx, fallback.ModeChange{To: fallback.ModeManual, Actor: "setup"}, 0)
	require.NoError(t, err)

	const writers = 8
	var (
		wg        sync.WaitGroup
		mu        sync.Mutex
		wins      int
		conflicts int
	)
	for i := range writers {
		store, err := NewModeStore(newClient(t, srv.Endpoints()...), "db", ModeStoreSettings{Settings: quick()})
		require.NoError(t, err)
		defer store.Close()
		wg.Go(func() {
			_, err := store.Save(ctx, fallback.ModeChange{From: fallback.ModeManual, To: fallback.ModeAuto, Actor: fmt.Sprint(i)}, v0)
			mu.Lock()
			defer mu.Unlock()
			switch {
			case err == nil:
				wins++
			case errors.Is(err, fallback.ErrModeConflict):
				conflicts++
			default:
				t.Errorf("Save by writer %d = %v, want nil or ErrModeConflict", i, err)
			}
		})
	}
	wg.Wait()
	assert.Equal(t, 1, wins, "writers whose Save succeeded")
	assert.Equal(t, writers-1, conflicts, "writers told of a conflict")
	hist, err := first.History(ctx)
	require.NoError(t, err)
	assert.Len(t, hist, 2, "History() holds the setup and the one winner")

	_, err = first.Save(ctx, fallback.ModeChange{To: fallback.ModeManual}, 0)
	require.ErrorIs(t, err, fallback.ErrModeConflict, "Save expecting no record over an existing one")
}

func TestModeStoreRejectsBadRecords(t *testing.T) {
	srv := etcdtest.New(t)
	big := `{"format":1,"change":{"time":"2026-01-01T00:00:00Z","from":"auto","to":"manual","reason":"` +
		strings.Repeat("x", 2048) + `"}}`
	tests := []struct {
		name, value string
	}{
		{"garbage", "\x00\xffnot json"},
		{"a record of another format version", `{"format":2,"change":{"to":"manual"}}`},
		{"a record larger than MaxRecordSize", big},
		{"an unknown mode", `{"format":1,"change":{"to":"off"}}`},
	}
	for i, tt := range tests {
		t.Run("reports "+tt.name, func(t *testing.T) {
			ctx := waitCtx(t)
			name := fmt.Sprintf("bad%d", i)
			s := ModeStoreSettings{Settings: quick()}
			s.MaxRecordSize = 1024
			writer := newClient(t, srv.Endpoints()...)
			_, err := writer.Put(ctx, DefaultPrefix+"mode/"+name, tt.value)
			require.NoError(t, err)

			in, err := newInstance(t, name, s, srv.Endpoints()...)
			require.ErrorIs(t, err, fallback.ErrModeUnreadable, "NewSwitch over %s", tt.name)
			require.ErrorIs(t, err, fallback.ErrModeCorrupt)
			require.ErrorIs(t, err, ErrBadRecord)
			assert.Equal(t, fallback.ModeAuto, in.sw.Mode(), "the switch starts in Initial")

			err = in.sw.Set(ctx, fallback.ModeManual, "op", "try")
			require.ErrorIs(t, err, fallback.ErrModeCorrupt, "Set over %s", tt.name)
			resp, err := writer.Get(ctx, DefaultPrefix+"mode/"+name)
			require.NoError(t, err)
			assert.Equal(t, tt.value, string(resp.Kvs[0].Value), "the bad record is left alone")
		})
	}

	t.Run("a running switch keeps its mode when a bad record arrives", func(t *testing.T) {
		ctx := waitCtx(t)
		a, err := newInstance(t, "later", ModeStoreSettings{Settings: quick()}, srv.Endpoints()...)
		require.NoError(t, err)
		b, err := newInstance(t, "later", ModeStoreSettings{Settings: quick()}, srv.Endpoints()...)
		require.NoError(t, err)
		require.NoError(t, a.sw.Set(ctx, fallback.ModeManual, "op", "incident"))
		b.awaitMode(t, fallback.ModeManual, testWait)

		resp, err := a.client.Put(ctx, a.store.Key(), "{broken")
		require.NoError(t, err)
		// A later good write is the sign that b has seen the bad one.
		for b.store.Freshness().Revision < resp.Header.Revision {
			_, err := a.client.Get(ctx, "sync")
			require.NoError(t, err)
			require.NoError(t, ctx.Err())
		}
		require.ErrorIs(t, awaitErr(t, b.store), ErrBadRecord, "Err() after a bad record")
		assert.Equal(t, fallback.ModeManual, b.sw.Mode(), "Mode() after a bad record arrives")
		_, _, err = b.store.Load(ctx)
		require.ErrorIs(t, err, fallback.ErrModeCorrupt, "Load() of the bad record")
	})
}

// awaitErr waits until store.Err() is not nil.
func awaitErr(t *testing.T, store *ModeStore) error {
	t.Helper()
	ctx := waitCtx(t)
	for store.Err() == nil {
		select {
		case <-ctx.Done():
			t.Fatalf("Err() still nil after %v", testWait)
		case <-time.After(10 * time.Millisecond):
		}
	}
	return store.Err()
}

func TestModeStoreSurvivesEtcdRestart(t *testing.T) {
	srv := etcdtest.New(t)
	lines := &levels{}
	s, fresh := freshnessLog(quick())
	s.Logger = slog.New(lines)
	a, err := newInstance(t, "db", ModeStoreSettings{Settings: s}, srv.Endpoints()...)
	require.NoError(t, err)
	b, err := newInstance(t, "db", ModeStoreSettings{Settings: quick()}, srv.Endpoints()...)
	require.NoError(t, err)
	awaitFreshness(t, fresh, false, "first read")
	ctx := waitCtx(t)
	require.NoError(t, b.sw.Set(ctx, fallback.ModeManual, "op", "incident"))
	a.awaitMode(t, fallback.ModeManual, testWait)

	srv.Stop()
	stale := awaitFreshness(t, fresh, true, "etcd stopped")
	assert.False(t, stale.Since.IsZero(), "Freshness().Since while stale")
	assert.Positive(t, a.store.Freshness().Age(time.Now()), "Freshness().Age while stale")
	assert.Equal(t, fallback.ModeManual, a.sw.Mode(), "Mode() while etcd is down keeps the last known mode")
	short, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
	err = a.sw.Set(short, fallback.ModeAuto, "op", "while down")
	cancel()
	require.Error(t, err, "Set while etcd is down")
	assert.Equal(t, fallback.ModeManual, a.sw.Mode(), "a failed Set keeps the mode")

	require.NoError(t, srv.Restart(ctx))
	awaitFreshness(t, fresh, false, "etcd restarted")
	assert.Equal(t, []slog.Level{slog.LevelWarn, slog.LevelInfo}, lines.logged(),
		"lines logged: one when the view went stale, one when it recovered")
	require.NoError(t, b.sw.Set(ctx, fallback.ModeAuto, "op", "resolved"), "Set after the restart")
	a.awaitMode(t, fallback.ModeAuto, testWait)
}

func TestModeStoreRereadsAfterCompaction(t *testing.T) {
	srv := etcdtest.New(t)
	proxy := newProxy(t, srv)
	s, fresh := freshnessLog(quick())
	behind, err := newInstance(t, "db", ModeStoreSettings{Settings: s}, proxy.Endpoint())
	require.NoError(t, err)
	writer, err := newInstance(t, "db", ModeStoreSettings{Settings: quick()}, srv.Endpoints()...)
	require.NoError(t, err)
	awaitFreshness(t, fresh, false, "first read")
	ctx := waitCtx(t)

	proxy.Cut()
	awaitFreshness(t, fresh, true, "proxy cut")
	require.NoError(t, writer.sw.Set(ctx, fallback.ModeManual, "op", "incident"))
	require.NoError(t, writer.sw.Set(ctx, fallback.ModePrimary, "op", "diagnose"))
	_, err = writer.client.Compact(ctx, mustRevision(ctx, t, writer.client))
	require.NoError(t, err, "Compact to the newest revision")

	proxy.Restore()
	awaitFreshness(t, fresh, false, "proxy restored")
	behind.awaitMode(t, fallback.ModePrimary, testWait)
	assert.Equal(t, fallback.ModePrimary, behind.sw.History()[len(behind.sw.History())-1].To)
}

// mustRevision returns etcd's current revision.
func mustRevision(ctx context.Context, t *testing.T, c *clientv3.Client) int64 {
	t.Helper()
	resp, err := c.Get(ctx, "any")
	require.NoError(t, err)
	return resp.Header.Revision
}

func TestNewModeStoreRejectsBadSettings(t *testing.T) {
	srv := etcdtest.New(t)
	c := newClient(t, srv.Endpoints()...)
	tests := []struct {
		name     string
		store    string
		settings ModeStoreSettings
	}{
		{"an empty name", "", ModeStoreSettings{}},
		{"a name with a slash", "a/b", ModeStoreSettings{}},
		{"a prefix without a final slash", "db", ModeStoreSettings{Settings: Settings{Prefix: "/x"}}},
		{"a negative StaleAfter", "db", ModeStoreSettings{Settings: Settings{StaleAfter: -1}}},
		{"a negative RequestTimeout", "db", ModeStoreSettings{Settings: Settings{RequestTimeout: -1}}},
		{"a negative MaxRecordSize", "db", ModeStoreSettings{Settings: Settings{MaxRecordSize: -1}}},
		{"a negative HistoryLen", "db", ModeStoreSettings{HistoryLen: -1}},
	}
	for _, tt := range tests {
		t.Run("rejects "+tt.name, func(t *testing.T) {
			m, err := NewModeStore(c, tt.store, tt.settings)
			require.Error(t, err, "NewModeStore(%q, %+v)", tt.store, tt.settings)
			assert.Nil(t, m)
		})
	}
}
