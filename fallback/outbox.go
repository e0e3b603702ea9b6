package fallback

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"hash/maphash"
	"log/slog"
	"math"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel/metric"
	"golang.org/x/time/rate"

	"github.com/ringfence/ringfence/internal/journal"
)

// Errors returned by the [Outbox], checked with errors.Is.
var (
	// ErrCorrupt means an outbox file is damaged somewhere other than the
	// torn tail a crash leaves. OpenOutbox returns it, naming the file and
	// offset; damaged data is never returned as an item.
	ErrCorrupt = errors.New("fallback: outbox is corrupt")
	// ErrClosed is returned by calls made after [Outbox.Close].
	ErrClosed = errors.New("fallback: outbox is closed")
	// ErrReplayRunning is returned by [Outbox.Replay] while another Replay
	// of the same Outbox is running.
	ErrReplayRunning = errors.New("fallback: outbox replay already running")
	// ErrNoDeadLetter is returned by [Outbox.Requeue] when no dead letter
	// has the given key.
	ErrNoDeadLetter = errors.New("fallback: no dead letter with that key")
	// ErrInvalidItem is returned by [Outbox.Enqueue] for an item it cannot
	// store, such as one with an empty key.
	ErrInvalidItem = errors.New("fallback: invalid outbox item")
	// ErrInUse is returned by [OpenOutbox] when the directory is already
	// open, in this process or another (on Unix systems, where it is
	// enforced with an advisory lock on the directory itself).
	ErrInUse = errors.New("fallback: outbox directory is in use")
	// ErrDiskFull is wrapped, with the file system's error, by the errors
	// of calls that could not write because the disk or the quota is full
	// (ENOSPC, EDQUOT). An [Outbox.Enqueue] that returns it stored
	// nothing; see the package doc for when a later call tries again.
	ErrDiskFull = errors.New("fallback: outbox disk is full")
	// ErrDuplicate is returned by [Outbox.Enqueue] for an item whose key is
	// already pending or dead with a different stream or payload: the
	// stored item is kept and the new one is not stored. Enqueueing an
	// item identical to the stored one is an idempotent retry and returns
	// nil.
	ErrDuplicate = errors.New("fallback: outbox already holds a different item with that key")
	// ErrOutboxFormat is returned by [OpenOutbox] for a directory whose
	// files were written in an older on-disk format (segments without
	// numbers in their headers). There is no conversion: deliver the
	// items with the version that wrote them, or move the directory aside.
	ErrOutboxFormat = errors.New("fallback: outbox files are in an unsupported format")
)

// Item is one unit of deferred work held by an [Outbox].
type Item struct {
	// Key is the idempotency key. It is required. While an item with this
	// key is stored (pending or dead), enqueuing the key again stores
	// nothing: the same item again is an idempotent retry, a different one
	// is refused with [ErrDuplicate]. The receiver can use the key to apply
	// the work exactly once.
	Key string
	// Stream is the ordering scope, such as an account or a booking: the
	// items of one stream are delivered in the order they were enqueued.
	// The empty string is a stream like any other.
	Stream string
	// Payload is the work itself. Enqueue copies it.
	Payload []byte
	// Enqueued is when the item was first enqueued. Enqueue sets it; a
	// requeued dead letter keeps its original time.
	Enqueued time.Time
	// Seq is the item's place in the outbox's global order, set by the
	// outbox when it hands the item out. Enqueue ignores it.
	Seq uint64
	// Attempts counts the delivery attempts the current Replay has made
	// for this item, including the one in progress; it is 1 on the first.
	Attempts int
}

// DeadLetter is an item that failed permanently and is kept until it is
// requeued.
type DeadLetter struct {
	Item   Item   // the item as it was enqueued
	Reason string // the delivery error's message
}

// OutboxStats is a snapshot of an [Outbox]'s state and replay progress.
type OutboxStats struct {
	Pending      int    // items waiting for delivery, including one in flight
	Dead         int    // dead letters kept
	InFlight     int    // items being delivered right now (0 or 1)
	Delivered    uint64 // items delivered since OpenOutbox
	Failures     uint64 // failed delivery attempts since OpenOutbox
	DeadLettered uint64 // items moved to the dead letters since OpenOutbox
	LastError    error  // the last delivery error, or nil
	Replaying    bool   // whether a Replay is running
	Segments     int    // segment files on disk
	Bytes        int64  // their total size
	// Unrecorded counts the deliveries and dead letters made that a full
	// disk has kept from being recorded. They are counted everywhere else
	// as done; they are recorded as soon as a write succeeds, and if the
	// process stops first their items are delivered again after a reopen.
	Unrecorded int
}

