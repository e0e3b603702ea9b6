package journal

import (
	"fmt"
	"os"
	"syscall"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// appendAcked appends body as a record of type 1, waits for it and, if it
// is durable, adds it to want, the records a reopened journal must hold.
func appendAcked(j *Journal, want *[]rec, body string) error {
	p, ticket, err := j.Append(1, []byte(body))
	if err == nil {
		err = j.Wait(ticket)
	}
	if err == nil {
		*want = append(*want, rec{p, 1, body})
	}
	return err
}

func TestJournalRecoversInPlaceWhenSpaceReturns(t *testing.T) {
	for _, errno := range []syscall.Errno{syscall.ENOSPC, syscall.EDQUOT} {
		t.Run(errno.Error(), func(t *testing.T) {
			faults := new(FaultFS)
			dir := t.TempDir()
			opts := Options{SegmentSize: 4096, FS: faults}
			j, _ := openJournal(t, dir, opts)
			var want []rec
			add := func(i int) error {
				return appendAcked(j, &want, fmt.Sprintf("record %03d %s", i, make([]byte, 90)))
			}
			// Fill the disk at every offset of a few segments, rolls included.
			for i := range 150 {
				require.NoError(t, add(i), "record %d with space", i)
				if i%7 != 3 {
					continue
				}
				faults.FailWrite(errno)
				err := add(1000 + i)
				require.ErrorIs(t, err, ErrNoSpace, "record on a full disk")
				require.ErrorIs(t, err, errno, "record on a full disk")
				lo, hi, stopped := j.NoSpace()
				require.True(t, stopped, "NoSpace after the failure")
				assert.LessOrEqual(t, lo, hi, "undone batches")
				_, _, err = j.Append(1, []byte("refused"))
				require.ErrorIs(t, err, ErrNoSpace, "Append before Resume")
				j.Resume()
				require.ErrorIs(t, add(2000+i), ErrNoSpace, "record still on a full disk")
				j.Resume()
				faults.FailWrite(nil)
				require.NoError(t, j.Flush(), "Flush with nothing buffered after the failures")
				require.NoError(t, j.Err(), "Err after the failures")
			}
			for _, w := range want {
				typ, body, err := j.ReadAt(w.pos)
				require.NoError(t, err, "ReadAt(%v)", w.pos)
				assert.Equal(t, w, rec{w.pos, typ, string(body)}, "ReadAt(%v)", w.pos)
			}
			assert.Greater(t, len(j.Segments()), 3, "segments")
			require.NoError(t, j.Close(), "Close after recovering")
			_, got := openJournal(t, dir, Options{SegmentSize: 4096})
			assert.Equal(t, want, got, "records after reopening: every acknowledged one, nothing else")
		})
	}
}

func TestJournalStopsForGoodOnAFailedWriteOtherThanNoSpace(t *testing.T) {
	faults := new(FaultFS)
	dir := t.TempDir()
	j, _ := openJournal(t, dir, Options{FS: faults})
	_, ticket, err := j.Append(1, []byte("durable"))
	require.NoError(t, err)
	require.NoError(t, j.Wait(ticket))
	faults.FailWrite(syscall.EIO)
	_, ticket, err = j.Append(1, []byte("lost"))
	require.NoError(t, err)
	err = j.Wait(ticket)
	require.ErrorIs(t, err, syscall.EIO, "Wait after a failed write")
	assert.NotErrorIs(t, err, ErrNoSpace, "Wait after a failed write")
	faults.FailWrite(nil)
	_, _, stopped := j.NoSpace()
	assert.False(t, stopped, "NoSpace after an EIO")
	j.Resume()
	_, _, err = j.Append(1, []byte("later"))
	require.ErrorIs(t, err, syscall.EIO, "Append after a failed write, Resume notwithstanding")
}

func TestJournalStopsForGoodWhenNoSpaceFollowsASync(t *testing.T) {
	// A sync that fails, even for want of space, may have lost pages: it
	// is never undone.
	faults := new(FaultFS)
	dir := t.TempDir()
	j, _ := openJournal(t, dir, Options{SegmentSize: 4096, FS: faults})
	_, ticket, err := j.Append(1, []byte("durable"))
	require.NoError(t, err)
	require.NoError(t, j.Wait(ticket))
	faults.FailSync(syscall.ENOSPC)
	_, ticket, err = j.Append(1, []byte("lost"))
	require.NoError(t, err)
	require.ErrorIs(t, j.Wait(ticket), syscall.ENOSPC, "Wait after a failed sync")
	faults.FailSync(nil)
	_, _, err = j.Append(1, []byte("later"))
	require.ErrorIs(t, err, syscall.ENOSPC, "Append after a sync failed for want of space")
	assert.NotErrorIs(t, err, ErrNoSpace, "Append after a sync failed for want of space")
}

func TestJournalRemoveBelowFreesSpaceOnAFullDisk(t *testing.T) {
	faults := new(FaultFS)
	dir := t.TempDir()
	opts := Options{SegmentSize: 4096, FS: faults}
	j, _ := openJournal(t, dir, opts)
	faults.LimitSpace(6 * 4096)
	body := make([]byte, 200)
	var last Pos
	for i := 0; ; i++ {
		require.Less(t, i, 1000, "records before the disk filled")
		p, ticket, err := j.Append(1, body)
		if err == nil {
			err = j.Wait(ticket)
		}
		if err != nil {
			require.ErrorIs(t, err, ErrNoSpace, "record %d", i)
			break
		}
		last = p
	}
	_, _, stopped := j.NoSpace()
	require.True(t, stopped, "stopped once the disk is full")
	cur := j.Current()
	require.Greater(t, cur, uint32(3), "segments written")
	// Still stopped, with no Resume: deleting old segments needs no space.
	require.NoError(t, j.RemoveBelow(cur), "RemoveBelow on a full disk")
	assert.Equal(t, []uint32{cur}, j.Segments(), "segments left")
	j.Resume()
	p, ticket, err := j.Append(1, body)
	require.NoError(t, err, "Append once the removal made room")
	require.NoError(t, j.Wait(ticket), "Wait once the removal made room")
	require.NoError(t, j.Close())

	_, got := openJournal(t, dir, Options{SegmentSize: 4096})
	require.NotEmpty(t, got, "records after reopening")
	assert.Equal(t, p, got[len(got)-1].pos, "last record after reopening")
	assert.Greater(t, p, last, "the record written after the removal follows the last one before")
}

func TestJournalRemoveBelowIsNotUndoneWithTheRecordsBesideIt(t *testing.T) {
	// The floor may travel in the same write as records that a full disk
	// refuses; the removal must still happen, since it is what frees space.
	for round := range 6 {
		faults := new(FaultFS)
		dir := t.TempDir()
		j, _ := openJournal(t, dir, Options{SegmentSize: 4096, FS: faults})
		body := make([]byte, 500)
		for range 30 {
			_, ticket, err := j.Append(1, body)
			require.NoError(t, err)
			require.NoError(t, j.Wait(ticket))
		}
		cur := j.Current()
		faults.FailWrite(syscall.ENOSPC)
		_, ticket, err := j.Append(1, body)
		require.NoError(t, err, "round %d: Append before the write", round)
		require.NoError(t, j.RemoveBelow(cur), "round %d: RemoveBelow beside a refused record", round)
		require.ErrorIs(t, j.Wait(ticket), ErrNoSpace, "round %d: the refused record", round)
		assert.Equal(t, []uint32{cur}, j.Segments(), "round %d: segments left", round)
		require.ErrorIs(t, j.Close(), ErrNoSpace, "round %d: Close with the refused record undone", round)
		faults.FailWrite(nil)
		j, _ = openJournal(t, dir, Options{SegmentSize: 4096})
		assert.Equal(t, []uint32{cur}, j.Segments(), "round %d: segments after reopening", round)
		j.Close()
	}
}

func TestJournalUndoesARollThatRunsOutOfSpace(t *testing.T) {
	// The disk fills at each point of a move to a new segment: creating
	// it, writing its header, sealing the old one, writing the record.
	// Each time the batch is undone and the journal goes on once there is
	// room again.
	body := fmt.Sprintf("%0300d", 0)
	const perSegment = (4096 - SegmentHeaderSize) / (RecordHeaderSize + 300) // records that fit one
	need := int64(SegmentHeaderSize + sealSize + RecordHeaderSize + len(body))
	// Every byte of the new header and the seal, then a stride through
	// the record.
	for extra := int64(0); extra < need; extra += max(1, (extra-SegmentHeaderSize-sealSize)/2) {
		faults := new(FaultFS)
		dir := t.TempDir()
		j, _ := openJournal(t, dir, Options{SegmentSize: 4096, FS: faults})
		var want []rec
		add := func(body string) error { return appendAcked(j, &want, body) }
		for range perSegment {
			require.NoError(t, add(body))
		}
		require.Equal(t, uint32(1), j.Current(), "segment before the roll")
		faults.LimitSpace(j.Size() + extra)
		err := add(body)
		require.ErrorIs(t, err, ErrNoSpace, "%d bytes free: the record that rolls", extra)
		require.NoError(t, j.Err(), "%d bytes free: Err after the refusal", extra)
		faults.LimitSpace(0)
		j.Resume()
		require.NoError(t, add("after"), "%d bytes free: record once there is room", extra)
		require.NoError(t, j.Close(), "%d bytes free", extra)
		_, got := openJournal(t, dir, Options{SegmentSize: 4096})
		require.Equal(t, want, got, "%d bytes free: records after reopening", extra)
	}
}

func TestJournalUndoesOnlyTheRecordsAfterARollInOneBatch(t *testing.T) {
	// One batch holds a record that ends segment 1 and one that starts
	// segment 2. The move to segment 2 syncs the first; the disk fills on
	// the second. The first is durable, the second undone, and the
	// journal goes on.
	faults := new(FaultFS)
	dir := t.TempDir()
	j, _ := openJournal(t, dir, Options{SegmentSize: 4096, FS: faults})
	body := fmt.Sprintf("%0300d", 0)
	var want []rec
	add := func() { require.NoError(t, appendAcked(j, &want, body)) }
	for range 11 {
		add()
	}
	// Keep the writer in the sync of x while a and b join the next batch.
	release := make(chan struct{})
	faults.HoldSyncs(release)
	px, tx, err := j.Append(1, []byte(body))
	require.NoError(t, err)
	faults.LimitSpace(4096 + SegmentHeaderSize + 100) // a and the move fit, b does not
	pa, ta, err := j.Append(1, []byte(body))
	require.NoError(t, err)
	pb, tb, err := j.Append(1, []byte(body))
	require.NoError(t, err)
	require.Equal(t, uint32(1), pa.Segment(), "segment of a")
	require.Equal(t, uint32(2), pb.Segment(), "segment of b")
	faults.HoldSyncs(nil)
	close(release)
	require.NoError(t, j.Wait(tx), "Wait for x")
	require.NoError(t, j.Wait(ta), "Wait for a, synced by the move to segment 2")
	require.ErrorIs(t, j.Wait(tb), ErrNoSpace, "Wait for b, refused by the full disk")
	require.NoError(t, j.Err(), "Err: the journal is not stopped for good")
	want = append(want, rec{px, 1, body}, rec{pa, 1, body})
	faults.LimitSpace(0)
	j.Resume()
	pc, tc, err := j.Append(1, []byte("c"))
	require.NoError(t, err, "Append after Resume")
	require.NoError(t, j.Wait(tc), "Wait after Resume")
	want = append(want, rec{pc, 1, "c"})
	require.NoError(t, j.Close())
	_, got := openJournal(t, dir, Options{SegmentSize: 4096})
	assert.Equal(t, want, got, "records after reopening")
}

func TestJournalFailsEveryRecordAfterTheUndoneOneInABatchOfManySegments(t *testing.T) {
	// One batch spans segments 1, 2 and 3, and the disk fills in segment
	// 2: the records for 2 and for 3 both fail, and keep failing after
	// later records are synced.
	faults := new(FaultFS)
	dir := t.TempDir()
	j, _ := openJournal(t, dir, Options{SegmentSize: 4096, FS: faults})
	body := []byte(fmt.Sprintf("%0300d", 0))
	for range 12 {
		_, ticket, err := j.Append(1, body)
		require.NoError(t, err)
		require.NoError(t, j.Wait(ticket))
	}
	release := make(chan struct{})
	faults.HoldSyncs(release)
	_, tx, err := j.Append(1, body) // the writer syncs it while the rest piles up
	require.NoError(t, err)
	faults.LimitSpace(4096 + SegmentHeaderSize + 100) // the move fits, no record in segment 2 does
	var tickets []uint64
	var segs []uint32
	for range 15 {
		p, ticket, err := j.Append(1, body)
		require.NoError(t, err)
		tickets, segs = append(tickets, ticket), append(segs, p.Segment())
	}
	require.Equal(t, uint32(3), segs[len(segs)-1], "segment of the last record")
	faults.HoldSyncs(nil)
	close(release)
	require.NoError(t, j.Wait(tx), "Wait for the record being synced")
	for i, ticket := range tickets {
		if segs[i] == 1 {
			assert.NoError(t, j.Wait(ticket), "record %d, in segment 1", i)
		} else {
			assert.ErrorIs(t, j.Wait(ticket), ErrNoSpace, "record %d, in segment %d", i, segs[i])
		}
	}
	faults.LimitSpace(0)
	j.Resume()
	_, ticket, err := j.Append(1, body)
	require.NoError(t, err)
	require.NoError(t, j.Wait(ticket), "a record after Resume")
	for i, ticket := range tickets {
		if segs[i] != 1 {
			assert.ErrorIs(t, j.Wait(ticket), ErrNoSpace, "record %d, in segment %d, once later ones are synced", i, segs[i])
		}
	}
}

// crashMidRoll writes records into 4 KiB segments up to segment 4, moves
// the floor to 3, closes the journal and leaves the directory as a crash
// in the move to segment 4 would: segment 3 with its seal cut off, and
// segment 4 holding only its header (header is true) or a header cut
// short. With a whole header the floor moves once segment 4 exists, so
// that only its header holds it; a header cut short was never written,
// so the floor moves while segment 3 is the current one. It returns the
// records the directory still holds.
func crashMidRoll(t *testing.T, dir string, header bool) []rec {
	t.Helper()
	j, _ := openJournal(t, dir, Options{SegmentSize: 4096})
	var want []rec
	moveAt := uint32(3)
	if header {
		moveAt = 4
	}
	moved := false
	for i := 0; j.Current() < 4; i++ {
		if j.Current() == moveAt && !moved {
			require.NoError(t, j.RemoveBelow(3))
			moved = true
		}
		require.NoError(t, appendAcked(j, &want, fmt.Sprintf("%03d %0296d", i, i)))
	}
	if !moved {
		require.NoError(t, j.RemoveBelow(3))
	}
	require.NoError(t, j.Close())
	paths := segPaths(t, dir)
	require.Len(t, paths, 2, "segments 3 and 4")
	st, err := os.Stat(paths[0])
	require.NoError(t, err)
	require.NoError(t, os.Truncate(paths[0], st.Size()-sealSize))
	size := int64(SegmentHeaderSize)
	if !header {
		size = 5
	}
	require.NoError(t, os.Truncate(paths[1], size))
	var kept []rec
	for _, r := range want {
		if r.pos.Segment() == 3 {
			kept = append(kept, r)
		}
	}
	return kept
}

// dirBytes returns the bytes of the regular files in dir.
func dirBytes(t *testing.T, dir string) int64 {
	t.Helper()
	entries, err := os.ReadDir(dir)
	require.NoError(t, err)
	var n int64
	for _, e := range entries {
		info, err := e.Info()
		require.NoError(t, err)
		if info.Mode().IsRegular() {
			n += info.Size()
		}
	}
	return n
}

func TestOpenRecoversAnInterruptedRollOnAFullDisk(t *testing.T) {
	// A crash in a move to a new segment leaves the old one unsealed and
	// the new one empty or with its header cut short. Sealing the old one,
	// or finishing the header, needs space; on a full disk Open takes the
	// new, empty segment away instead, which needs none, and the service
	// starts.
	for _, header := range []bool{true, false} {
		t.Run(fmt.Sprintf("header=%v", header), func(t *testing.T) {
			dir := t.TempDir()
			want := crashMidRoll(t, dir, header)
			faults := new(FaultFS)
			faults.LimitSpace(dirBytes(t, dir))
			j, got := openJournal(t, dir, Options{SegmentSize: 4096, FS: faults})
			require.Equal(t, want, got, "records opened on the full disk")
			assert.Equal(t, []uint32{3}, j.Segments(), "segments once the empty one is gone")
			require.NoError(t, j.Close())
			j, got = openJournal(t, dir, Options{SegmentSize: 4096, FS: faults})
			require.Equal(t, want, got, "records opened again on the full disk")
			require.ErrorIs(t, appendAcked(j, new([]rec), "refused"), ErrNoSpace, "append on the full disk")
			faults.LimitSpace(0)
			j.Resume()
			for i := 0; j.Current() < 5; i++ {
				require.NoError(t, appendAcked(j, &want, fmt.Sprintf("after %03d %0290d", i, i)))
			}
			require.NoError(t, j.Close())
			_, got = openJournal(t, dir, Options{SegmentSize: 4096})
			require.Equal(t, want, got, "records after reopening with room")
		})
	}
}

func TestOpenOnAFullDiskFailsWithNoSpaceWhenItCannotRepairWithoutRoom(t *testing.T) {
	// The last segment's header was cut short after its predecessor was
	// sealed (as a file system that lost a synced write could leave it):
	// the segment cannot be taken away, and finishing its header needs
	// room. Open says so, changes nothing, and opens once there is room.
	dir, _ := sampleLog(t, 20)
	j, want := openJournal(t, dir, Options{SegmentSize: 4096})
	require.NoError(t, j.Close())
	paths := segPaths(t, dir)
	lastPath := paths[len(paths)-1]
	var kept []rec
	for _, r := range want {
		if r.pos.Segment() < uint32(len(paths)) {
			kept = append(kept, r)
		}
	}
	require.NoError(t, os.Truncate(lastPath, 3))
	faults := new(FaultFS)
	faults.LimitSpace(dirBytes(t, dir))
	_, err := Open(dir, Options{SegmentSize: 4096, FS: faults}, func(Pos, byte, []byte) error { return nil })
	require.ErrorIs(t, err, ErrNoSpace, "Open on the full disk")
	require.ErrorIs(t, err, syscall.ENOSPC, "Open on the full disk")
	assert.Equal(t, paths, segPaths(t, dir), "segments after the refused Open")
	_, got := openJournal(t, dir, Options{SegmentSize: 4096})
	assert.Equal(t, kept, got, "records once there is room")

	// A new log on a full disk.
	faults.LimitSpace(1)
	_, err = Open(t.TempDir(), Options{FS: faults}, func(Pos, byte, []byte) error { return nil })
	require.ErrorIs(t, err, ErrNoSpace, "Open of a new log on a full disk")
}

func TestJournalRemoveBelowASegmentAFullDiskKeptFromBeingMade(t *testing.T) {
	// A record that would have started segment 3 moved Current to 3; the
	// full disk undid it, and Current is 2 again. A floor of 3, asked for
	// by a caller that read Current in between, is refused as the full
	// disk's doing (ErrNoSpace), not as the caller's mistake, and the
	// floor the disk allows then moves.
	body := fmt.Sprintf("%0300d", 0)
	const perSegment = (4096 - SegmentHeaderSize) / (RecordHeaderSize + 300)
	faults := new(FaultFS)
	j, _ := openJournal(t, t.TempDir(), Options{SegmentSize: 4096, FS: faults})
	for range 2 * perSegment {
		require.NoError(t, appendAcked(j, new([]rec), body))
	}
	require.Equal(t, []uint32{1, 2}, j.Segments(), "segments with two full")
	// Room for segment 3's header, not for segment 2's seal: the move
	// fails once the new header's sync, held here, returns.
	faults.LimitSpace(j.Size() + SegmentHeaderSize)
	release := make(chan struct{})
	faults.HoldSyncs(release)
	_, ticket, err := j.Append(1, []byte(body))
	require.NoError(t, err)
	require.Equal(t, uint32(3), j.Current(), "Current while the record that starts segment 3 is pending")
	faults.HoldSyncs(nil)
	close(release)
	require.ErrorIs(t, j.Wait(ticket), ErrNoSpace, "the record that starts segment 3")
	require.Equal(t, uint32(2), j.Current(), "Current once it was undone")

	require.ErrorIs(t, j.RemoveBelow(3), ErrNoSpace, "floor at the segment the disk kept from being made")
	require.NoError(t, j.RemoveBelow(2), "floor at the current segment")
	assert.Equal(t, []uint32{2}, j.Segments())
	assert.Error(t, j.RemoveBelow(9), "a floor no record ever reached")
	assert.NotErrorIs(t, j.RemoveBelow(9), ErrNoSpace, "a floor no record ever reached")
}
