package breaker

import (
	"context"
	"fmt"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestGroupKeepsBreakersWithCallsInFlight(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		g := mustGroup(t, Settings{Name: "g", Window: time.Second, ConsecutiveFailures: 2}, GroupOptions{MaxKeys: 1})
		slow := g.Get("slow")
		release := make(chan struct{})
		done := make(chan error, 2)
		for range 2 {
			go func() {
				_, err := Do(context.Background(), slow, func(context.Context) (int, error) {
					<-release
					return 0, errDown
				})
				done <- err
			}()
		}
		synctest.Wait()
		// Nothing is counted yet, but two calls are in flight: the slot
		// is not free.
		for i := range 3 {
			assert.Equal(t, "g/*", g.Get(fmt.Sprint("other", i)).Name(), "Get(other%d).Name() while slow has calls in flight", i)
		}
		close(release)
		for range 2 {
			require.ErrorIs(t, <-done, errDown, "Do(slow)")
		}
		assert.Same(t, slow, g.Get("slow"), "Get(slow) after its calls ended")
		assert.Equal(t, Open, g.Get("slow").State(), "State() of slow after its two calls failed")
	})
}

func TestGroupKeepsBreakersWithPermitsOut(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		g := mustGroup(t, Settings{Name: "g", Window: time.Second}, GroupOptions{MaxKeys: 1})
		stream := g.Get("stream")
		ctx := context.Background()
		p, err := stream.Allow(ctx)
		require.NoError(t, err, "Allow")
		time.Sleep(time.Hour)
		assert.Equal(t, "g/*", g.Get("other").Name(), "Get(other).Name() while a permit is out")
		p.Done(ctx, context.Canceled) // not counted
		time.Sleep(time.Second)       // the next rescan is due
		assert.Equal(t, "g/other", g.Get("other").Name(), "Get(other).Name() after the permit was done")
	})
}

func TestGroupFailuresOlderThanTheWindowDoNotPinSlots(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		g := mustGroup(t, Settings{Name: "g", Window: time.Second}, GroupOptions{MaxKeys: 3})
		for _, k := range []string{"a", "b", "c"} {
			require.ErrorIs(t, run(g.Get(k), false), errDown, "Do(%s, failing)", k)
		}
		sleep(2 * time.Second)
		for _, k := range []string{"d", "e", "f"} {
			assert.Equal(t, "g/"+k, g.Get(k).Name(), "Get(%s).Name() once the old failures left the window", k)
		}
	})
}

func TestConsecutiveFailuresLeaveWithTheWindow(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := mustNew(t, Settings{Window: time.Second, ConsecutiveFailures: 5})
		for range 4 {
			require.ErrorIs(t, run(b, false), errDown, "Do(failing)")
		}
		assert.Equal(t, uint64(4), b.Snapshot().ConsecutiveFailures, "ConsecutiveFailures after 4 failures")
		sleep(2 * time.Second)
		assert.Zero(t, b.Snapshot().ConsecutiveFailures, "ConsecutiveFailures once they left the window")
		require.ErrorIs(t, run(b, false), errDown, "Do(failing) later")
		assert.Equal(t, Closed, b.State(), "State() after a fifth failure long after the first four")
		assert.Equal(t, uint64(1), b.Snapshot().ConsecutiveFailures, "ConsecutiveFailures after the late failure")
	})
}

func TestGroupRescansAtMostOncePerBucket(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		g := mustGroup(t, Settings{Name: "g", Window: time.Second}, GroupOptions{MaxKeys: 1})
		busy := g.Get("busy")
		ctx := context.Background()
		p, err := busy.Allow(ctx)
		require.NoError(t, err, "Allow")
		assert.Equal(t, "g/*", g.Get("new").Name(), "Get(new).Name() while busy has a permit out")
		p.Done(ctx, context.Canceled) // busy is idle from now on
		// The last scan was less than a bucket (100ms) ago: no rescan.
		time.Sleep(99 * time.Millisecond)
		assert.Equal(t, "g/*", g.Get("new").Name(), "Get(new).Name() within the bucket of the last scan")
		time.Sleep(time.Millisecond)
		synctest.Wait()
		assert.Equal(t, "g/new", g.Get("new").Name(), "Get(new).Name() a bucket after the last scan")
	})
}

func TestGroupGetOverflowAllocatesNothing(t *testing.T) {
	g := mustGroup(t, Settings{Name: "g"}, GroupOptions{MaxKeys: 1})
	require.NoError(t, run(g.Get("busy"), true), "Do(busy)")
	g.Get("first overflow")
	keys := []string{"x", "y", "z"}
	i := 0
	allocs := testing.AllocsPerRun(100, func() {
		_ = g.Get(keys[i%len(keys)])
		i++
	})
	assert.Zero(t, allocs, "Get allocations for overflow keys")
}
