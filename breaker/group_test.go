package breaker

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func mustGroup(t *testing.T, s Settings, opts GroupOptions) *Group {
	t.Helper()
	g, err := NewGroup(s, opts)
	require.NoError(t, err, "NewGroup(%+v, %+v)", s, opts)
	return g
}

func TestNewGroupValidates(t *testing.T) {
	tests := []struct {
		name  string
		s     Settings
		opts  GroupOptions
		field string
	}{
		{"bad settings are rejected", Settings{FailureRatio: 2}, GroupOptions{}, "Settings.FailureRatio"},
		{"a negative MaxKeys is rejected", Settings{}, GroupOptions{MaxKeys: -1}, "GroupOptions.MaxKeys"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g, err := NewGroup(tt.s, tt.opts)
			require.ErrorIs(t, err, ErrInvalidSettings, "NewGroup(%+v, %+v)", tt.s, tt.opts)
			assert.Nil(t, g, "NewGroup() group")
			assert.Contains(t, err.Error(), tt.field, "NewGroup() error")
		})
	}
}

func TestGroupCreatesBreakersLazily(t *testing.T) {
	g := mustGroup(t, Settings{Name: "api", ConsecutiveFailures: 1}, GroupOptions{})
	assert.Equal(t, 0, g.Len(), "Len() of a new group")
	a := g.Get("eu")
	assert.Equal(t, "api/eu", a.Name(), "Get(eu).Name()")
	assert.Same(t, a, g.Get("eu"), "Get(eu) twice")
	us := g.Get("us")
	assert.NotSame(t, a, us, "Get(us) vs Get(eu)")
	assert.Equal(t, 2, g.Len(), "Len() after two keys")

	// Breakers are independent.
	require.ErrorIs(t, run(a, false), errDown, "Do(eu, failing)")
	assert.Equal(t, Open, a.State(), "eu State()")
	assert.Equal(t, Closed, us.State(), "us State()")

	snaps := g.Snapshots()
	require.Len(t, snaps, 2, "Snapshots()")
	assert.Equal(t, "api/eu", snaps[0].Name, "Snapshots()[0].Name")
	assert.Equal(t, Open, snaps[0].State, "Snapshots()[0].State")
	assert.Equal(t, "api/us", snaps[1].Name, "Snapshots()[1].Name")
}

func TestGroupEviction(t *testing.T) {
	t.Run("an idle breaker is evicted at the bound", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			g := mustGroup(t, Settings{Name: "g", Window: time.Second}, GroupOptions{MaxKeys: 2})
			require.NoError(t, run(g.Get("a"), true), "Do(a)")
			require.NoError(t, run(g.Get("b"), true), "Do(b)")
			// Both counted a call within their window: neither is idle,
			// so c goes to the overflow breaker.
			c := g.Get("c")
			assert.Equal(t, "g/*", c.Name(), "Get(c).Name() while a and b are busy")
			assert.Equal(t, 2, g.Len(), "Len() at the bound")

			sleep(2 * time.Second) // a's and b's windows empty out
			c = g.Get("c")
			assert.Equal(t, "g/c", c.Name(), "Get(c).Name() once a and b are idle")
			// The scan evicted both idle breakers, a and b.
			assert.Equal(t, 1, g.Len(), "Len() after the eviction")
		})
	})
	t.Run("open and forced breakers are never evicted", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			g := mustGroup(t, Settings{Name: "g", Window: time.Second, ConsecutiveFailures: 1, OpenTimeout: time.Hour},
				GroupOptions{MaxKeys: 3})
			open := g.Get("open")
			trip(t, open)
			g.Get("forced-open").ForceOpen("test")
			g.Get("forced-closed").ForceClose("test")
			sleep(2 * time.Second)

			for i := range 5 {
				b := g.Get(fmt.Sprint("new", i))
				assert.Equal(t, "g/*", b.Name(), "Get(new%d).Name()", i)
			}
			assert.Same(t, open, g.Get("open"), "Get(open) after the bound was hit")
			assert.Equal(t, Open, g.Get("open").State(), "Get(open).State()")
			assert.Equal(t, ForcedOpen, g.Get("forced-open").State(), "Get(forced-open).State()")
			assert.Equal(t, ForcedClosed, g.Get("forced-closed").State(), "Get(forced-closed).State()")

			names := []string{}
			for _, sn := range g.Snapshots() {
				names = append(names, sn.Name)
			}
			assert.Equal(t, []string{"g/*", "g/forced-closed", "g/forced-open", "g/open"}, names, "Snapshots() names")
		})
	})
}

func TestGroupConcurrentGet(t *testing.T) {
	g := mustGroup(t, Settings{Name: "g"}, GroupOptions{})
	const goroutines, keys = 32, 10
	got := make([][keys]*Breaker, goroutines)
	var wg sync.WaitGroup
	for i := range goroutines {
		wg.Go(func() {
			for k := range keys {
				b := g.Get(fmt.Sprint(k))
				_, _ = Do(context.Background(), b, ok)
				got[i][k] = b
			}
		})
	}
	wg.Wait()
	assert.Equal(t, keys, g.Len(), "Len()")
	for i := range goroutines {
		for k := range keys {
			assert.Same(t, got[0][k], got[i][k], "goroutine %d Get(%d)", i, k)
		}
	}
	var total uint64
	for _, sn := range g.Snapshots() {
		total += sn.Requests
	}
	assert.Equal(t, uint64(goroutines*keys), total, "requests counted over all breakers")
}
