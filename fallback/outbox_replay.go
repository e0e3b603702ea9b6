package fallback

import (
	"context"
	"errors"
	"time"

	"github.com/cenkalti/backoff/v4"
	"golang.org/x/time/rate"

	"github.com/ringfence/ringfence/breaker"
	"github.com/ringfence/ringfence/internal/journal"
	"github.com/ringfence/ringfence/retry"
)

// obBatch is how many pending items Replay looks up at a time. Their
// records are read from disk one by one as they are delivered, so memory
// holds at most one payload.
const obBatch = 256

// compactEvery is how many segments Replay moves through between
// compactions, unless a full disk is keeping records off.
const compactEvery = 8

// Replay delivers the pending items by calling deliver once per item on
// the calling goroutine, and returns nil when nothing is pending any more,
// including items enqueued while it runs.
//
// Items are delivered one at a time in the order they were enqueued, and
// an item is removed only after deliver returns nil. So delivery is at
// least once: a crash between deliver and the removal's record reaching
// disk delivers the item again, and the receiver should use Item.Key to
// apply it exactly once.
//
// When deliver fails, the item's stream is held back: its item is retried
// after a wait (exponential backoff per stream: RetryInitial, doubling up
// to RetryMax, each wait randomized by ±50%, or longer when deliver's error
// asks for it through a RetryAfter method, as a *breaker.OpenError and a
// *retry.StatusError do), and its later items wait
// behind it, so a stream is never reordered; items of other streams keep
// flowing meanwhile. An item whose error is wrapped with [retry.Permanent], or
// that has failed OutboxOptions.MaxAttempts times (rejections by a local
// breaker, errors matching breaker.ErrOpen, are not counted: the item
// never reached the receiver), is moved to the dead
// letters (see [Outbox.DeadLetters] and [Outbox.Requeue]) and its stream
// goes on. Every attempt is paced by OutboxOptions.Rate and Burst. While
// streams are held back, Replay keeps a small record (16 bytes) per item
// waiting behind them.
//
// Replay needs no free disk space: on a full disk it records deliveries
// as soon as it can and frees each segment whose items are all settled
// (see the package doc).
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
	rp := &obReplay{o: o, deliver: deliver, held: make(map[string]*obHeld)}
	if o.opts.Rate != rate.Inf {
		rp.lim = rate.NewLimiter(o.opts.Rate, o.opts.Burst)
	}
	return rp.run(ctx)
}

// obRef locates a pending item.
type obRef struct {
	seq uint64
	pos journal.Pos
}

// obHeld is a stream held back after a failed delivery: items[0] failed
// and is retried at until; the rest wait behind it in order.
type obHeld struct {
	items    []obRef
	attempts int // failed attempts of items[0]
	until    time.Time
	bo       *backoff.ExponentialBackOff
}

// obReplay is the state of one Replay call; only its goroutine uses it.
type obReplay struct {
	o       *Outbox
	deliver func(context.Context, Item) error
	lim     *rate.Limiter
	held    map[string]*obHeld
	nheld   int    // items in all held lists
	cursor  uint64 // items before it have been delivered, dead or held
	seg     uint32 // segment of the last item reached
	crossed int    // segment boundaries crossed
	batch   []obRef
}

func (rp *obReplay) run(ctx context.Context) error {
	o := rp.o
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		if o.isClosed() {
			return ErrClosed
		}
		// Streams whose retry time has come go first.
		if name, h := rp.due(); h != nil {
			if err := rp.retry(ctx, name, h); err != nil {
				return err
			}
			continue
		}
		if len(rp.batch) == 0 {
			rp.fill()
		}
		if len(rp.batch) > 0 {
			ref := rp.batch[0]
			if seg := ref.pos.Segment(); seg != rp.seg {
				// Free the segments behind as the replay moves on: a long
				// backlog gives its disk back as it drains (every few
				// segments), and a full disk gets room (at once).
				if rp.seg != 0 {
					rp.crossed++
					if rp.crossed%compactEvery == 0 || o.owes() {
						if err := o.compact(); err != nil {
							return err
						}
					}
				}
				rp.seg = seg
			}
			rp.batch = rp.batch[1:]
			rp.cursor = ref.seq + 1
			if err := rp.next(ctx, ref); err != nil {
				return err
			}
			continue
		}
		if err := o.compact(); err != nil {
			return err
		}
		pending := o.Pending()
		switch {
		case pending == 0:
			// Writing the owed records may start new segments; the
			// segments before them can go then.
			if o.recordOwed() {
				return o.compact()
			}
			return nil
		case pending > rp.nheld:
			// Items are pending but not yet durable: wait for the writer.
			// On a full disk they are undone, and no longer pending.
			if err := o.diskFull(o.j.Flush()); err != nil && !errors.Is(err, ErrDiskFull) {
				return err
			}
		default:
			// Only held streams are left: wait for the first retry time,
			// or for new items, which other streams may deliver meanwhile.
			if err := rp.sleep(ctx); err != nil {
				return err
			}
		}
	}
}

