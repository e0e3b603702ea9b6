package etcd

import (
	"context"
	"errors"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// errNoAnswer is Freshness.Err before etcd has answered.
var errNoAnswer = errors.New("etcd: no answer yet")

// follower keeps a local view of one key, or of every key under a prefix,
// current: it reads them, watches from the revision it read, reads again
// after a compaction, a broken watch or a reconnect, and, unless events
// keep arriving, asks etcd for a sign of life three times per StaleAfter
// to know how fresh its view is (without holding up the events).
//
// reset gets the full set of keys and the revision they were read at, event
// each change after that; both run on the follower's goroutine, one call at
// a time, with no lock of the follower held.
type follower struct {
	c      *clientv3.Client
	key    string
	prefix bool
	what   string // names the followed object in logs
	s      Settings
	reset  func(kvs []*mvccpb.KeyValue, rev int64)
	event  func(ev *clientv3.Event)

	cancel context.CancelFunc
	done   chan struct{}

	view
}

// start starts the follower's goroutine; stop ends it.
func (f *follower) start() {
	f.view.init(f.what, f.s, false)
	ctx, cancel := context.WithCancel(context.Background())
	f.cancel, f.done = cancel, make(chan struct{})
	go f.run(ctx)
}

// stop ends the goroutine and waits for it.
func (f *follower) stop() {
	f.cancel()
	<-f.done
}

func (f *follower) run(ctx context.Context) {
	defer close(f.done)
	beat := time.NewTicker(f.s.StaleAfter / 3)
	defer beat.Stop()
	for ctx.Err() == nil {
		rev, err := f.read(ctx)
		if err != nil {
			f.failed(err)
			select {
			case <-ctx.Done():
				return
			case now := <-beat.C:
				f.check(now)
			}
			continue
		}
		f.watch(ctx, rev, beat)
	}
}

// read reads the followed keys and hands them to reset.
func (f *follower) read(ctx context.Context) (int64, error) {
	rctx, cancel := context.WithTimeout(ctx, f.s.RequestTimeout)
	defer cancel()
	var opts []clientv3.OpOption
	if f.prefix {
		opts = append(opts, clientv3.WithPrefix())
	}
	resp, err := f.c.Get(rctx, f.key, opts...)
	if err != nil {
		return 0, err
	}
	rev := resp.Header.Revision
	f.reset(resp.Kvs, rev)
	f.heard(rev)
	return rev, nil
}

// watch follows changes after rev until the watch must be set up again:
// after a compaction, an error, or the return of etcd after a stale spell
// (the caller then reads everything again).
func (f *follower) watch(ctx context.Context, rev int64, beat *time.Ticker) {
	wctx, cancel := context.WithCancel(ctx)
	opts := []clientv3.OpOption{clientv3.WithRev(rev + 1), clientv3.WithProgressNotify()}
	if f.prefix {
		opts = append(opts, clientv3.WithPrefix())
	}
	// Watch blocks until etcd confirms the watch, so it runs on its own
	// goroutine while this one keeps checking for silence.
	made := make(chan clientv3.WatchChan, 1)
	go func() { made <- f.c.Watch(wctx, f.key, opts...) }()
	var wch clientv3.WatchChan // nil, so never ready, until made
	// asking is closed when the sign-of-life request in flight has ended;
	// nil while none is. The request runs on its own goroutine so that the
	// events arriving meanwhile are applied at once.
	var asking chan struct{}
	defer func() {
		cancel()
		if wch == nil {
			<-made
		}
		if asking != nil {
			<-asking
		}
	}()
	for {
		select {
		case <-ctx.Done():
			return
		case wch = <-made:
		case wr, ok := <-wch:
			if !ok {
				return
			}
			if wr.CompactRevision != 0 {
				f.s.Logger.Warn("ringfence: etcd compacted past the watch; reading again",
					"object", f.what, "compact_revision", wr.CompactRevision)
				return
			}
			if err := wr.Err(); err != nil {
				f.failed(err)
				return
			}
			for _, ev := range wr.Events {
				f.event(ev)
			}
			// heard after the events, so that OnFreshness and Freshness
			// never run ahead of the view.
			if f.heard(wr.Header.Revision) {
				return
			}
		case <-asking:
			asking = nil
		case now := <-beat.C:
			if f.check(now) {
				// Silent for StaleAfter: the watch may be stuck on a
				// dead connection, so read and watch again.
				return
			}
			// No need to ask while events or progress notices arrive.
			if asking != nil || now.Sub(f.freshness().Heard) < f.s.StaleAfter/6 {
				continue
			}
			asking = make(chan struct{})
			go func(done chan struct{}) {
				defer close(done)
				rctx, rcancel := context.WithTimeout(wctx, f.s.RequestTimeout)
				err := f.c.RequestProgress(rctx)
				rcancel()
				if err != nil && wctx.Err() == nil {
					f.failed(err)
				}
			}(asking)
		}
	}
}
