// Package journal is a checksummed, append-only log of records kept in
// segment files in one directory, with group commit: many goroutines append
// at once and one write and one fsync make all of their records durable.
//
// It is the storage engine of the fallback outbox. It knows nothing about
// what the records mean; the caller gives each record a type byte and a
// body, learns its [Pos], and later reads it back or deletes whole segments
// once nothing in them is needed.
//
// # Format
//
// A segment file is named by its number, "%08x.seg". It begins with a
// 16-byte header:
//
//	magic   [4]byte  "RFJ2"
//	segment uint32   big-endian, the segment's own number
//	floor   uint32   big-endian, the oldest segment the log still needs
//	crc     uint32   big-endian, CRC-32C of the first 12 bytes
//
// Records follow back to back:
//
//	length  uint32  big-endian, length of body
//	lcrc    uint32  big-endian, CRC-32C of the four length bytes
//	crc     uint32  big-endian, CRC-32C of type and body
//	type    uint8
//	body    [length]byte
//
// Type 0 is the journal's own: a seal, whose 4-byte body is the number of
// the next segment. Every segment but the last ends with its seal, and the
// last has none. The next segment is created and synced before the seal
// is written, so a sealed segment proves its successor exists.
//
// The floor moves when [Journal.RemoveBelow] deletes old segments: the new
// floor is first written, in place, into the current segment's header and
// synced, then the old files are unlinked and the directory is synced
// once. A new segment's header carries the floor of its time. So the
// header of the last segment always says which segments must be there:
// every number from the floor to the last. This relies on a 16-byte write
// at the start of a file being atomic, as every disk sector write is.
//
// Files written in the earlier "RFJ1" format, whose headers carry no
// numbers, are refused with [ErrFormat]; there is no conversion.
//
// # Recovery
//
// [Open] reads the last segment's header, deletes leftover segments below
// its floor (an interrupted RemoveBelow), then checks that every segment
// from the floor to the last is there, names itself in its header, and,
// except the last, ends with a seal naming its successor. A missing,
// renamed, swapped or cut-short segment is reported as an error wrapping
// [ErrCorrupt]; so is any record that does not check out, except for the
// torn tail a crash leaves at the end of the last segment, which was never
// acknowledged and is cut off:
//
//   - a record header or body cut short by the end of the file;
//   - a run of zero bytes from the start of a record up to the end of the
//     file (the file grew but the write never landed);
//   - a final record that fails its checksum when everything from the
//     first 512-byte boundary inside it up to the end of the file is zero
//     (the sectors after that boundary were never written).
//
// A record that fails its checksum while nonzero bytes follow it (a valid
// record, say) is corruption, not a tear. The price of the third rule is
// that damage to the very last record of the log which happens to leave
// it zero from a sector boundary on is cut off as a tear; damage anywhere
// else is always reported.
//
// The same tail rules apply to the segment before the last when the last
// holds no records yet: a crash while the log moved on to a new segment
// leaves the old one unsealed and perhaps torn, and Open cuts and seals it.
// Where sealing it, or finishing the new segment's header that a crash
// cut short, is refused for want of space, Open instead gives the old
// segment the floor and removes the new one, which holds nothing, so the
// old one is the last again. That needs no new space, so a service that
// crashed in a move to a new segment on a full disk starts again without
// a person.
//
// # Files
//
// Syncs are fdatasync(2) on Linux (fsync elsewhere): it makes the data and
// the file's new size durable, which is all a record needs. The directory
// is synced with fsync after a segment is created or removed.
//
// The directory is created with mode 0700 and files with 0600, since the
// records may hold private data. Open locks the directory itself (an
// advisory lock on Unix), so a second Open fails with [ErrLocked] while
// the first is open, whatever is done to the files inside. Segment files
// are opened without following symlinks. Only the current segment stays
// open; older ones are opened to be read and a few are kept open in a
// small cache, so the number of descriptors does not grow with the
// backlog.
package journal