// fill looks up the next durable pending items from the cursor on.
func (rp *obReplay) fill() {
	o := rp.o
	o.mu.Lock()
	defer o.mu.Unlock()
	durable := o.j.Durable()
	rp.batch = rp.batch[:0]
	i := uint64(0)
	if rp.cursor > o.base {
		i = rp.cursor - o.base
	}
	for ; i < uint64(len(o.live)) && len(rp.batch) < obBatch; i++ {
		p := o.live[i]
		if p == 0 {
			continue
		}
		if p >= durable {
			break
		}
		rp.batch = append(rp.batch, obRef{o.base + i, p})
	}
}

// due returns a held stream whose retry time has come, if any.
func (rp *obReplay) due() (string, *obHeld) {
	if len(rp.held) == 0 {
		return "", nil
	}
	now := time.Now()
	var name string
	var first *obHeld
	for n, h := range rp.held {
		if !h.until.After(now) && (first == nil || h.items[0].seq < first.items[0].seq) {
			name, first = n, h
		}
	}
	return name, first
}

// sleep waits until the earliest retry time, a newly durable item, or ctx.
func (rp *obReplay) sleep(ctx context.Context) error {
	var until time.Time
	for _, h := range rp.held {
		if until.IsZero() || h.until.Before(until) {
			until = h.until
		}
	}
	t := time.NewTimer(time.Until(until))
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
	case <-rp.o.wake:
	}
	return nil
}

// read reads the pending item at ref.
func (rp *obReplay) read(ref obRef) (obRecord, error) {
	r, err := rp.o.readAt(ref.pos, ref.seq)
	if err != nil && rp.o.isClosed() {
		return r, ErrClosed
	}
	return r, err
}

// next handles a newly reached item: it joins its stream's held list, or
// is delivered once.
func (rp *obReplay) next(ctx context.Context, ref obRef) error {
	r, err := rp.read(ref)
	if err != nil {
		return err
	}
	if h := rp.held[r.stream]; h != nil {
		h.items = append(h.items, ref)
		rp.nheld++
		return nil
	}
	ok, fail, err := rp.attempt(ctx, r, 1)
	if err != nil || ok {
		return err
	}
	h := &obHeld{items: []obRef{ref}, bo: rp.newBackOff()}
	h.failed(fail)
	rp.held[r.stream] = h
	rp.nheld++
	return nil
}

// retry delivers the held items of a stream in order until one fails
// again or the list is empty.
func (rp *obReplay) retry(ctx context.Context, name string, h *obHeld) error {
	for len(h.items) > 0 {
		r, err := rp.read(h.items[0])
		if err != nil {
			return err
		}
		ok, fail, err := rp.attempt(ctx, r, h.attempts+1)
		if err != nil {
			return err
		}
		if !ok {
			h.failed(fail)
			return nil
		}
		h.items, h.attempts = h.items[1:], 0
		h.bo.Reset()
		rp.nheld--
	}
	delete(rp.held, name)
	return nil
}

// failed records a failed delivery of the stream's first item and sets
// when it is tried again: after the next backoff interval, or later if the
// error asks for a longer delay through a RetryAfter method (a breaker's
// *breaker.OpenError, a server's Retry-After in a *retry.StatusError).
// A rejection by a local circuit breaker (breaker.ErrOpen) never reached
// the receiver, so it does not count against OutboxOptions.MaxAttempts.
func (h *obHeld) failed(fail error) {
	if !errors.Is(fail, breaker.ErrOpen) {
		h.attempts++
	}
	wait := h.bo.NextBackOff()
	var ra interface{ RetryAfter() time.Duration }
	if errors.As(fail, &ra) {
		wait = max(wait, ra.RetryAfter())
	}
	h.until = time.Now().Add(wait)
}

