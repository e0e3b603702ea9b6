package etcd

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"sync"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/concurrency"

	"github.com/ringfence/ringfence/rollout"
)

// ErrDeposed is wrapped, together with rollout.ErrConflict, by the error a
// fenced [RolloutStore] returns for a Save made after its evaluator lost
// the election: its lease expired or it resigned, and another evaluator may
// already be writing.
var ErrDeposed = errors.New("etcd: evaluator no longer leads")

// RolloutStore is a [rollout.Store] on one etcd key, Prefix + "rollout/" +
// name + "/record". The record's version is the key's modification
// revision and Save is a transaction comparing it, so of two writers that
// read the same record only one can save.
//
// The store that [Evaluator.Campaign] returns is also fenced: its Save
// succeeds only while the evaluator's election key, with the creation
// revision it won with, still exists, so a deposed evaluator (one whose
// lease expired while it was paused, or that resigned) cannot write even
// if it has not noticed yet.
//
// A record that is not this package's JSON, has another FormatVersion or
// is larger than Settings.MaxRecordSize makes Load and Save return an
// error wrapping rollout.ErrCorruptState and ErrBadRecord, so the Rollout
// fails safe to the baseline as it does on a damaged file; Save never
// overwrites it. A RolloutStore starts no goroutine and is safe for
// concurrent use.
type RolloutStore struct {
	c   *clientv3.Client
	key string
	s   Settings
	// fenceKey and fenceRev are the election key and its creation revision
	// the store's Saves require; fenceKey is empty for an unfenced store.
	fenceKey string
	fenceRev int64
}

// rolloutDoc is the JSON document kept in etcd.
type rolloutDoc struct {
	Format int             `json:"format"`
	Record *rollout.Record `json:"record"`
}

// NewRolloutStore returns an unfenced store for the rollout called name,
// for reading the record and for tools; an evaluator should save through
// the store Evaluator.Campaign returns. It returns an error naming the
// field for invalid settings and for a name that is empty or contains "/".
func NewRolloutStore(c *clientv3.Client, name string, settings Settings) (*RolloutStore, error) {
	if c == nil {
		return nil, errors.New("etcd: rollout store: nil client")
	}
	if err := checkName("rollout", name); err != nil {
		return nil, err
	}
	s, err := settings.withDefaults("rollout store")
	if err != nil {
		return nil, err
	}
	return &RolloutStore{c: c, key: s.Prefix + "rollout/" + name + "/record", s: s}, nil
}

// Key returns the etcd key holding the record.
func (rs *RolloutStore) Key() string { return rs.key }

// Load implements [rollout.Store] with one read of the key, bounded by
// Settings.RequestTimeout as well as ctx.
func (rs *RolloutStore) Load(ctx context.Context) (rollout.Record, uint64, error) {
	ctx, cancel := context.WithTimeout(ctx, rs.s.RequestTimeout)
	defer cancel()
	resp, err := rs.c.Get(ctx, rs.key)
	if err != nil {
		return rollout.Record{}, 0, fmt.Errorf("etcd: rollout store: read %s: %w", rs.key, err)
	}
	if len(resp.Kvs) == 0 {
		return rollout.Record{}, 0, fmt.Errorf("%w: %s", rollout.ErrNoState, rs.key)
	}
	kv := resp.Kvs[0]
	r, err := rs.decode(kv.Value)
	if err != nil {
		return rollout.Record{}, 0, err
	}
	return r, uint64(kv.ModRevision), nil
}

func (rs *RolloutStore) decode(data []byte) (rollout.Record, error) {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: %w: %s: %s", rollout.ErrCorruptState, ErrBadRecord, rs.key, fmt.Sprintf(format, args...))
	}
	if len(data) > rs.s.MaxRecordSize {
		return rollout.Record{}, bad("%d bytes, limit %d", len(data), rs.s.MaxRecordSize)
	}
	var doc rolloutDoc
	if err := json.Unmarshal(data, &doc); err != nil {
		return rollout.Record{}, bad("%v", err)
	}
	if doc.Format != FormatVersion {
		return rollout.Record{}, bad("format %d, want %d", doc.Format, FormatVersion)
	}
	if doc.Record == nil {
		return rollout.Record{}, bad("no record")
	}
	return *doc.Record, nil
}

