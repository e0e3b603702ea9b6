package fallback

import (
	"errors"

	"github.com/ringfence/ringfence/internal/journal"
)

// How the outbox lives with a full disk.
//
// The journal undoes a batch that a full disk refused before any of it was
// synced, and stops appending until told to resume (journal.NoSpace).
// What the outbox does with each record of an undone batch depends on
// what the record says:
//
//   - A new item (Enqueue) is forgotten: its caller is told it was not
//     stored.
//   - A requeue or a dead letter's copy is reverted: the dead letter is
//     where it was.
//   - A delivery or a dead-letter mark (Replay) is kept in memory as owed:
//     the delivery happened and cannot be taken back, so the state keeps
//     counting it, and the record is appended again before any other
//     record. That order is what makes the log safe to read after a
//     crash: whatever the log holds after an owed mark, it holds the mark
//     too. If the process dies first, the item is delivered again, which
//     at-least-once delivery allows.
//
// Replay needs no space to make progress: each mark it cannot write is
// owed, and a segment whose items are all settled is deleted without
// writing anything (the floor is rewritten in place), which is how a full
// disk gets space back; the owed marks of its items go with it.

// obMark is a delivery (obDone) or dead-letter (obDead) record that the
// outbox's state already counts and that is not known to be durable.
type obMark struct {
	typ    byte
	seq    uint64
	seg    uint32 // segment of the item's own record
	key    string
	stream string
	reason string
	ticket uint64 // the batch it was appended in; 0 while owed
}

// minPayAt is how many marks may be owed before a delivery tries to write
// them again; the threshold then doubles with every failed try, so a disk
// that stays full costs writes in proportion to the deliveries made.
const minPayAt = 64

func (m *obMark) appendTo(b []byte) []byte {
	r := obRecord{typ: m.typ, seq: m.seq, key: m.key, stream: m.stream, reason: m.reason}
	return r.appendTo(b)
}

// appendLocked appends a record that must follow every mark the state
// counts: owed marks are appended first. If the journal is stopped after
// a full disk undid a batch, the undone records are dealt with and the
// append is tried once more, so every call makes a real attempt at the
// disk. body must not be o.markBuf. The caller holds mu.
func (o *Outbox) appendLocked(typ byte, body []byte) (journal.Pos, uint64, error) {
	for try := 0; ; try++ {
		err := o.payLocked()
		if err == nil {
			var p journal.Pos
			var ticket uint64
			if p, ticket, err = o.j.Append(typ, body); err == nil {
				return p, ticket, nil
			}
		}
		o.diskFullLocked(err)
		if try > 0 || !errors.Is(err, journal.ErrNoSpace) {
			return 0, 0, o.wrapErr(err)
		}
	}
}

// payLocked appends the owed marks. The caller holds mu.
func (o *Outbox) payLocked() error {
	if !o.owed {
		return nil
	}
	for i := range o.marks {
		m := &o.marks[i]
		if m.ticket != 0 {
			continue
		}
		o.markBuf = m.appendTo(o.markBuf[:0])
		_, ticket, err := o.j.Append(m.typ, o.markBuf)
		if err != nil {
			// Those appended so far are in a batch that failed, or will be
			// settled with it.
			return err
		}
		m.ticket = ticket
	}
	o.owed = false
	return nil
}

// markLocked records delivery or dead-letter mark m, which the caller has
// already applied to the state: it appends the record, or adds it to the
// owed marks while a full disk refuses them. It returns the record's
// ticket, or 0 if the mark is owed; only a failure other than a full disk
// is returned as an error. The caller holds mu.
func (o *Outbox) markLocked(m obMark) (uint64, error) {
	if len(o.marks) >= o.pruneAt {
		o.pruneMarksLocked()
		o.pruneAt = max(2*len(o.marks), minPayAt)
	}
	if o.owed && len(o.marks)+1 < o.payAt {
		o.marks = append(o.marks, m)
		return 0, nil
	}
	err := o.payLocked()
	if err == nil {
		o.markBuf = m.appendTo(o.markBuf[:0])
		if _, m.ticket, err = o.j.Append(m.typ, o.markBuf); err == nil {
			o.marks = append(o.marks, m)
			return m.ticket, nil
		}
	}
	if !errors.Is(err, journal.ErrNoSpace) {
		return 0, o.wrapErr(err)
	}
	o.diskFullLocked(err)
	m.ticket = 0
	o.marks = append(o.marks, m)
	o.owe()
	return 0, nil
}

// owe marks every mark as owed and sets when a delivery next tries to
// write them. The caller holds mu and has reset their tickets.
func (o *Outbox) owe() {
	o.owed = len(o.marks) > 0
	o.payAt = max(2*len(o.marks), minPayAt)
}