func (rp *obReplay) newBackOff() *backoff.ExponentialBackOff {
	return backoff.NewExponentialBackOff(
		backoff.WithInitialInterval(rp.o.opts.RetryInitial),
		backoff.WithMaxInterval(rp.o.opts.RetryMax),
		backoff.WithMaxElapsedTime(0),
		backoff.WithRandomizationFactor(rp.o.jitter),
		backoff.WithMultiplier(2),
	)
}

// attempt makes delivery attempt number n of item r. It reports true when
// the item is settled (delivered, or moved to the dead letters) and false,
// with deliver's error, when it failed and should be retried later. It
// returns ctx.Err() if ctx is done before or during the attempt, leaving
// the item pending.
func (rp *obReplay) attempt(ctx context.Context, r obRecord, n int) (settled bool, fail, err error) {
	o := rp.o
	if rp.lim != nil {
		if err := waitLimiter(ctx, rp.lim); err != nil {
			return false, nil, err
		}
	}
	it := r.item()
	it.Attempts = n
	o.mu.Lock()
	o.stats.InFlight = 1
	o.mu.Unlock()
	err = rp.deliver(ctx, it)
	o.mu.Lock()
	o.stats.InFlight = 0
	o.mu.Unlock()
	if err == nil {
		return true, nil, o.finish(obDone, r, "")
	}
	if ctx.Err() != nil {
		// Cancelled mid-delivery: not the item's fault, keep it pending.
		return false, nil, ctx.Err()
	}
	o.mu.Lock()
	o.stats.Failures++
	o.stats.LastError = err
	o.mu.Unlock()
	local := errors.Is(err, breaker.ErrOpen)
	if retry.IsPermanent(err) || !local && o.opts.MaxAttempts > 0 && n >= o.opts.MaxAttempts {
		o.logFailure(r, n, true, err)
		return true, nil, o.finish(obDead, r, err.Error())
	}
	o.logFailure(r, n, false, err)
	return false, err, nil
}

func (o *Outbox) isClosed() bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.closed
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
// waited for. On a full disk neither fails: the outbox counts the item as
// settled and owes the record (see outbox_full.go).
func (o *Outbox) finish(typ byte, r obRecord, reason string) error {
	o.mu.Lock()
	if o.closed {
		o.mu.Unlock()
		return ErrClosed
	}
	if !o.isPending(r.seq) {
		o.mu.Unlock()
		return nil
	}
	p := o.live[r.seq-o.base]
	ticket, err := o.markLocked(obMark{typ: typ, seq: r.seq, seg: p.Segment(), key: r.key, stream: r.stream, reason: reason})
	if err != nil {
		o.mu.Unlock()
		return err
	}
	o.removePendingLocked(r.seq, r.stream)
	if typ == obDone {
		o.removeKeyLocked(r.key, r.seq)
		o.stats.Delivered++
		o.mu.Unlock()
		return nil
	}
	o.addDeadLocked(r.seq, p, reason)
	o.stats.DeadLettered++
	o.mu.Unlock()
	if ticket == 0 {
		return nil
	}
	err = o.j.Wait(ticket)
	if !errors.Is(err, journal.ErrNoSpace) {
		return o.wrapErr(err)
	}
	o.diskFull(err) // the mark is owed now
	return nil
}