// OutboxOptions configures an [Outbox]. Every zero field means the default
// its comment states, so OutboxOptions{} is a sensible configuration.
type OutboxOptions struct {
	// SegmentSize is the size at which the log moves on to a new segment
	// file. Segments whose items have all been delivered are deleted, so
	// this bounds the disk space that delivered items hold. Zero means
	// 32 MiB; otherwise it must be at least 4096.
	SegmentSize int64
	// MaxItemSize bounds len(Key)+len(Stream)+len(Payload) of one item.
	// Zero means 4 MiB; at most 32 MiB.
	MaxItemSize int
	// RetryInitial is the wait before retrying the first failed delivery
	// of an item; later waits double up to RetryMax, and each is randomized
	// by ±50%. Zero means 100ms.
	RetryInitial time.Duration
	// RetryMax caps the wait between retries of one item. Zero means one
	// minute. It must not be less than RetryInitial.
	RetryMax time.Duration
	// MaxAttempts moves an item to the dead letters after this many failed
	// deliveries in one Replay. Zero means no limit: an item is retried
	// until it succeeds, fails permanently, or Replay is cancelled.
	MaxAttempts int
	// Rate is the most deliveries per second Replay makes, so that a
	// recovering service is not stampeded. Zero means 100 per second;
	// rate.Inf turns pacing off.
	Rate rate.Limit
	// Burst is how many deliveries may go out back to back when Replay has
	// been idle. Zero means 1. It is ignored when Rate is rate.Inf.
	Burst int

	// Logger, if not nil, receives a Warn record when an item is moved to
	// the dead letters and a Debug record for every other failed
	// delivery attempt, with the directory, the item's key and stream,
	// the attempt and the error. Nil means no logging.
	Logger *slog.Logger

	// MeterProvider, if not nil, gets the outbox's depth, oldest age,
	// dead letters and replayed items as OpenTelemetry instruments (see
	// METRICS.md at the root of the module), read from the same state as
	// Stats when the provider collects. Close unregisters them. Nil means
	// no instruments.
	MeterProvider metric.MeterProvider

	// fs, if set, replaces the file layer; tests use it to inject faults.
	fs journal.FS
	// hashKey, if set, replaces the key hash from the start; tests use it
	// to force collisions in the index built when opening.
	hashKey func(string) uint64
}

// Defaults for zero OutboxOptions fields.
const (
	DefaultOutboxSegmentSize  = journal.DefaultSegmentSize
	DefaultOutboxMaxItemSize  = 4 << 20
	DefaultOutboxRetryInitial = 100 * time.Millisecond
	DefaultOutboxRetryMax     = time.Minute
	DefaultOutboxRate         = rate.Limit(100)
)

func (o OutboxOptions) resolve() (OutboxOptions, error) {
	switch {
	case o.SegmentSize < 0 || o.SegmentSize > 0 && o.SegmentSize < 4096 || o.SegmentSize > 1<<31:
		return o, fmt.Errorf("fallback: OutboxOptions.SegmentSize must be 0 or in [4096, 2 GiB], got %d", o.SegmentSize)
	case o.MaxItemSize < 0 || o.MaxItemSize > 32<<20:
		return o, fmt.Errorf("fallback: OutboxOptions.MaxItemSize must be in [0, 32 MiB], got %d", o.MaxItemSize)
	case o.RetryInitial < 0:
		return o, fmt.Errorf("fallback: OutboxOptions.RetryInitial must not be negative, got %v", o.RetryInitial)
	case o.RetryMax < 0:
		return o, fmt.Errorf("fallback: OutboxOptions.RetryMax must not be negative, got %v", o.RetryMax)
	case o.MaxAttempts < 0:
		return o, fmt.Errorf("fallback: OutboxOptions.MaxAttempts must not be negative, got %d", o.MaxAttempts)
	case o.Rate < 0 || math.IsNaN(float64(o.Rate)):
		return o, fmt.Errorf("fallback: OutboxOptions.Rate must not be negative, got %v", o.Rate)
	case o.Burst < 0:
		return o, fmt.Errorf("fallback: OutboxOptions.Burst must not be negative, got %d", o.Burst)
	}
	if o.SegmentSize == 0 {
		o.SegmentSize = DefaultOutboxSegmentSize
	}
	if o.MaxItemSize == 0 {
		o.MaxItemSize = DefaultOutboxMaxItemSize
	}
	if o.RetryInitial == 0 {
		o.RetryInitial = DefaultOutboxRetryInitial
	}
	if o.RetryMax == 0 {
		o.RetryMax = DefaultOutboxRetryMax
	}
	if o.RetryMax < o.RetryInitial {
		return o, fmt.Errorf("fallback: OutboxOptions.RetryMax (%v) must not be less than RetryInitial (%v)", o.RetryMax, o.RetryInitial)
	}
	if o.Rate == 0 {
		o.Rate = DefaultOutboxRate
	}
	if o.Burst == 0 {
		o.Burst = 1
	}
	return o, nil
}

