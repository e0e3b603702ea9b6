// Package statefile keeps one small record durably in one file, for the
// state ringfence must not lose across a restart: an operator's mode switch
// and a rollout's progress.
//
// A record is written atomically (a temporary file in the same directory is
// written, synced and renamed over the old one, then the directory is
// synced), carries a CRC-32C checksum over its header and body, and carries
// a version number that Save compares before it writes. So a reader sees
// either the old record or the new one, never a mix; a damaged file is
// reported as [ErrCorrupt], never returned as data; and two writers that
// both read version n cannot both replace it.
//
// The file format is:
//
//	magic   [4]byte  "RFS1"
//	version uint64   big-endian, 1 for the first record saved
//	length  uint32   big-endian, length of data
//	crc     uint32   big-endian, CRC-32C (Castagnoli) of magic, version, length and data
//	data    [length]byte
//
// Nothing may follow the data.
//
// # Hostile paths
//
// Load reads only a regular file, and at most [MaxSize] bytes of data plus
// the header. The path itself must not be a symlink, a FIFO, a device or a
// directory: such a path is reported as [ErrCorrupt] at once, without
// reading from it (on Unix systems the file is opened with O_NOFOLLOW and
// O_NONBLOCK, so neither a FIFO without a writer nor /dev/zero can make
// Load block or allocate). Save writes by renaming a new file over the
// path, so a symlink there would be replaced rather than followed; Save
// refuses such a path too.
package statefile

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
)

// Errors returned by [File.Load] and [File.Save], checked with errors.Is.
var (
	// ErrNotFound means no record has been saved at the path yet.
	ErrNotFound = errors.New("statefile: no record")
	// ErrCorrupt means the file exists but does not hold a valid record.
	ErrCorrupt = errors.New("statefile: corrupt record")
	// ErrConflict means Save was given a version other than the one on disk.
	ErrConflict = errors.New("statefile: version conflict")
)

const (
	magic      = "RFS1"
	headerSize = 4 + 8 + 4 + 4
	// MaxSize is the largest record body a File accepts, so that a damaged
	// length field can never make Load allocate without bound.
	MaxSize = 16 << 20
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// File is one durable, versioned record at a fixed path.
//
// Its compare-and-swap is enforced between the goroutines of one process
// sharing the File; processes must not share a state file.
// A File is safe for concurrent use. The zero value is not usable; call [New].
type File struct {
	path string
	mu   sync.Mutex // serialises Save's read-compare-write
}

// New returns a File for path. It does not touch the file system; the
// directory must exist by the first Save.
func New(path string) (*File, error) {
	if path == "" {
		return nil, errors.New("statefile: path is empty")
	}
	return &File{path: path}, nil
}

// Path returns the file's path.
func (f *File) Path() string { return f.path }

// Load returns the record's data and version. It returns an error wrapping
// [ErrNotFound] when no file exists, [ErrCorrupt] when the file is damaged,
// and the file system's error when it cannot be read. A path that is not a
// regular file, or a file larger than a record can be, is [ErrCorrupt]
// (see the package documentation).
func (f *File) Load() (data []byte, version uint64, err error) {
	raw, err := readRegular(f.path)
	if err != nil {
		return nil, 0, err
	}
	data, version, err = decode(raw)
	if err != nil {
		return nil, 0, fmt.Errorf("%w: %s: %v", ErrCorrupt, f.path, err)
	}
	return data, version, nil
}

// Save replaces the record with data if the version on disk is expect
// (0 when no record exists yet) and returns the new version, expect+1.
// It returns an error wrapping [ErrConflict] when the version differs and
// [ErrCorrupt] when the existing file is damaged: a damaged record is
// never overwritten blindly; move it aside to start afresh.
// When Save returns nil the record is on stable storage.
func (f *File) Save(data []byte, expect uint64) (uint64, error) {
	if len(data) > MaxSize {
		return 0, fmt.Errorf("statefile: record of %d bytes exceeds %d", len(data), MaxSize)
	}
	f.mu.Lock()
	defer f.mu.Unlock()

	_, current, err := f.Load()
	switch {
	case errors.Is(err, ErrNotFound):
		current = 0
	case err != nil:
		return 0, err
	}
	if current != expect {
		return 0, fmt.Errorf("%w: %s holds version %d, caller expected %d", ErrConflict, f.path, current, expect)
	}
	next := current + 1
	if err := writeAtomic(f.path, encode(data, next)); err != nil {
		return 0, err
	}
	return next, nil
}

// readRegular reads the regular file at path, refusing anything else and
// anything larger than a record can be.
func readRegular(path string) ([]byte, error) {
	fd, err := os.OpenFile(path, openFlags, 0)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return nil, fmt.Errorf("%w: %s", ErrNotFound, path)
	case isSymlinkErr(err):
		return nil, fmt.Errorf("%w: %s is a symlink, not a regular file", ErrCorrupt, path)
	case err != nil:
		return nil, fmt.Errorf("statefile: open %s: %w", path, err)
	}
	defer fd.Close()
	st, err := fd.Stat()
	if err != nil {
		return nil, fmt.Errorf("statefile: stat %s: %w", path, err)
	}
	if !st.Mode().IsRegular() {
		return nil, fmt.Errorf("%w: %s is not a regular file (%v)", ErrCorrupt, path, st.Mode().Type())
	}
	const limit = headerSize + MaxSize
	if st.Size() > limit {
		return nil, fmt.Errorf("%w: %s holds %d bytes, more than the %d a record can take", ErrCorrupt, path, st.Size(), limit)
	}
	// The file may grow between Stat and the read; read one byte past the
	// limit to notice.
	raw, err := io.ReadAll(io.LimitReader(fd, limit+1))
	if err != nil {
		return nil, fmt.Errorf("statefile: read %s: %w", path, err)
	}
	if len(raw) > limit {
		return nil, fmt.Errorf("%w: %s holds more than the %d bytes a record can take", ErrCorrupt, path, limit)
	}
	return raw, nil
}

