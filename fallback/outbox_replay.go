package fallback

import (
	"context"
	"errors"
	"time"

	"github.com/cenkalti/backoff/v4"
	"golang.org/x/time/rate"

	"github.com/ringfence/ringfence/internal/journal"
)

// obBatch is how many pending items Replay looks up at a time. Their
// records are read from disk one by one as they are delivered, so memory
// holds at most one payload.
const obBatch = 256

// Permanent wraps err to tell [Outbox.Replay] that the item will never be
// delivered, so it goes to the dead letters at once instead of being
// retried. It is transparent to errors.Is and errors.As. Permanent(nil) is
// nil.
//
// Errors made with backoff.Permanent from github.com/cenkalti/backoff/v4
// are treated the same way.
func Permanent(err error) error {
	if err == nil {
		return nil
	}
	return &permanentError{err: err}
}

type permanentError struct{ err error }

func (e *permanentError) Error() string { return e.err.Error() }
func (e *permanentError) Unwrap() error { return e.err }

func isPermanent(err error) bool {
	var p *permanentError
	var bp *backoff.PermanentError
	return errors.As(err, &p) || errors.As(err, &bp)
}

// Replay delivers the pending items by calling deliver once per item on
// the calling goroutine, and returns nil when nothing is pending any more,
// including items enqueued while it runs.
//
// Items are delivered one at a time in the order they were enqueued (the
// global order, which keeps the order within every stream). An item is
// removed only after deliver returns nil, so delivery is at least once: a
// crash between deliver and the removal's record reaching disk delivers it
// again, and the receiver should use Item.Key to apply it exactly once.
//
// When deliver fails, Replay waits (exponential backoff: RetryInitial,
// doubling up to RetryMax, each wait randomized by ±50%) and retries the
// same item; later items wait behind it, so a stream is never reordered.
// An item whose error is wrapped with [Permanent], or that has failed
// OutboxOptions.MaxAttempts times, is moved to the dead letters (see
// [Outbox.DeadLetters] and [Outbox.Requeue]) and the next item goes.
// Deliveries are paced by OutboxOptions.Rate and Burst.
//
// When ctx is done, Replay stops without starting another delivery and
// returns ctx.Err(); the item being delivered stays pending unless deliver
// returned nil. deliver receives ctx. Replay returns [ErrReplayRunning] if
// another Replay of this Outbox is running, [ErrClosed] once the Outbox is
// closed, and an error wrapping [ErrCorrupt] if an item's record cannot be
// read back.
func (o *Outbox) Replay(ctx context.Context, deliver func(context.Context, Item) error) error {
	if !o.replaying.CompareAndSwap(false, true) {
		return ErrReplayRunning
	}
	defer o.replaying.Store(false)

	var lim *rate.Limiter
	if o.opts.Rate != rate.Inf {
		lim = rate.NewLimiter(o.opts.Rate, o.opts.Burst)
	}
	bo := backoff.NewExponentialBackOff(
		backoff.WithInitialInterval(o.opts.RetryInitial),
		backoff.WithMaxInterval(o.opts.RetryMax),
		backoff.WithMaxElapsedTime(0),
		backoff.WithRandomizationFactor(o.jitter),
		backoff.WithMultiplier(2),
	)
	cursor := uint64(0)
	type ref struct {
		seq uint64
		pos journal.Pos
	}
	batch := make([]ref, 0, obBatch)
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		// Look up the next durable pending items.
		o.mu.Lock()
		if o.closed {
			o.mu.Unlock()
			return ErrClosed
		}
		durable := o.j.Durable()
		batch = batch[:0]
		i := uint64(0)
		if cursor > o.base {
			i = cursor - o.base
		}
		for ; i < uint64(len(o.live)) && len(batch) < obBatch; i++ {
			p := o.live[i]
			if p == 0 {
				continue
			}
			if p >= durable {
				break
			}
			batch = append(batch, ref{o.base + i, p})
		}
		pending := o.pending
		o.mu.Unlock()

		if len(batch) == 0 {
			if pending == 0 {
				return o.compact()
			}
			// Items are pending but not yet durable: wait for the writer.
			if err := o.j.Flush(); err != nil {
				return o.wrapErr(err)
			}
			continue
		}
		for _, rf := range batch {
			r, err := o.readAt(rf.pos, rf.seq)
			if err != nil {
				if o.isClosed() {
					return ErrClosed
				}
				return err
			}
			it := r.item()
			if err := o.deliverOne(ctx, lim, bo, r, &it, deliver); err != nil {
				return err
			}
			cursor = rf.seq + 1
		}
		if err := o.compact(); err != nil {
			return err
		}
	}
}

func (o *Outbox) isClosed() bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.closed
}

