package fallback

import (
	"encoding/binary"
	"flag"
	"math/rand/v2"
	"os"
	"slices"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/ringfence/ringfence/internal/journal"
)

// exhaustive turns the damage sweeps from a sample into every byte of
// every segment: go test -run 'Truncated|Flipped|TornTail' ./fallback/ -outbox.exhaustive
// (or RINGFENCE_OUTBOX_EXHAUSTIVE=1).
var exhaustive = flag.Bool("outbox.exhaustive", false, "sweep every byte of every outbox segment in the damage tests")

// sweepOffsets returns the offsets of segment file path that the damage
// sweeps try: by default every byte of the segment header and of the
// first and last record headers, a seeded byte of each field (length,
// length checksum, checksum, type) of every other record header, the
// first and last byte of every body, and a seeded stride through the
// bodies; with -outbox.exhaustive every byte.
func sweepOffsets(t testing.TB, path string) []int64 {
	t.Helper()
	b, err := os.ReadFile(path)
	require.NoError(t, err)
	if *exhaustive || os.Getenv("RINGFENCE_OUTBOX_EXHAUSTIVE") == "1" {
		all := make([]int64, len(b))
		for i := range all {
			all[i] = int64(i)
		}
		return all
	}
	rng := rand.New(rand.NewPCG(15, uint64(len(b))))
	var offs []int64
	for i := range journal.SegmentHeaderSize {
		offs = append(offs, int64(i))
	}
	lastRec := finalRecord(t, path)
	for off := int64(journal.SegmentHeaderSize); off+journal.RecordHeaderSize <= int64(len(b)); {
		if off == journal.SegmentHeaderSize || off == lastRec {
			for i := range int64(journal.RecordHeaderSize) {
				offs = append(offs, off+i)
			}
		} else {
			offs = append(offs, off+rng.Int64N(4), off+4+rng.Int64N(4), off+8+rng.Int64N(4), off+12)
		}
		end := off + journal.RecordHeaderSize + int64(binary.BigEndian.Uint32(b[off:]))
		end = min(end, int64(len(b)))
		body := off + journal.RecordHeaderSize
		if body < end {
			offs = append(offs, body, end-1)
			for p := body + 1 + rng.Int64N(13); p < end-1; p += 13 + rng.Int64N(27) {
				offs = append(offs, p)
			}
		}
		off = end
	}
	slices.Sort(offs)
	return slices.Compact(offs)
}

// finalRecord returns the offset at which the last record of segment
// file path starts.
func finalRecord(t testing.TB, path string) int64 {
	t.Helper()
	b, err := os.ReadFile(path)
	require.NoError(t, err)
	last := int64(journal.SegmentHeaderSize)
	for off := last; off+journal.RecordHeaderSize <= int64(len(b)); {
		last = off
		off += journal.RecordHeaderSize + int64(binary.BigEndian.Uint32(b[off:]))
	}
	return last
}

// cutOffsets returns the lengths the truncation sweeps cut segment file
// path to: by default every length inside the segment header, and for
// every record its start, one byte in, its last header byte and a seeded
// byte of its body; with -outbox.exhaustive every length.
func cutOffsets(t testing.TB, path string) []int64 {
	t.Helper()
	b, err := os.ReadFile(path)
	require.NoError(t, err)
	if *exhaustive || os.Getenv("RINGFENCE_OUTBOX_EXHAUSTIVE") == "1" {
		return sweepOffsets(t, path)
	}
	rng := rand.New(rand.NewPCG(11, uint64(len(b))))
	var offs []int64
	for i := range journal.SegmentHeaderSize {
		offs = append(offs, int64(i))
	}
	for off := int64(journal.SegmentHeaderSize); off+journal.RecordHeaderSize <= int64(len(b)); {
		end := min(off+journal.RecordHeaderSize+int64(binary.BigEndian.Uint32(b[off:])), int64(len(b)))
		offs = append(offs, off, off+1, off+journal.RecordHeaderSize-1)
		if body := off + journal.RecordHeaderSize; body < end {
			offs = append(offs, body+rng.Int64N(end-body))
		}
		off = end
	}
	slices.Sort(offs)
	return slices.Compact(offs)
}
