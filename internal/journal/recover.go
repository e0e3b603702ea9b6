package journal

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
)

// recover checks the segments on disk, calls fn for their records and
// leaves the last segment open as the one being written. See the package
// documentation for the rules.
func (j *Journal) recover(fn func(Pos, byte, []byte) error) error {
	ids, err := listSegments(j.dir)
	if err != nil {
		return err
	}
	if len(ids) == 0 {
		// Start the first segment now so that there is always a current one.
		f, err := j.create(1, 1)
		if err != nil {
			return err
		}
		j.wfile, j.wseg, j.wsize, j.floor = f, 1, SegmentHeaderSize, 1
		j.sizes[1] = SegmentHeaderSize
		return nil
	}
	last := ids[len(ids)-1]
	lf, err := j.fs.OpenFile(j.path(last), os.O_RDWR, 0)
	if err != nil {
		return fmt.Errorf("journal: %w", err)
	}
	j.wfile, j.wseg = lf, last
	st, err := lf.Stat()
	if err != nil {
		return fmt.Errorf("journal: %w", err)
	}
	hasPrev := len(ids) > 1 && ids[len(ids)-2] == last-1
	var unfinished error // why the last segment's cut-short header stays so
	if st.Size() < SegmentHeaderSize {
		// A crash while the segment was being created: nothing in it was
		// ever written. Give it the header it was being given, with its
		// predecessor's floor.
		floor := last
		if hasPrev {
			if floor, err = j.readFloor(last - 1); err != nil {
				return err
			}
		}
		if err := rewriteHeader(lf, last, floor); err != nil {
			if !hasPrev || !isNoSpace(err) {
				return err
			}
			// The disk is full. If its predecessor is unsealed, the
			// segment is taken away below, which needs no space.
			unfinished, j.floor = err, floor
		} else if st, err = lf.Stat(); err != nil {
			return fmt.Errorf("journal: %w", err)
		}
	}
	if unfinished == nil {
		hdr := make([]byte, SegmentHeaderSize)
		if _, err := lf.ReadAt(hdr, 0); err != nil {
			return fmt.Errorf("journal: read %s: %w", lf.Name(), err)
		}
		if j.floor, err = j.decodeHeader(last, hdr); err != nil {
			return err
		}
	}
	floor := j.floor
	// Segments below the floor are left over from an interrupted removal.
	removed := false
	for len(ids) > 0 && ids[0] < floor {
		if err := j.fs.Remove(j.path(ids[0])); err != nil {
			return fmt.Errorf("journal: %w", err)
		}
		ids, removed = ids[1:], true
	}
	if removed {
		if err := j.syncDir(); err != nil {
			return err
		}
	}
	for i, id := range ids {
		if want := floor + uint32(i); id != want {
			return j.corrupt(want, 0, "segment file is missing (the log needs segments %d to %d)", floor, last)
		}
	}
	lastEmpty := unfinished != nil || st.Size() <= SegmentHeaderSize
	r := j.newScanReader()
	var total, done int64
	if j.scanned != nil {
		for _, id := range ids {
			if info, err := os.Lstat(j.path(id)); err == nil {
				total += info.Size()
			}
		}
	}
	dropped := false
	for i, id := range ids {
		isLast := i == len(ids)-1
		tailOK := isLast || i == len(ids)-2 && lastEmpty
		f := lf
		if !isLast {
			if f, err = j.fs.OpenFile(j.path(id), os.O_RDWR, 0); err != nil {
				return fmt.Errorf("journal: %w", err)
			}
		}
		if isLast && unfinished != nil {
			// Its predecessor was sealed, so it cannot be taken away.
			return unfinished
		}
		size, sealed, err := j.scan(f, id, tailOK, r, fn)
		if err == nil && !isLast && !sealed {
			if !tailOK {
				err = j.corrupt(id, size, "segment is not sealed but segment %d follows: it was cut short", id+1)
			} else {
				// The crash came after the next segment was created and
				// before this one was sealed.
				end := size
				if unfinished == nil {
					size, err = sealAt(f, end, id+1)
				}
				if unfinished != nil || isNoSpace(err) {
					// The disk is full: take the empty next segment away
					// instead, and write on in this one.
					if err = j.dropLast(f, id, end); err == nil {
						size, isLast, dropped = end, true, true
					}
				}
			}
		}
		if err == nil && isLast && sealed {
			err = j.corrupt(id, size, "segment is sealed but segment %d, which it names, is missing", id+1)
		}
		if !isLast {
			f.Close()
		}
		if err != nil {
			return err
		}
		j.sizes[id] = size
		if isLast {
			j.wsize = size
		}
		if j.scanned != nil {
			done += size
			j.scanned(done, max(total, done))
		}
		if dropped {
			break
		}
	}
	return nil
}