// deliverOne delivers one item until it succeeds or goes to the dead
// letters, or ctx is done.
func (o *Outbox) deliverOne(ctx context.Context, lim *rate.Limiter, bo *backoff.ExponentialBackOff,
	r obRecord, it *Item, deliver func(context.Context, Item) error) error {
	for attempt := 1; ; attempt++ {
		if lim != nil {
			if err := waitLimiter(ctx, lim); err != nil {
				return err
			}
		}
		it.Attempts = attempt
		o.mu.Lock()
		o.stats.InFlight = 1
		o.mu.Unlock()
		err := deliver(ctx, *it)
		o.mu.Lock()
		o.stats.InFlight = 0
		o.mu.Unlock()
		if err == nil {
			bo.Reset()
			return o.finish(obDone, r, "")
		}
		if ctx.Err() != nil {
			// Cancelled mid-delivery: not the item's fault, keep it pending.
			return ctx.Err()
		}
		o.mu.Lock()
		o.stats.Failures++
		o.stats.LastError = err
		o.mu.Unlock()
		if isPermanent(err) || o.opts.MaxAttempts > 0 && attempt >= o.opts.MaxAttempts {
			bo.Reset()
			return o.finish(obDead, r, err.Error())
		}
		t := time.NewTimer(bo.NextBackOff())
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-t.C:
		}
	}
}

// waitLimiter waits for the limiter's permission or for ctx, whichever
// comes first.
func waitLimiter(ctx context.Context, lim *rate.Limiter) error {
	res := lim.Reserve()
	d := res.Delay()
	if d == 0 {
		return nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		res.Cancel()
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// finish records that item r was delivered (typ obDone) or failed for good
// (obDead). A done record is not waited for: if it is lost in a crash the
// item is delivered again, which at-least-once allows. A dead record is
// waited for.
func (o *Outbox) finish(typ byte, r obRecord, reason string) error {
	rec := obRecord{typ: typ, seq: r.seq, key: r.key, stream: r.stream, reason: reason}
	o.mu.Lock()
	if o.closed {
		o.mu.Unlock()
		return ErrClosed
	}
	o.scratch = rec.appendTo(o.scratch[:0])
	_, ticket, err := o.j.Append(typ, o.scratch)
	if err != nil {
		o.mu.Unlock()
		return o.wrapErr(err)
	}
	pos := o.removePendingLocked(r.seq, r.stream)
	if typ == obDone {
		o.removeKeyLocked(r.key, r.seq)
		o.stats.Delivered++
		o.mu.Unlock()
		return nil
	}
	o.addDeadLocked(r.seq, pos, reason)
	o.stats.DeadLettered++
	o.mu.Unlock()
	return o.wrapErr(o.j.Wait(ticket))
}

// compact deletes the oldest segments while none of their items is
// pending, first copying any dead letters in them forward into the current
// segment. Segments go strictly oldest first, so a delivery or dead record
// is never deleted while the item it refers to remains.
func (o *Outbox) compact() error {
	o.compactMu.Lock()
	defer o.compactMu.Unlock()
	for {
		ids := o.j.Segments()
		if len(ids) == 0 || ids[0] >= o.j.Current() {
			return nil
		}
		id := ids[0]
		o.mu.Lock()
		if o.closed {
			o.mu.Unlock()
			return nil
		}
		c := o.segCount(id)
		if c.pending > 0 {
			o.mu.Unlock()
			return nil
		}
		var copied []uint64
		if c.dead > 0 {
			var err error
			if copied, err = o.copyDeadLocked(id); err != nil {
				o.mu.Unlock()
				return err
			}
		}
		o.mu.Unlock()
		// Whatever emptied the segment (a requeue, a copy) must be durable
		// before the segment goes.
		err := o.j.Flush()
		o.mu.Lock()
		for _, seq := range copied {
			delete(o.fresh, seq)
		}
		o.mu.Unlock()
		if err != nil {
			return o.wrapErr(err)
		}
		if err := o.j.Remove(id); err != nil {
			return err
		}
		o.mu.Lock()
		delete(o.segs, id)
		o.mu.Unlock()
	}
}

// copyDeadLocked appends a copy of every dead letter in segment id. The
// caller holds mu and compactMu. The copies are marked fresh, not to be
// read back, until the caller has flushed them; it returns their seqs.
func (o *Outbox) copyDeadLocked(id uint32) ([]uint64, error) {
	var copied []uint64
	for seq, d := range o.dead {
		if d.pos.Segment() != id {
			continue
		}
		r, err := o.readAt(d.pos, seq)
		if err != nil {
			return copied, err
		}
		r.typ, r.reason = obDeadCopy, d.reason
		o.scratch = r.appendTo(o.scratch[:0])
		p, ticket, err := o.j.Append(obDeadCopy, o.scratch)
		if err != nil {
			return copied, o.wrapErr(err)
		}
		o.segCount(id).dead--
		o.dead[seq] = obDeadEntry{pos: p, reason: d.reason}
		o.segCount(p.Segment()).dead++
		o.fresh[seq] = obFresh{key: r.key, enq: r.enq, ticket: ticket}
		copied = append(copied, seq)
	}
	return copied, nil
}