// pruneMarksLocked forgets the marks known to be durable, and deals with
// a batch a full disk undid if the journal is stopped for one. The caller
// holds mu.
func (o *Outbox) pruneMarksLocked() {
	if len(o.marks) == 0 || o.owed {
		return
	}
	synced, stopped := o.j.Synced()
	if stopped {
		o.settleLocked()
		return
	}
	i := 0
	for i < len(o.marks) && o.marks[i].ticket != 0 && o.marks[i].ticket <= synced {
		i++
	}
	if i > 0 {
		n := copy(o.marks, o.marks[i:])
		clear(o.marks[n:])
		o.marks = o.marks[:n]
	}
}

// dropMarksBelowLocked forgets the marks of items whose records were in
// segments below floor, now deleted: nothing on disk needs them any more.
// The caller holds mu.
func (o *Outbox) dropMarksBelowLocked(floor uint32) {
	kept := o.marks[:0]
	for _, m := range o.marks {
		if m.seg >= floor {
			kept = append(kept, m)
		}
	}
	clear(o.marks[len(kept):])
	o.marks = kept
	if len(o.marks) == 0 {
		o.owed = false
	}
	o.payAt = 0 // space was freed: the next delivery tries to write
}

// recordOwed waits for the marks appended so far, appending the owed ones
// first, so that a Replay that ends has its deliveries recorded or knows
// that a full disk keeps them off. It reports whether it wrote owed marks.
func (o *Outbox) recordOwed() bool {
	o.mu.Lock()
	if len(o.marks) == 0 || o.closed {
		o.mu.Unlock()
		return false
	}
	owed := o.owed
	err := o.payLocked()
	ticket := o.marks[len(o.marks)-1].ticket
	o.mu.Unlock()
	if err == nil {
		err = o.j.Wait(ticket)
	}
	o.diskFull(err)
	o.mu.Lock()
	o.pruneMarksLocked()
	o.mu.Unlock()
	return owed && err == nil
}

// owes reports whether a full disk keeps marks off the disk.
func (o *Outbox) owes() bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.owed
}

// unrecordedLocked returns how many deliveries and dead letters the state
// counts that a full disk has kept off the disk. The caller holds mu.
func (o *Outbox) unrecordedLocked() int {
	o.pruneMarksLocked()
	if !o.owed {
		return 0
	}
	return len(o.marks)
}

// diskFull returns err as the outbox reports it, first dealing with the
// batch a full disk undid if err says so. The caller does not hold mu.
func (o *Outbox) diskFull(err error) error {
	if errors.Is(err, journal.ErrNoSpace) {
		o.mu.Lock()
		o.settleLocked()
		o.mu.Unlock()
	}
	return o.wrapErr(err)
}

// diskFullLocked is diskFull for a caller that holds mu.
func (o *Outbox) diskFullLocked(err error) {
	if errors.Is(err, journal.ErrNoSpace) {
		o.settleLocked()
	}
}

// settleLocked, if the journal is stopped after a full disk undid a run
// of batches, applies the undo to the state as the file comment says and
// lets the journal append again. The caller holds mu.
func (o *Outbox) settleLocked() {
	lo, hi, stopped := o.j.NoSpace()
	if !stopped {
		return
	}
	for seq, f := range o.fresh {
		if f.ticket >= lo && f.ticket <= hi {
			o.undoFreshLocked(seq, f)
		}
	}
	kept := o.marks[:0]
	for _, m := range o.marks {
		switch {
		case m.ticket != 0 && m.ticket < lo:
			// Durable: an earlier batch.
		default:
			if m.ticket <= hi {
				m.ticket = 0
			}
			kept = append(kept, m)
		}
	}
	clear(o.marks[len(kept):])
	o.marks = kept
	o.owe()
	o.j.Resume()
}

// undoFreshLocked reverts record f of item seq, which a full disk undid.
// The caller holds mu.
func (o *Outbox) undoFreshLocked(seq uint64, f obFresh) {
	delete(o.fresh, seq)
	switch f.kind {
	case obItem, obRequeue:
		if o.isPending(seq) {
			o.removePendingLocked(seq, f.stream)
		}
		o.removeKeyLocked(f.key, seq)
		if f.kind == obRequeue {
			o.addDeadLocked(f.old, f.oldPos, f.reason)
			o.insertKeyLocked(f.key, f.old)
		}
	case obDeadCopy:
		if d, ok := o.dead[seq]; ok {
			o.segCount(d.pos.Segment()).dead--
			o.addDeadLocked(seq, f.oldPos, d.reason)
		}
	}
}
