package journal

import (
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
	"syscall"
)

// FS is the file layer a Journal reads and writes through. The zero
// Options use the operating system's files; tests substitute a layer that
// fails on demand (see [FaultFS]) so that the real write path meets
// failed syncs and full disks.
type FS interface {
	// OpenFile opens a file like os.OpenFile.
	OpenFile(name string, flag int, perm fs.FileMode) (File, error)
	// Remove deletes a file like os.Remove.
	Remove(name string) error
}

// File is an open segment file. Sync must make the data written so far
// durable, together with the file's size.
type File interface {
	io.ReaderAt
	io.WriterAt
	Sync() error
	Truncate(size int64) error
	Stat() (fs.FileInfo, error)
	Close() error
	Name() string
}

type osFS struct{}

func (osFS) OpenFile(name string, flag int, perm fs.FileMode) (File, error) {
	f, err := os.OpenFile(name, flag|noFollow, perm)
	if err != nil {
		return nil, err
	}
	return osFile{f}, nil
}

// osFile is an operating system file whose Sync is fdatasync on Linux.
type osFile struct{ *os.File }

func (f osFile) Sync() error { return datasync(f.File) }

func (osFS) Remove(name string) error { return os.Remove(name) }

// FaultFS is an [FS] on the operating system's files that fails on demand:
// after FailSync every Sync returns the given error, and after FailWrite
// every WriteAt that would grow a file writes what fits below the current
// end (nothing, when appending) and returns the error, as a full disk
// does, and creating a file fails with it; writes inside a file's current
// size still work, as they need no new space. Passing nil heals it.
// LimitSpace models a small disk instead: writes fail with ENOSPC only
// when the files of the directory would outgrow it, so deleting files
// makes room again. A FaultFS is safe for concurrent use; its zero value
// passes everything through.
type FaultFS struct {
	mu       sync.Mutex // guards the fields below
	syncErr  error
	writeErr error
	limit    int64 // 0: no limit
	hold     <-chan struct{}
	holdSync <-chan struct{}
}

// HoldSyncs makes every later Sync wait until release is closed; nil stops
// holding. Tests use it to keep the writer busy while records pile up
// into one batch.
func (f *FaultFS) HoldSyncs(release <-chan struct{}) {
	f.mu.Lock()
	f.holdSync = release
	f.mu.Unlock()
}

// LimitSpace makes the directory of every file this FaultFS opens hold at
// most n bytes of regular files, as a disk of that size would: a write
// that would grow a file past the room left writes what fits and fails
// with ENOSPC, and creating a file fails with ENOSPC when no room is left.
// Removing files gives their room back. Zero lifts the limit.
func (f *FaultFS) LimitSpace(n int64) {
	f.mu.Lock()
	f.limit = n
	f.mu.Unlock()
}

// room returns the bytes left in dir under the space limit, and false if
// there is no limit.
func (f *FaultFS) room(dir string) (int64, bool, error) {
	f.mu.Lock()
	limit := f.limit
	f.mu.Unlock()
	if limit == 0 {
		return 0, false, nil
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return 0, true, err
	}
	used := int64(0)
	for _, e := range entries {
		if !e.Type().IsRegular() {
			continue
		}
		info, err := e.Info()
		if err != nil {
			continue // removed meanwhile
		}
		used += info.Size()
	}
	return max(limit-used, 0), true, nil
}

// HoldReads makes every later ReadAt wait until release is closed; nil
// stops holding. Tests use it to show who waits on a slow disk.
func (f *FaultFS) HoldReads(release <-chan struct{}) {
	f.mu.Lock()
	f.hold = release
	f.mu.Unlock()
}

// FailSync makes every later Sync return err; nil stops the failures.
func (f *FaultFS) FailSync(err error) {
	f.mu.Lock()
	f.syncErr = err
	f.mu.Unlock()
}

// FailWrite makes every later WriteAt that would grow a file, and every
// creation of a file, fail with err; nil stops the failures.
func (f *FaultFS) FailWrite(err error) {
	f.mu.Lock()
	f.writeErr = err
	f.mu.Unlock()
}

func (f *FaultFS) errs() (sync, write error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.syncErr, f.writeErr
}

