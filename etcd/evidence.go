package etcd

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strings"
	"sync"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/concurrency"

	"github.com/ringfence/ringfence/rollout"
)

// DefaultPublishInterval is EvidenceSettings.Interval when zero.
const DefaultPublishInterval = time.Second

// EvidenceSettings configures a [FleetEvidence].
type EvidenceSettings struct {
	Settings

	// Instance names this instance's evidence key; it must not contain
	// "/". Empty means the lease's ID.
	Instance string

	// Interval is the time between two publications of this instance's
	// evidence; one write carries the whole stage's counts, and nothing is
	// written when they did not change. Zero means DefaultPublishInterval
	// (1 s); it must be at least 100 ms.
	Interval time.Duration

	// LeaseTTL is how long the published evidence outlives the instance:
	// when it dies its counts leave the fleet's sum after about this long.
	// It is rounded up to whole seconds. Zero means DefaultLeaseTTL (5 s);
	// it must not be negative.
	LeaseTTL time.Duration
}

// EvidenceStats counts what a [FleetEvidence] wrote.
type EvidenceStats struct {
	Writes uint64 // evidence records written
	Bytes  uint64 // bytes of those records
	Skips  uint64 // publications skipped because nothing changed
}

// FleetEvidence shares one rollout's evidence across the fleet. Each
// instance runs Publish with its Rollout's Evidence, which writes the
// current stage's mergeable counts under a key bound to the instance's own
// lease, at most once per EvidenceSettings.Interval and only when they
// changed. The evaluating instance sets its plan's Evidence to Merge,
// which sums every live instance's latest counts of the stage being judged.
// When an instance dies its lease expires and its counts leave the sum,
// so the judge's silence rule sees its keys fall quiet.
//
// Evidence records of another FormatVersion, garbage or records over
// Settings.MaxRecordSize are skipped by Merge (and logged), never added.
//
// Freshness reports how current the fleet's evidence this instance reads
// and writes is: it is stale once no Merge, PublishOnce write or sign of
// life (which a [RolloutJudge] asks for three times per StaleAfter) has
// had an answer from etcd for Settings.StaleAfter, the time to live of the
// evaluator's fleet view. A line is logged (Settings.Logger) when it goes
// stale and when it is fresh again, and Settings.OnFreshness is called at
// both moments, on the goroutine that noticed.
//
// NewFleetEvidence grants the lease and starts the client's keep-alive,
// which runs until Close. A FleetEvidence is safe for concurrent use.
type FleetEvidence struct {
	c       *clientv3.Client
	name    string // of the rollout
	view    view
	prefix  string // of every instance's evidence key
	key     string // this instance's
	s       EvidenceSettings
	session *concurrency.Session

	mu    sync.Mutex // guards stats and last
	stats EvidenceStats
	last  []byte // the record last written
}

// evidenceDoc is the JSON document of one instance's evidence.
type evidenceDoc struct {
	Format    int              `json:"format"`
	Instance  string           `json:"instance"`
	Published time.Time        `json:"published"`
	Evidence  rollout.Evidence `json:"evidence"`
}

