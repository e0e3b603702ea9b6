package etcd

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/ringfence/ringfence/fallback"
)

// DefaultModeHistoryLen is how many changes a ModeStore keeps in etcd when
// ModeStoreSettings.HistoryLen is zero.
const DefaultModeHistoryLen = 32

// ModeStoreSettings configures a [ModeStore].
type ModeStoreSettings struct {
	Settings

	// HistoryLen bounds the fleet-wide history kept with the record: the
	// last HistoryLen changes, whoever made them. Zero means
	// DefaultModeHistoryLen (32); it must not be negative.
	HistoryLen int
}

// ModeStore is a [fallback.ModeStore] shared by a fleet: every instance's
// [fallback.Switch] for one dependency keeps its mode in the same etcd
// key, so an operator's change on any instance (or any other writer)
// reaches all of them.
//
// The record's version is the key's modification revision, and Save is a
// transaction that compares it, so two writers can never silently undo each
// other: exactly one of two concurrent Saves with the same expected version
// succeeds. The record carries the fleet-wide history (time, from, to,
// reason, actor) of the last ModeStoreSettings.HistoryLen changes.
//
// ModeStore is also a [fallback.ModeWatcher]: it watches the key from the
// revision it last saw and pushes every new record to the Switches that
// watch it, typically well within a second; after a compaction, a broken
// watch or a reconnect it reads the key again. Switch.Mode never touches
// etcd. While etcd is unreachable the Switches keep their mode, Freshness
// reports since when the view is stale, and a line is logged when it goes
// stale and when it is fresh again.
//
// A record that is not this package's JSON, has another FormatVersion or is
// larger than Settings.MaxRecordSize is reported (Load and Save return an
// error wrapping [fallback.ErrModeCorrupt] and [ErrBadRecord], and a line
// is logged), never trusted and never overwritten: the same fail-safe as a
// damaged file. A Switch that starts on such a record starts in its
// Initial mode; a running one keeps its mode.
//
// NewModeStore starts a goroutine that follows the key until Close. A
// ModeStore is safe for concurrent use.
type ModeStore struct {
	c       *clientv3.Client
	key     string
	s       ModeStoreSettings
	follow  *follower
	wake    chan struct{} // signals the delivery goroutine; capacity 1
	done    chan struct{} // closed by Close
	stopped chan struct{} // closed when the delivery goroutine ends
	closeMu sync.Once

	mu       sync.Mutex // guards latest, badErr and watchers
	latest   fallback.ModeChange
	latestV  uint64 // 0 while no valid record is known
	badErr   error  // why the record at the latest revision is not trusted
	watchers map[*modeWatch]struct{}
}

// modeWatch is one Watch registration.
type modeWatch struct {
	apply func(fallback.ModeChange, uint64)
	mu    sync.Mutex // held while apply runs; guards sent and dead
	sent  uint64     // the last version given to apply
	dead  bool       // stop was called
}

// modeDoc is the JSON document kept in etcd.
type modeDoc struct {
	Format  int         `json:"format"`
	Change  modeEntry   `json:"change"`
	History []modeEntry `json:"history,omitempty"` // oldest first, including Change
}

// modeEntry is one change as stored.
type modeEntry struct {
	Time   time.Time     `json:"time"`
	From   fallback.Mode `json:"from"`
	To     fallback.Mode `json:"to"`
	Reason string        `json:"reason,omitempty"`
	Actor  string        `json:"actor,omitempty"`
}

func entryOf(c fallback.ModeChange) modeEntry {
	return modeEntry{Time: c.Time, From: c.From, To: c.To, Reason: c.Reason, Actor: c.Actor}
}

func (e modeEntry) change() fallback.ModeChange {
	return fallback.ModeChange{Time: e.Time, From: e.From, To: e.To, Reason: e.Reason, Actor: e.Actor}
}