// Outbox is a durable, ordered store-and-forward queue: writes accepted
// while a service is unavailable are kept on disk and delivered later, in
// order within each stream, by [Outbox.Replay].
//
// The outbox is a directory holding an append-only log of checksummed
// records in segment files. [Outbox.Enqueue] returns only once its item is
// on stable storage; concurrent Enqueue calls share one write and one fsync
// (group commit), so throughput grows with the number of producers.
// Delivery, dead-lettering and requeuing append small records too. A
// segment is deleted once none of its items is pending or dead (dead
// letters in the oldest segment are first copied forward), so the disk
// holds roughly the backlog.
//
// Memory does not grow with payloads: items are read back from disk when
// they are delivered or listed, so at most one payload is in memory at a
// time. The outbox keeps, per stored item, its log position and a 32-bit
// fingerprint of its key (about 17 bytes in all for the items found when
// it was opened, measured with a million pending; items enqueued since
// take 20 to 35 bytes), and a count per stream.
//
// The directory is created with mode 0700 and its files with mode 0600,
// since payloads may be private (payments, bookings); the process's
// umask cannot widen them.
//
// After a write or an fsync has failed for any reason but a full disk
// (an I/O error, say), the outbox cannot know what reached the disk, so
// it acknowledges nothing more: every later Enqueue, including the retry
// of an item already accepted, returns the error until the Outbox is
// closed and opened again, which re-reads what is really on disk. A full
// disk is different, since a refused write is undone in place: see the
// package documentation.
//
// An Outbox owns one goroutine, the log writer, started by [OpenOutbox]
// and ended by [Outbox.Close]. Only one Outbox at a time may have a
// directory open ([ErrInUse]). An Outbox is safe for concurrent use. The
// zero value is not usable; call [OpenOutbox].
type Outbox struct {
	j      *journal.Journal
	dir    string
	opts   OutboxOptions
	seed   maphash.Seed
	jitter float64 // backoff randomization factor; tests set 0
	// hashKey, if set, replaces the key hash; tests use it to force
	// collisions.
	hashKey func(string) uint64

	replaying atomic.Bool
	// wake (capacity 1) tells a waiting Replay that an item became durable.
	wake chan struct{}

	// compactMu is held for reading while dead letters are read outside
	// mu, and for writing while compaction moves or deletes segments.
	compactMu sync.RWMutex

	mu      sync.Mutex // guards the fields below
	closed  bool
	nextSeq uint64
	base    uint64        // seq of live[0]
	live    []journal.Pos // pending items by seq-base; 0 once delivered or dead
	liveCap int           // capacity of live's whole backing array
	pending int           // nonzero entries of live
	dead    map[uint64]obDeadEntry
	// keys maps a 32-bit fingerprint of a stored item's key to its seq
	// minus seqBase; collide holds, by the key itself, the items whose
	// fingerprint another key holds or whose seq does not fit.
	keys    obKeys
	collide map[string]uint64
	seqBase uint64
	based   bool // whether seqBase has been set
	// opening holds, while the outbox is opened, an entry for obKeys per
	// item found (fp<<32 | seq-seqBase), stored or not; nil after.
	opening []uint64
	sized   bool // whether opening has sized live and opening for the log
	fresh   map[uint64]obFresh
	streams map[string]int    // pending items per stream
	intern  map[string]string // stream names while opening, nil after
	segs    map[uint32]*obSegCount
	scratch []byte
	// marks are the delivery and dead-letter records the state counts and
	// that are not known to be durable (see outbox_full.go): all appended,
	// in ticket order, or, once owed is set, kept off the disk by a full
	// one and appended again before any other record.
	marks   []obMark
	owed    bool
	payAt   int // while owed, a delivery tries to write them at this many
	pruneAt int // a delivery forgets the durable marks at this many
	markBuf []byte
	head    obHead
	stats   OutboxStats // Delivered, Failures, DeadLettered, InFlight, LastError

	reg metric.Registration // of OutboxOptions.MeterProvider; nil without
}

type obDeadEntry struct {
	pos    journal.Pos
	reason string
}

// obFresh describes an item record appended but perhaps not yet durable,
// which must not be read back from disk yet, and what undoes it if a full
// disk refuses it.
type obFresh struct {
	kind   byte // obItem, obRequeue or obDeadCopy
	key    string
	stream string
	enq    int64
	ticket uint64
	old    uint64      // obRequeue: the dead letter it replaces
	oldPos journal.Pos // obRequeue, obDeadCopy: where the dead letter was
	reason string      // obRequeue: the dead letter's reason
}

type obSegCount struct{ pending, dead int }

type obHead struct {
	seq uint64
	enq time.Time
}