// NewFleetEvidence returns the fleet's evidence of the rollout called name,
// with keys under Prefix + "rollout/" + name + "/evidence/". ctx bounds the
// grant of the lease. It returns an error naming the field for invalid
// settings and the client's error when the lease cannot be granted.
func NewFleetEvidence(ctx context.Context, c *clientv3.Client, name string, settings EvidenceSettings) (*FleetEvidence, error) {
	if c == nil {
		return nil, errors.New("etcd: fleet evidence: nil client")
	}
	if err := checkName("rollout", name); err != nil {
		return nil, err
	}
	base, err := settings.Settings.withDefaults("fleet evidence")
	if err != nil {
		return nil, err
	}
	settings.Settings = base
	switch {
	case strings.ContainsAny(settings.Instance, "/\x00"):
		return nil, fmt.Errorf("etcd: fleet evidence: EvidenceSettings.Instance must not contain \"/\", got %q", settings.Instance)
	case settings.Interval != 0 && settings.Interval < 100*time.Millisecond:
		return nil, fmt.Errorf("etcd: fleet evidence: EvidenceSettings.Interval must be 0 or >= 100ms, got %v", settings.Interval)
	case settings.LeaseTTL < 0:
		return nil, fmt.Errorf("etcd: fleet evidence: EvidenceSettings.LeaseTTL must be >= 0, got %v", settings.LeaseTTL)
	}
	if settings.Interval == 0 {
		settings.Interval = DefaultPublishInterval
	}
	if settings.LeaseTTL == 0 {
		settings.LeaseTTL = DefaultLeaseTTL
	}
	session, err := concurrency.NewSession(c, concurrency.WithTTL(int(math.Ceil(settings.LeaseTTL.Seconds()))),
		concurrency.WithContext(context.WithoutCancel(ctx)))
	if err != nil {
		return nil, fmt.Errorf("etcd: fleet evidence: lease: %w", err)
	}
	if settings.Instance == "" {
		settings.Instance = fmt.Sprintf("%x", int64(session.Lease()))
	}
	prefix := base.Prefix + "rollout/" + name + "/evidence/"
	fe := &FleetEvidence{c: c, name: name, prefix: prefix, key: prefix + settings.Instance, s: settings, session: session}
	fe.view.init("evidence "+name, base, true) // the lease was just granted
	return fe, nil
}