import (
	"bufio"
	"cmp"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

// ErrCorrupt is wrapped by the errors that report a damaged file.
var ErrCorrupt = errors.New("journal: corrupt")

// ErrClosed is returned by calls made after Close.
var ErrClosed = errors.New("journal: closed")

// ErrLocked is returned by Open when another Journal, in this process or
// another, has the directory open.
var ErrLocked = errors.New("journal: directory is in use")

// ErrNoSpace is wrapped, together with the file system's error, by the
// errors that report a batch refused for want of space (ENOSPC or EDQUOT)
// and then undone (see [Journal.NoSpace]), and by [Open]'s when a repair
// it must make is refused so.
var ErrNoSpace = errors.New("journal: no space left on device")

// ErrFormat is returned by Open for segment files in a format this
// version does not read.
var ErrFormat = errors.New("journal: unsupported file format")

const (
	segMagic    = "RFJ2"
	oldSegMagic = "RFJ1"
	// SegmentHeaderSize is the size of the header at the start of each
	// segment; no record starts before it.
	SegmentHeaderSize = 16
	// RecordHeaderSize is the size of a record's header.
	RecordHeaderSize = 13
	// MaxBody is the largest record body accepted, so that a damaged length
	// can never make a reader allocate without bound.
	MaxBody   = 64 << 20
	segSuffix = ".seg"
	// maxLinger caps how long the writer waits for a batch to fill.
	maxLinger = 500 * time.Microsecond
	// typeSeal is the journal's own record type ending a sealed segment.
	typeSeal byte = 0
	sealSize      = RecordHeaderSize + 4
	// sector is the unit a crash can leave unwritten in the middle of a
	// write.
	sector = 512
	// keepChunk is the largest batch buffer kept for reuse.
	keepChunk = 1 << 20
	// scanBuffer is the read buffer Open uses for every segment in turn.
	scanBuffer = 1 << 20
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// Pos is where a record starts: its segment number and its byte offset.
// Positions grow in the order records were appended; a Pos is never zero.
type Pos uint64

// MakePos returns the Pos of offset off in segment seg.
func MakePos(seg uint32, off uint32) Pos { return Pos(uint64(seg)<<32 | uint64(off)) }

// Segment returns the segment number of p.
func (p Pos) Segment() uint32 { return uint32(p >> 32) }

// Offset returns the byte offset of p in its segment.
func (p Pos) Offset() uint32 { return uint32(p) }

// CorruptError reports a damaged segment file. It wraps [ErrCorrupt].
type CorruptError struct {
	Path   string // the segment file
	Offset int64  // where the damage was found
	Reason string // what is wrong there
}

// Error describes the damage.
func (e *CorruptError) Error() string {
	return fmt.Sprintf("journal: corrupt %s at offset %d: %s", e.Path, e.Offset, e.Reason)
}

// Unwrap returns [ErrCorrupt].
func (e *CorruptError) Unwrap() error { return ErrCorrupt }

// Options configures a Journal. The zero value is usable.
type Options struct {
	// SegmentSize is the size at which a segment is closed and a new one
	// started. A record is never split, so a segment may exceed it by one
	// record and its seal. Zero means 32 MiB; at most 2 GiB.
	SegmentSize int64
	// FS is the file layer. Nil means the operating system's files.
	FS FS
	// Scanned, if set, is called by Open after each segment it has read,
	// with the bytes read so far and the total size of the segments it
	// reads, so that a caller can size its index once it has seen how
	// dense the records are.
	Scanned func(done, total int64)
}

// ticketRange is the batches lo..hi, both included.
type ticketRange struct {
	lo, hi uint64
	err    error
}

// DefaultSegmentSize is the segment size used when Options.SegmentSize is 0.
const DefaultSegmentSize = 32 << 20

// Journal is an open log directory. Append, Wait, Flush, ReadAt,
// RemoveBelow and the accessors are safe for concurrent use. A Journal
// owns one writer goroutine, started by Open and ended by Close.
type Journal struct {
	dir     string
	segSize int64
	fs      FS
	dirf    *os.File // the locked directory, also used to sync it
	scanned func(done, total int64)

	mu sync.Mutex // guards the fields below
	// cond is signalled (on mu) when a batch becomes durable or fails.
	cond    sync.Cond
	cur     uint32  // segment the next record goes to
	top     uint32  // highest segment a record went to since Open, undone or not
	curSize int64   // its size, including buffered records
	buf     []chunk // appended records not yet handed to the writer
	nrec    int     // number of records in buf
	// want is how many records the writer expects in the next batch: those
	// that arrived while it wrote the last one, plus one from each producer
	// it released. While lingering, it waits for that many before it
	// writes, so that the producers it has just released can join.
	want      int
	lingering bool
	filling   uint64 // number of the batch buf belongs to
	synced    uint64 // highest batch that is durable
	durable   Pos    // every record before it is durable
	err       error  // sticky write or sync failure
	// While noSpace is set, a batch failed for want of space and was
	// undone: Append refuses with it until Resume. Batches noLo..noHi
	// failed.
	noSpace    error
	noLo, noHi uint64
	failed     []ticketRange // every undone range of batches, oldest first
	closing    bool
	floorReq   uint32 // floor RemoveBelow asked for, taken with the next batch
	// floorDone is the floor durable in the current header; floorTries
	// counts the writer's attempts to move it and floorErr is the last
	// attempt's failure, if it failed for want of space.
	floorDone  uint32
	floorTries uint64
	floorErr   error

	kick chan struct{} // wakes the writer; capacity 1
	done chan struct{} // closed when the writer exits

	filesMu sync.RWMutex     // guards the fields below; never held during I/O
	wfile   File             // the segment being written, owned by the writer
	wseg    uint32           // its number
	sizes   map[uint32]int64 // size of every segment on disk
	floor   uint32           // oldest segment kept

	wsize int64 // writer-owned: size of wfile
	// undoSize is writer-owned: the size of wfile before the batch being
	// written, where a batch refused for want of space is cut back to.
	undoSize int64
	spare    []chunk // writer-owned: recycled chunk list
	reads    readCache
}

// chunk is the records of one batch bound for one segment. A batch that
// moves on to a new segment gets a new ticket for the records there, so
// that a full disk met after the move undoes only those.
type chunk struct {
	seg    uint32
	ticket uint64
	end    uint32 // offset in seg after the chunk's last record
	data   []byte
}

// Open opens or creates the log in dir (which is created with mode 0700
// if missing), checks it as the package documentation describes, calls fn
// for every valid record in log order, repairs a torn tail, and starts the
// writer goroutine. The body passed to fn is valid only during the call.
// If fn returns an error, Open stops and returns it. If a repair, or the
// first segment of a new log, is refused for want of space, the error
// wraps [ErrNoSpace]; nothing is lost, and Open succeeds once there is
// room.
func Open(dir string, opts Options, fn func(p Pos, typ byte, body []byte) error) (*Journal, error) {
	segSize := opts.SegmentSize
	if segSize == 0 {
		segSize = DefaultSegmentSize
	}
	if segSize < 0 || segSize > 1<<31 {
		return nil, fmt.Errorf("journal: Options.SegmentSize must be in [0, 2 GiB], got %d", segSize)
	}
	fsys := opts.FS
	if fsys == nil {
		fsys = osFS{}
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("journal: %w", err)
	}
	dirf, err := lockDir(dir)
	if err != nil {
		return nil, err
	}
	j := &Journal{
		dir:     dir,
		segSize: segSize,
		fs:      fsys,
		dirf:    dirf,
		scanned: opts.Scanned,
		sizes:   make(map[uint32]int64),
		kick:    make(chan struct{}, 1),
		done:    make(chan struct{}),
		filling: 1,
	}
	j.cond.L = &j.mu
	if err := j.recover(fn); err != nil {
		if j.wfile != nil {
			j.wfile.Close()
		}
		dirf.Close()
		if isNoSpace(err) && !errors.Is(err, ErrNoSpace) {
			err = fmt.Errorf("%w: %w", ErrNoSpace, err)
		}
		return nil, err
	}
	j.cur, j.curSize, j.top = j.wseg, j.wsize, j.wseg
	j.durable = MakePos(j.cur, uint32(j.curSize))
	j.floorDone = j.floor
	go j.writer()
	return j, nil
}

func (j *Journal) path(id uint32) string {
	return filepath.Join(j.dir, fmt.Sprintf("%08x%s", id, segSuffix))
}

func (j *Journal) corrupt(id uint32, off int64, format string, args ...any) error {
	return &CorruptError{Path: j.path(id), Offset: off, Reason: fmt.Sprintf(format, args...)}
}

func listSegments(dir string) ([]uint32, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("journal: %w", err)
	}
	var ids []uint32
	for _, e := range entries {
		name := e.Name()
		if !strings.HasSuffix(name, segSuffix) || len(name) != 8+len(segSuffix) {
			continue
		}
		id, err := strconv.ParseUint(strings.TrimSuffix(name, segSuffix), 16, 32)
		if err != nil || id == 0 {
			continue
		}
		ids = append(ids, uint32(id))
	}
	slices.Sort(ids)
	return ids, nil
}

func encodeHeader(seg, floor uint32) []byte {
	h := make([]byte, SegmentHeaderSize)
	copy(h, segMagic)
	binary.BigEndian.PutUint32(h[4:], seg)
	binary.BigEndian.PutUint32(h[8:], floor)
	binary.BigEndian.PutUint32(h[12:], crc32.Checksum(h[:12], castagnoli))
	return h
}

// decodeHeader checks the header of segment id and returns its floor.
func (j *Journal) decodeHeader(id uint32, h []byte) (uint32, error) {
	if string(h[:4]) == oldSegMagic {
		return 0, fmt.Errorf("%w: %s is in the RFJ1 format, which has no segment numbers; deliver its items with the version that wrote it, or move the directory aside", ErrFormat, j.path(id))
	}
	if string(h[:4]) != segMagic {
		return 0, j.corrupt(id, 0, "bad segment header")
	}
	if binary.BigEndian.Uint32(h[12:]) != crc32.Checksum(h[:12], castagnoli) {
		return 0, j.corrupt(id, 0, "segment header fails its checksum")
	}
	if seg := binary.BigEndian.Uint32(h[4:]); seg != id {
		return 0, j.corrupt(id, 4, "segment header names segment %d: the file was renamed or swapped", seg)
	}
	floor := binary.BigEndian.Uint32(h[8:])
	if floor == 0 || floor > id {
		return 0, j.corrupt(id, 8, "segment header names floor %d", floor)
	}
	return floor, nil
}

// create makes segment id with its header and syncs it and the directory.
// A failure to create the file or write its header leaves no file behind
// and wraps errNotRolled.
func (j *Journal) create(id, floor uint32) (File, error) {
	f, err := j.fs.OpenFile(j.path(id), os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return nil, fmt.Errorf("journal: %w: %w", errNotRolled, err)
	}
	if _, err := f.WriteAt(encodeHeader(id, floor), 0); err != nil {
		return nil, j.unmake(f, fmt.Errorf("journal: write %s: %w", f.Name(), err))
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return nil, fmt.Errorf("journal: sync %s: %w", f.Name(), err)
	}
	if err := j.syncDir(); err != nil {
		f.Close()
		return nil, err
	}
	return f, nil
}

func (j *Journal) syncDir() error {
	if err := j.dirf.Sync(); err != nil {
		return fmt.Errorf("journal: sync %s: %w", j.dir, err)
	}
	return nil
}

func encodeRecord(b []byte, typ byte, body []byte) []byte {
	// The header is built in b itself: a local array would escape to the
	// heap through the checksum's call.
	b = slices.Grow(b, RecordHeaderSize+len(body))
	hdr := b[len(b) : len(b)+RecordHeaderSize]
	binary.BigEndian.PutUint32(hdr, uint32(len(body)))
	binary.BigEndian.PutUint32(hdr[4:], crc32.Checksum(hdr[:4], castagnoli))
	binary.BigEndian.PutUint32(hdr[8:], checksum(typ, body))
	hdr[12] = typ
	b = b[:len(b)+RecordHeaderSize]
	return append(b, body...)
}

func sealRecord(next uint32) []byte {
	return encodeRecord(nil, typeSeal, binary.BigEndian.AppendUint32(nil, next))
}

// checksum returns the CRC-32C of typ followed by body. The type byte is
// folded in by hand so that no one-byte slice escapes to the heap.
func checksum(typ byte, body []byte) uint32 {
	crc := ^(castagnoli[0xff^typ] ^ 0xffffff)
	return crc32.Update(crc, castagnoli, body)
}

// Append adds a record to the current batch and returns its position and
// the batch's ticket for [Journal.Wait]. The record is durable once Wait
// for the ticket returns nil. body is copied. typ must not be 0, which the
// journal keeps for itself.
func (j *Journal) Append(typ byte, body []byte) (Pos, uint64, error) {
	if len(body) > MaxBody {
		return 0, 0, fmt.Errorf("journal: record body of %d bytes exceeds %d", len(body), MaxBody)
	}
	if typ == typeSeal {
		return 0, 0, errors.New("journal: record type 0 is reserved")
	}
	n := int64(RecordHeaderSize + len(body))
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.closing {
		return 0, 0, ErrClosed
	}
	if j.err != nil {
		return 0, 0, j.err
	}
	if j.noSpace != nil {
		return 0, 0, j.noSpace
	}
	if j.curSize+n > j.segSize && j.curSize > int64(SegmentHeaderSize) {
		j.cur++
		j.top = max(j.top, j.cur)
		j.curSize = int64(SegmentHeaderSize)
		if len(j.buf) > 0 {
			j.filling++
		}
	}
	pos := MakePos(j.cur, uint32(j.curSize))
	j.curSize += n
	if len(j.buf) == 0 || j.buf[len(j.buf)-1].seg != j.cur {
		j.newChunk()
	}
	c := &j.buf[len(j.buf)-1]
	c.data = encodeRecord(c.data, typ, body)
	c.end = uint32(j.curSize)
	j.nrec++
	if j.lingering && j.nrec < j.want {
		return pos, j.filling, nil
	}
	j.kickWriter()
	return pos, j.filling, nil
}

// newChunk starts a chunk for segment j.cur at the end of buf, reusing
// the bytes of a recycled one where buf has room, so that a steady stream
// of batches allocates nothing. The caller holds mu.
func (j *Journal) newChunk() {
	n := len(j.buf)
	if n == cap(j.buf) {
		j.buf = append(j.buf, chunk{seg: j.cur, ticket: j.filling})
		return
	}
	j.buf = j.buf[:n+1]
	c := &j.buf[n]
	c.seg, c.ticket, c.data = j.cur, j.filling, c.data[:0]
}

func (j *Journal) kickWriter() {
	select {
	case j.kick <- struct{}{}:
	default:
	}
}

// Wait blocks until the batch with the given ticket is durable, and returns
// nil, or until writing it failed, and returns that error.
func (j *Journal) Wait(ticket uint64) error {
	j.mu.Lock()
	defer j.mu.Unlock()
	for {
		if len(j.failed) > 0 {
			if err := j.failedErr(ticket); err != nil {
				return err
			}
		}
		if j.synced >= ticket {
			return nil
		}
		if j.err != nil {
			return j.err
		}
		j.cond.Wait()
	}
}

// failedErr returns the error of an undone batch, or nil if ticket was
// not undone. The caller holds mu.
func (j *Journal) failedErr(ticket uint64) error {
	i, _ := slices.BinarySearchFunc(j.failed, ticket, func(r ticketRange, t uint64) int {
		return cmp.Compare(r.hi, t)
	})
	if i < len(j.failed) && j.failed[i].lo <= ticket {
		return j.failed[i].err
	}
	return nil
}

// NoSpace reports whether the journal is stopped after a batch failed for
// want of space. A write that fails with ENOSPC or EDQUOT before anything
// of its batch was synced is undone: the segment is cut back to the end of
// the last durable record and its size checked, every batch from lo to hi
// (the failed one and those appended during its write) fails in Wait with
// an error wrapping [ErrNoSpace], and Append refuses with such an error
// until [Journal.Resume]. The positions those records were given are given
// out again after Resume, so the caller must forget them first. If the
// segment cannot be cut back, or the failure came later, it is sticky like
// any other write failure.
func (j *Journal) NoSpace() (lo, hi uint64, stopped bool) {
	j.mu.Lock()
	defer j.mu.Unlock()
	return j.noLo, j.noHi, j.noSpace != nil
}

// Resume lets Append try again after [Journal.NoSpace] reported a stop.
func (j *Journal) Resume() {
	j.mu.Lock()
	j.noSpace = nil
	j.mu.Unlock()
}

// Err returns the write or sync failure that stopped the journal, or nil.
// Once it is set, every Append fails with it until the journal is closed
// and opened again.
func (j *Journal) Err() error {
	j.mu.Lock()
	defer j.mu.Unlock()
	return j.err
}

// Flush blocks until every record appended so far is durable.
func (j *Journal) Flush() error {
	j.mu.Lock()
	ticket := j.filling
	if len(j.buf) == 0 {
		ticket--
		if j.noSpace == nil && j.err == nil && ticket <= j.synced {
			// Nothing is waiting to be written; an undone batch is not
			// this caller's.
			j.mu.Unlock()
			return nil
		}
	}
	j.mu.Unlock()
	return j.Wait(ticket)
}

// Durable returns the position before which every record is durable.
func (j *Journal) Durable() Pos {
	j.mu.Lock()
	defer j.mu.Unlock()
	return j.durable
}

// Synced returns the highest ticket up to which every batch is settled,
// and whether the journal is stopped for want of space. Every batch up to
// it is durable except those a full disk undid: while stopped is true,
// [Journal.NoSpace] names the latest of them, and earlier ones were
// reported when they failed.
func (j *Journal) Synced() (ticket uint64, stopped bool) {
	j.mu.Lock()
	defer j.mu.Unlock()
	return j.synced, j.noSpace != nil
}

// Current returns the number of the segment records are appended to.
func (j *Journal) Current() uint32 {
	j.mu.Lock()
	defer j.mu.Unlock()
	return j.cur
}

// Segments returns the numbers of the segments on disk, oldest first.
func (j *Journal) Segments() []uint32 {
	j.filesMu.RLock()
	defer j.filesMu.RUnlock()
	ids := make([]uint32, 0, len(j.sizes))
	for id := range j.sizes {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	return ids
}

// Size returns the total size of the segment files in bytes.
func (j *Journal) Size() int64 {
	j.filesMu.RLock()
	defer j.filesMu.RUnlock()
	var n int64
	for _, s := range j.sizes {
		n += s
	}
	return n
}

// writer takes each batch, writes it, syncs it and wakes its waiters. It
// exits, after writing what was appended, once Close sets closing.
//
// After a batch of n records, during whose write m more arrived, the next
// batch is written once it holds m+n records or once the last
// write-and-sync time has passed (at most maxLinger), whichever comes
// first: producers released by a sync need a moment to append again, and
// without the wait the writer would sync the first of them alone and make
// the rest wait a whole extra sync. Waiting as long as a sync costs a
// batch whose producers did not all come back at most one sync, and the
// next batch expects only those who did. A lone producer (m+n = 1) never
// waits.
func (j *Journal) writer() {
	defer close(j.done)
	linger := time.NewTimer(time.Hour)
	linger.Stop()
	var lastSync time.Duration
	for {
		<-j.kick
		for {
			j.mu.Lock()
			if len(j.buf) == 0 && j.floorReq == 0 {
				closing := j.closing
				j.mu.Unlock()
				if closing {
					return
				}
				break
			}
			if wait := lastSync; wait > 0 && j.nrec < j.want && !j.closing && j.floorReq == 0 {
				j.lingering = true
				select {
				case <-j.kick:
				default:
				}
				j.mu.Unlock()
				linger.Reset(min(wait, maxLinger))
				select {
				case <-j.kick:
					linger.Stop()
				case <-linger.C:
				}
				j.mu.Lock()
				j.lingering = false
			}
			batch, ticket, end, floor := j.buf, j.filling, MakePos(j.cur, uint32(j.curSize)), j.floorReq
			n := j.nrec
			j.buf, j.nrec, j.floorReq = j.spare[:0], 0, 0
			j.filling++
			j.mu.Unlock()

			start := time.Now()
			synced, err := j.write(batch)
			lastSync = time.Since(start)

			undone := false
			if err != nil {
				err, undone = j.undo(err)
			}
			// The floor moves even when a full disk undid the records: it
			// is what frees space.
			var ferr error
			if floor > 0 && (err == nil || undone) {
				ferr = j.writeFloor(floor)
			}
			j.mu.Lock()
			if floor > 0 {
				j.floorTries++
				j.floorErr = nil
				switch {
				case ferr == nil:
					j.floorDone = max(j.floorDone, floor)
				case errors.Is(ferr, ErrNoSpace):
					j.floorErr = ferr
				case err == nil || undone:
					err, undone = ferr, false
				}
			}
			if err != nil && synced > 0 {
				// A move to a new segment made the chunks before it durable.
				c := batch[synced-1]
				j.synced, j.durable = c.ticket, MakePos(c.seg, c.end)
			}
			if undone {
				j.undoneLocked(batch[synced].ticket, ticket, err)
			} else if err != nil {
				if j.err == nil {
					j.err = err
				}
			} else {
				j.synced = ticket
				j.durable = end
			}
			j.want = j.nrec + n
			j.cond.Broadcast()
			j.mu.Unlock()
			for i := range batch {
				if cap(batch[i].data) > keepChunk {
					batch[i].data = nil // do not pin a rare huge batch
				} else {
					batch[i].data = batch[i].data[:0]
				}
			}
			j.spare = batch
			if err != nil && !undone {
				// The state of the files is unknown after a failed write or
				// sync (after an EIO the kernel may have dropped the pages);
				// refuse everything until the log is reopened.
				j.drainOnError()
				return
			}
		}
	}
}

// drainOnError keeps waking waiters until Close after a failure.
func (j *Journal) drainOnError() {
	for {
		j.mu.Lock()
		j.buf, j.nrec, j.floorReq = nil, 0, 0
		j.cond.Broadcast()
		closing := j.closing
		j.mu.Unlock()
		if closing {
			return
		}
		<-j.kick
	}
}

// write writes and syncs a batch, moving on to new segments as its chunks
// ask. On failure it returns how many chunks, from the first, a move to a
// new segment had already synced; the failure is undoable (a *spaceError)
// if it came before any sync after those.
func (j *Journal) write(batch []chunk) (int, error) {
	dirty, synced := false, 0
	// undoSize is where an undo cuts wfile back to: the end of what is
	// synced.
	j.undoSize = j.wsize
	for i, c := range batch {
		for c.seg != j.wseg {
			if err := j.roll(); err != nil {
				if errors.Is(err, errNotRolled) {
					// Nothing since the last sync reached the disk for good,
					// and the next segment is not there.
					return synced, &spaceError{err}
				}
				return synced, err
			}
			// The old segment is synced and sealed: its chunks are durable,
			// and an undo cuts the new one back to its header.
			synced, dirty = i, false
			j.undoSize = SegmentHeaderSize
		}
		if _, err := j.wfile.WriteAt(c.data, j.wsize); err != nil {
			return synced, &spaceError{fmt.Errorf("journal: write %s: %w", j.wfile.Name(), err)}
		}
		j.wsize += int64(len(c.data))
		j.setSize(j.wseg, j.wsize)
		dirty = true
	}
	if dirty {
		if err := j.wfile.Sync(); err != nil {
			return synced, fmt.Errorf("journal: sync %s: %w", j.wfile.Name(), err)
		}
	}
	return len(batch), nil
}

// writeFloor records floor, if above the current one, in the current
// segment's header and syncs it. Rewriting those 16 bytes needs no new
// space on a file system that overwrites in place; where it does (copy on
// write) and is refused, the header is read back, and if it is unchanged
// the error wraps [ErrNoSpace] and the journal goes on. Any other failure
// is returned as it is, to stop the journal. Only the writer calls it.
func (j *Journal) writeFloor(floor uint32) error {
	if floor <= j.floor {
		return nil
	}
	if floor > j.wseg {
		// A full disk undid the records that would have created the
		// segment the floor was asked for.
		return fmt.Errorf("%w: segment %d was not created", ErrNoSpace, floor)
	}
	old, hdr := encodeHeader(j.wseg, j.floor), encodeHeader(j.wseg, floor)
	if _, err := j.wfile.WriteAt(hdr, 0); err != nil {
		err = fmt.Errorf("journal: write %s: %w", j.wfile.Name(), err)
		if isNoSpace(err) && headerIs(j.wfile, old) {
			return fmt.Errorf("%w: %w", ErrNoSpace, err)
		}
		return err
	}
	if err := j.wfile.Sync(); err != nil {
		return fmt.Errorf("journal: sync %s: %w", j.wfile.Name(), err)
	}
	j.filesMu.Lock()
	j.floor = floor
	j.filesMu.Unlock()
	return nil
}

// headerIs reports whether f begins with hdr.
func headerIs(f File, hdr []byte) bool {
	got := make([]byte, len(hdr))
	_, err := f.ReadAt(got, 0)
	return err == nil && string(got) == string(hdr)
}

func (j *Journal) setSize(id uint32, size int64) {
	j.filesMu.Lock()
	j.sizes[id] = size
	j.filesMu.Unlock()
}

// roll creates the next segment and syncs it, then seals the current one
// and syncs that, so that a seal always names a segment that exists.
func (j *Journal) roll() error {
	next := j.wseg + 1
	f, err := j.create(next, j.floor)
	if err != nil {
		return err
	}
	old := j.wfile
	seal := sealRecord(next)
	if _, err := old.WriteAt(seal, j.wsize); err != nil {
		// Nothing synced names the new segment yet: take it back, so that
		// the batch can be undone.
		return j.unmake(f, fmt.Errorf("journal: write %s: %w", old.Name(), err))
	}
	if err := old.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("journal: sync %s: %w", old.Name(), err)
	}
	j.filesMu.Lock()
	j.sizes[j.wseg] = j.wsize + int64(len(seal))
	j.sizes[next] = SegmentHeaderSize
	j.wfile, j.wseg = f, next
	j.filesMu.Unlock()
	j.wsize = SegmentHeaderSize
	old.Close()
	return nil
}

// ReadAt reads the record at p, checks it, and returns its type and a
// fresh copy of its body. The record must be durable (before
// [Journal.Durable]).
//
// Reads go through a small window of the segment's bytes: a read that
// lands in it costs no system call, and a read past it fills it from the
// record on, with a larger read when the reads move forward through a
// segment, as a replay does. The window never extends past what the
// writer has finished writing, and those bytes never change, so it is
// never stale; every record is checked as it is taken from it.
func (j *Journal) ReadAt(p Pos) (byte, []byte, error) {
	id := p.Segment()
	j.filesMu.RLock()
	size, ok := j.sizes[id]
	j.filesMu.RUnlock()
	if !ok {
		return 0, nil, fmt.Errorf("journal: segment %d is not on disk", id)
	}
	// Reads use descriptors of their own, the current segment's too, so
	// that a slow read never holds up the writer.
	var typ byte
	var body []byte
	err := j.reads.with(id, func() (File, error) {
		f, err := j.fs.OpenFile(j.path(id), os.O_RDONLY, 0)
		if err != nil {
			return nil, fmt.Errorf("journal: %w", err)
		}
		return f, nil
	}, func(f File, w *window) error {
		var err error
		typ, body, err = j.readRecord(f, w, p, size)
		return err
	})
	return typ, body, err
}

// window holds the bytes [off, off+len(data)) of segment seg.
type window struct {
	seg  uint32
	off  int64
	data []byte
	buf  []byte
}

const (
	// windowSmall is how much a read fills the window with when it jumps
	// about: a page holds the record of a typical item.
	windowSmall = 4 << 10
	// windowLarge is how much it reads when moving forward through a
	// segment.
	windowLarge = 256 << 10
)

// has reports whether the window holds [off, off+n) of segment id.
func (w *window) has(id uint32, off, n int64) bool {
	return w.seg == id && off >= w.off && off+n <= w.off+int64(len(w.data))
}

// fill reads segment id from off on into the window, never past size.
func (w *window) fill(f File, id uint32, off, size int64) error {
	n := int64(windowSmall)
	if w.seg == id && off > w.off {
		n = windowLarge
	}
	n = min(n, size-off)
	w.seg, w.data = 0, nil
	if n <= 0 {
		return nil
	}
	if int64(cap(w.buf)) < n {
		w.buf = make([]byte, max(n, windowSmall))
	}
	got, err := f.ReadAt(w.buf[:n], off)
	if err != nil && !errors.Is(err, io.EOF) {
		return fmt.Errorf("journal: read %s: %w", f.Name(), err)
	}
	w.seg, w.off, w.data = id, off, w.buf[:got]
	return nil
}

func (w *window) reset() { w.seg, w.data = 0, nil }

func (j *Journal) readRecord(f File, w *window, p Pos, size int64) (byte, []byte, error) {
	off := int64(p.Offset())
	corrupt := func(reason string) error {
		return &CorruptError{Path: f.Name(), Offset: off, Reason: reason}
	}
	if !w.has(p.Segment(), off, RecordHeaderSize) {
		if err := w.fill(f, p.Segment(), off, size); err != nil {
			return 0, nil, err
		}
	}
	if !w.has(p.Segment(), off, RecordHeaderSize) {
		return 0, nil, corrupt("record header is cut short")
	}
	hdr := w.data[off-w.off:][:RecordHeaderSize]
	n := binary.BigEndian.Uint32(hdr)
	if binary.BigEndian.Uint32(hdr[4:]) != crc32.Checksum(hdr[:4], castagnoli) {
		return 0, nil, corrupt("record length fails its checksum")
	}
	if n > MaxBody {
		return 0, nil, corrupt("record length too large")
	}
	crc, typ := binary.BigEndian.Uint32(hdr[8:]), hdr[12]
	body := make([]byte, n)
	start := off + RecordHeaderSize
	if w.has(p.Segment(), start, int64(n)) {
		copy(body, w.data[start-w.off:])
	} else if start+int64(n) > size {
		return 0, nil, corrupt("record runs past the end of the file")
	} else if _, err := f.ReadAt(body, start); err != nil {
		if errors.Is(err, io.EOF) {
			return 0, nil, corrupt("record runs past the end of the file")
		}
		return 0, nil, fmt.Errorf("journal: read %s: %w", f.Name(), err)
	}
	if crc != checksum(typ, body) {
		return 0, nil, corrupt("record fails its checksum")
	}
	if typ == typeSeal {
		return 0, nil, corrupt("position holds a seal, not a record")
	}
	return typ, body, nil
}

// RemoveBelow deletes every segment numbered below floor, which must not
// be above any segment [Journal.Current] has named since Open. The caller
// guarantees that nothing in them is needed any more. It first makes the
// new floor durable in the current segment's header, then unlinks the
// files and syncs the directory once, so that a crash part way leaves
// only files that Open recognises as leftovers and deletes.
//
// It needs no free space and works while the journal is stopped by
// [Journal.NoSpace], which is how a full disk gets space back. If the
// file system refuses even the header's rewrite for want of space (as a
// copy-on-write one may), or a full disk undid the records that were to
// create segment floor (before the call or during it), it returns an
// error wrapping [ErrNoSpace] and removes nothing.
func (j *Journal) RemoveBelow(floor uint32) error {
	j.mu.Lock()
	switch {
	case j.closing:
		j.mu.Unlock()
		return ErrClosed
	case j.err != nil:
		err := j.err
		j.mu.Unlock()
		return err
	case floor > j.top:
		// A floor up to top may have been read from Current before a full
		// disk undid the records that moved it there; the writer reports
		// that as ErrNoSpace.
		j.mu.Unlock()
		return fmt.Errorf("journal: floor %d is above the current segment %d", floor, j.cur)
	}
	j.floorReq = max(j.floorReq, floor)
	tries := j.floorTries
	j.kickWriter()
	for j.floorDone < floor {
		switch {
		case j.err != nil:
			err := j.err
			j.mu.Unlock()
			return err
		case j.floorTries > tries && j.floorErr != nil:
			err := j.floorErr
			j.mu.Unlock()
			return err
		}
		j.cond.Wait()
	}
	j.mu.Unlock()
	j.filesMu.Lock()
	var gone []uint32
	for id := range j.sizes {
		if id < floor {
			gone = append(gone, id)
			delete(j.sizes, id)
		}
	}
	j.filesMu.Unlock()
	if len(gone) == 0 {
		return nil
	}
	var first error
	for _, id := range gone {
		j.reads.drop(id)
		if err := j.fs.Remove(j.path(id)); err != nil && !errors.Is(err, fs.ErrNotExist) && first == nil {
			first = fmt.Errorf("journal: %w", err)
		}
	}
	if err := j.syncDir(); err != nil && first == nil {
		first = err
	}
	return first
}

// Close writes and syncs what was appended, stops the writer goroutine and
// closes the files. It returns the first write or sync error seen, if any,
// or the error of a batch a full disk undid if the journal is still
// stopped for it.
// Close is idempotent.
func (j *Journal) Close() error {
	j.mu.Lock()
	if j.closing {
		j.mu.Unlock()
		<-j.done
		return nil
	}
	j.closing = true
	j.mu.Unlock()
	j.kickWriter()
	<-j.done
	j.reads.closeAll()
	j.filesMu.Lock()
	if j.wfile != nil {
		j.wfile.Close()
		j.wfile = nil
	}
	j.filesMu.Unlock()
	j.dirf.Close()
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.err == nil && j.noSpace != nil {
		// Records a full disk undid, and nobody resumed after, are lost.
		return j.noSpace
	}
	return j.err
}

// newScanReader returns the read buffer Open shares among segments: no
// larger than a segment, so that opening a small log stays cheap.
func (j *Journal) newScanReader() *bufio.Reader {
	return bufio.NewReaderSize(nil, int(min(scanBuffer, j.segSize)))
}
