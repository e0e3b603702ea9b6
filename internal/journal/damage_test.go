package journal

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"syscall"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// sampleLog writes n records of 300 bytes into 4 KiB segments, closes the
// log and returns the directory and the segment paths.
func sampleLog(t *testing.T, n int) (string, []string) {
	t.Helper()
	dir := t.TempDir()
	j, _ := openJournal(t, dir, Options{SegmentSize: 4096})
	for i := range n {
		_, _, err := j.Append(1, []byte(fmt.Sprintf("%03d %0296d", i, i)))
		require.NoError(t, err)
	}
	require.NoError(t, j.Close())
	return dir, segPaths(t, dir)
}

func segPaths(t *testing.T, dir string) []string {
	t.Helper()
	names, err := filepath.Glob(filepath.Join(dir, "*.seg"))
	require.NoError(t, err)
	slices.Sort(names)
	return names
}

func openErr(dir string) ([]rec, error) {
	var got []rec
	j, err := Open(dir, Options{SegmentSize: 4096}, func(p Pos, typ byte, body []byte) error {
		got = append(got, rec{p, typ, string(body)})
		return nil
	})
	if err == nil {
		j.Close()
	}
	return got, err
}

// recordEnds returns the offsets at which the records of a segment end.
func recordEnds(t *testing.T, dir string, id uint32) []int64 {
	t.Helper()
	var ends []int64
	_, err := openErr(dir)
	require.NoError(t, err)
	b, err := os.ReadFile(filepath.Join(dir, fmt.Sprintf("%08x.seg", id)))
	require.NoError(t, err)
	for off := int64(SegmentHeaderSize); off < int64(len(b)); {
		n := int64(b[off])<<24 | int64(b[off+1])<<16 | int64(b[off+2])<<8 | int64(b[off+3])
		off += RecordHeaderSize + n
		ends = append(ends, off)
	}
	return ends
}

func TestOpenReportsMissingAndMisplacedSegments(t *testing.T) {
	dir, segs := sampleLog(t, 40)
	require.Greater(t, len(segs), 3)
	ends := recordEnds(t, dir, 2)
	cases := map[string]func(d string, segs []string){
		"the first segment deleted": func(d string, segs []string) { os.Remove(segs[0]) },
		"the last segment deleted":  func(d string, segs []string) { os.Remove(segs[len(segs)-1]) },
		"a middle segment deleted":  func(d string, segs []string) { os.Remove(segs[1]) },
		"two segments swapped":      func(d string, segs []string) { swap(t, segs[1], segs[2]) },
		"the last two swapped":      func(d string, segs []string) { swap(t, segs[len(segs)-2], segs[len(segs)-1]) },
		"a segment renamed past the end": func(d string, segs []string) {
			require.NoError(t, os.Rename(segs[len(segs)-1], filepath.Join(d, fmt.Sprintf("%08x.seg", len(segs)+1))))
		},
		"a middle segment cut at its last record boundary": func(d string, segs []string) {
			require.NoError(t, os.Truncate(segs[1], ends[len(ends)-2]))
		},
		"a middle segment cut at an earlier record boundary": func(d string, segs []string) {
			require.NoError(t, os.Truncate(segs[1], ends[0]))
		},
		"a middle segment cut to its header": func(d string, segs []string) {
			require.NoError(t, os.Truncate(segs[1], SegmentHeaderSize))
		},
	}
	for name, damage := range cases {
		t.Run("Open reports "+name, func(t *testing.T) {
			d := copyLog(t, dir)
			damage(d, segPaths(t, d))
			got, err := openErr(d)
			require.ErrorIs(t, err, ErrCorrupt, "Open after %s, %d records", name, len(got))
		})
	}
}

func swap(t *testing.T, a, b string) {
	t.Helper()
	tmp := a + ".swap"
	require.NoError(t, os.Rename(a, tmp))
	require.NoError(t, os.Rename(b, a))
	require.NoError(t, os.Rename(tmp, b))
}

func copyLog(t *testing.T, src string) string {
	t.Helper()
	dst := t.TempDir()
	for _, p := range segPaths(t, src) {
		b, err := os.ReadFile(p)
		require.NoError(t, err)
		require.NoError(t, os.WriteFile(filepath.Join(dst, filepath.Base(p)), b, 0o600))
	}
	return dst
}

func TestOpenDeletesLeftoversBelowTheFloor(t *testing.T) {
	dir := t.TempDir()
	j, _ := openJournal(t, dir, Options{SegmentSize: 4096})
	for i := range 80 {
		_, _, err := j.Append(1, []byte(fmt.Sprintf("%03d %0296d", i, i)))
		require.NoError(t, err)
	}
	require.NoError(t, j.Flush())
	segs := segPaths(t, dir)
	kept := make(map[string][]byte)
	for _, p := range segs[:3] {
		b, err := os.ReadFile(p)
		require.NoError(t, err)
		kept[p] = b
	}
	floor := j.Segments()[3]
	require.NoError(t, j.RemoveBelow(floor))
	require.NoError(t, j.Close())
	// A crash between the unlinks, before the directory was synced, can
	// bring back any of them: here the first and the third.
	require.NoError(t, os.WriteFile(segs[0], kept[segs[0]], 0o600))
	require.NoError(t, os.WriteFile(segs[2], kept[segs[2]], 0o600))
	got, err := openErr(dir)
	require.NoError(t, err, "Open with leftovers below the floor")
	for _, r := range got {
		assert.GreaterOrEqual(t, r.pos.Segment(), floor, "record %v below the floor", r.pos)
	}
	assert.Equal(t, segs[3:], segPaths(t, dir), "segments after Open")

	// Below the floor nothing is needed; above it, everything is.
	require.NoError(t, os.Remove(segs[3]))
	_, err = openErr(dir)
	require.ErrorIs(t, err, ErrCorrupt, "Open without the floor segment")
}

