package main

import (
	"bytes"
	"context"
	"io"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/ringfence/ringfence/rollout"
)

func TestFleetUpdates(t *testing.T) {
	sum, err := simulate(context.Background(), io.Discard)
	require.NoError(t, err, "simulate")

	t.Run("validation stops the malformed update before any host loads it", func(t *testing.T) {
		assert.Equal(t, rollout.RolledBack, sum.Malformed.State, "state")
		assert.Zero(t, sum.Malformed.Exposed, "hosts exposed")
		assert.Zero(t, sum.Malformed.OnUpdate, "hosts assigned")
	})

	t.Run("the crashing update is rolled back in its first ring", func(t *testing.T) {
		assert.Equal(t, rollout.RolledBack, sum.Bad.State, "state")
		assert.Equal(t, 0, sum.Bad.Stage, "stage")
		assert.Zero(t, sum.Bad.OnUpdate, "hosts assigned after the roll back")
		// Assignment, crashes and health checks are all deterministic.
		assert.Equal(t, 110, sum.Bad.Exposed, "hosts exposed")
		assert.Equal(t, 43, sum.Bad.Crashed, "hosts crashed")
		assert.Equal(t, 1, sum.Bad.Minutes, "minutes to the roll back")
	})

	t.Run("an all-at-once push would crash 30% of the fleet", func(t *testing.T) {
		assert.Equal(t, 3_000, sum.AllAtOnceCrashed, "hosts crashed all at once")
		assert.Less(t, sum.Bad.Crashed*50, sum.AllAtOnceCrashed, "the rings crash under a fiftieth as many")
	})

	t.Run("the good update reaches every host", func(t *testing.T) {
		assert.Equal(t, rollout.Promoted, sum.Good.State, "state")
		assert.Equal(t, hosts, sum.Good.Exposed, "hosts exposed")
		assert.Equal(t, hosts, sum.Good.OnUpdate, "hosts assigned")
		assert.Zero(t, sum.Good.Crashed, "hosts crashed")
	})

	t.Run("the invariants hold", func(t *testing.T) {
		assert.NoError(t, sum.check(), "check")
	})
}

func TestRunPrintsTheStory(t *testing.T) {
	var out bytes.Buffer
	code := run(&out)
	require.Equal(t, 0, code, "run exit status; output:\n%s", out.String())
	for _, want := range []string{
		"content-290: pending -> rolled-back at 0% (validation failed",
		"110 hosts load content-291; 43 of them crash and go silent",
		"content-291: running -> rolled-back at 0% (judge: silence at 1%",
		"content-292: running -> promoted at 100%",
		"OK: the bad update stopped in its first ring",
	} {
		assert.Contains(t, out.String(), want, "run output")
	}
}

func TestCheckRejectsABrokenStory(t *testing.T) {
	good := Summary{
		Malformed:        Result{State: rollout.RolledBack},
		Bad:              Result{State: rollout.RolledBack, Exposed: 100, Crashed: 30},
		Good:             Result{State: rollout.Promoted, Exposed: hosts, OnUpdate: hosts},
		AllAtOnceCrashed: 3_000,
	}
	require.NoError(t, good.check(), "check of a good story")
	tests := []struct {
		name  string
		spoil func(*Summary)
	}{
		{"a malformed update that reached a host fails", func(s *Summary) { s.Malformed.Exposed = 1 }},
		{"a bad update past its first ring fails", func(s *Summary) { s.Bad.Stage = 1 }},
		{"a bad update that was promoted fails", func(s *Summary) { s.Bad.State = rollout.Promoted }},
		{"a bad update still assigned fails", func(s *Summary) { s.Bad.OnUpdate = 5 }},
		{"as many crashes as all at once fails", func(s *Summary) { s.Bad.Crashed = s.AllAtOnceCrashed }},
		{"a good update left paused fails", func(s *Summary) { s.Good.State = rollout.Paused }},
		{"a good update short of a host fails", func(s *Summary) { s.Good.OnUpdate-- }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := good
			tt.spoil(&s)
			assert.Error(t, s.check(), "check(%+v)", s)
		})
	}
}
