package fallback

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/time/rate"

	"github.com/ringfence/ringfence/internal/journal"
	"github.com/ringfence/ringfence/retry"
)

// pendingItems lists the pending items without delivering them, through
// the same read path Replay uses.
func pendingItems(t testing.TB, o *Outbox) []Item {
	t.Helper()
	o.mu.Lock()
	type ref struct {
		seq uint64
		pos journal.Pos
	}
	var refs []ref
	for i, p := range o.live {
		if p != 0 {
			refs = append(refs, ref{o.base + uint64(i), p})
		}
	}
	o.mu.Unlock()
	var items []Item
	for _, r := range refs {
		rec, err := o.readAt(r.pos, r.seq)
		require.NoError(t, err, "reading pending item %d", r.seq)
		items = append(items, rec.item())
	}
	return items
}

func keysOf(items []Item) []string {
	var keys []string
	for _, it := range items {
		keys = append(keys, it.Key)
	}
	return keys
}

// copyDir copies the outbox files in src to a new directory.
func copyDir(t testing.TB, src string) string {
	t.Helper()
	dst := t.TempDir()
	entries, err := os.ReadDir(src)
	require.NoError(t, err)
	for _, e := range entries {
		b, err := os.ReadFile(filepath.Join(src, e.Name()))
		require.NoError(t, err)
		require.NoError(t, os.WriteFile(filepath.Join(dst, e.Name()), b, 0o644))
	}
	return dst
}

// childEnv is the environment for a copy of the test binary that a test
// runs as a child process: this one's, with the race detector's second of
// sleep at exit turned off (a child's races still fail it).
func childEnv() []string {
	env := os.Environ()
	for i, kv := range env {
		if v, ok := strings.CutPrefix(kv, "GORACE="); ok {
			env[i] = "GORACE=" + v + " atexit_sleep_ms=0"
			return env
		}
	}
	return append(env, "GORACE=atexit_sleep_ms=0")
}

func segmentFiles(t testing.TB, dir string) []string {
	t.Helper()
	names, err := filepath.Glob(filepath.Join(dir, "*.seg"))
	require.NoError(t, err)
	slices.Sort(names)
	return names
}

// sampleOutbox builds a closed outbox in a new directory with two segments
// holding items, delivery records, a dead letter and a requeue, and returns
// the directory and the keys pending in it.
func sampleOutbox(t testing.TB) (string, []string) {
	t.Helper()
	dir := t.TempDir()
	o, err := OpenOutbox(dir, OutboxOptions{Rate: rate.Inf, SegmentSize: 4096})
	require.NoError(t, err)
	for i := range 45 {
		enqueueAll(t, o, Item{Key: fmt.Sprintf("k%02d", i), Stream: fmt.Sprint(i % 2), Payload: make([]byte, 60)})
	}
	ctx, cancel := context.WithCancel(context.Background())
	n := 0
	_ = o.Replay(ctx, func(_ context.Context, it Item) error {
		switch n++; {
		case n == 3:
			return retry.Permanent(errors.New("rejected"))
		case n == 6:
			cancel()
			return ctx.Err()
		}
		return nil
	})
	cancel()
	require.NoError(t, o.Requeue("k02"))
	keys := keysOf(pendingItems(t, o))
	require.NoError(t, o.Close())
	require.Len(t, segmentFiles(t, dir), 2, "segments in the sample outbox")
	return dir, keys
}

