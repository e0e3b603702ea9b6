package fallback

import (
	"cmp"
	"math"
	"slices"
)

// obTomb marks a removed entry of obKeys.sorted.
const obTomb = math.MaxUint32

// obKeys maps the 32-bit fingerprint of a stored item's key to the item's
// seq minus a base (below obTomb). The items found when the outbox is
// opened are kept in one sorted array of 8 bytes per item, built in one
// pass after the log is read; items enqueued later go in a map. Removing
// an item from the array leaves a tombstone, and the array is rewritten
// without them once half of it is tombstones. A fingerprint is held at
// most once across both: the caller keeps a second key with a taken
// fingerprint apart. The outbox's mutex guards it.
type obKeys struct {
	sorted []uint64 // fp<<32 | off, ascending by fp; off is obTomb once removed
	tombs  int      // tombstones in sorted
	m      map[uint32]uint32
}

// build replaces the array with entries (fp<<32 | off), which it sorts in
// place and keeps. It returns the entries whose fingerprint an earlier
// entry (a smaller off) already holds, which the array does not keep.
func (k *obKeys) build(entries []uint64) (dups []uint64) {
	slices.Sort(entries)
	w := 0
	for i, e := range entries {
		if i > 0 && e>>32 == entries[i-1]>>32 {
			dups = append(dups, e)
			continue
		}
		entries[w] = e
		w++
	}
	k.sorted, k.tombs = entries[:w:w], 0
	if w == 0 {
		k.sorted = nil
	}
	return dups
}

// find returns the index of fp's entry in the array, tombstone or not.
func (k *obKeys) find(fp uint32) (int, bool) {
	s := k.sorted
	lo, hi := 0, len(s)
	// Fingerprints are uniform hashes, so interpolating between the ends
	// lands next to the entry; a few steps of it narrow the range, and
	// bisection finishes whatever the spread.
	for step := 0; step < 3 && hi-lo > 16; step++ {
		a, b, f := s[lo]>>32, s[hi-1]>>32, uint64(fp)
		if f < a || f > b {
			return 0, false
		}
		if a == b {
			break
		}
		mid := lo + int((f-a)*uint64(hi-1-lo)/(b-a))
		switch m := uint32(s[mid] >> 32); {
		case m < fp:
			lo = mid + 1
		case m > fp:
			hi = mid
		default:
			return mid, true
		}
	}
	i, ok := slices.BinarySearchFunc(s[lo:hi], fp, func(e uint64, fp uint32) int {
		return cmp.Compare(uint32(e>>32), fp)
	})
	return lo + i, ok
}

// get returns the off held for fp.
func (k *obKeys) get(fp uint32) (uint32, bool) {
	if off, ok := k.m[fp]; ok {
		return off, true
	}
	if i, ok := k.find(fp); ok {
		if off := uint32(k.sorted[i]); off != obTomb {
			return off, true
		}
	}
	return 0, false
}

// put holds off for fp, which get does not find.
func (k *obKeys) put(fp, off uint32) {
	if k.m == nil {
		k.m = make(map[uint32]uint32)
	}
	k.m[fp] = off
}

// remove forgets fp if it holds off.
func (k *obKeys) remove(fp, off uint32) {
	if v, ok := k.m[fp]; ok {
		if v == off {
			delete(k.m, fp)
		}
		return
	}
	i, ok := k.find(fp)
	if !ok || uint32(k.sorted[i]) != off {
		return
	}
	k.sorted[i] = uint64(fp)<<32 | obTomb
	if k.tombs++; k.tombs > len(k.sorted)/2 {
		live := make([]uint64, 0, len(k.sorted)-k.tombs)
		for _, e := range k.sorted {
			if uint32(e) != obTomb {
				live = append(live, e)
			}
		}
		k.sorted, k.tombs = live, 0
		if len(live) == 0 {
			k.sorted = nil
		}
	}
}

// len returns the number of fingerprints held.
func (k *obKeys) len() int { return len(k.sorted) - k.tombs + len(k.m) }