func encode(data []byte, version uint64) []byte {
	buf := make([]byte, headerSize+len(data))
	copy(buf, magic)
	binary.BigEndian.PutUint64(buf[4:], version)
	binary.BigEndian.PutUint32(buf[12:], uint32(len(data)))
	copy(buf[headerSize:], data)
	crc := crc32.Update(0, castagnoli, buf[:16])
	crc = crc32.Update(crc, castagnoli, data)
	binary.BigEndian.PutUint32(buf[16:], crc)
	return buf
}

func decode(raw []byte) ([]byte, uint64, error) {
	if len(raw) < headerSize {
		return nil, 0, fmt.Errorf("%d bytes is shorter than the %d-byte header", len(raw), headerSize)
	}
	if !bytes.Equal(raw[:4], []byte(magic)) {
		return nil, 0, errors.New("bad magic")
	}
	version := binary.BigEndian.Uint64(raw[4:])
	n := binary.BigEndian.Uint32(raw[12:])
	if n > MaxSize || int(n) != len(raw)-headerSize {
		return nil, 0, fmt.Errorf("length field %d does not match the %d bytes of data", n, len(raw)-headerSize)
	}
	data := raw[headerSize:]
	crc := crc32.Update(0, castagnoli, raw[:16])
	crc = crc32.Update(crc, castagnoli, data)
	if crc != binary.BigEndian.Uint32(raw[16:]) {
		return nil, 0, errors.New("checksum mismatch")
	}
	if version == 0 {
		return nil, 0, errors.New("version 0 is never written")
	}
	return bytes.Clone(data), version, nil
}

// writeAtomic writes b to a temporary file beside path, syncs it, renames
// it over path and syncs the directory, so that after a crash path holds
// either its old contents or b.
func writeAtomic(path string, b []byte) (err error) {
	dir := filepath.Dir(path)
	tmp, err := os.CreateTemp(dir, filepath.Base(path)+".tmp*")
	if err != nil {
		return fmt.Errorf("statefile: %w", err)
	}
	defer func() {
		if err != nil {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	if _, err = tmp.Write(b); err != nil {
		return fmt.Errorf("statefile: write %s: %w", tmp.Name(), err)
	}
	if err = tmp.Sync(); err != nil {
		return fmt.Errorf("statefile: sync %s: %w", tmp.Name(), err)
	}
	if err = tmp.Close(); err != nil {
		return fmt.Errorf("statefile: close %s: %w", tmp.Name(), err)
	}
	if err = os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("statefile: %w", err)
	}
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("statefile: open directory: %w", err)
	}
	defer d.Close()
	if err = d.Sync(); err != nil {
		return fmt.Errorf("statefile: sync directory %s: %w", dir, err)
	}
	return nil
}