// OpenOutbox opens the outbox in directory path, creating it if needed,
// and recovers its contents: every record is checked, and every segment
// file the log still needs must be there, in order, whole. A torn record
// at the very end, left by a crash in the middle of a write that was never
// acknowledged (cut short, or zero from a sector boundary to the end of
// the file), is cut off; any other damage, a missing, swapped or
// cut-short segment included, makes OpenOutbox return an error wrapping
// [ErrCorrupt] that names the file and offset. Files in an older format
// return [ErrOutboxFormat]. Invalid options return an error naming the
// field. OpenOutbox starts the log writer goroutine; call [Outbox.Close]
// when done.
func OpenOutbox(path string, opts OutboxOptions) (*Outbox, error) {
	if path == "" {
		return nil, errors.New("fallback: outbox path is empty")
	}
	opts, err := opts.resolve()
	if err != nil {
		return nil, err
	}
	o := &Outbox{
		dir:     path,
		opts:    opts,
		seed:    maphash.MakeSeed(),
		jitter:  0.5,
		hashKey: opts.hashKey,
		nextSeq: 1,
		wake:    make(chan struct{}, 1),
		dead:    make(map[uint64]obDeadEntry),
		collide: make(map[string]uint64),
		fresh:   make(map[uint64]obFresh),
		streams: make(map[string]int),
		segs:    make(map[uint32]*obSegCount),
		intern:  make(map[string]string),
	}
	j, err := journal.Open(path, journal.Options{SegmentSize: opts.SegmentSize, FS: opts.fs, Scanned: o.scanned}, o.recover)
	if err != nil {
		return nil, o.wrapErr(err)
	}
	o.j = j
	o.intern = nil
	if err := o.buildKeys(); err != nil {
		j.Close()
		return nil, err
	}
	if len(o.live) > 0 && cap(o.live) > len(o.live)+len(o.live)/8 {
		// Appending grew the index by doubling; give back the slack.
		o.live = slices.Clone(o.live)
		o.liveCap = cap(o.live)
	}
	if err := o.compact(); err != nil {
		j.Close()
		return nil, err
	}
	if err := o.instrument(opts.MeterProvider); err != nil {
		j.Close()
		return nil, err
	}
	return o, nil
}

// wrapErr maps journal errors to the outbox's sentinels.
func (o *Outbox) wrapErr(err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, journal.ErrClosed):
		return ErrClosed
	case errors.Is(err, journal.ErrLocked):
		return fmt.Errorf("%w: %w", ErrInUse, err)
	case errors.Is(err, journal.ErrNoSpace):
		return fmt.Errorf("%w: %w", ErrDiskFull, err)
	case errors.Is(err, journal.ErrFormat):
		return fmt.Errorf("%w: %w", ErrOutboxFormat, err)
	case errors.Is(err, journal.ErrCorrupt) && !errors.Is(err, ErrCorrupt):
		return fmt.Errorf("%w: %w", ErrCorrupt, err)
	}
	return err
}

func (o *Outbox) corruptAt(p journal.Pos, err error) error {
	return fmt.Errorf("%w: %s at offset %d: %v", ErrCorrupt,
		filepath.Join(o.dir, fmt.Sprintf("%08x.seg", p.Segment())), p.Offset(), err)
}

// recover applies one log record to the in-memory index while opening.
// It works on the record's bytes in place and allocates only for a new
// stream name or a colliding key.
func (o *Outbox) recover(p journal.Pos, typ byte, body []byte) error {
	r, err := decodeObView(typ, body)
	if err != nil {
		return o.corruptAt(p, err)
	}
	o.nextSeq = max(o.nextSeq, r.seq+1)
	stream := o.internStream(r.stream)
	switch typ {
	case obItem, obRequeue:
		if typ == obRequeue {
			if d, ok := o.dead[r.old]; ok {
				delete(o.dead, r.old)
				o.segCount(d.pos.Segment()).dead--
				o.removeKeyBytes(r.key, r.old)
			}
		}
		if o.stored(r.seq) {
			return o.corruptAt(p, fmt.Errorf("item %d is stored twice", r.seq))
		}
		if err := o.addPendingLocked(r.seq, p, stream); err != nil {
			return o.corruptAt(p, err)
		}
		o.insertKeyBytes(r.key, r.seq)
	case obDone:
		if o.isPending(r.seq) {
			o.removePendingLocked(r.seq, stream)
			o.removeKeyBytes(r.key, r.seq)
		}
	case obDead:
		if o.isPending(r.seq) {
			pos := o.removePendingLocked(r.seq, stream)
			o.addDeadLocked(r.seq, pos, string(r.reason))
		}
	case obDeadCopy:
		if o.isPending(r.seq) {
			return o.corruptAt(p, fmt.Errorf("item %d is copied as dead while pending", r.seq))
		}
		if d, ok := o.dead[r.seq]; ok {
			o.segCount(d.pos.Segment()).dead--
			o.dead[r.seq] = obDeadEntry{pos: p, reason: string(r.reason)}
			o.segCount(p.Segment()).dead++
		} else {
			o.addDeadLocked(r.seq, p, string(r.reason))
			o.insertKeyBytes(r.key, r.seq)
		}
	}
	return nil
}

// internStream returns the stream name b as a string, the same string for
// every record of the stream while opening.
func (o *Outbox) internStream(b []byte) string {
	if s, ok := o.intern[string(b)]; ok {
		return s
	}
	s := string(b)
	o.intern[s] = s
	return s
}

// insertKeyBytes is insertKeyLocked for a key still in a record's bytes.
func (o *Outbox) insertKeyBytes(key []byte, seq uint64) {
	if !o.based {
		o.seqBase, o.based = seq, true
	}
	if seq < o.seqBase || seq-o.seqBase >= obTomb {
		o.collide[string(key)] = seq
		return
	}
	// The index is built once the whole log is read (see buildKeys).
	o.opening = doubling(o.opening)
	o.opening = append(o.opening, uint64(o.fingerprintBytes(key))<<32|(seq-o.seqBase))
}