func TestOutboxRecoversATornTail(t *testing.T) {
	dir, keys := sampleOutbox(t)
	segs := segmentFiles(t, dir)
	last := filepath.Base(segs[len(segs)-1])
	info, err := os.Stat(segs[len(segs)-1])
	require.NoError(t, err)
	size := info.Size()

	// Append one more item, then cut it short at every length.
	grown := copyDir(t, dir)
	o, err := OpenOutbox(grown, OutboxOptions{})
	require.NoError(t, err)
	enqueueAll(t, o, Item{Key: "torn", Payload: []byte("never acknowledged")})
	require.NoError(t, o.Close())
	full, err := os.ReadFile(filepath.Join(grown, last))
	require.NoError(t, err)
	require.Greater(t, int64(len(full)), size)

	tails := map[string][]byte{"zeros": make([]byte, 300)}
	offs := cutOffsets(t, filepath.Join(grown, last))
	for _, off := range offs {
		if n := off - size; n > 0 {
			tails[fmt.Sprintf("%d bytes of a record", n)] = full[size : size+n]
		}
	}
	for name, tail := range tails {
		t.Run("cuts off "+name, func(t *testing.T) {
			d := copyDir(t, dir)
			path := filepath.Join(d, last)
			f, err := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
			require.NoError(t, err)
			_, err = f.Write(tail)
			require.NoError(t, err)
			require.NoError(t, f.Close())

			o := openOutbox(t, d, fast)
			assert.Equal(t, keys, keysOf(pendingItems(t, o)), "pending after recovery")
			info, err := os.Stat(path)
			require.NoError(t, err)
			assert.Equal(t, size, info.Size(), "size of %s after recovery", last)
			enqueueAll(t, o, item("s", "after"))
			assert.Equal(t, append(slices.Clone(keys), "after"), drain(t, o), "delivered after recovery")
		})
	}
}

func TestOutboxTruncatedFiles(t *testing.T) {
	dir, keys := sampleOutbox(t)
	segs := segmentFiles(t, dir)
	t.Run("the last segment cut anywhere opens with a prefix of its items", func(t *testing.T) {
		path := segs[len(segs)-1]
		info, err := os.Stat(path)
		require.NoError(t, err)
		for _, n := range append(cutOffsets(t, path), info.Size()) {
			d := copyDir(t, dir)
			require.NoError(t, os.Truncate(filepath.Join(d, filepath.Base(path)), n))
			o, err := OpenOutbox(d, fast)
			require.NoError(t, err, "OpenOutbox with %s cut to %d bytes", filepath.Base(path), n)
			got := keysOf(pendingItems(t, o))
			require.NoError(t, o.Close())
			// Records lost from the end may include deliveries, so items
			// can come back, but nothing stored is duplicated or reordered.
			assert.Equal(t, len(slices.Compact(slices.Clone(got))), len(got), "cut to %d: duplicate items %v", n, got)
			for _, k := range keys[:len(keys)-1] {
				if !slices.Contains(got, k) && n > 4096 {
					t.Errorf("cut to %d: lost item %s from the first segment", n, k)
				}
			}
		}
	})
	t.Run("an earlier segment cut short is corrupt", func(t *testing.T) {
		info, err := os.Stat(segs[0])
		require.NoError(t, err)
		for _, n := range []int64{0, 4, 8, 9, 20, info.Size() / 2, info.Size() - 1} {
			d := copyDir(t, dir)
			require.NoError(t, os.Truncate(filepath.Join(d, filepath.Base(segs[0])), n))
			_, err := OpenOutbox(d, fast)
			require.ErrorIs(t, err, ErrCorrupt, "OpenOutbox with %s cut to %d bytes", filepath.Base(segs[0]), n)
		}
	})
	t.Run("a missing, swapped or shortened segment is corrupt", func(t *testing.T) {
		d := copyDir(t, dir)
		o, err := OpenOutbox(d, OutboxOptions{SegmentSize: 4096})
		require.NoError(t, err)
		for i := range 120 {
			enqueueAll(t, o, Item{Key: fmt.Sprintf("more%03d", i), Payload: make([]byte, 60)})
		}
		require.NoError(t, o.Close())
		all := segmentFiles(t, d)
		require.Greater(t, len(all), 3)
		ends := recordStarts(t, all[1])
		for name, damage := range map[string]func(segs []string){
			"the first deleted":    func(segs []string) { require.NoError(t, os.Remove(segs[0])) },
			"a middle deleted":     func(segs []string) { require.NoError(t, os.Remove(segs[1])) },
			"the last deleted":     func(segs []string) { require.NoError(t, os.Remove(segs[len(segs)-1])) },
			"two swapped":          func(segs []string) { swapFiles(t, segs[1], segs[2]) },
			"the last two swapped": func(segs []string) { swapFiles(t, segs[len(segs)-2], segs[len(segs)-1]) },
			"a middle one cut at its last record boundary": func(segs []string) {
				require.NoError(t, os.Truncate(segs[1], ends[len(ends)-1]))
			},
			"a middle one cut at its first record boundary": func(segs []string) {
				require.NoError(t, os.Truncate(segs[1], ends[1]))
			},
		} {
			dd := copyDir(t, d)
			damage(segmentFiles(t, dd))
			o, err := OpenOutbox(dd, fast)
			if err == nil {
				t.Errorf("OpenOutbox with %s opened with %d items pending, want %v", name, o.Pending(), ErrCorrupt)
				o.Close()
				continue
			}
			require.ErrorIs(t, err, ErrCorrupt, "OpenOutbox with %s", name)
		}
	})
}