// dropLast makes segment id, unsealed and open as f with its records
// ending at end, the last one in place of the segment after it, which
// holds no records: it cuts f back to end, gives it the floor from the
// header of the segment it replaces, and removes that segment. None of
// this needs new space on a file system that overwrites in place. A crash
// part way leaves what Open started from, or its result. On success f is
// the file being written; on failure the caller still owns it.
func (j *Journal) dropLast(f File, id uint32, end int64) error {
	if err := truncate(f, end); err != nil {
		return err
	}
	if hdr := encodeHeader(id, j.floor); !headerIs(f, hdr) {
		if _, err := f.WriteAt(hdr, 0); err != nil {
			return fmt.Errorf("journal: write %s: %w", f.Name(), err)
		}
		if err := f.Sync(); err != nil {
			return fmt.Errorf("journal: sync %s: %w", f.Name(), err)
		}
	}
	j.wfile.Close()
	j.wfile = nil
	if err := j.fs.Remove(j.path(id + 1)); err != nil {
		return fmt.Errorf("journal: %w", err)
	}
	if err := j.syncDir(); err != nil {
		return err
	}
	j.wfile, j.wseg = f, id
	return nil
}

// readFloor returns the floor in the header of segment id.
func (j *Journal) readFloor(id uint32) (uint32, error) {
	f, err := j.fs.OpenFile(j.path(id), os.O_RDONLY, 0)
	if err != nil {
		return 0, fmt.Errorf("journal: %w", err)
	}
	defer f.Close()
	hdr := make([]byte, SegmentHeaderSize)
	if _, err := f.ReadAt(hdr, 0); err != nil {
		if errors.Is(err, io.EOF) {
			return 0, j.corrupt(id, 0, "segment header is cut short")
		}
		return 0, fmt.Errorf("journal: read %s: %w", f.Name(), err)
	}
	return j.decodeHeader(id, hdr)
}

func rewriteHeader(f File, id, floor uint32) error {
	if err := f.Truncate(0); err != nil {
		return fmt.Errorf("journal: truncate %s: %w", f.Name(), err)
	}
	if _, err := f.WriteAt(encodeHeader(id, floor), 0); err != nil {
		return fmt.Errorf("journal: write %s: %w", f.Name(), err)
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("journal: sync %s: %w", f.Name(), err)
	}
	return nil
}

func sealAt(f File, off int64, next uint32) (int64, error) {
	seal := sealRecord(next)
	if _, err := f.WriteAt(seal, off); err != nil {
		return 0, fmt.Errorf("journal: write %s: %w", f.Name(), err)
	}
	if err := f.Sync(); err != nil {
		return 0, fmt.Errorf("journal: sync %s: %w", f.Name(), err)
	}
	return off + int64(len(seal)), nil
}