// compact deletes the oldest segments while none of their items is
// pending, first copying any dead letters in them forward into the current
// segment. Segments go strictly oldest first, so a delivery or dead record
// is never deleted while the item it refers to remains. All the segments
// found removable go in one [journal.Journal.RemoveBelow], which needs no
// free space on disk. On a full disk the copies may be refused; then only
// the segments that need none go, and compact returns nil.
func (o *Outbox) compact() error {
	o.compactMu.Lock()
	defer o.compactMu.Unlock()
	ids := o.j.Segments()
	cur := o.j.Current()
	if len(ids) == 0 || ids[0] >= cur {
		return nil
	}
	o.mu.Lock()
	if o.closed {
		o.mu.Unlock()
		return nil
	}
	floor, copied, ticket, err := o.removableLocked(ids[0], cur, true)
	o.mu.Unlock()
	if err != nil {
		return err
	}
	if ticket != 0 {
		// The copies must be durable before the segments they leave go.
		err := o.j.Wait(ticket)
		o.mu.Lock()
		if errors.Is(err, journal.ErrNoSpace) {
			// The copies in undone batches were reverted: those dead
			// letters are back where they were, and only what needs no
			// copy can go.
			o.settleLocked()
			floor, _, _, _ = o.removableLocked(ids[0], cur, false)
		}
		if err == nil || errors.Is(err, journal.ErrNoSpace) {
			// The copies left are durable.
			for _, seq := range copied {
				if f, ok := o.fresh[seq]; ok && f.kind == obDeadCopy {
					delete(o.fresh, seq)
				}
			}
		}
		o.mu.Unlock()
		if err != nil && !errors.Is(err, journal.ErrNoSpace) {
			return o.wrapErr(err)
		}
	}
	if floor == ids[0] {
		return nil
	}
	err = o.j.RemoveBelow(floor)
	if last := o.j.Segments(); errors.Is(err, journal.ErrNoSpace) && floor > last[len(last)-1] {
		// Records appended meanwhile had moved Current on to a segment
		// that a full disk then kept from being made: move the floor as
		// far as the segments on disk allow.
		floor, err = last[len(last)-1], nil
		if floor > ids[0] {
			err = o.j.RemoveBelow(floor)
		}
	}
	if err != nil {
		if errors.Is(err, journal.ErrNoSpace) {
			return nil // nothing was removed; a later compaction tries again
		}
		return o.wrapErr(err)
	}
	o.mu.Lock()
	for id := range o.segs {
		if id < floor {
			delete(o.segs, id)
		}
	}
	o.dropMarksBelowLocked(floor)
	o.mu.Unlock()
	return nil
}

// removableLocked returns the lowest segment from first on that must be
// kept: the first below cur holding a pending item, or, if copy is false,
// a dead letter. With copy set, the dead letters of the segments before it
// are copied forward; it returns their seqs and the last copy's ticket
// (0 if none), and stops at a segment whose copy a full disk refused. The
// caller holds mu and compactMu.
func (o *Outbox) removableLocked(first, cur uint32, copy bool) (uint32, []uint64, uint64, error) {
	floor := first
	var copied []uint64
	var last uint64
	for ; floor < cur; floor++ {
		c := o.segCount(floor)
		if c.pending > 0 {
			break
		}
		if c.dead == 0 {
			continue
		}
		if !copy {
			break
		}
		more, ticket, err := o.copyDeadLocked(floor)
		copied = append(copied, more...)
		last = max(last, ticket)
		if errors.Is(err, ErrDiskFull) {
			break
		}
		if err != nil {
			return floor, copied, last, err
		}
	}
	return floor, copied, last, nil
}

// copyDeadLocked appends a copy of every dead letter in segment id. The
// caller holds mu and compactMu. The copies are marked fresh, not to be
// read back, until the caller has waited for them; it returns their seqs
// and the last one's ticket.
func (o *Outbox) copyDeadLocked(id uint32) ([]uint64, uint64, error) {
	var copied []uint64
	var last uint64
	for seq, d := range o.dead {
		if d.pos.Segment() != id {
			continue
		}
		r, err := o.readAt(d.pos, seq)
		if err != nil {
			return copied, last, err
		}
		r.typ, r.old, r.reason = obDeadCopy, 0, d.reason
		o.scratch = r.appendTo(o.scratch[:0])
		p, ticket, err := o.appendLocked(obDeadCopy, o.scratch)
		if err != nil {
			return copied, last, err
		}
		last = ticket
		o.segCount(id).dead--
		o.dead[seq] = obDeadEntry{pos: p, reason: d.reason}
		o.segCount(p.Segment()).dead++
		o.fresh[seq] = obFresh{kind: obDeadCopy, key: r.key, stream: r.stream, enq: r.enq, ticket: ticket, oldPos: d.pos}
		copied = append(copied, seq)
	}
	return copied, last, nil
}