// recordStarts returns the offsets at which the records of segment file
// path start, the last one included.
func recordStarts(t testing.TB, path string) []int64 {
	t.Helper()
	b, err := os.ReadFile(path)
	require.NoError(t, err)
	var starts []int64
	for off := int64(journal.SegmentHeaderSize); off+journal.RecordHeaderSize <= int64(len(b)); {
		starts = append(starts, off)
		off += journal.RecordHeaderSize + int64(uint32(b[off])<<24|uint32(b[off+1])<<16|uint32(b[off+2])<<8|uint32(b[off+3]))
	}
	return starts
}

func swapFiles(t testing.TB, a, b string) {
	t.Helper()
	tmp := a + ".swap"
	require.NoError(t, os.Rename(a, tmp))
	require.NoError(t, os.Rename(b, a))
	require.NoError(t, os.Rename(tmp, b))
}

func TestOutboxReportsFlippedBytesAsCorrupt(t *testing.T) {
	dir, _ := sampleOutbox(t)
	for _, path := range segmentFiles(t, dir) {
		name := filepath.Base(path)
		orig, err := os.ReadFile(path)
		require.NoError(t, err)
		d := t.TempDir()
		for _, e := range segmentFiles(t, dir) {
			b, err := os.ReadFile(e)
			require.NoError(t, err)
			require.NoError(t, os.WriteFile(filepath.Join(d, filepath.Base(e)), b, 0o644))
		}
		segs := segmentFiles(t, dir)
		final := int64(-1)
		if path == segs[len(segs)-1] {
			final = finalRecord(t, path)
		}
		for _, i := range sweepOffsets(t, path) {
			// Both the lowest and the highest bit, alternately (both on
			// every byte with -outbox.exhaustive).
			masks := []byte{0x01, 0x80}
			if !*exhaustive {
				masks = masks[i%2 : i%2+1]
			}
			for _, mask := range masks {
				bad := slices.Clone(orig)
				bad[i] ^= mask
				require.NoError(t, os.WriteFile(filepath.Join(d, name), bad, 0o644))
				o, err := OpenOutbox(d, fast)
				if err == nil && final >= 0 && i >= final {
					// Damage to the log's very last record that leaves it
					// zero from a sector boundary on is cut off as a torn
					// tail (documented): the file must end where it began.
					o.Close()
					info, serr := os.Stat(filepath.Join(d, name))
					require.NoError(t, serr)
					require.Equal(t, final, info.Size(), "size after byte %d of the final record was flipped", i)
					continue
				}
				if !errors.Is(err, ErrCorrupt) {
					if o != nil {
						o.Close()
					}
					t.Fatalf("OpenOutbox with byte %d of %s flipped by %#x = %v, want %v", i, name, mask, err, ErrCorrupt)
				}
				var ce *journal.CorruptError
				if errors.As(err, &ce) {
					assert.Equal(t, filepath.Join(d, name), ce.Path, "CorruptError.Path")
					assert.LessOrEqual(t, ce.Offset, int64(i), "CorruptError.Offset for byte %d", i)
				}
			}
		}
	}
}