// scan reads segment id, calling fn for each record, and returns the size
// of its valid contents and whether it ends with a seal. When tailOK, a
// torn tail is cut off.
func (j *Journal) scan(f File, id uint32, tailOK bool, r *bufio.Reader, fn func(Pos, byte, []byte) error) (int64, bool, error) {
	st, err := f.Stat()
	if err != nil {
		return 0, false, fmt.Errorf("journal: %w", err)
	}
	size := st.Size()
	if size > int64(^uint32(0)) {
		return 0, false, j.corrupt(id, 0, "segment is larger than 4 GiB")
	}
	if size < SegmentHeaderSize {
		return 0, false, j.corrupt(id, 0, "segment header is cut short")
	}
	r.Reset(io.NewSectionReader(f, 0, size))
	hdr := make([]byte, SegmentHeaderSize)
	if _, err := io.ReadFull(r, hdr); err != nil {
		return 0, false, fmt.Errorf("journal: read %s: %w", f.Name(), err)
	}
	if _, err := j.decodeHeader(id, hdr); err != nil {
		return 0, false, err
	}
	off := int64(SegmentHeaderSize)
	var rh [RecordHeaderSize]byte
	var body []byte
	// bad decides what a record that does not check out at off, and
	// would end at end, is: a torn tail to cut, or damage.
	bad := func(end int64, reason string) (int64, bool, error) {
		if tailOK {
			torn, err := isTorn(f, off, end, size, end > size)
			if err != nil {
				return 0, false, err
			}
			if torn {
				return off, false, truncate(f, off)
			}
		}
		return 0, false, j.corrupt(id, off, "%s", reason)
	}
	for off < size {
		if size-off < RecordHeaderSize {
			return bad(size+1, "record header is cut short")
		}
		if _, err := io.ReadFull(r, rh[:]); err != nil {
			return 0, false, fmt.Errorf("journal: read %s: %w", f.Name(), err)
		}
		n, lcrc, crc, typ := binary.BigEndian.Uint32(rh[:]), binary.BigEndian.Uint32(rh[4:]), binary.BigEndian.Uint32(rh[8:]), rh[12]
		if lcrc != crc32.Checksum(rh[:4], castagnoli) {
			return bad(off+RecordHeaderSize, "record length fails its checksum")
		}
		if n > MaxBody {
			return bad(off+RecordHeaderSize, fmt.Sprintf("record length %d exceeds %d", n, MaxBody))
		}
		end := off + RecordHeaderSize + int64(n)
		if end > size {
			return bad(size+1, "record runs past the end of the file")
		}
		if cap(body) < int(n) {
			body = make([]byte, n)
		}
		body = body[:n]
		if _, err := io.ReadFull(r, body); err != nil {
			return 0, false, fmt.Errorf("journal: read %s: %w", f.Name(), err)
		}
		if crc != checksum(typ, body) {
			return bad(end, "record fails its checksum")
		}
		if typ == typeSeal {
			if n != 4 || binary.BigEndian.Uint32(body) != id+1 {
				return 0, false, j.corrupt(id, off, "seal does not name segment %d", id+1)
			}
			if end != size {
				return 0, false, j.corrupt(id, end, "data follows the seal")
			}
			return end, true, nil
		}
		if err := fn(MakePos(id, uint32(off)), typ, body); err != nil {
			return 0, false, err
		}
		off = end
	}
	return off, false, nil
}

// isTorn reports whether a record at off that does not check out, and
// would end at end, is what a crash leaves: it is cut short by the end of
// the file (cut), or the file is zero from off to its size, or from the
// first sector boundary after off, provided that boundary falls inside
// the record, to its size.
func isTorn(f File, off, end, size int64, cut bool) (bool, error) {
	if cut {
		return true, nil
	}
	zero, err := zeroFrom(f, off, size)
	if err != nil || zero {
		return zero, err
	}
	a := (off/sector + 1) * sector
	if a >= end {
		return false, nil
	}
	return zeroFrom(f, a, size)
}

// zeroFrom reports whether f holds only zero bytes in [from, to).
func zeroFrom(f File, from, to int64) (bool, error) {
	buf := make([]byte, 32<<10)
	for from < to {
		n := min(int64(len(buf)), to-from)
		if _, err := f.ReadAt(buf[:n], from); err != nil && !errors.Is(err, io.EOF) {
			return false, fmt.Errorf("journal: read %s: %w", f.Name(), err)
		}
		for _, c := range buf[:n] {
			if c != 0 {
				return false, nil
			}
		}
		from += n
	}
	return true, nil
}

func truncate(f File, off int64) error {
	if err := f.Truncate(off); err != nil {
		return fmt.Errorf("journal: truncate %s: %w", f.Name(), err)
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("journal: sync %s: %w", f.Name(), err)
	}
	return nil
}
