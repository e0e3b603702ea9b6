package breaker

import (
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestOnChangeCarriesReasonAndTime(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		start := time.Now()
		var got []Change
		b := mustNew(t, Settings{
			Name:                "api",
			ConsecutiveFailures: 2,
			OpenTimeout:         10 * time.Second,
			OnChange:            func(c Change) { got = append(got, c) },
		})
		require.ErrorIs(t, run(b, false), errDown)
		require.ErrorIs(t, run(b, false), errDown)
		time.Sleep(10 * time.Second)
		synctest.Wait()
		require.NoError(t, run(b, true))
		b.ForceOpen("maintenance")
		b.Release()

		at10 := start.Add(10 * time.Second)
		want := []Change{
			{Name: "api", From: Closed, To: Open, Reason: "2 consecutive failures", At: start},
			{Name: "api", From: Open, To: HalfOpen, Reason: "open wait over", At: at10},
			{Name: "api", From: HalfOpen, To: Closed, Reason: "probes succeeded", At: at10},
			{Name: "api", From: Closed, To: ForcedOpen, Reason: "forced open: maintenance", At: at10},
			{Name: "api", From: ForcedOpen, To: Closed, Reason: "released", At: at10},
		}
		assert.Equal(t, want, got, "changes passed to OnChange")
	})
}

// A callback that changes the state again sees, in Snapshot, the reason of
// the later change; the Change it was given keeps its own.
func TestOnChangeKeepsReasonOfItsOwnChange(t *testing.T) {
	var b *Breaker
	var gotReason, snapReason []string
	b = mustNew(t, Settings{
		OnChange: func(c Change) {
			if c.To == ForcedOpen {
				b.ForceClose("second") // queued behind this delivery
			}
			gotReason = append(gotReason, c.Reason)
			snapReason = append(snapReason, b.Snapshot().Reason)
		},
	})
	b.ForceOpen("first")
	assert.Equal(t, []string{"forced open: first", "forced closed: second"}, gotReason, "Change.Reason")
	assert.Equal(t, []string{"forced closed: second", "forced closed: second"}, snapReason, "Snapshot().Reason in the callback")
}