func FuzzDecode(f *testing.F) {
	f.Add(obItem, (&obRecord{seq: 1, enq: 5, key: "k", stream: "s", payload: []byte("p")}).appendTo(nil))
	f.Add(obDone, (&obRecord{seq: 9, key: "k", stream: "s"}).appendTo(nil))
	f.Add(obRequeue, (&obRecord{seq: 9, old: 3, key: "k", reason: "r"}).appendTo(nil))
	f.Add(byte(0), []byte{})
	f.Fuzz(func(t *testing.T, typ byte, body []byte) {
		r, err := decodeObRecord(typ, body)
		if err != nil {
			return
		}
		again, err := decodeObRecord(typ, r.appendTo(nil))
		require.NoError(t, err, "decoding a re-encoded record")
		assert.Equal(t, r, again, "decode(encode(decode(body)))")
	})
}

// crashEnv names the outbox directory for the child process of
// TestOutboxSurvivesSIGKILL, crashStartEnv says where each stream starts,
// and crashReplayEnv, if set, makes the child replay while it enqueues.
const (
	crashEnv       = "RINGFENCE_OUTBOX_CRASH_DIR"
	crashStartEnv  = "RINGFENCE_OUTBOX_CRASH_START"
	crashReplayEnv = "RINGFENCE_OUTBOX_CRASH_REPLAY"
	crashStreams   = 4
)

// TestOutboxCrashChild is the child of TestOutboxSurvivesSIGKILL: it
// enqueues items on several streams until killed, printing "ack g n" once
// Enqueue of item n of stream g has returned, and, when asked, replays at
// the same time, printing "del g n" when item n of stream g is delivered.
func TestOutboxCrashChild(t *testing.T) {
	dir := os.Getenv(crashEnv)
	if dir == "" {
		t.Skip("run by TestOutboxSurvivesSIGKILL")
	}
	o, err := OpenOutbox(dir, OutboxOptions{SegmentSize: 4096, Rate: rate.Inf})
	if err != nil {
		fmt.Printf("open failed: %v\n", err)
		os.Exit(2)
	}
	starts := strings.Split(os.Getenv(crashStartEnv), ",")
	var out sync.Mutex
	say := func(format string, args ...any) {
		out.Lock()
		fmt.Printf(format, args...)
		out.Unlock()
	}
	var wg sync.WaitGroup
	for g := range crashStreams {
		start, _ := strconv.Atoi(starts[g])
		wg.Go(func() {
			for n := start; ; n++ {
				key := fmt.Sprintf("%d-%d", g, n)
				err := o.Enqueue(context.Background(), Item{Key: key, Stream: fmt.Sprint(g), Payload: []byte(strings.Repeat(key, 8))})
				if err != nil {
					say("enqueue failed: %v\n", err)
					os.Exit(2)
				}
				say("ack %d %d\n", g, n)
			}
		})
	}
	if os.Getenv(crashReplayEnv) != "" {
		wg.Go(func() {
			for {
				err := o.Replay(context.Background(), func(_ context.Context, it Item) error {
					say("del %s\n", strings.Replace(it.Key, "-", " ", 1))
					return nil
				})
				if err != nil {
					say("replay failed: %v\n", err)
					os.Exit(2)
				}
			}
		})
	}
	wg.Wait()
}

