package etcd

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/ringfence/ringfence/admin"
	"github.com/ringfence/ringfence/rollout"
)

// Results a judge records for an operator's rollout intent.
const (
	resultClaimed = "claimed" // taken by a judge, which is applying it
	resultApplied = "applied"
	resultRefused = "refused"
	resultFailed  = "failed"
)

// controlDoc is the JSON document on a rollout's control key: the last
// operator intent and, once the judge has answered, its result.
type controlDoc struct {
	Format int       `json:"format"`
	ID     string    `json:"id"`
	Verb   string    `json:"verb"`
	Reason string    `json:"reason"`
	Actor  string    `json:"actor"`
	Time   time.Time `json:"time"`

	Result string    `json:"result,omitempty"` // "", resultClaimed, resultApplied, resultRefused or resultFailed
	Error  string    `json:"error,omitempty"`  // why it was refused or failed
	Judge  string    `json:"judge,omitempty"`  // the evaluator that answered
	At     time.Time `json:"at,omitzero"`      // when it answered
}

// controlKey returns the etcd key of the operator intents for the rollout
// called name.
func controlKey(prefix, name string) string { return prefix + "rollout/" + name + "/control" }

// decodeControl parses an intent document, refusing one that is too large,
// not JSON, of another FormatVersion or without an id.
func decodeControl(key string, data []byte, max int) (controlDoc, error) {
	var doc controlDoc
	if len(data) > max {
		return doc, fmt.Errorf("%w: %s: %d bytes, limit %d", ErrBadRecord, key, len(data), max)
	}
	if err := json.Unmarshal(data, &doc); err != nil {
		return doc, fmt.Errorf("%w: %s: %v", ErrBadRecord, key, err)
	}
	if doc.Format != FormatVersion || doc.ID == "" {
		return doc, fmt.Errorf("%w: %s: format %d, want %d, with an id", ErrBadRecord, key, doc.Format, FormatVersion)
	}
	return doc, nil
}

// annotated returns the reason a judge gives the rollout for doc: the
// operator's reason, the actor and the intent's id, which the rollout's
// record keeps, so a later judge can tell the intent was applied.
func annotated(doc controlDoc) string {
	return fmt.Sprintf("%s (by %s, intent %s)", doc.Reason, doc.Actor, doc.ID)
}

// RolloutControl carries an operator's control of one fleet rollout
// (pause, resume, promote, abort) from any instance to the elected judge.
// It is the part of [AdminSettings.Rollouts] for one rollout: [Admin]
// writes the intent to the rollout's control key, Prefix + "rollout/" +
// name + "/control", and the [RolloutJudge] running on the leader applies
// it; see Admin for the protocol. A RolloutControl starts no goroutine and
// is safe for concurrent use.
type RolloutControl struct {
	c      *clientv3.Client
	key    string
	record *RolloutStore
	s      Settings
}

// NewRolloutControl returns the control of the rollout called name, with
// the same Settings.Prefix as the instances' evaluators. It returns an
// error naming the field for invalid settings and for a name that is
// empty or contains "/".
func NewRolloutControl(c *clientv3.Client, name string, settings Settings) (*RolloutControl, error) {
	record, err := NewRolloutStore(c, name, settings)
	if err != nil {
		return nil, err
	}
	return &RolloutControl{c: c, key: controlKey(record.s.Prefix, name), record: record, s: record.s}, nil
}

// Key returns the etcd key holding the rollout's latest operator intent.
func (rc *RolloutControl) Key() string { return rc.key }