// removeKeyBytes is removeKeyLocked for a key still in a record's bytes,
// while opening. Entries in opening are not removed: buildKeys drops
// those of items no longer stored.
func (o *Outbox) removeKeyBytes(key []byte, seq uint64) {
	if s, ok := o.collide[string(key)]; ok && s == seq {
		delete(o.collide, string(key))
	}
}

// buildKeys builds the key index from the entries recorded while opening:
// those of items still stored go into one sorted array; an item whose
// fingerprint an older one holds is read back from the log and kept apart
// by its key, as a collision.
func (o *Outbox) buildKeys() error {
	entries := o.opening[:0]
	for _, e := range o.opening {
		if o.stored(o.seqBase + uint64(uint32(e))) {
			entries = append(entries, e)
		}
	}
	if cap(entries) > len(entries)+len(entries)/8 {
		entries = slices.Clone(entries)
	}
	o.opening = nil
	for _, e := range o.keys.build(entries) {
		seq := o.seqBase + uint64(uint32(e))
		r, err := o.readStoredLocked(seq)
		if err != nil {
			return err
		}
		o.collide[r.key] = seq
	}
	return nil
}

// fingerprintBytes is fingerprint for a key in bytes.
func (o *Outbox) fingerprintBytes(key []byte) uint32 {
	if o.hashKey != nil {
		return o.fingerprint(string(key))
	}
	h := maphash.Bytes(o.seed, key)
	return uint32(h ^ h>>32)
}

// fingerprint returns the 32-bit fingerprint of key.
func (o *Outbox) fingerprint(key string) uint32 {
	var h uint64
	if o.hashKey != nil {
		h = o.hashKey(key)
	} else {
		h = maphash.String(o.seed, key)
	}
	return uint32(h ^ h>>32)
}

func (o *Outbox) segCount(seg uint32) *obSegCount {
	c := o.segs[seg]
	if c == nil {
		c = new(obSegCount)
		o.segs[seg] = c
	}
	return c
}

// isPending reports whether seq is a pending item. The caller holds mu.
func (o *Outbox) isPending(seq uint64) bool {
	return seq >= o.base && seq-o.base < uint64(len(o.live)) && o.live[seq-o.base] != 0
}

// stored reports whether seq is pending or dead. The caller holds mu.
func (o *Outbox) stored(seq uint64) bool {
	_, dead := o.dead[seq]
	return dead || o.isPending(seq)
}

// addPendingLocked records pending item seq at p. Items are added in
// increasing seq order. The caller holds mu.
func (o *Outbox) addPendingLocked(seq uint64, p journal.Pos, stream string) error {
	if len(o.live) == 0 {
		o.base = seq
	}
	if seq < o.base+uint64(len(o.live)) {
		return fmt.Errorf("item %d is out of order", seq)
	}
	c := cap(o.live)
	for o.base+uint64(len(o.live)) < seq {
		o.live = append(o.live, 0)
	}
	if o.intern != nil {
		o.live = doubling(o.live) // OpenOutbox gives back the slack
	}
	o.live = append(o.live, p)
	if cap(o.live) != c {
		o.liveCap = cap(o.live)
	}
	o.pending++
	o.streams[stream]++
	o.segCount(p.Segment()).pending++
	return nil
}

// scanned sizes the index for the whole log once the first segment is
// read, from the density of items in it, so that opening a large backlog
// does not grow (and the collector chase) two slices of a million entries.
// The estimate is capped at eight times the items of that segment, in
// case its items are much smaller than the rest; growth goes on by
// doubling from there, and OpenOutbox gives back the slack.
func (o *Outbox) scanned(done, total int64) {
	if o.sized || done <= 0 || total <= done {
		return
	}
	o.sized = true
	n := len(o.opening)
	want := min(int(float64(n)*float64(total)/float64(done)*1.05), 8*n) + 64
	o.opening = slices.Grow(o.opening, want-n)
	if more := want - len(o.live); more > 0 {
		// live can be longer than the items counted, across seqs that a
		// full disk undid.
		o.live = slices.Grow(o.live, more)
	}
}

// doubling returns s with room for one more element, doubling its
// capacity when it is full. Opening appends a million entries to each of
// two slices; append's own growth, a quarter at a time for large slices,
// made them cost about as much as reading the log.
func doubling[S ~[]E, E any](s S) S {
	if len(s) < cap(s) {
		return s
	}
	return slices.Grow(s, max(len(s), 256))
}

// removePendingLocked forgets pending item seq and returns its position.
// The caller holds mu.
func (o *Outbox) removePendingLocked(seq uint64, stream string) journal.Pos {
	i := seq - o.base
	p := o.live[i]
	o.live[i] = 0
	o.pending--
	if n := o.streams[stream] - 1; n > 0 {
		o.streams[stream] = n
	} else {
		delete(o.streams, stream)
	}
	o.segCount(p.Segment()).pending--
	for len(o.live) > 0 && o.live[0] == 0 {
		o.live = o.live[1:]
		o.base++
	}
	switch {
	case len(o.live) == 0:
		o.live, o.liveCap = nil, 0
	case o.liveCap > 1024 && len(o.live) < o.liveCap/4:
		// Trimming the front leaves the whole array allocated; give back
		// the space as the backlog drains.
		o.live = append(make([]journal.Pos, 0, 2*len(o.live)), o.live...)
		o.liveCap = cap(o.live)
	}
	return p
}