// Save implements [rollout.Store]: it writes r only if the key's
// modification revision is expect (the key absent for 0) and, for a fenced
// store, the evaluator still leads. It returns an error wrapping
// rollout.ErrConflict when the record changed, wrapping also ErrDeposed
// when the evaluator no longer leads, one wrapping rollout.ErrCorruptState
// over a bad record, and ctx's or the client's error otherwise. The write
// is bounded by Settings.RequestTimeout as well as ctx, since a Rollout
// saves its operator controls with no deadline of its own.
func (rs *RolloutStore) Save(ctx context.Context, r rollout.Record, expect uint64) (uint64, error) {
	ctx, cancel := context.WithTimeout(ctx, rs.s.RequestTimeout)
	defer cancel()
	data, err := json.Marshal(rolloutDoc{Format: FormatVersion, Record: &r})
	if err != nil {
		return 0, fmt.Errorf("etcd: rollout store: encode: %w", err)
	}
	if len(data) > rs.s.MaxRecordSize {
		return 0, fmt.Errorf("etcd: rollout store: record of %d bytes exceeds MaxRecordSize %d", len(data), rs.s.MaxRecordSize)
	}
	if expect > math.MaxInt64 {
		return 0, fmt.Errorf("%w: version %d is not an etcd revision", rollout.ErrConflict, expect)
	}
	cmps := []clientv3.Cmp{clientv3.Compare(clientv3.ModRevision(rs.key), "=", int64(expect))}
	if rs.fenceKey != "" {
		cmps = append(cmps, clientv3.Compare(clientv3.CreateRevision(rs.fenceKey), "=", rs.fenceRev))
	}
	elses := []clientv3.Op{clientv3.OpGet(rs.key)}
	if rs.fenceKey != "" {
		elses = append(elses, clientv3.OpGet(rs.fenceKey))
	}
	resp, err := rs.c.Txn(ctx).If(cmps...).Then(clientv3.OpPut(rs.key, string(data))).Else(elses...).Commit()
	if err != nil {
		return 0, fmt.Errorf("etcd: rollout store: write %s: %w", rs.key, err)
	}
	if resp.Succeeded {
		return uint64(resp.Header.Revision), nil
	}
	if rs.fenceKey != "" {
		if kvs := resp.Responses[1].GetResponseRange().Kvs; len(kvs) == 0 || kvs[0].CreateRevision != rs.fenceRev {
			return 0, fmt.Errorf("%w: %w: %s", rollout.ErrConflict, ErrDeposed, rs.fenceKey)
		}
	}
	if kvs := resp.Responses[0].GetResponseRange().Kvs; len(kvs) == 1 {
		if _, err := rs.decode(kvs[0].Value); err != nil {
			return 0, err
		}
	}
	return 0, fmt.Errorf("%w: %s changed since version %d", rollout.ErrConflict, rs.key, expect)
}

// DefaultLeaseTTL is EvaluatorSettings.LeaseTTL and
// EvidenceSettings.LeaseTTL when zero.
const DefaultLeaseTTL = 5 * time.Second

// EvaluatorSettings configures an [Evaluator].
type EvaluatorSettings struct {
	Settings

	// ID names this instance in the election; empty means the lease's ID.
	ID string

	// LeaseTTL is how long the evaluator's lease outlives the instance: if
	// the instance dies, another takes over after about this long. It is
	// rounded up to whole seconds, and etcd may raise it to its minimum.
	// Zero means DefaultLeaseTTL (5 s); it must not be negative.
	LeaseTTL time.Duration
}

// Evaluator takes part in the election of the one instance that judges a
// rollout for the whole fleet, so that transitions are decided once, on
// the fleet's evidence, and written by a single writer.
//
// Campaign waits until this instance leads and returns a [RolloutStore]
// fenced by the leadership: give it to the plan the leader runs. The lease
// behind the leadership is kept alive by the client; when the instance
// dies it expires after EvaluatorSettings.LeaseTTL, the next candidate's
// Campaign returns, and any Save the old leader still attempts is refused
// with ErrDeposed. Done is closed when the lease is lost.
//
// The leader runs the fleet's rollout with [Evaluator.JudgeRollout], which
// fails safe to the baseline for every key while the evaluator's fleet
// view is older than Settings.StaleAfter. Freshness reports how current
// that view of the election is: the evaluator watches it and asks etcd for
// a sign of life three times per StaleAfter, logs a line (Settings.Logger)
// when it goes stale and when it is fresh again, and calls
// Settings.OnFreshness at both moments, as the other objects do.
//
// NewEvaluator grants the lease and starts the client's keep-alive and a
// goroutine that follows the election, which run until Close. An
// Evaluator is safe for concurrent use.
type Evaluator struct {
	c        *clientv3.Client
	name     string
	s        EvaluatorSettings
	session  *concurrency.Session
	election *concurrency.Election
	follow   *follower
	closed   sync.Once
}