// OpenFile opens a file whose writes and syncs obey the injected faults.
func (f *FaultFS) OpenFile(name string, flag int, perm fs.FileMode) (File, error) {
	if flag&os.O_CREATE != 0 {
		if _, werr := f.errs(); werr != nil {
			return nil, &fs.PathError{Op: "open", Path: name, Err: werr}
		}
		if room, limited, err := f.room(filepath.Dir(name)); err != nil {
			return nil, err
		} else if limited && room == 0 {
			if _, err := os.Lstat(name); errors.Is(err, fs.ErrNotExist) {
				return nil, &fs.PathError{Op: "open", Path: name, Err: syscall.ENOSPC}
			}
		}
	}
	file, err := osFS{}.OpenFile(name, flag, perm)
	if err != nil {
		return nil, err
	}
	return &faultFile{File: file, fs: f}, nil
}

// Remove deletes a file; removing always works, even on a full disk.
func (f *FaultFS) Remove(name string) error { return os.Remove(name) }

type faultFile struct {
	File
	fs *FaultFS
}

func (f *faultFile) WriteAt(b []byte, off int64) (int, error) {
	_, err := f.fs.errs()
	room, limited, rerr := f.fs.room(filepath.Dir(f.Name()))
	if rerr != nil {
		return 0, rerr
	}
	if err == nil && !limited {
		return f.File.WriteAt(b, off)
	}
	st, serr := f.File.Stat()
	if serr != nil {
		return 0, serr
	}
	// fits is how much of b lands below the end the fault allows.
	end := st.Size()
	if err == nil {
		end += room
	}
	if fits := end - off; fits < int64(len(b)) {
		n := 0
		if fits > 0 {
			n, _ = f.File.WriteAt(b[:fits], off)
		}
		if err == nil {
			err = syscall.ENOSPC
		}
		return n, &fs.PathError{Op: "write", Path: f.Name(), Err: err}
	}
	return f.File.WriteAt(b, off)
}

func (f *faultFile) ReadAt(b []byte, off int64) (int, error) {
	f.fs.mu.Lock()
	hold := f.fs.hold
	f.fs.mu.Unlock()
	if hold != nil {
		<-hold
	}
	return f.File.ReadAt(b, off)
}

func (f *faultFile) Sync() error {
	f.fs.mu.Lock()
	hold := f.fs.holdSync
	f.fs.mu.Unlock()
	if hold != nil {
		<-hold
	}
	if err, _ := f.fs.errs(); err != nil {
		return &fs.PathError{Op: "sync", Path: f.Name(), Err: err}
	}
	return f.File.Sync()
}

// readCache keeps a few sealed segments open for reading, so that the
// number of open descriptors stays bounded whatever the backlog.
type readCache struct {
	mu    sync.Mutex // guards the fields below
	files map[uint32]File
	order []uint32 // oldest use first
	win   window   // the bytes last read, shared by all segments
}

// readCacheSize is how many sealed segments stay open for reading.
const readCacheSize = 4

// with calls fn with the open file of segment id and the read window,
// opening the file with open if it is not cached and closing the least
// recently used one if the cache is full. The cache's lock is held during
// fn, so no file is closed under a reader.
func (c *readCache) with(id uint32, open func() (File, error), fn func(File, *window) error) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	f, ok := c.files[id]
	if ok {
		c.touch(id)
		return fn(f, &c.win)
	}
	f, err := open()
	if err != nil {
		return err
	}
	if c.files == nil {
		c.files = make(map[uint32]File)
	}
	if len(c.order) >= readCacheSize {
		old := c.order[0]
		c.order = c.order[1:]
		c.files[old].Close()
		delete(c.files, old)
	}
	c.files[id] = f
	c.order = append(c.order, id)
	return fn(f, &c.win)
}

func (c *readCache) touch(id uint32) {
	for i, x := range c.order {
		if x == id {
			copy(c.order[i:], c.order[i+1:])
			c.order[len(c.order)-1] = id
			return
		}
	}
}

// drop closes segment id if it is cached.
func (c *readCache) drop(id uint32) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.win.seg == id {
		c.win.reset()
	}
	if f, ok := c.files[id]; ok {
		f.Close()
		delete(c.files, id)
		for i, x := range c.order {
			if x == id {
				c.order = append(c.order[:i], c.order[i+1:]...)
				break
			}
		}
	}
}

func (c *readCache) closeAll() {
	c.mu.Lock()
	defer c.mu.Unlock()
	for id, f := range c.files {
		f.Close()
		delete(c.files, id)
	}
	c.order = nil
	c.win = window{}
}