func TestOpenCutsAZeroFilledTail(t *testing.T) {
	dir, segs := sampleLog(t, 49)
	last := segs[len(segs)-1]
	before, err := openErr(dir)
	require.NoError(t, err)
	orig, err := os.ReadFile(last)
	require.NoError(t, err)
	ends := recordEnds(t, dir, uint32(len(segs)))
	require.GreaterOrEqual(t, len(ends), 3)
	start := ends[len(ends)-2] // where the final record starts
	boundary := (start/sector + 1) * sector
	require.Less(t, boundary, int64(len(orig)), "the final record spans a sector boundary")

	t.Run("the final record zero from a sector boundary is a torn tail", func(t *testing.T) {
		d := copyLog(t, dir)
		bad := slices.Clone(orig)
		clear(bad[boundary:])
		bad = append(bad, make([]byte, 700)...)
		require.NoError(t, os.WriteFile(filepath.Join(d, filepath.Base(last)), bad, 0o600))
		got, err := openErr(d)
		require.NoError(t, err, "Open with a zero-filled tail")
		assert.Equal(t, before[:len(before)-1], got, "records after cutting the torn tail")
		st, err := os.Stat(filepath.Join(d, filepath.Base(last)))
		require.NoError(t, err)
		assert.Equal(t, start, st.Size(), "size after cutting the torn tail")
	})
	t.Run("a bad record followed by a valid one is corrupt", func(t *testing.T) {
		d := copyLog(t, dir)
		bad := slices.Clone(orig)
		prev := ends[len(ends)-3]
		clear(bad[(prev/sector+1)*sector : start])
		require.NoError(t, os.WriteFile(filepath.Join(d, filepath.Base(last)), bad, 0o600))
		if (prev/sector+1)*sector >= start {
			t.Skip("the record before the last spans no sector boundary")
		}
		_, err := openErr(d)
		require.ErrorIs(t, err, ErrCorrupt)
	})
	t.Run("a flipped byte in the final record inside a sector is corrupt", func(t *testing.T) {
		d := copyLog(t, dir)
		bad := slices.Clone(orig)
		bad[len(bad)-2] ^= 0x40
		require.NoError(t, os.WriteFile(filepath.Join(d, filepath.Base(last)), bad, 0o600))
		_, err := openErr(d)
		require.ErrorIs(t, err, ErrCorrupt)
	})
}

func TestOpenRefusesTheOldFormat(t *testing.T) {
	dir := t.TempDir()
	old := append([]byte("RFJ1\x00\x00\x00\x00"), encodeRecord(nil, 1, []byte("x"))...)
	require.NoError(t, os.WriteFile(filepath.Join(dir, "00000001.seg"), old, 0o644))
	_, err := openErr(dir)
	require.ErrorIs(t, err, ErrFormat)
}

func TestAFailedSyncStopsTheJournal(t *testing.T) {
	var faults FaultFS
	dir := t.TempDir()
	j, err := Open(dir, Options{FS: &faults}, func(Pos, byte, []byte) error { return nil })
	require.NoError(t, err)
	defer j.Close()
	_, ticket, err := j.Append(1, []byte("a"))
	require.NoError(t, err)
	require.NoError(t, j.Wait(ticket))
	faults.FailSync(syscall.EIO)
	_, ticket, err = j.Append(1, []byte("b"))
	require.NoError(t, err)
	require.ErrorIs(t, j.Wait(ticket), syscall.EIO, "Wait after a failed sync")
	faults.FailSync(nil)
	_, _, err = j.Append(1, []byte("c"))
	require.ErrorIs(t, err, syscall.EIO, "Append after a failed sync, once the disk works again")
	require.ErrorIs(t, j.Err(), syscall.EIO, "Err")
}

func TestOpenDescriptorsStayBoundedWhateverTheBacklog(t *testing.T) {
	if _, err := os.ReadDir("/proc/self/fd"); err != nil {
		t.Skip("no /proc/self/fd")
	}
	dir := t.TempDir()
	j, _ := openJournal(t, dir, Options{SegmentSize: 4096})
	var ps []Pos
	for i := range 2000 {
		p, _, err := j.Append(1, []byte(fmt.Sprintf("%0400d", i)))
		require.NoError(t, err)
		ps = append(ps, p)
	}
	require.NoError(t, j.Close())
	fds := func() int {
		e, err := os.ReadDir("/proc/self/fd")
		require.NoError(t, err)
		return len(e)
	}
	before := fds()
	j, got := openJournal(t, dir, Options{SegmentSize: 4096})
	require.Len(t, got, 2000)
	require.Greater(t, len(j.Segments()), 200)
	for _, p := range ps {
		_, _, err := j.ReadAt(p)
		require.NoError(t, err)
	}
	assert.LessOrEqual(t, fds()-before, 2+readCacheSize, "descriptors held by a journal of %d segments", len(j.Segments()))
}
