package breaker

import (
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestSnapshotNextProbeIsZeroOnceTheOpenWaitIsOver(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := mustNew(t, Settings{ConsecutiveFailures: 1, OpenTimeout: 10 * time.Second})
		require.ErrorIs(t, run(b, false), errDown)
		require.Equal(t, Open, b.State(), "State() after tripping")
		time.Sleep(10 * time.Second)
		synctest.Wait()
		require.Equal(t, HalfOpen, b.State(), "State() after the open wait")
		sn := b.Snapshot()
		assert.True(t, sn.NextProbe.IsZero(), "Snapshot().NextProbe in HalfOpen = %v, want zero", sn.NextProbe)
		assert.Equal(t, 10*time.Second, sn.OpenWait, "Snapshot().OpenWait in HalfOpen")
	})
}