// NewModeStore returns the store for the dependency called name, keeping its
// record at Prefix + "mode/" + name, and starts following it. The caller
// keeps ownership of c and must call Close before closing c. It returns an
// error naming the field for invalid settings, and for a name that is
// empty or contains "/".
func NewModeStore(c *clientv3.Client, name string, settings ModeStoreSettings) (*ModeStore, error) {
	if c == nil {
		return nil, errors.New("etcd: mode store: nil client")
	}
	if err := checkName("mode store", name); err != nil {
		return nil, err
	}
	base, err := settings.Settings.withDefaults("mode store")
	if err != nil {
		return nil, err
	}
	settings.Settings = base
	if settings.HistoryLen < 0 {
		return nil, fmt.Errorf("etcd: mode store: ModeStoreSettings.HistoryLen must be >= 0, got %d", settings.HistoryLen)
	}
	if settings.HistoryLen == 0 {
		settings.HistoryLen = DefaultModeHistoryLen
	}
	m := &ModeStore{
		c:        c,
		key:      base.Prefix + "mode/" + name,
		s:        settings,
		wake:     make(chan struct{}, 1),
		done:     make(chan struct{}),
		stopped:  make(chan struct{}),
		watchers: make(map[*modeWatch]struct{}),
	}
	m.follow = &follower{
		c: c, key: m.key, what: "mode " + name, s: base,
		reset: m.reset, event: m.event,
	}
	m.follow.start()
	go m.deliver()
	return m, nil
}

// Key returns the etcd key holding the record.
func (m *ModeStore) Key() string { return m.key }

// decode reads a record, checking its size and format.
func (m *ModeStore) decode(data []byte) (modeDoc, error) {
	var doc modeDoc
	if len(data) > m.s.MaxRecordSize {
		return doc, fmt.Errorf("%w: %w: %s: %d bytes, limit %d", fallback.ErrModeCorrupt, ErrBadRecord, m.key, len(data), m.s.MaxRecordSize)
	}
	if err := json.Unmarshal(data, &doc); err != nil {
		return doc, fmt.Errorf("%w: %w: %s: %v", fallback.ErrModeCorrupt, ErrBadRecord, m.key, err)
	}
	if doc.Format != FormatVersion {
		return doc, fmt.Errorf("%w: %w: %s: format %d, want %d", fallback.ErrModeCorrupt, ErrBadRecord, m.key, doc.Format, FormatVersion)
	}
	return doc, nil
}

// Load implements [fallback.ModeStore] with one read of the key. It
// returns an error wrapping fallback.ErrNoMode when the key does not
// exist, one wrapping fallback.ErrModeCorrupt and ErrBadRecord for a bad
// record, and ctx's or the client's error when etcd cannot be read.
func (m *ModeStore) Load(ctx context.Context) (fallback.ModeChange, uint64, error) {
	doc, version, err := m.get(ctx)
	if err != nil {
		return fallback.ModeChange{}, 0, err
	}
	return doc.Change.change(), version, nil
}

// get reads and decodes the record.
func (m *ModeStore) get(ctx context.Context) (modeDoc, uint64, error) {
	resp, err := m.c.Get(ctx, m.key)
	if err != nil {
		return modeDoc{}, 0, fmt.Errorf("etcd: mode store: read %s: %w", m.key, err)
	}
	if len(resp.Kvs) == 0 {
		return modeDoc{}, 0, fmt.Errorf("%w: %s", fallback.ErrNoMode, m.key)
	}
	kv := resp.Kvs[0]
	doc, err := m.decode(kv.Value)
	if err != nil {
		return modeDoc{}, 0, err
	}
	return doc, uint64(kv.ModRevision), nil
}

// Save implements [fallback.ModeStore]: it reads the record to extend its
// history, then writes it in a transaction that succeeds only if the key's
// modification revision is still expect (the key absent for 0). It returns
// an error wrapping fallback.ErrModeConflict when it is not, one wrapping
// fallback.ErrModeCorrupt and ErrBadRecord over a bad record (which it
// leaves alone), and ctx's or the client's error otherwise.
func (m *ModeStore) Save(ctx context.Context, c fallback.ModeChange, expect uint64) (uint64, error) {
	var history []modeEntry
	if expect != 0 {
		doc, version, err := m.get(ctx)
		switch {
		case errors.Is(err, fallback.ErrNoMode):
			return 0, fmt.Errorf("%w: %s was deleted", fallback.ErrModeConflict, m.key)
		case err != nil:
			return 0, err
		case version != expect:
			return 0, fmt.Errorf("%w: %s is at version %d, not %d", fallback.ErrModeConflict, m.key, version, expect)
		}
		history = doc.History
	}
	history = append(history, entryOf(c))
	if over := len(history) - m.s.HistoryLen; over > 0 {
		history = history[over:]
	}
	doc := modeDoc{Format: FormatVersion, Change: entryOf(c), History: history}
	data, err := json.Marshal(doc)
	for err == nil && len(data) > m.s.MaxRecordSize && len(doc.History) > 1 {
		doc.History = doc.History[len(doc.History)/2:]
		data, err = json.Marshal(doc)
	}
	if err != nil {
		return 0, fmt.Errorf("etcd: mode store: encode: %w", err)
	}
	if len(data) > m.s.MaxRecordSize {
		return 0, fmt.Errorf("etcd: mode store: record of %d bytes exceeds MaxRecordSize %d", len(data), m.s.MaxRecordSize)
	}
	cmp := clientv3.Compare(clientv3.ModRevision(m.key), "=", int64(expect))
	if expect == 0 {
		cmp = clientv3.Compare(clientv3.CreateRevision(m.key), "=", 0)
	}
	resp, err := m.c.Txn(ctx).If(cmp).Then(clientv3.OpPut(m.key, string(data))).Commit()
	if err != nil {
		return 0, fmt.Errorf("etcd: mode store: write %s: %w", m.key, err)
	}
	if !resp.Succeeded {
		return 0, fmt.Errorf("%w: %s changed since version %d", fallback.ErrModeConflict, m.key, expect)
	}
	return uint64(resp.Header.Revision), nil
}