// NewEvaluator joins the election for the rollout called name. ctx bounds
// the grant of the lease. It returns an error naming the field for invalid
// settings, and the client's error when the lease cannot be granted.
func NewEvaluator(ctx context.Context, c *clientv3.Client, name string, settings EvaluatorSettings) (*Evaluator, error) {
	if c == nil {
		return nil, errors.New("etcd: evaluator: nil client")
	}
	if err := checkName("rollout", name); err != nil {
		return nil, err
	}
	base, err := settings.Settings.withDefaults("evaluator")
	if err != nil {
		return nil, err
	}
	settings.Settings = base
	if settings.LeaseTTL < 0 {
		return nil, fmt.Errorf("etcd: evaluator: EvaluatorSettings.LeaseTTL must be >= 0, got %v", settings.LeaseTTL)
	}
	if settings.LeaseTTL == 0 {
		settings.LeaseTTL = DefaultLeaseTTL
	}
	session, err := concurrency.NewSession(c, concurrency.WithTTL(int(math.Ceil(settings.LeaseTTL.Seconds()))),
		concurrency.WithContext(context.WithoutCancel(ctx)))
	if err != nil {
		return nil, fmt.Errorf("etcd: evaluator: lease: %w", err)
	}
	if settings.ID == "" {
		settings.ID = fmt.Sprintf("%x", int64(session.Lease()))
	}
	prefix := base.Prefix + "rollout/" + name + "/election/"
	e := &Evaluator{
		c: c, name: name, s: settings, session: session,
		election: concurrency.NewElection(session, prefix),
	}
	e.follow = &follower{
		c: c, key: prefix, prefix: true, what: "evaluator " + name, s: base,
		reset: func([]*mvccpb.KeyValue, int64) {}, event: func(*clientv3.Event) {},
	}
	e.follow.start()
	return e, nil
}

// Freshness reports how current the evaluator's view of the fleet's
// election is; see [Evaluator].
func (e *Evaluator) Freshness() Freshness { return e.follow.freshness() }

// Campaign waits until this instance leads the election or ctx is done,
// and returns the store fenced by this leadership. It returns ctx's error
// if ctx ends first, and an error wrapping ErrDeposed if the lease is lost.
func (e *Evaluator) Campaign(ctx context.Context) (*RolloutStore, error) {
	select {
	case <-e.session.Done():
		return nil, fmt.Errorf("etcd: evaluator %s: %w: lease lost", e.s.ID, ErrDeposed)
	default:
	}
	if err := e.election.Campaign(ctx, e.s.ID); err != nil {
		return nil, fmt.Errorf("etcd: evaluator %s: campaign: %w", e.s.ID, err)
	}
	rs, err := NewRolloutStore(e.c, e.name, e.s.Settings)
	if err != nil {
		return nil, err
	}
	rs.fenceKey, rs.fenceRev = e.election.Key(), e.election.Rev()
	return rs, nil
}

// Leader returns the ID of the instance that leads now, or "" when none
// does.
func (e *Evaluator) Leader(ctx context.Context) (string, error) {
	resp, err := e.election.Leader(ctx)
	if errors.Is(err, concurrency.ErrElectionNoLeader) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("etcd: evaluator: leader: %w", err)
	}
	return string(resp.Kvs[0].Value), nil
}

// Resign gives up the leadership, if held, so another candidate takes over
// at once; the stores Campaign returned are refused from then on.
func (e *Evaluator) Resign(ctx context.Context) error {
	if err := e.election.Resign(ctx); err != nil {
		return fmt.Errorf("etcd: evaluator %s: resign: %w", e.s.ID, err)
	}
	return nil
}

// Done is closed when the evaluator's lease is lost (it expired while etcd
// was unreachable, or Close revoked it).
func (e *Evaluator) Done() <-chan struct{} { return e.session.Done() }

// ID returns the name of this instance in the election.
func (e *Evaluator) ID() string { return e.s.ID }

// Close revokes the lease, which ends any leadership at once, and stops
// the keep-alive and the goroutine following the election. Calling it more
// than once does nothing more.
func (e *Evaluator) Close() error {
	e.closed.Do(e.follow.stop)
	return e.session.Close()
}
