package journal

import (
	"fmt"
	"syscall"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestJournalRecoversInPlaceWhenSpaceReturns(t *testing.T) {
	for _, errno := range []syscall.Errno{syscall.ENOSPC, syscall.EDQUOT} {
		t.Run(errno.Error(), func(t *testing.T) {
			faults := new(FaultFS)
			dir := t.TempDir()
			opts := Options{SegmentSize: 4096, FS: faults}
			j, _ := openJournal(t, dir, opts)
			var want []rec
			add := func(i int) error {
				body := fmt.Sprintf("record %03d %s", i, make([]byte, 90))
				p, ticket, err := j.Append(1, []byte(body))
				if err == nil {
					err = j.Wait(ticket)
				}
				if err == nil {
					want = append(want, rec{p, 1, body})
				}
				return err
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
