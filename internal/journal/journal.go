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
// A segment file is named by its number, "%08x.seg", and begins with the
// 8-byte header "RFJ1" followed by four zero bytes. Records follow back to
// back:
//
//	length  uint32  big-endian, length of body
//	lcrc    uint32  big-endian, CRC-32C of the four length bytes
//	crc     uint32  big-endian, CRC-32C of type and body
//	type    uint8
//	body    [length]byte
//
// The separate checksum of the length lets [Open] tell a record cut short
// by a crash (its length is intact, its body runs past the end of the file)
// from a damaged length field.
//
// # Recovery
//
// [Open] reads every segment in order and checks every record. An
// incomplete record at the very end of the last segment, or a run of zero
// bytes up to its end, is what a crash in the middle of a write leaves; it
// was never acknowledged, so it is cut off. Anything else that does not
// check out, anywhere, is reported as an error wrapping [ErrCorrupt] that
// names the file and the offset; nothing damaged is ever returned as data.
package journal

import (
	"bufio"
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

const (
	segMagic = "RFJ1\x00\x00\x00\x00"
	// SegmentHeaderSize is the size of the header at the start of each
	// segment; no record starts before it.
	SegmentHeaderSize = len(segMagic)
	// RecordHeaderSize is the size of a record's header.
	RecordHeaderSize = 13
	// MaxBody is the largest record body accepted, so that a damaged length
	// can never make a reader allocate without bound.
	MaxBody   = 64 << 20
	segSuffix = ".seg"
	// maxLinger caps how long the writer waits for a batch to fill.
	maxLinger = 500 * time.Microsecond
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
	// record. Zero means 32 MiB.
	SegmentSize int64
}

// DefaultSegmentSize is the segment size used when Options.SegmentSize is 0.
const DefaultSegmentSize = 32 << 20

// Journal is an open log directory. Append, Wait, Flush, ReadAt, Remove and
// the accessors are safe for concurrent use. A Journal owns one writer
// goroutine, started by Open and ended by Close.
type Journal struct {
	dir     string
	segSize int64

	mu sync.Mutex // guards the fields below
	// cond is signalled (on mu) when a batch becomes durable or fails.
	cond    sync.Cond
	cur     uint32  // segment the next record goes to
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
	closing   bool

	kick chan struct{} // wakes the writer; capacity 1
	done chan struct{} // closed when the writer exits

	filesMu sync.RWMutex        // guards files
	files   map[uint32]*os.File // open segments by number
	spare   []chunk             // writer-owned: recycled chunk list
	lock    *os.File            // holds the directory lock, if any
}

func unlock(f *os.File) {
	if f != nil {
		f.Close()
	}
}

type chunk struct {
	seg  uint32
	data []byte
}

// Open opens or creates the log in dir (which is created if missing),
// calls fn for every valid record in log order, repairs a torn tail, and
// starts the writer goroutine. The body passed to fn is valid only during
// the call. If fn returns an error, Open stops and returns it.
func Open(dir string, opts Options, fn func(p Pos, typ byte, body []byte) error) (*Journal, error) {
	segSize := opts.SegmentSize
	if segSize == 0 {
		segSize = DefaultSegmentSize
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("journal: %w", err)
	}
	lock, err := lockDir(dir)
	if err != nil {
		return nil, err
	}
	ids, err := listSegments(dir)
	if err != nil {
		unlock(lock)
		return nil, err
	}
	j := &Journal{
		lock:    lock,
		dir:     dir,
		segSize: segSize,
		files:   make(map[uint32]*os.File),
		kick:    make(chan struct{}, 1),
		done:    make(chan struct{}),
		filling: 1,
	}
	j.cond.L = &j.mu
	ok := false
	defer func() {
		if !ok {
			j.closeFiles()
			unlock(j.lock)
		}
	}()
	for i, id := range ids {
		if i > 0 && id != ids[i-1]+1 {
			return nil, &CorruptError{Path: j.path(ids[i-1] + 1), Reason: "segment file is missing"}
		}
		last := i == len(ids)-1
		size, err := j.scan(id, last, fn)
		if err != nil {
			return nil, err
		}
		if last {
			j.cur, j.curSize = id, size
		}
	}
	if len(ids) == 0 {
		// Start the first segment now so that there is always a current one.
		j.cur = 1
		if err := j.create(1); err != nil {
			return nil, err
		}
		if err := syncDir(dir); err != nil {
			return nil, err
		}
		j.curSize = int64(SegmentHeaderSize)
	}
	j.durable = MakePos(j.cur, uint32(j.curSize))
	ok = true
	go j.writer()
	return j, nil
}

func (j *Journal) path(id uint32) string {
	return filepath.Join(j.dir, fmt.Sprintf("%08x%s", id, segSuffix))
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

// create makes segment id with its header and registers it. The caller
// syncs the directory.
func (j *Journal) create(id uint32) error {
	f, err := os.OpenFile(j.path(id), os.O_RDWR|os.O_CREATE|os.O_EXCL|os.O_APPEND, 0o644)
	if err != nil {
		return fmt.Errorf("journal: %w", err)
	}
	if _, err := f.Write([]byte(segMagic)); err != nil {
		f.Close()
		return fmt.Errorf("journal: write %s: %w", f.Name(), err)
	}
	j.filesMu.Lock()
	j.files[id] = f
	j.filesMu.Unlock()
	return nil
}

// scan reads segment id, calling fn for each record, and returns the size
// of its valid contents. In the last segment a torn tail is cut off.
func (j *Journal) scan(id uint32, last bool, fn func(Pos, byte, []byte) error) (int64, error) {
	path := j.path(id)
	f, err := os.OpenFile(path, os.O_RDWR|os.O_APPEND, 0)
	if err != nil {
		return 0, fmt.Errorf("journal: %w", err)
	}
	j.filesMu.Lock()
	j.files[id] = f
	j.filesMu.Unlock()
	st, err := f.Stat()
	if err != nil {
		return 0, fmt.Errorf("journal: %w", err)
	}
	size := st.Size()
	if size > int64(^uint32(0)) {
		return 0, &CorruptError{Path: path, Reason: "segment is larger than 4 GiB"}
	}
	corrupt := func(off int64, reason string) error {
		return &CorruptError{Path: path, Offset: off, Reason: reason}
	}
	r := bufio.NewReaderSize(io.NewSectionReader(f, 0, size), 1<<20)
	hdr := make([]byte, SegmentHeaderSize)
	if size < int64(SegmentHeaderSize) {
		if !last {
			return 0, corrupt(0, "segment header is cut short")
		}
		// A crash while the segment was being created: nothing in it was
		// ever acknowledged.
		return int64(SegmentHeaderSize), j.rewriteHeader(f)
	}
	if _, err := io.ReadFull(r, hdr); err != nil {
		return 0, fmt.Errorf("journal: read %s: %w", path, err)
	}
	if string(hdr) != segMagic {
		return 0, corrupt(0, "bad segment header")
	}
	off := int64(SegmentHeaderSize)
	if size == off && !last {
		// A segment is only ever started by a record written into it.
		return 0, corrupt(off, "segment holds no records")
	}
	rh := make([]byte, RecordHeaderSize)
	var body []byte
	for off < size {
		torn := func(reason string) (int64, error) {
			if !last {
				return 0, corrupt(off, reason)
			}
			return off, j.truncate(f, off)
		}
		if size-off < RecordHeaderSize {
			return torn("record header is cut short")
		}
		if _, err := io.ReadFull(r, rh); err != nil {
			return 0, fmt.Errorf("journal: read %s: %w", path, err)
		}
		n, lcrc, crc, typ := binary.BigEndian.Uint32(rh), binary.BigEndian.Uint32(rh[4:]), binary.BigEndian.Uint32(rh[8:]), rh[12]
		if lcrc != crc32.Checksum(rh[:4], castagnoli) {
			if last && allZero(rh) {
				// Zeros where a record would start: the file was extended
				// but the write never landed. Everything after must be zero
				// too, or this is damage rather than a torn write.
				zero, err := zeroTail(r)
				if err != nil {
					return 0, fmt.Errorf("journal: read %s: %w", path, err)
				}
				if zero {
					return off, j.truncate(f, off)
				}
			}
			return 0, corrupt(off, "record length fails its checksum")
		}
		if n > MaxBody {
			return 0, corrupt(off, fmt.Sprintf("record length %d exceeds %d", n, MaxBody))
		}
		if size-off-RecordHeaderSize < int64(n) {
			return torn("record runs past the end of the file")
		}
		if cap(body) < int(n) {
			body = make([]byte, n)
		}
		body = body[:n]
		if _, err := io.ReadFull(r, body); err != nil {
			return 0, fmt.Errorf("journal: read %s: %w", path, err)
		}
		if crc != checksum(typ, body) {
			return 0, corrupt(off, "record fails its checksum")
		}
		if err := fn(MakePos(id, uint32(off)), typ, body); err != nil {
			return 0, err
		}
		off += RecordHeaderSize + int64(n)
	}
	return off, nil
}

func allZero(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}

func zeroTail(r io.Reader) (bool, error) {
	buf := make([]byte, 32<<10)
	for {
		n, err := r.Read(buf)
		if !allZero(buf[:n]) {
			return false, nil
		}
		if err == io.EOF {
			return true, nil
		}
		if err != nil {
			return false, err
		}
	}
}

func (j *Journal) truncate(f *os.File, off int64) error {
	if err := f.Truncate(off); err != nil {
		return fmt.Errorf("journal: truncate %s: %w", f.Name(), err)
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("journal: sync %s: %w", f.Name(), err)
	}
	return nil
}

func (j *Journal) rewriteHeader(f *os.File) error {
	if err := f.Truncate(0); err != nil {
		return fmt.Errorf("journal: truncate %s: %w", f.Name(), err)
	}
	if _, err := f.Write([]byte(segMagic)); err != nil {
		return fmt.Errorf("journal: write %s: %w", f.Name(), err)
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("journal: sync %s: %w", f.Name(), err)
	}
	return nil
}

func checksum(typ byte, body []byte) uint32 {
	crc := crc32.Update(0, castagnoli, []byte{typ})
	return crc32.Update(crc, castagnoli, body)
}

// Append adds a record to the current batch and returns its position and
// the batch's ticket for [Journal.Wait]. The record is durable once Wait
// for the ticket returns nil. body is copied; typ is the caller's.
func (j *Journal) Append(typ byte, body []byte) (Pos, uint64, error) {
	if len(body) > MaxBody {
		return 0, 0, fmt.Errorf("journal: record body of %d bytes exceeds %d", len(body), MaxBody)
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
	if j.curSize+n > j.segSize && j.curSize > int64(SegmentHeaderSize) || j.curSize+n > int64(^uint32(0)) {
		j.cur++
		j.curSize = int64(SegmentHeaderSize)
	}
	pos := MakePos(j.cur, uint32(j.curSize))
	j.curSize += n
	if len(j.buf) == 0 || j.buf[len(j.buf)-1].seg != j.cur {
		j.buf = append(j.buf, chunk{seg: j.cur})
	}
	c := &j.buf[len(j.buf)-1]
	var hdr [RecordHeaderSize]byte
	binary.BigEndian.PutUint32(hdr[:], uint32(len(body)))
	binary.BigEndian.PutUint32(hdr[4:], crc32.Checksum(hdr[:4], castagnoli))
	binary.BigEndian.PutUint32(hdr[8:], checksum(typ, body))
	hdr[12] = typ
	c.data = append(c.data, hdr[:]...)
	c.data = append(c.data, body...)
	j.nrec++
	if j.lingering && j.nrec < j.want {
		return pos, j.filling, nil
	}
	select {
	case j.kick <- struct{}{}:
	default:
	}
	return pos, j.filling, nil
}

// Wait blocks until the batch with the given ticket is durable, and returns
// nil, or until writing it failed, and returns that error.
func (j *Journal) Wait(ticket uint64) error {
	j.mu.Lock()
	defer j.mu.Unlock()
	for j.synced < ticket && j.err == nil {
		j.cond.Wait()
	}
	if j.synced >= ticket {
		return nil
	}
	return j.err
}

// Flush blocks until every record appended so far is durable.
func (j *Journal) Flush() error {
	j.mu.Lock()
	ticket := j.filling
	if len(j.buf) == 0 {
		ticket--
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
	ids := make([]uint32, 0, len(j.files))
	for id := range j.files {
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
	for _, f := range j.files {
		if st, err := f.Stat(); err == nil {
			n += st.Size()
		}
	}
	return n
}

// writer takes each batch, writes it, syncs it and wakes its waiters. It
// exits, after writing what was appended, once Close sets closing.
//
// After a batch of n records, during whose write m more arrived, the next
// batch is written once it holds m+n records or once half the last
// write-and-sync time has passed, whichever comes first: producers
// released by a sync need a moment to append again, and without the wait
// the writer would sync the first of them alone and make the rest wait a
// whole extra sync. A lone producer (m+n = 1) never waits.
func (j *Journal) writer() {
	defer close(j.done)
	linger := time.NewTimer(time.Hour)
	linger.Stop()
	var lastSync time.Duration
	for {
		<-j.kick
		for {
			j.mu.Lock()
			if len(j.buf) == 0 {
				closing := j.closing
				j.mu.Unlock()
				if closing {
					return
				}
				break
			}
			if wait := lastSync / 2; wait > 0 && j.nrec < j.want && !j.closing {
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
			batch, ticket, end := j.buf, j.filling, MakePos(j.cur, uint32(j.curSize))
			n := j.nrec
			j.buf, j.nrec = j.spare[:0], 0
			j.filling++
			j.mu.Unlock()

			start := time.Now()
			err := j.write(batch)
			lastSync = time.Since(start)

			j.mu.Lock()
			if err != nil {
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
				batch[i].data = batch[i].data[:0]
			}
			j.spare = batch
			if err != nil {
				// The state of the files is unknown after a failed write or
				// sync; refuse everything until the log is reopened.
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
		j.buf, j.nrec = nil, 0
		j.cond.Broadcast()
		closing := j.closing
		j.mu.Unlock()
		if closing {
			return
		}
		<-j.kick
	}
}

func (j *Journal) write(batch []chunk) error {
	created := false
	var touched []*os.File
	for _, c := range batch {
		j.filesMu.RLock()
		f := j.files[c.seg]
		j.filesMu.RUnlock()
		if f == nil {
			// Make the older segment durable before a newer one appears, so
			// that a crash can leave a torn tail only in the last segment.
			for _, t := range touched {
				if err := t.Sync(); err != nil {
					return fmt.Errorf("journal: sync %s: %w", t.Name(), err)
				}
			}
			touched = touched[:0]
			if err := j.create(c.seg); err != nil {
				return err
			}
			created = true
			j.filesMu.RLock()
			f = j.files[c.seg]
			j.filesMu.RUnlock()
		}
		if _, err := f.Write(c.data); err != nil {
			return fmt.Errorf("journal: write %s: %w", f.Name(), err)
		}
		touched = append(touched, f)
	}
	for _, f := range touched {
		if err := f.Sync(); err != nil {
			return fmt.Errorf("journal: sync %s: %w", f.Name(), err)
		}
	}
	if created {
		return syncDir(j.dir)
	}
	return nil
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("journal: %w", err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("journal: sync %s: %w", dir, err)
	}
	return nil
}

// ReadAt reads the record at p, checks it, and returns its type and a
// fresh copy of its body. The record must be durable (before [Journal.Durable]).
func (j *Journal) ReadAt(p Pos) (byte, []byte, error) {
	j.filesMu.RLock()
	defer j.filesMu.RUnlock()
	f := j.files[p.Segment()]
	if f == nil {
		return 0, nil, fmt.Errorf("journal: segment %d is not open", p.Segment())
	}
	var hdr [RecordHeaderSize]byte
	off := int64(p.Offset())
	corrupt := func(reason string) error {
		return &CorruptError{Path: f.Name(), Offset: off, Reason: reason}
	}
	if _, err := f.ReadAt(hdr[:], off); err != nil {
		if errors.Is(err, io.EOF) {
			return 0, nil, corrupt("record header is cut short")
		}
		return 0, nil, fmt.Errorf("journal: read %s: %w", f.Name(), err)
	}
	n := binary.BigEndian.Uint32(hdr[:])
	if binary.BigEndian.Uint32(hdr[4:]) != crc32.Checksum(hdr[:4], castagnoli) {
		return 0, nil, corrupt("record length fails its checksum")
	}
	if n > MaxBody {
		return 0, nil, corrupt("record length too large")
	}
	body := make([]byte, n)
	if _, err := f.ReadAt(body, off+RecordHeaderSize); err != nil {
		if errors.Is(err, io.EOF) {
			return 0, nil, corrupt("record runs past the end of the file")
		}
		return 0, nil, fmt.Errorf("journal: read %s: %w", f.Name(), err)
	}
	if binary.BigEndian.Uint32(hdr[8:]) != checksum(hdr[12], body) {
		return 0, nil, corrupt("record fails its checksum")
	}
	return hdr[12], body, nil
}

// Remove deletes segment id, which must not be the current one. The caller
// guarantees that nothing in it is needed any more.
func (j *Journal) Remove(id uint32) error {
	if id >= j.Current() {
		return fmt.Errorf("journal: segment %d is current", id)
	}
	j.filesMu.Lock()
	f := j.files[id]
	delete(j.files, id)
	j.filesMu.Unlock()
	if f == nil {
		return nil
	}
	f.Close()
	if err := os.Remove(f.Name()); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("journal: %w", err)
	}
	return nil
}

// Close writes and syncs what was appended, stops the writer goroutine and
// closes the files. It returns the first write or sync error seen, if any.
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
	select {
	case j.kick <- struct{}{}:
	default:
	}
	<-j.done
	j.closeFiles()
	unlock(j.lock)
	j.mu.Lock()
	defer j.mu.Unlock()
	return j.err
}

func (j *Journal) closeFiles() {
	j.filesMu.Lock()
	defer j.filesMu.Unlock()
	for id, f := range j.files {
		f.Close()
		delete(j.files, id)
	}
}
