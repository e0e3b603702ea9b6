package journal

import (
	"errors"
	"fmt"
	"syscall"
)

// errNotRolled marks a failure to move on to the next segment that left
// no new segment file behind and synced nothing of the batch being
// written.
var errNotRolled = errors.New("cannot start the next segment")

// unmake closes and deletes a segment file that roll or create could not
// finish, and returns err marked with errNotRolled. If the file cannot be
// deleted, err is returned unmarked: the journal must stop, and Open
// deals with the file (a header cut short, or a segment holding no
// records after an unsealed one).
func (j *Journal) unmake(f File, err error) error {
	name := f.Name()
	f.Close()
	if rerr := j.fs.Remove(name); rerr != nil {
		return errors.Join(err, fmt.Errorf("journal: %w", rerr))
	}
	return fmt.Errorf("%w: %w", errNotRolled, err)
}

// spaceError is a write failure that happened before anything of its
// batch was synced, so the batch can be undone if it failed for want of
// space.
type spaceError struct{ err error }

func (e *spaceError) Error() string { return e.err.Error() }
func (e *spaceError) Unwrap() error { return e.err }

// isNoSpace reports whether err says the disk or the quota is full.
func isNoSpace(err error) bool {
	return errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EDQUOT)
}

// undo undoes a batch whose write failed for want of space before any of
// it was synced: it cuts the current segment back to where the batch
// began and checks its size. It returns the error to report and whether
// the batch was undone; any other failure, or a failed cut, is returned
// as it is, to stop the journal. Only the writer calls it.
func (j *Journal) undo(err error) (error, bool) {
	var se *spaceError
	if !errors.As(err, &se) || !isNoSpace(err) {
		return err, false
	}
	err = se.err
	if terr := j.wfile.Truncate(j.undoSize); terr != nil {
		return errors.Join(err, fmt.Errorf("journal: cut %s back: %w", j.wfile.Name(), terr)), false
	}
	st, serr := j.wfile.Stat()
	if serr != nil {
		return errors.Join(err, fmt.Errorf("journal: cut %s back: %w", j.wfile.Name(), serr)), false
	}
	if st.Size() != j.undoSize {
		return errors.Join(err, fmt.Errorf("journal: cut %s back to %d bytes, it has %d", j.wfile.Name(), j.undoSize, st.Size())), false
	}
	j.wsize = j.undoSize
	j.setSize(j.wseg, j.wsize)
	return fmt.Errorf("%w: %w", ErrNoSpace, err), true
}

// undoneLocked fails tickets first..last, a batch's records from the first
// chunk a full disk undid on, and the batch being filled after it, gives
// their positions back and stops Append until Resume. A floor asked for
// meanwhile stays asked for: moving it needs no space. The caller holds
// mu.
func (j *Journal) undoneLocked(first, last uint64, err error) {
	hi := last
	if len(j.buf) > 0 {
		// The records appended meanwhile follow the undone ones.
		hi = j.filling
		j.buf, j.nrec = j.buf[:0], 0
		j.filling++
	}
	if n := len(j.failed); n > 0 && j.failed[n-1].hi+1 == first {
		j.failed[n-1].hi = hi
	} else {
		j.failed = append(j.failed, ticketRange{first, hi, err})
	}
	j.synced = hi
	j.cur, j.curSize = j.wseg, j.wsize
	j.noSpace, j.noLo, j.noHi = err, first, hi
}