// TestOutboxSurvivesSIGKILL kills a child process that enqueues (and in
// odd rounds replays) at random moments, and checks after each crash that
// every acknowledged item is stored exactly once or was delivered, that
// each stream holds a gap-free run in enqueue order, and that deliveries
// never skipped an item. It runs 12 rounds by default and 30 with
// -outbox.exhaustive (or RINGFENCE_OUTBOX_EXHAUSTIVE=1).
func TestOutboxSurvivesSIGKILL(t *testing.T) {
	if testing.Short() {
		t.Skip("starts child processes")
	}
	rounds := 12
	if *exhaustive || os.Getenv("RINGFENCE_OUTBOX_EXHAUSTIVE") == "1" {
		rounds = 30
	}
	dir := t.TempDir()
	rng := rand.New(rand.NewPCG(2026, 11))
	var (
		first     [crashStreams]int // per stream: lowest index still stored
		next      [crashStreams]int // per stream: one past the highest index stored
		acked     [crashStreams]int // per stream: one past the highest index acknowledged
		delivered [crashStreams]int // per stream: one past the highest index delivered
	)
	for round := range rounds {
		// In rounds without replay, restart each stream up to two items
		// back, so keys still stored are enqueued again and must not be
		// stored twice. (With replay running such a key might be delivered
		// first, and then enqueuing it again rightly stores a new item.)
		replay := round%2 == 1
		var starts []string
		for g := range crashStreams {
			start := max(first[g], next[g]-2)
			if replay {
				start = next[g]
			}
			starts = append(starts, strconv.Itoa(start))
		}
		cmd := exec.Command(os.Args[0], "-test.run=^TestOutboxCrashChild$", "-test.count=1")
		cmd.Env = append(childEnv(), crashEnv+"="+dir, crashStartEnv+"="+strings.Join(starts, ","))
		if replay {
			cmd.Env = append(cmd.Env, crashReplayEnv+"=1")
		}
		stdout, err := cmd.StdoutPipe()
		require.NoError(t, err)
		require.NoError(t, cmd.Start())

		killAfter := 1 + rng.IntN(150)
		sc := bufio.NewScanner(stdout)
		seen := 0
		for sc.Scan() {
			var verb string
			var g, n int
			if _, err := fmt.Sscanf(sc.Text(), "%s %d %d", &verb, &g, &n); err != nil {
				t.Fatalf("round %d: child said %q", round, sc.Text())
			}
			switch verb {
			case "ack":
				acked[g] = max(acked[g], n+1)
				if seen++; seen == killAfter {
					require.NoError(t, cmd.Process.Signal(syscall.SIGKILL))
				}
			case "del":
				// Redelivery after a crash is allowed; skipping is not.
				require.LessOrEqual(t, n, delivered[g], "round %d: stream %d delivered item %d before item %d", round, g, n, delivered[g])
				delivered[g] = max(delivered[g], n+1)
			default:
				t.Fatalf("round %d: child said %q", round, sc.Text())
			}
		}
		_, _ = io.Copy(io.Discard, stdout)
		_ = cmd.Wait()
		require.GreaterOrEqual(t, seen, killAfter, "round %d: acknowledgements before the child died", round)

		o, err := OpenOutbox(dir, OutboxOptions{SegmentSize: 4096})
		require.NoError(t, err, "round %d: OpenOutbox after SIGKILL", round)
		got := map[string][]string{}
		for _, it := range pendingItems(t, o) {
			got[it.Stream] = append(got[it.Stream], it.Key)
			require.Equal(t, strings.Repeat(it.Key, 8), string(it.Payload), "round %d: payload of %s", round, it.Key)
		}
		require.NoError(t, o.Close())
		for g := range crashStreams {
			keys := got[fmt.Sprint(g)]
			// What is stored starts at or before the first undelivered item
			// and runs without gaps past the last acknowledged one.
			lo := delivered[g]
			if len(keys) > 0 {
				_, err := fmt.Sscanf(keys[0], fmt.Sprintf("%d-%%d", g), &lo)
				require.NoError(t, err)
			}
			require.LessOrEqual(t, lo, delivered[g], "round %d: stream %d lost items %d to %d", round, g, delivered[g], lo-1)
			require.GreaterOrEqual(t, max(lo+len(keys), delivered[g]), acked[g], "round %d: stream %d holds up to %d and delivered up to %d, %d were acknowledged", round, g, lo+len(keys), delivered[g], acked[g])
			for i, k := range keys {
				require.Equal(t, fmt.Sprintf("%d-%d", g, lo+i), k, "round %d: item %d of stream %d", round, i, g)
			}
			first[g], next[g] = lo, lo+len(keys)
			// Items delivered and then resurrected by the crash will be
			// delivered again; count from what is stored.
			delivered[g] = min(delivered[g], lo)
			if len(keys) == 0 {
				delivered[g] = next[g]
			}
		}
	}
	t.Logf("after %d crashes the streams reached items %v, delivered up to %v", rounds, next, delivered)
}
