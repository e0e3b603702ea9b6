package fallback

import (
	"context"
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// The index built when opening agrees with a plain map through random
// puts and removes, tombstones and rewrites included.
func TestObKeysAgreesWithAMap(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	model := map[uint32]uint32{}
	var entries []uint64
	for off := range uint32(5000) {
		fp := rng.Uint32()
		entries = append(entries, uint64(fp)<<32|uint64(off))
		if _, ok := model[fp]; !ok {
			model[fp] = off
		}
	}
	// A repeated fingerprint keeps its first entry; the rest come back.
	entries = append(entries, uint64(entries[10]>>32)<<32|6000)
	var k obKeys
	dups := k.build(entries)
	require.Len(t, dups, len(entries)-len(model), "entries returned as duplicates")
	fps := make([]uint32, 0, len(model))
	for fp := range model {
		fps = append(fps, fp)
	}
	next := uint32(7000)
	for i := range 20000 {
		fp := fps[rng.IntN(len(fps))]
		if rng.IntN(3) == 0 {
			fp = rng.Uint32()
		}
		off, ok := model[fp]
		got, gotOK := k.get(fp)
		require.Equal(t, ok, gotOK, "step %d: get(%d) found", i, fp)
		require.Equal(t, off, got, "step %d: get(%d)", i, fp)
		switch {
		case ok && rng.IntN(2) == 0:
			k.remove(fp, off+1) // another item's off: no effect
			k.remove(fp, off)
			delete(model, fp)
		case !ok:
			k.put(fp, next)
			model[fp] = next
			next++
		}
		require.Equal(t, len(model), k.len(), "step %d: len", i)
	}
	assert.Less(t, k.tombs, len(k.sorted)/2+1, "tombstones after many removals")
}

// Reopening rebuilds the key index: retries of stored items are still
// recognised, a different item under a stored key is still refused, and
// keys whose fingerprints collide stay apart.
func TestOutboxKeyIndexSurvivesReopen(t *testing.T) {
	dir := t.TempDir()
	opts := fast
	// Keys of the same length share a fingerprint.
	opts.hashKey = func(k string) uint64 { return uint64(len(k)) }
	o := openOutbox(t, dir, opts)
	var keys []string
	for i := range 40 {
		keys = append(keys, fmt.Sprintf("k%0*d", 1+i%4, i))
	}
	enqueueAll(t, o, itemsOf(keys[:30])...)
	ctx, cancel := context.WithCancel(context.Background())
	n := 0
	err := o.Replay(ctx, func(context.Context, Item) error {
		if n++; n == 10 {
			cancel()
		}
		return nil
	})
	require.ErrorIs(t, err, context.Canceled, "Replay cancelled after 10 items")
	require.NoError(t, o.Close())

	o = openOutbox(t, dir, opts)
	assert.Equal(t, 20, o.Pending(), "Pending() after reopening")
	// Retries of the stored items are accepted and store nothing.
	enqueueAll(t, o, itemsOf(keys[10:30])...)
	assert.Equal(t, 20, o.Pending(), "Pending() after retries")
	for _, k := range keys[10:30] {
		err := o.Enqueue(context.Background(), Item{Key: k, Stream: "s", Payload: []byte("other")})
		require.ErrorIs(t, err, ErrDuplicate, "Enqueue(%q) with another payload", k)
	}
	// Delivered keys and new ones are free again.
	enqueueAll(t, o, itemsOf(keys[:10])...)
	enqueueAll(t, o, itemsOf(keys[30:])...)
	want := append(append(append([]string{}, keys[10:30]...), keys[:10]...), keys[30:]...)
	assert.Equal(t, want, drain(t, o), "delivered keys")
}

func itemsOf(keys []string) []Item {
	items := make([]Item, len(keys))
	for i, k := range keys {
		items[i] = item("s", k)
	}
	return items
}
