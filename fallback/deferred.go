package fallback

import (
	"context"
	"errors"
	"fmt"
)

// Deferred returns a fallback step for writes: it enqueues the write in
// outbox, durably, and succeeds with accepted(req), which tells the caller
// "accepted; will sync". A nil accepted gives the zero Resp; Resp cannot be
// inferred from nil then, so name the types: Deferred[Req, Resp](...). The Source
// then has KindDeferred. A separate [Outbox.Replay] delivers the write once
// the dependency is back.
//
// item turns a request into the outbox [Item]: its Key is the write's
// idempotency key, its Stream the scope whose writes must stay in order
// (an account, a booking), its Payload the write itself. An error from
// item means the request cannot be stored; the chain stops with it at
// once (as with NoFallback).
//
// A chain with a deferred step keeps each stream in order: while the
// outbox still holds writes for req's stream, Run does not call the
// primary (or any step before the deferred one) and queues the write
// behind them, so a new write never overtakes an older one. The order
// holds for writes to a stream that follow one another, each Run
// returning before the next starts; writes made concurrently have no
// order to keep.
//
// The Key decides what a second write means. The same item enqueued again
// (a retry of the same write) is stored once and accepted each time. A
// different item under a Key the outbox still holds (pending or dead) is
// not stored: the step fails with an error wrapping [ErrDuplicate] that
// says so, and the chain stops with it at once (as with NoFallback), so
// that the caller is never told "accepted" for a write that was dropped.
//
// Once the caller's deadline has passed, the step enqueues under the
// chain's own context (see ChainSettings.FallbackTimeout), and a write of
// unknown outcome is deferred by default (see
// ChainSettings.ReportUnknownOutcome).
func Deferred[Req, Resp any](name string, outbox *Outbox, item func(Req) (Item, error), accepted func(Req) Resp) Step[Req, Resp] {
	if outbox == nil || item == nil {
		return Step[Req, Resp]{}
	}
	return deferredStep(name, outbox, item, accepted)
}

// outboxQueue is the part of an *Outbox a deferred step uses.
type outboxQueue interface {
	Enqueue(context.Context, Item) error
	Pending() int
	StreamPending(stream string) int
}

// deferredStep returns a deferred step that enqueues into outbox.
func deferredStep[Req, Resp any](name string, outbox outboxQueue, item func(Req) (Item, error), accepted func(Req) Resp) Step[Req, Resp] {
	return Step[Req, Resp]{
		name:     name,
		kind:     KindDeferred,
		deferred: &deferral[Req, Resp]{name: name, outbox: outbox, item: item, accepted: accepted},
	}
}

// deferral is the state of a deferred step.
type deferral[Req, Resp any] struct {
	name     string
	outbox   outboxQueue
	item     func(Req) (Item, error)
	accepted func(Req) Resp
}

// pendingWrite holds the outbox item of one Run, built at most once.
type pendingWrite struct {
	item  Item
	built bool
}

// build returns the item for req, building it on first use.
func (d *deferral[Req, Resp]) build(req Req, w *pendingWrite) (*Item, error) {
	if !w.built {
		it, err := d.item(req)
		if err != nil {
			return nil, NoFallback(fmt.Errorf("fallback: deferred step %q: building the outbox item: %w", d.name, err))
		}
		w.item, w.built = it, true
	}
	return &w.item, nil
}

// enqueue stores req's item in the outbox and returns the accepted value.
func (d *deferral[Req, Resp]) enqueue(ctx context.Context, req Req, w *pendingWrite) (Resp, error) {
	var zero Resp
	it, err := d.build(req, w)
	if err != nil {
		return zero, err
	}
	if err := d.outbox.Enqueue(ctx, *it); err != nil {
		if errors.Is(err, ErrDuplicate) {
			return zero, NoFallback(fmt.Errorf("fallback: write %q NOT stored, a different write with that key is still held: %w", it.Key, err))
		}
		return zero, err
	}
	if d.accepted == nil {
		return zero, nil
	}
	return d.accepted(req), nil
}

// queuedBehind reports whether req must be queued behind writes of its
// stream that wait in the outbox. It builds the item only when the outbox
// holds anything at all. An error is the deferred step's.
func (c *Chain[Req, Resp]) queuedBehind(req Req, w *pendingWrite) (bool, error) {
	d := c.fallbacks[c.deferredAt].deferred
	if d.outbox.Pending() == 0 {
		return false, nil
	}
	it, err := d.build(req, w)
	if err != nil {
		return false, err
	}
	return d.outbox.StreamPending(it.Stream) > 0, nil
}