// request writes act's intent and waits, until ctx ends, for the judge's
// answer; see [Admin] for what it returns.
func (rc *RolloutControl) request(ctx context.Context, act admin.Action) error {
	rec, _, err := rc.record.Load(ctx)
	switch {
	case errors.Is(err, rollout.ErrNoState):
	case errors.Is(err, rollout.ErrCorruptState):
		return fmt.Errorf("%w: rollout %q: its fleet record is damaged and no judge acts on it: %w", admin.ErrTransition, act.Name, err)
	case err != nil:
		return unavailable(act, Freshness{}, err)
	case rec.State == rollout.Promoted || rec.State == rollout.RolledBack:
		return fmt.Errorf("%w: rollout %q has ended (%v: %s), so it cannot %s; nothing was changed",
			admin.ErrTransition, act.Name, rec.State, rec.Reason, act.Verb)
	}
	var id [16]byte
	_, _ = rand.Read(id[:]) // crypto/rand.Read never fails
	doc := controlDoc{Format: FormatVersion, ID: hex.EncodeToString(id[:]), Verb: string(act.Verb),
		Reason: act.Reason, Actor: act.Actor, Time: time.Now()}
	data, err := json.Marshal(doc)
	if err != nil {
		return fmt.Errorf("etcd: admin: encode intent: %w", err)
	}
	put, err := rc.c.Put(ctx, rc.key, string(data))
	if err != nil {
		// %v, not %w: a context error would tell the Handler nothing changed.
		return fmt.Errorf("etcd: admin: %s rollout %q: the intent may or may not have reached etcd (%s, intent %s); check the rollout: %v",
			act.Verb, act.Name, rc.key, doc.ID, err)
	}
	rev := put.Header.Revision
	wctx, cancel := context.WithCancel(clientv3.WithRequireLeader(ctx))
	defer cancel()
	for ev := range rc.c.Watch(wctx, rc.key, clientv3.WithRev(rev+1)) {
		if ev.Err() != nil {
			break
		}
		for _, e := range ev.Events {
			if done, err := rc.answer(act, doc.ID, e.Type == mvccpb.DELETE, e.Kv); done {
				return err
			}
		}
	}
	return rc.withdraw(ctx, act, doc.ID, rev)
}

// withdraw deletes intent id, written at revision rev, if no judge has
// taken it since, once no answer came in time.
func (rc *RolloutControl) withdraw(ctx context.Context, act admin.Action, id string, rev int64) error {
	why := "the watch for the judge's answer broke off"
	if err := ctx.Err(); err != nil {
		why = fmt.Sprintf("no judge answered in time (%v)", err)
	}
	dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), rc.s.RequestTimeout)
	defer cancel()
	resp, err := rc.c.Txn(dctx).If(clientv3.Compare(clientv3.ModRevision(rc.key), "=", rev)).
		Then(clientv3.OpDelete(rc.key)).Else(clientv3.OpGet(rc.key)).Commit()
	if err != nil {
		// %v, not %w: the Handler must not say that nothing changed.
		return fmt.Errorf("etcd: admin: %s rollout %q: %s, and intent %s could not be withdrawn from %s (%v): a judge may still apply it; check the rollout",
			act.Verb, act.Name, why, id, rc.key, err)
	}
	if resp.Succeeded {
		return fmt.Errorf("%w: etcd: admin: %s rollout %q: %s; intent %s was withdrawn, nothing was changed",
			admin.ErrUnavailable, act.Verb, act.Name, why, id)
	}
	kvs := resp.Responses[0].GetResponseRange().Kvs
	var kv *mvccpb.KeyValue
	if len(kvs) == 1 {
		kv = kvs[0]
	}
	if done, err := rc.answer(act, id, kv == nil, kv); done {
		return err
	}
	return fmt.Errorf("etcd: admin: %s rollout %q: %s, after a judge took intent %s: it may be applied still; check the rollout",
		act.Verb, act.Name, why, id)
}

// answer reads the judge's answer to intent id in kv (nil, or deleted,
// when the key was deleted); done is false when kv does not answer it.
func (rc *RolloutControl) answer(act admin.Action, id string, deleted bool, kv *mvccpb.KeyValue) (done bool, err error) {
	if deleted || kv == nil {
		return true, fmt.Errorf("etcd: admin: %s rollout %q: intent %s was deleted from %s before a judge answered; it may or may not have been applied, check the rollout's history",
			act.Verb, act.Name, id, rc.key)
	}
	doc, err := decodeControl(rc.key, kv.Value, rc.s.MaxRecordSize)
	if err == nil && doc.ID != id {
		err = fmt.Errorf("replaced by intent %s (%s by %s)", doc.ID, doc.Verb, doc.Actor)
	}
	if err != nil {
		return true, fmt.Errorf("etcd: admin: %s rollout %q: intent %s was overwritten before a judge answered (%v); it may or may not have been applied, check the rollout's history",
			act.Verb, act.Name, id, err)
	}
	switch doc.Result {
	case resultApplied:
		return true, nil
	case resultRefused:
		return true, fmt.Errorf("%w: rollout %q: judge %s refused to %s it: %s", admin.ErrTransition, act.Name, doc.Judge, act.Verb, doc.Error)
	case resultFailed:
		return true, fmt.Errorf("etcd: admin: rollout %q: judge %s could not save %s, which may have taken effect in part: %s", act.Name, doc.Judge, act.Verb, doc.Error)
	}
	return false, nil
}