func (o *Outbox) addDeadLocked(seq uint64, p journal.Pos, reason string) {
	o.dead[seq] = obDeadEntry{pos: p, reason: reason}
	o.segCount(p.Segment()).dead++
}

func (o *Outbox) forgetDeadLocked(seq uint64, d obDeadEntry, key string) {
	delete(o.dead, seq)
	o.segCount(d.pos.Segment()).dead--
	o.removeKeyLocked(key, seq)
}

// insertKeyLocked indexes key as belonging to stored item seq. The caller
// holds mu and has checked that no stored item has key.
func (o *Outbox) insertKeyLocked(key string, seq uint64) {
	if !o.based {
		o.seqBase, o.based = seq, true
	}
	fp := o.fingerprint(key)
	_, taken := o.keys.get(fp)
	if taken || seq < o.seqBase || seq-o.seqBase >= obTomb {
		o.collide[key] = seq
		return
	}
	o.keys.put(fp, uint32(seq-o.seqBase))
}

func (o *Outbox) removeKeyLocked(key string, seq uint64) {
	if s, ok := o.collide[key]; ok && s == seq {
		delete(o.collide, key)
		return
	}
	if seq >= o.seqBase && seq-o.seqBase < obTomb {
		o.keys.remove(o.fingerprint(key), uint32(seq-o.seqBase))
	}
}

// lookupLocked returns the seq of the stored item with key. On a
// fingerprint hit it reads the item's real key, so two keys sharing a
// fingerprint are never confused. The caller holds mu.
func (o *Outbox) lookupLocked(key string) (uint64, bool, error) {
	if s, ok := o.collide[key]; ok {
		return s, true, nil
	}
	d, ok := o.keys.get(o.fingerprint(key))
	if !ok {
		return 0, false, nil
	}
	s := o.seqBase + uint64(d)
	r, err := o.readStoredLocked(s)
	if err != nil {
		return 0, false, err
	}
	return s, r.key == key, nil
}

// readStoredLocked returns the record of stored item seq; for an item not
// yet durable only key and enq are filled in. The caller holds mu.
func (o *Outbox) readStoredLocked(seq uint64) (obRecord, error) {
	if f, ok := o.fresh[seq]; ok {
		return obRecord{seq: seq, key: f.key, enq: f.enq}, nil
	}
	var p journal.Pos
	if o.isPending(seq) {
		p = o.live[seq-o.base]
	} else if d, ok := o.dead[seq]; ok {
		p = d.pos
	} else {
		return obRecord{}, fmt.Errorf("fallback: outbox item %d is not stored", seq)
	}
	return o.readAt(p, seq)
}

// readAt reads and decodes the record of item seq at p.
func (o *Outbox) readAt(p journal.Pos, seq uint64) (obRecord, error) {
	typ, body, err := o.j.ReadAt(p)
	if err != nil {
		return obRecord{}, o.wrapErr(err)
	}
	r, err := decodeObRecord(typ, body)
	if err != nil {
		return obRecord{}, o.corruptAt(p, err)
	}
	if r.seq != seq || typ == obDone || typ == obDead {
		return obRecord{}, o.corruptAt(p, fmt.Errorf("record holds item %d, want item %d", r.seq, seq))
	}
	return r, nil
}

