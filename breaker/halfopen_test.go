package breaker

import (
	"context"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestHungProbeTimesOut(t *testing.T) {
	cases := []struct {
		name     string
		settings Settings
		deadline time.Duration
	}{
		{name: "the default deadline is a minute", deadline: time.Minute},
		{name: "a set deadline is honoured", settings: Settings{HalfOpenTimeout: 5 * time.Second}, deadline: 5 * time.Second},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				s := c.settings
				s.ConsecutiveFailures, s.OpenTimeout = 1, time.Second
				b := mustNew(t, s)
				trip(t, b)
				time.Sleep(time.Second)
				synctest.Wait()
				require.Equal(t, HalfOpen, b.State(), "State() after the open wait")

				// A probe that never reports back.
				_, err := b.Allow(context.Background())
				require.NoError(t, err, "Allow of the probe")

				time.Sleep(c.deadline - time.Millisecond)
				synctest.Wait()
				assert.Equal(t, HalfOpen, b.State(), "State() just before the deadline")
				time.Sleep(time.Millisecond)
				synctest.Wait()
				sn := b.Snapshot()
				assert.Equal(t, Open, sn.State, "State() at the deadline")
				assert.Equal(t, "probe timed out", sn.Reason, "Snapshot().Reason")
				assert.Equal(t, 2*time.Second, sn.OpenWait, "Snapshot().OpenWait after the probe timed out")

				// The next round probes afresh, and a success closes.
				time.Sleep(2 * time.Second)
				synctest.Wait()
				require.NoError(t, run(b, true), "probe after the second open wait")
				assert.Equal(t, Closed, b.State(), "State() after a good probe")
			})
		})
	}
}

func TestHungProbeInDoTimesOut(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := mustNew(t, Settings{ConsecutiveFailures: 1, OpenTimeout: time.Second, HalfOpenTimeout: 10 * time.Second})
		trip(t, b)
		time.Sleep(time.Second)
		synctest.Wait()
		release := make(chan struct{})
		done := make(chan error)
		go func() {
			_, err := Do(context.Background(), b, func(context.Context) (int, error) {
				<-release
				return 1, nil
			})
			done <- err
		}()
		time.Sleep(10 * time.Second)
		synctest.Wait()
		assert.Equal(t, Open, b.State(), "State() when the probe has hung for HalfOpenTimeout")
		time.Sleep(24 * time.Hour)
		synctest.Wait()
		// The late success belongs to an earlier round and is ignored.
		close(release)
		require.NoError(t, <-done, "Do of the hung probe")
		assert.NotEqual(t, Closed, b.State(), "State() after the late probe returned")
	})
}

func TestQuietHalfOpenDoesNotTimeOut(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := mustNew(t, Settings{ConsecutiveFailures: 1, OpenTimeout: time.Second, HalfOpenTimeout: time.Second})
		trip(t, b)
		time.Sleep(time.Hour)
		synctest.Wait()
		assert.Equal(t, HalfOpen, b.State(), "State() an hour after the open wait, without calls")
	})
}
