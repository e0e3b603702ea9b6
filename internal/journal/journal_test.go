package journal

import (
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

type rec struct {
	pos  Pos
	typ  byte
	body string
}

func openJournal(t *testing.T, dir string, opts Options) (*Journal, []rec) {
	t.Helper()
	var got []rec
	j, err := Open(dir, opts, func(p Pos, typ byte, body []byte) error {
		got = append(got, rec{p, typ, string(body)})
		return nil
	})
	require.NoError(t, err, "Open(%q)", dir)
	t.Cleanup(func() { j.Close() })
	return j, got
}

func TestJournalAppendsReadsAndReopens(t *testing.T) {
	dir := t.TempDir()
	j, got := openJournal(t, dir, Options{SegmentSize: 4096})
	assert.Empty(t, got, "records in a new journal")
	var want []rec
	for i := range 100 {
		body := fmt.Sprintf("record %03d %s", i, make([]byte, i))
		p, ticket, err := j.Append(byte(i%7+1), []byte(body))
		require.NoError(t, err, "Append(%d)", i)
		require.NoError(t, j.Wait(ticket), "Wait(%d)", ticket)
		want = append(want, rec{p, byte(i%7 + 1), body})
		if i > 0 {
			assert.Greater(t, p, want[i-1].pos, "Pos of record %d", i)
		}
	}
	for _, w := range want {
		typ, body, err := j.ReadAt(w.pos)
		require.NoError(t, err, "ReadAt(%v)", w.pos)
		assert.Equal(t, w, rec{w.pos, typ, string(body)}, "ReadAt(%v)", w.pos)
	}
	assert.Greater(t, len(j.Segments()), 1, "segments after 100 records in 4 KiB segments")
	require.NoError(t, j.Close())
	require.NoError(t, j.Close(), "second Close")
	_, _, err := j.Append(1, nil)
	require.ErrorIs(t, err, ErrClosed, "Append after Close")

	_, got = openJournal(t, dir, Options{SegmentSize: 4096})
	assert.Equal(t, want, got, "records after reopening")
}

func TestJournalGroupCommitsConcurrentAppends(t *testing.T) {
	j, _ := openJournal(t, t.TempDir(), Options{})
	var wg sync.WaitGroup
	var mu sync.Mutex
	positions := map[Pos]string{}
	for g := range 16 {
		wg.Go(func() {
			for i := range 50 {
				body := fmt.Sprintf("%d/%d", g, i)
				p, ticket, err := j.Append(1, []byte(body))
				if !assert.NoError(t, err) || !assert.NoError(t, j.Wait(ticket)) {
					return
				}
				assert.Less(t, p, j.Durable(), "Durable() after Wait for %s", body)
				mu.Lock()
				positions[p] = body
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	require.Len(t, positions, 800, "distinct positions")
	for p, body := range positions {
		_, got, err := j.ReadAt(p)
		require.NoError(t, err, "ReadAt(%v)", p)
		assert.Equal(t, body, string(got), "ReadAt(%v)", p)
	}
	require.NoError(t, j.Flush(), "Flush")
}

func TestJournalRemovesOldSegments(t *testing.T) {
	dir := t.TempDir()
	j, _ := openJournal(t, dir, Options{SegmentSize: 4096})
	for range 20 {
		_, _, err := j.Append(1, make([]byte, 1000))
		require.NoError(t, err)
	}
	require.NoError(t, j.Flush())
	segs := j.Segments()
	require.Greater(t, len(segs), 2)
	require.Error(t, j.RemoveBelow(j.Current()+1), "RemoveBelow(current+1)")
	require.NoError(t, j.RemoveBelow(segs[1]), "RemoveBelow(%d)", segs[1])
	_, err := os.Stat(filepath.Join(dir, fmt.Sprintf("%08x.seg", segs[0])))
	assert.True(t, os.IsNotExist(err), "segment file still exists: %v", err)
	require.NoError(t, j.Close())

	_, got := openJournal(t, dir, Options{SegmentSize: 4096})
	assert.Equal(t, 20-4, len(got), "records after removing the first segment")
}

func TestOpenStopsOnTheCallersError(t *testing.T) {
	dir := t.TempDir()
	j, _ := openJournal(t, dir, Options{})
	_, _, err := j.Append(1, []byte("x"))
	require.NoError(t, err)
	require.NoError(t, j.Close())
	errStop := fmt.Errorf("stop")
	_, err = Open(dir, Options{}, func(Pos, byte, []byte) error { return errStop })
	require.ErrorIs(t, err, errStop, "Open")
}

func TestJournalSteadyAppendsAllocateNothing(t *testing.T) {
	// The writer hands each written batch's buffers back for the next one;
	// a batch that started a new buffer per batch cost two allocations per
	// record under load.
	if testing.Short() {
		t.Skip("syncs a few hundred times")
	}
	j, _ := openJournal(t, t.TempDir(), Options{})
	body := make([]byte, 120)
	appendOne := func() {
		_, ticket, err := j.Append(1, body)
		if err == nil {
			err = j.Wait(ticket)
		}
		require.NoError(t, err)
	}
	for range 10 {
		appendOne()
	}
	allocs := testing.AllocsPerRun(200, appendOne)
	assert.Zero(t, allocs, "allocations per appended and synced record")
}

func TestJournalReportsScanProgress(t *testing.T) {
	dir := t.TempDir()
	j, _ := openJournal(t, dir, Options{SegmentSize: 4096})
	for range 40 {
		_, ticket, err := j.Append(1, make([]byte, 300))
		require.NoError(t, err)
		require.NoError(t, j.Wait(ticket))
	}
	size, segs := j.Size(), len(j.Segments())
	require.NoError(t, j.Close())
	type call struct{ done, total int64 }
	var calls []call
	j, err := Open(dir, Options{SegmentSize: 4096, Scanned: func(done, total int64) {
		calls = append(calls, call{done, total})
	}}, func(Pos, byte, []byte) error { return nil })
	require.NoError(t, err)
	defer j.Close()
	require.Len(t, calls, segs, "one call per segment")
	for i, c := range calls {
		assert.Equal(t, size, c.total, "total in call %d", i)
		if i > 0 {
			assert.Greater(t, c.done, calls[i-1].done, "done in call %d", i)
		}
	}
	assert.Equal(t, size, calls[len(calls)-1].done, "done in the last call")
}