// Enqueue stores it durably: when Enqueue returns nil, the item is on
// stable storage and will survive a crash. Enqueue sets Enqueued to the
// current time.
//
// If an item with the same Key is already stored (pending or dead),
// Enqueue stores nothing: when the stored item has the same Stream and
// Payload, the call is an idempotent retry and returns nil once that item
// is durable; otherwise it returns an error wrapping [ErrDuplicate]. The
// comparison reads the stored item back from disk, outside the outbox's
// lock, so retries never hold up other producers.
//
// Enqueue returns ctx.Err() if ctx is done before the item is written; once
// the item is handed to the log writer, Enqueue waits for the fsync
// regardless of ctx. It returns an error wrapping [ErrInvalidItem] for an
// empty key or an item larger than OutboxOptions.MaxItemSize, [ErrClosed]
// after Close, and the file system's error if writing fails. On a full
// disk the error wraps [ErrDiskFull], the item is not stored, and the next
// call tries a real write again (see the package doc); after any other
// failed write or sync every later Enqueue returns that error,
// retries of stored items included, until the Outbox is reopened.
func (o *Outbox) Enqueue(ctx context.Context, it Item) error {
	if it.Key == "" {
		return fmt.Errorf("%w: Item.Key is empty", ErrInvalidItem)
	}
	if n := len(it.Key) + len(it.Stream) + len(it.Payload); n > o.opts.MaxItemSize {
		return fmt.Errorf("%w: item of %d bytes exceeds OutboxOptions.MaxItemSize (%d)", ErrInvalidItem, n, o.opts.MaxItemSize)
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	enq := time.Now().UnixNano()
	var other uint64  // a stored item known to hold another key with the same fingerprint
	var waited uint64 // a ticket known to be durable
	for {
		o.mu.Lock()
		if o.closed {
			o.mu.Unlock()
			return ErrClosed
		}
		c, found := o.candidateLocked(it.Key, other, waited)
		if !found {
			return o.appendItemLocked(it, enq)
		}
		o.mu.Unlock()
		if c.fresh {
			// Not durable yet: wait for it, then compare with what is on disk.
			if err := o.j.Wait(c.ticket); err != nil {
				return o.diskFull(err)
			}
			waited = c.ticket
			continue
		}
		if err := o.j.Err(); err != nil {
			return o.wrapErr(err)
		}
		r, err := o.readAt(c.pos, c.seq)
		o.mu.Lock()
		still := o.storedAt(c.seq, c.pos)
		o.mu.Unlock()
		if !still {
			// Delivered, dead-lettered or moved while it was read: look again.
			continue
		}
		if err != nil {
			return err
		}
		if r.key != it.Key {
			other = c.seq
			continue
		}
		if r.stream != it.Stream || !bytes.Equal(r.payload, it.Payload) {
			return fmt.Errorf("%w: key %q", ErrDuplicate, it.Key)
		}
		// The stored item is durable; the check above and this one make
		// sure no failed sync came in between.
		return o.wrapErr(o.j.Err())
	}
}

// obCandidate is a stored item that may have the key being enqueued.
type obCandidate struct {
	seq    uint64
	pos    journal.Pos
	fresh  bool   // not durable yet: wait for ticket
	ticket uint64 // when fresh
}

// candidateLocked returns the stored item that may have key, without
// reading from disk. other, if nonzero, is a stored item already known to
// hold another key; waited, if nonzero, a ticket known to be durable. The
// caller holds mu.
func (o *Outbox) candidateLocked(key string, other, waited uint64) (obCandidate, bool) {
	seq, ok := o.collide[key]
	if !ok {
		d, ok := o.keys.get(o.fingerprint(key))
		if !ok {
			return obCandidate{}, false
		}
		seq = o.seqBase + uint64(d)
		if seq == other {
			return obCandidate{}, false
		}
	}
	if f, ok := o.fresh[seq]; ok {
		if f.key != key {
			return obCandidate{}, false
		}
		if f.ticket != waited {
			return obCandidate{seq: seq, fresh: true, ticket: f.ticket}, true
		}
	}
	if o.isPending(seq) {
		return obCandidate{seq: seq, pos: o.live[seq-o.base]}, true
	}
	if d, ok := o.dead[seq]; ok {
		return obCandidate{seq: seq, pos: d.pos}, true
	}
	return obCandidate{}, false
}

// storedAt reports whether item seq is still stored at p. The caller holds
// mu.
func (o *Outbox) storedAt(seq uint64, p journal.Pos) bool {
	if o.isPending(seq) {
		return o.live[seq-o.base] == p
	}
	d, ok := o.dead[seq]
	return ok && d.pos == p
}

// appendItemLocked appends a new item, releases mu and waits for it to be
// durable. The caller holds mu and has checked that no stored item has the
// item's key.
func (o *Outbox) appendItemLocked(it Item, enq int64) error {
	seq := o.nextSeq
	r := obRecord{typ: obItem, seq: seq, enq: enq, key: it.Key, stream: it.Stream, payload: it.Payload}
	o.scratch = r.appendTo(o.scratch[:0])
	p, ticket, err := o.appendLocked(obItem, o.scratch)
	if err != nil {
		o.mu.Unlock()
		return err
	}
	o.nextSeq++
	if err := o.addPendingLocked(seq, p, it.Stream); err != nil {
		o.mu.Unlock()
		return err
	}
	o.insertKeyLocked(it.Key, seq)
	o.fresh[seq] = obFresh{kind: obItem, key: it.Key, stream: it.Stream, enq: enq, ticket: ticket}
	o.mu.Unlock()

	if err := o.j.Wait(ticket); err != nil {
		// The item may not be on disk. It stays fresh, so a retry waits on
		// the same failed ticket instead of reading it back, unless a full
		// disk undid its write: then it is forgotten.
		return o.diskFull(err)
	}
	o.mu.Lock()
	delete(o.fresh, seq)
	o.mu.Unlock()
	o.signal()
	return nil
}

// signal wakes a Replay waiting for held streams.
func (o *Outbox) signal() {
	select {
	case o.wake <- struct{}{}:
	default:
	}
}

// Pending returns the number of items waiting for delivery, including one
// being delivered. Dead letters are not counted.
func (o *Outbox) Pending() int {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.pending
}

// StreamPending returns the number of items of stream waiting for
// delivery, including one being delivered. Dead letters are not counted.
func (o *Outbox) StreamPending(stream string) int {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.streams[stream]
}

// Oldest returns when the oldest pending item was enqueued, and false if
// nothing is pending. It reads that item's record from disk when the
// oldest item changes; a read failure is returned as the error.
func (o *Outbox) Oldest() (time.Time, bool, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if len(o.live) == 0 {
		return time.Time{}, false, nil
	}
	if o.head.seq != o.base {
		r, err := o.readStoredLocked(o.base)
		if err != nil {
			return time.Time{}, false, err
		}
		o.head = obHead{seq: o.base, enq: time.Unix(0, r.enq)}
	}
	return o.head.enq, true, nil
}

// OldestAge returns how long the oldest pending item has waited, or 0 if
// nothing is pending or its record cannot be read (see [Outbox.Oldest]).
func (o *Outbox) OldestAge() time.Duration {
	t, ok, err := o.Oldest()
	if !ok || err != nil {
		return 0
	}
	return time.Since(t)
}

// Stats returns a snapshot of the outbox's counts and replay progress.
func (o *Outbox) Stats() OutboxStats {
	o.mu.Lock()
	s := o.stats
	s.Pending = o.pending
	s.Dead = len(o.dead)
	s.Unrecorded = o.unrecordedLocked()
	o.mu.Unlock()
	s.Replaying = o.replaying.Load()
	s.Segments = len(o.j.Segments())
	s.Bytes = o.j.Size()
	return s
}

// DeadLetters returns the dead letters in the order their items were
// first enqueued, reading each from disk. It returns ctx.Err() if ctx is
// done before it finishes.
func (o *Outbox) DeadLetters(ctx context.Context) ([]DeadLetter, error) {
	o.compactMu.RLock()
	defer o.compactMu.RUnlock()
	o.mu.Lock()
	if o.closed {
		o.mu.Unlock()
		return nil, ErrClosed
	}
	type entry struct {
		seq uint64
		obDeadEntry
	}
	list := make([]entry, 0, len(o.dead))
	for seq, d := range o.dead {
		list = append(list, entry{seq, d})
	}
	o.mu.Unlock()
	slices.SortFunc(list, func(a, b entry) int { return cmp.Compare(a.seq, b.seq) })
	out := make([]DeadLetter, 0, len(list))
	for _, e := range list {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		r, err := o.readAt(e.pos, e.seq)
		if err != nil {
			return nil, err
		}
		out = append(out, DeadLetter{Item: r.item(), Reason: e.reason})
	}
	return out, nil
}

// Requeue moves the dead letter with key back into its stream, behind the
// items pending there now, keeping its original Enqueued time. It returns
// once the move is durable, or an error wrapping [ErrNoDeadLetter] if no
// dead letter has key.
func (o *Outbox) Requeue(key string) error {
	o.compactMu.RLock()
	defer o.compactMu.RUnlock()
	o.mu.Lock()
	if o.closed {
		o.mu.Unlock()
		return ErrClosed
	}
	seq, found, err := o.lookupLocked(key)
	if err != nil {
		o.mu.Unlock()
		return err
	}
	d, dead := o.dead[seq]
	if !found || !dead {
		o.mu.Unlock()
		return fmt.Errorf("%w: %q", ErrNoDeadLetter, key)
	}
	r, err := o.readAt(d.pos, seq)
	if err != nil {
		o.mu.Unlock()
		return err
	}
	r.typ, r.old, r.seq, r.reason = obRequeue, seq, o.nextSeq, ""
	o.scratch = r.appendTo(o.scratch[:0])
	p, ticket, err := o.appendLocked(obRequeue, o.scratch)
	if err != nil {
		o.mu.Unlock()
		return err
	}
	o.nextSeq++
	o.forgetDeadLocked(seq, d, key)
	if err := o.addPendingLocked(r.seq, p, r.stream); err != nil {
		o.mu.Unlock()
		return err
	}
	o.insertKeyLocked(key, r.seq)
	o.fresh[r.seq] = obFresh{kind: obRequeue, key: key, stream: r.stream, enq: r.enq, ticket: ticket,
		old: seq, oldPos: d.pos, reason: d.reason}
	o.mu.Unlock()

	if err := o.j.Wait(ticket); err != nil {
		// A full disk's undo puts the dead letter back.
		return o.diskFull(err)
	}
	o.mu.Lock()
	delete(o.fresh, r.seq)
	o.mu.Unlock()
	o.signal()
	return nil
}

// Close makes the items already accepted durable, and the deliveries
// made so far recorded, stops the log writer goroutine and closes the
// files. Calls made after Close return [ErrClosed]; a running Replay stops
// with [ErrClosed] after its current delivery. Close returns the first
// write error seen, if any; if a full disk keeps deliveries from being
// recorded (see [OutboxStats].Unrecorded) the error wraps [ErrDiskFull]
// and says how many will be made again. Calling Close again returns nil.
func (o *Outbox) Close() error {
	o.mu.Lock()
	if o.closed {
		o.mu.Unlock()
		return nil
	}
	o.closed = true
	o.pruneMarksLocked()
	unrecorded := len(o.marks)
	_ = o.payLocked() // Close below reports a failure
	o.mu.Unlock()
	o.unregister()
	o.compactMu.Lock()
	defer o.compactMu.Unlock()
	err := o.j.Close()
	if errors.Is(err, journal.ErrNoSpace) && unrecorded > 0 {
		return fmt.Errorf("%w: up to %d deliveries or dead letters were not recorded and will be made again after a reopen: %w", ErrDiskFull, unrecorded, err)
	}
	return o.wrapErr(err)
}