// History returns the fleet-wide history kept with the record, oldest
// first, with one read of the key. It returns the errors Load returns.
func (m *ModeStore) History(ctx context.Context) ([]fallback.ModeChange, error) {
	doc, _, err := m.get(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]fallback.ModeChange, len(doc.History))
	for i, e := range doc.History {
		out[i] = e.change()
	}
	return out, nil
}

// Watch implements [fallback.ModeWatcher]. apply first gets the latest
// record the store knows, if any, then every newer one; when several
// arrive faster than apply returns, apply gets only the newest. stop must
// not be called from apply.
func (m *ModeStore) Watch(apply func(fallback.ModeChange, uint64)) (stop func()) {
	w := &modeWatch{apply: apply}
	m.mu.Lock()
	m.watchers[w] = struct{}{}
	m.mu.Unlock()
	m.signal()
	return func() {
		m.mu.Lock()
		delete(m.watchers, w)
		m.mu.Unlock()
		w.mu.Lock()
		w.dead = true
		w.mu.Unlock()
	}
}

// Freshness reports how current the store's view of the record is.
func (m *ModeStore) Freshness() Freshness { return m.follow.freshness() }

// Err returns why the record at the latest revision the store has seen is
// not trusted (wrapping fallback.ErrModeCorrupt and ErrBadRecord), or nil.
func (m *ModeStore) Err() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.badErr
}

// Close stops following the key and pushing changes, and waits until the
// store's goroutines have ended. Load and Save keep working through the
// client. Calling Close more than once does nothing.
func (m *ModeStore) Close() {
	m.closeMu.Do(func() {
		m.follow.stop()
		close(m.done)
		<-m.stopped
	})
}

// reset and event take in what the follower reads.
func (m *ModeStore) reset(kvs []*mvccpb.KeyValue, _ int64) {
	if len(kvs) == 1 {
		m.take(kvs[0])
		return
	}
	m.mu.Lock()
	m.badErr = nil
	m.mu.Unlock()
}

func (m *ModeStore) event(ev *clientv3.Event) {
	if ev.Type == clientv3.EventTypePut {
		m.take(ev.Kv)
		return
	}
	m.mu.Lock()
	m.badErr = nil
	m.mu.Unlock()
}

// take records kv as the latest record and wakes the delivery goroutine.
func (m *ModeStore) take(kv *mvccpb.KeyValue) {
	doc, err := m.decode(kv.Value)
	m.mu.Lock()
	if err != nil {
		m.badErr = err
		m.mu.Unlock()
		m.s.Logger.Error("ringfence: damaged mode record in etcd; keeping the last known mode",
			"key", m.key, "revision", kv.ModRevision, "error", err)
		return
	}
	m.badErr = nil
	if v := uint64(kv.ModRevision); v > m.latestV {
		m.latest, m.latestV = doc.Change.change(), v
	}
	m.mu.Unlock()
	m.signal()
}

func (m *ModeStore) signal() {
	select {
	case m.wake <- struct{}{}:
	default:
	}
}

// deliver gives the latest record to every watcher that lacks it, until
// Close.
func (m *ModeStore) deliver() {
	defer close(m.stopped)
	for {
		select {
		case <-m.done:
			return
		case <-m.wake:
		}
		m.mu.Lock()
		c, v := m.latest, m.latestV
		ws := make([]*modeWatch, 0, len(m.watchers))
		for w := range m.watchers {
			ws = append(ws, w)
		}
		m.mu.Unlock()
		if v == 0 {
			continue
		}
		for _, w := range ws {
			w.mu.Lock()
			if !w.dead && w.sent < v {
				w.sent = v
				w.apply(c, v)
			}
			w.mu.Unlock()
		}
	}
}