// controls starts following the judged rollout's control key, applying
// each operator intent that has no result yet; stop it with stop.
func (j *RolloutJudge) controls() *follower {
	key := controlKey(j.e.s.Prefix, j.e.name)
	// The evaluator and the evidence already report the judge's view of
	// etcd; this follower's freshness would repeat them.
	s := j.e.s.Settings
	s.OnFreshness, s.Logger = nil, slog.New(slog.DiscardHandler)
	f := &follower{
		c: j.e.c, key: key, what: "rollout control " + j.e.name, s: s,
		reset: func(kvs []*mvccpb.KeyValue, _ int64) {
			if len(kvs) == 1 {
				j.apply(key, kvs[0], true)
			}
		},
		event: func(ev *clientv3.Event) {
			if ev.Type == clientv3.EventTypePut {
				j.apply(key, ev.Kv, false)
			}
		},
	}
	f.start()
	return f
}

// apply applies the intent in kv to the judged rollout, unless it has been
// answered. It first claims the intent with a write fenced by the
// leadership and by kv's revision, so that an intent the console has
// withdrawn, or replaced, is never applied; it then applies it and records
// the result with a write fenced the same way. An intent that another
// judge claimed but did not answer (it lost its lease) is claimed anew;
// if its id is in the record's reason, the earlier judge applied it and
// it is answered as applied without being applied again. apply runs on
// the control follower's goroutine only; reread is true after a fresh
// read of the key.
func (j *RolloutJudge) apply(key string, kv *mvccpb.KeyValue, reread bool) {
	log := j.e.s.Logger
	doc, err := decodeControl(key, kv.Value, j.e.s.MaxRecordSize)
	if err != nil {
		log.Error("ringfence: damaged rollout intent in etcd; not acting on it", "key", key, "error", err)
		return
	}
	if doc.Result != "" && doc.Result != resultClaimed || !reread && kv.ModRevision == j.claimed {
		return // answered, or this judge's own claim, already acted on
	}
	select {
	case <-j.e.Done():
		return // deposed: the next leader answers
	default:
	}
	doc.Result, doc.Judge, doc.At = resultClaimed, j.e.s.ID, time.Now()
	rev, ok := j.record(key, kv.ModRevision, doc)
	if !ok {
		return // withdrawn, replaced or deposed; or etcd failed, and the reread after it retries
	}
	j.claimed = rev
	r := j.judged
	if !strings.Contains(r.Status().Reason, "intent "+doc.ID) {
		reason := annotated(doc)
		switch admin.Verb(doc.Verb) {
		case admin.VerbPause:
			err = r.Pause(reason)
		case admin.VerbResume:
			err = r.Resume(reason)
		case admin.VerbPromote:
			err = r.Promote(reason)
		case admin.VerbAbort:
			err = r.Abort(reason)
		default:
			err = fmt.Errorf("%w: unknown verb %q", rollout.ErrTransition, doc.Verb)
		}
	}
	doc.Result, doc.At = resultApplied, time.Now()
	switch {
	case errors.Is(err, rollout.ErrTransition):
		doc.Result, doc.Error = resultRefused, err.Error()
	case err != nil:
		doc.Result, doc.Error = resultFailed, err.Error()
	}
	log.Info("ringfence: operator intent for the fleet's rollout", "rollout", j.e.name,
		"intent", doc.ID, "verb", doc.Verb, "actor", doc.Actor, "result", doc.Result, "error", doc.Error)
	j.record(key, rev, doc)
}

// record writes doc to key if the key is still at revision rev and this
// judge still leads, and returns the revision written.
func (j *RolloutJudge) record(key string, rev int64, doc controlDoc) (int64, bool) {
	data, err := json.Marshal(doc)
	if err != nil {
		j.e.s.Logger.Error("ringfence: cannot encode a rollout intent", "key", key, "error", err)
		return 0, false
	}
	ctx, cancel := context.WithTimeout(context.Background(), j.e.s.RequestTimeout)
	defer cancel()
	resp, err := j.e.c.Txn(ctx).If(
		clientv3.Compare(clientv3.ModRevision(key), "=", rev),
		clientv3.Compare(clientv3.CreateRevision(j.store.fenceKey), "=", j.store.fenceRev),
	).Then(clientv3.OpPut(key, string(data))).Commit()
	if err != nil {
		j.e.s.Logger.Warn("ringfence: cannot record a rollout intent; it is answered after the next read", "key", key, "intent", doc.ID, "result", doc.Result, "error", err)
		return 0, false
	}
	return resp.Header.Revision, resp.Succeeded
}
