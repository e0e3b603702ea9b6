package journal

import (
	"fmt"
	"io/fs"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// countFS counts the reads made through the operating system's files.
type countFS struct {
	osFS
	reads *atomic.Int64
}

func (c countFS) OpenFile(name string, flag int, perm fs.FileMode) (File, error) {
	f, err := c.osFS.OpenFile(name, flag, perm)
	if err != nil {
		return nil, err
	}
	return countFile{f, c.reads}, nil
}

type countFile struct {
	File
	reads *atomic.Int64
}

func (f countFile) ReadAt(b []byte, off int64) (int, error) {
	f.reads.Add(1)
	return f.File.ReadAt(b, off)
}

// Reading records back in log order, as a replay does, must not cost a
// system call or two per record.
func TestJournalSequentialReadsAreBatched(t *testing.T) {
	var reads atomic.Int64
	j, _ := openJournal(t, t.TempDir(), Options{FS: countFS{reads: &reads}})
	const n = 2000
	var want []rec
	for i := range n {
		body := fmt.Sprintf("item %04d %s", i, make([]byte, 100))
		p, _, err := j.Append(1, []byte(body))
		require.NoError(t, err, "Append(%d)", i)
		want = append(want, rec{p, 1, body})
	}
	require.NoError(t, j.Flush())
	reads.Store(0)
	for _, w := range want {
		typ, body, err := j.ReadAt(w.pos)
		require.NoError(t, err, "ReadAt(%v)", w.pos)
		require.Equal(t, w, rec{w.pos, typ, string(body)}, "ReadAt(%v)", w.pos)
	}
	assert.Less(t, reads.Load(), int64(n/50), "file reads to read %d records in order", n)
}

// A record larger than the read window, and records read while others
// are being appended behind them, read back whole.
func TestJournalReadsWhileAppending(t *testing.T) {
	j, _ := openJournal(t, t.TempDir(), Options{SegmentSize: 1 << 20})
	big := make([]byte, 768<<10)
	for i := range big {
		big[i] = byte(i)
	}
	p, ticket, err := j.Append(2, big)
	require.NoError(t, err)
	require.NoError(t, j.Wait(ticket))
	typ, body, err := j.ReadAt(p)
	require.NoError(t, err)
	assert.Equal(t, byte(2), typ)
	assert.Equal(t, big, body, "body of a record larger than the window")

	var wg sync.WaitGroup
	var mu sync.Mutex
	var durable []rec
	wg.Go(func() {
		for i := range 1000 {
			b := fmt.Sprintf("rec %d %s", i, make([]byte, i%600))
			p, ticket, err := j.Append(1, []byte(b))
			if !assert.NoError(t, err) || !assert.NoError(t, j.Wait(ticket)) {
				return
			}
			mu.Lock()
			durable = append(durable, rec{p, 1, b})
			mu.Unlock()
		}
	})
	for range 3 {
		wg.Go(func() {
			for k := 0; k < 1000; k++ {
				mu.Lock()
				if len(durable) == 0 {
					mu.Unlock()
					continue
				}
				w := durable[k%len(durable)]
				mu.Unlock()
				typ, body, err := j.ReadAt(w.pos)
				if !assert.NoError(t, err, "ReadAt(%v)", w.pos) {
					return
				}
				assert.Equal(t, w, rec{w.pos, typ, string(body)})
			}
		})
	}
	wg.Wait()
	assert.Greater(t, len(j.Segments()), 1, "segments written while reading")
}
