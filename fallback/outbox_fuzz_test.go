package fallback

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"

	"github.com/ringfence/ringfence/retry"
	"github.com/stretchr/testify/require"
	"golang.org/x/time/rate"
)

// outboxModel is what an outbox should hold: pending keys in delivery
// order and dead keys in the order of their sequence numbers.
type outboxModel struct {
	pending []string
	dead    []string
	deadSeq map[string]uint64
	seqOf   map[string]uint64
	nextSeq uint64
}

// FuzzOutboxOperations runs random sequences of enqueues, partial replays
// with deliveries and dead letters, requeues and reopenings against a
// small model, with segments small enough that compaction runs often.
func FuzzOutboxOperations(f *testing.F) {
	f.Add([]byte{0, 1, 0, 2, 0, 3, 1, 0x31, 4, 2, 1, 3, 4, 1, 0x10, 4})
	f.Add([]byte{0, 0, 0, 1, 0, 2, 0, 3, 0, 4, 0, 5, 1, 0x55, 3, 4, 2, 0, 2, 5, 1, 0x70, 4, 3, 4})
	f.Add([]byte("\x00\x01\x00\x02\x00\x03\x00\x04\x00\x05\x00\x06\x00\x07\x01\x27\x02\x01\x02\x05\x03\x01\x77\x04\x00\x08\x00\x09\x01\x40\x03\x04"))
	f.Fuzz(func(t *testing.T, ops []byte) {
		if len(ops) > 200 {
			return
		}
		dir := t.TempDir()
		opts := OutboxOptions{Rate: rate.Inf, SegmentSize: 4096}
		o, err := OpenOutbox(dir, opts)
		require.NoError(t, err)
		defer func() { o.Close() }()
		m := outboxModel{deadSeq: map[string]uint64{}, seqOf: map[string]uint64{}, nextSeq: 1}
		stored := func(k string) bool {
			_, dead := m.deadSeq[k]
			for _, p := range m.pending {
				if p == k {
					return true
				}
			}
			return dead
		}
		for i := 0; i < len(ops); i++ {
			arg := byte(0)
			if i+1 < len(ops) {
				arg = ops[i+1]
			}
			switch ops[i] % 5 {
			case 0: // enqueue
				i++
				k := fmt.Sprintf("k%d", arg%16)
				require.NoError(t, o.Enqueue(context.Background(), Item{Key: k, Stream: fmt.Sprint(arg % 3), Payload: make([]byte, 200)}))
				if !stored(k) {
					m.pending = append(m.pending, k)
					m.seqOf[k] = m.nextSeq
					m.nextSeq++
				}
			case 1: // replay: deliver n items, the ones with a set bit fail for good
				i++
				n := int(arg & 0x0f)
				ctx, cancel := context.WithCancel(context.Background())
				calls := 0
				err := o.Replay(ctx, func(ctx context.Context, it Item) error {
					calls++
					if calls > n {
						cancel()
						return ctx.Err()
					}
					require.NotEmpty(t, m.pending, "delivery %d of %s from an outbox that should be empty", calls, it.Key)
					require.Equal(t, m.pending[0], it.Key, "delivery %d", calls)
					m.pending = m.pending[1:]
					if arg>>(4+calls%4)&1 == 1 {
						m.dead = append(m.dead, it.Key)
						m.deadSeq[it.Key] = m.seqOf[it.Key]
						return retry.Permanent(errors.New("rejected"))
					}
					return nil
				})
				cancel()
				if calls > n {
					require.ErrorIs(t, err, context.Canceled, "Replay")
				} else {
					require.NoError(t, err, "Replay")
				}
			case 2: // requeue
				i++
				k := fmt.Sprintf("k%d", arg%16)
				err := o.Requeue(k)
				if _, dead := m.deadSeq[k]; !dead {
					require.ErrorIs(t, err, ErrNoDeadLetter, "Requeue(%s)", k)
					break
				}
				require.NoError(t, err, "Requeue(%s)", k)
				delete(m.deadSeq, k)
				for j, d := range m.dead {
					if d == k {
						m.dead = append(m.dead[:j:j], m.dead[j+1:]...)
						break
					}
				}
				m.pending = append(m.pending, k)
				m.seqOf[k] = m.nextSeq
				m.nextSeq++
			case 3: // reopen
				require.NoError(t, o.Close())
				o, err = OpenOutbox(dir, opts)
				require.NoError(t, err, "OpenOutbox after %d operations", i)
			case 4: // check
				require.Equal(t, orNil(m.pending), keysOf(pendingItems(t, o)), "pending items")
				require.Equal(t, len(m.pending), o.Pending(), "Pending()")
				dl, err := o.DeadLetters(context.Background())
				require.NoError(t, err, "DeadLetters")
				var dead []string
				for _, d := range dl {
					dead = append(dead, d.Item.Key)
				}
				want := slices.Clone(m.dead)
				slices.SortFunc(want, func(a, b string) int { return cmp.Compare(m.deadSeq[a], m.deadSeq[b]) })
				require.Equal(t, orNil(want), dead, "dead letters")
			}
		}
	})
}

func orNil(s []string) []string {
	if len(s) == 0 {
		return nil
	}
	return s
}