// Publish writes evidence() every EvidenceSettings.Interval until ctx is
// done, and returns ctx's error. A failed write is logged and retried at
// the next interval. evidence is typically the instance's
// Rollout.Evidence.
func (fe *FleetEvidence) Publish(ctx context.Context, evidence func() rollout.Evidence) error {
	t := time.NewTicker(fe.s.Interval)
	defer t.Stop()
	for {
		if err := fe.PublishOnce(ctx, evidence()); err != nil && ctx.Err() == nil {
			fe.s.Logger.Warn("ringfence: cannot publish rollout evidence; retrying", "key", fe.key, "error", err)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
	}
}

// PublishOnce writes e under this instance's key, bound to its lease,
// unless it is the record last written. It returns ctx's or the client's
// error when etcd cannot be written.
func (fe *FleetEvidence) PublishOnce(ctx context.Context, e rollout.Evidence) error {
	e.Version = rollout.EvidenceVersion
	doc := evidenceDoc{Format: FormatVersion, Instance: fe.s.Instance, Evidence: e}
	body, err := json.Marshal(doc.Evidence)
	if err != nil {
		return fmt.Errorf("etcd: fleet evidence: encode: %w", err)
	}
	fe.mu.Lock()
	same := bytes.Equal(body, fe.last)
	if same {
		fe.stats.Skips++
	}
	fe.mu.Unlock()
	if same {
		return nil
	}
	doc.Published = time.Now()
	data, err := json.Marshal(doc)
	if err != nil {
		return fmt.Errorf("etcd: fleet evidence: encode: %w", err)
	}
	if len(data) > fe.s.MaxRecordSize {
		return fmt.Errorf("etcd: fleet evidence: record of %d bytes exceeds MaxRecordSize %d", len(data), fe.s.MaxRecordSize)
	}
	resp, err := fe.c.Put(ctx, fe.key, string(data), clientv3.WithLease(fe.session.Lease()))
	if err != nil {
		fe.failed(err)
		return fmt.Errorf("etcd: fleet evidence: write %s: %w", fe.key, err)
	}
	fe.view.heard(resp.Header.Revision)
	fe.mu.Lock()
	fe.last = body
	fe.stats.Writes++
	fe.stats.Bytes += uint64(len(data))
	fe.mu.Unlock()
	return nil
}

// Merge returns local plus the latest evidence every other live instance
// published of the same rollout and stage, read in one request; it has the
// signature of rollout.Plan.Evidence. Evidence of another stage (an
// instance that has not caught up) is left out, and so is a damaged
// record, which is logged. The read is bounded by Settings.RequestTimeout
// as well as ctx. It returns ctx's or the client's error when etcd cannot
// be read: the Rollout then judges local evidence alone and never
// advances, and once that has lasted Settings.StaleAfter a [RolloutJudge]
// gives every key the baseline.
func (fe *FleetEvidence) Merge(ctx context.Context, local rollout.Evidence) (rollout.Evidence, error) {
	rctx, cancel := context.WithTimeout(ctx, fe.s.RequestTimeout)
	resp, err := fe.c.Get(rctx, fe.prefix, clientv3.WithPrefix())
	cancel()
	if err != nil {
		fe.failed(err)
		return rollout.Evidence{}, fmt.Errorf("etcd: fleet evidence: read %s: %w", fe.prefix, err)
	}
	fe.view.heard(resp.Header.Revision)
	sum := local
	for _, kv := range resp.Kvs {
		if string(kv.Key) == fe.key {
			continue
		}
		e, err := fe.decode(kv.Value)
		if err != nil {
			fe.s.Logger.Error("ringfence: damaged rollout evidence in etcd; leaving it out", "key", string(kv.Key), "error", err)
			continue
		}
		if e.Rollout != local.Rollout || e.Salt != local.Salt || e.Stages != local.Stages || e.Stage != local.Stage || e.PPM != local.PPM {
			continue
		}
		if err := sum.Merge(e); err != nil {
			fe.s.Logger.Error("ringfence: rollout evidence does not merge; leaving it out", "key", string(kv.Key), "error", err)
		}
	}
	return sum, nil
}

func (fe *FleetEvidence) decode(data []byte) (rollout.Evidence, error) {
	if len(data) > fe.s.MaxRecordSize {
		return rollout.Evidence{}, fmt.Errorf("%w: %d bytes, limit %d", ErrBadRecord, len(data), fe.s.MaxRecordSize)
	}
	var doc evidenceDoc
	if err := json.Unmarshal(data, &doc); err != nil {
		return rollout.Evidence{}, fmt.Errorf("%w: %v", ErrBadRecord, err)
	}
	if doc.Format != FormatVersion {
		return rollout.Evidence{}, fmt.Errorf("%w: format %d, want %d", ErrBadRecord, doc.Format, FormatVersion)
	}
	return doc.Evidence, nil
}

// Freshness reports how current this instance's view of the fleet's
// evidence is; see [FleetEvidence].
func (fe *FleetEvidence) Freshness() Freshness {
	fe.view.check(time.Now())
	return fe.view.freshness()
}

// failed records err and checks whether the view has gone stale.
func (fe *FleetEvidence) failed(err error) {
	fe.view.failed(err)
	fe.view.check(time.Now())
}

// probe asks etcd for a sign of life, bounded by Settings.RequestTimeout,
// unless it answered less than a third of StaleAfter ago.
func (fe *FleetEvidence) probe(ctx context.Context) {
	if time.Since(fe.view.freshness().Heard) < fe.s.StaleAfter/3 {
		return
	}
	rctx, cancel := context.WithTimeout(ctx, fe.s.RequestTimeout)
	resp, err := fe.c.Get(rctx, fe.prefix, clientv3.WithPrefix(), clientv3.WithCountOnly())
	cancel()
	if err != nil {
		if ctx.Err() == nil {
			fe.failed(err)
		}
		return
	}
	fe.view.heard(resp.Header.Revision)
}

// Stats returns what this instance has written so far.
func (fe *FleetEvidence) Stats() EvidenceStats {
	fe.mu.Lock()
	defer fe.mu.Unlock()
	return fe.stats
}

// Close revokes the lease, which removes this instance's evidence at once,
// and stops the keep-alive.
func (fe *FleetEvidence) Close() error { return fe.session.Close() }
