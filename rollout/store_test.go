package rollout_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/ringfence/ringfence/internal/statefile"
	"github.com/ringfence/ringfence/rollout"
)

func fileStore(t *testing.T) (*rollout.FileStore, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "rollout.state")
	s, err := rollout.NewFileStore(path)
	require.NoError(t, err)
	return s, path
}

func TestFileStoreRoundTripAndCompareAndSwap(t *testing.T) {
	s, _ := fileStore(t)
	ctx := t.Context()
	_, _, err := s.Load(ctx)
	require.ErrorIs(t, err, rollout.ErrNoState)

	rec := rollout.Record{Name: "n", Salt: "s", Stages: 3, Stage: 1, Percent: 5, State: rollout.Paused,
		Reason: "why", Elapsed: time.Minute, Canary: rollout.Counts{Samples: 7, Errors: 1},
		Saved: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)}
	v, err := s.Save(ctx, rec, 0)
	require.NoError(t, err)
	assert.Equal(t, uint64(1), v, "first version")
	got, gv, err := s.Load(ctx)
	require.NoError(t, err)
	assert.Equal(t, rec, got, "Load after Save")
	assert.Equal(t, uint64(1), gv, "Load version")

	_, err = s.Save(ctx, rec, 0)
	require.ErrorIs(t, err, rollout.ErrConflict)
	v, err = s.Save(ctx, rec, 1)
	require.NoError(t, err)
	assert.Equal(t, uint64(2), v, "second version")

	_, err = rollout.NewFileStore("")
	require.Error(t, err, "NewFileStore with an empty path")
}

func TestFileStoreRejectsForeignDocuments(t *testing.T) {
	tests := []struct {
		name string
		data string
	}{
		{"not JSON", "{{{"},
		{"an unknown format", `{"format": 2, "record": {}}`},
		{"no record", `{"format": 1}`},
		{"an unknown state", `{"format": 1, "record": {"state": "exploded"}}`},
	}
	for _, tt := range tests {
		t.Run("a document with "+tt.name+" is corrupt", func(t *testing.T) {
			s, path := fileStore(t)
			f, err := statefile.New(path)
			require.NoError(t, err)
			_, err = f.Save([]byte(tt.data), 0)
			require.NoError(t, err)
			_, _, err = s.Load(t.Context())
			require.ErrorIs(t, err, rollout.ErrCorruptState)
		})
	}
}

func TestResumeAfterRestart(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		store, _ := fileStore(t)
		plan := rollout.Plan{Name: "checkout", Store: store, Checkpoint: time.Minute}
		r := newRollout(t, plan)
		require.NoError(t, r.Start(t.Context()))
		for range 5 {
			healthyTraffic(r)
		}
		time.Sleep(time.Hour)
		_, err := r.Evaluate()
		require.NoError(t, err)
		require.Equal(t, 50.0, r.Status().Percent, "percent before the restart")
		healthyTraffic(r)
		time.Sleep(25 * time.Minute)
		_, err = r.Evaluate() // checkpoint: 25 minutes baked
		require.NoError(t, err)
		time.Sleep(30 * time.Second) // lost with the process: less than a checkpoint

		// The process restarts, and is down for a while.
		time.Sleep(time.Hour)
		validated := false
		plan.Validate = func(context.Context) error { validated = true; return nil }
		r2 := newRollout(t, plan)
		require.NoError(t, r2.Start(t.Context()))
		assert.False(t, validated, "a resumed rollout is not validated again")
		st := r2.Status()
		assert.Equal(t, rollout.Running, st.State, "state after restart")
		assert.Equal(t, 1, st.Stage, "stage after restart")
		assert.Equal(t, 50.0, st.Percent, "percent after restart")
		assert.Equal(t, 35*time.Minute, st.BakeLeft, "BakeLeft after restart")
		assert.Equal(t, uint64(500), st.Verdict.Canary.Samples, "canary samples after restart")
		assert.Equal(t, countCanary(r, 10_000), countCanary(r2, 10_000), "the same keys are in the canary")
		h := r2.History()
		require.Len(t, h, 1)
		assert.Equal(t, "resumed from stored state", h[0].Reason, "resume event")

		time.Sleep(35 * time.Minute)
		_, err = r2.Evaluate()
		require.NoError(t, err)
		assert.Equal(t, 100.0, r2.Status().Percent, "percent after the remaining bake")

		require.NoError(t, r2.Abort("enough"))
		r3 := newRollout(t, plan)
		require.NoError(t, r3.Start(t.Context()))
		assert.Equal(t, rollout.RolledBack, r3.Status().State, "a rolled back rollout stays rolled back")
		assert.Equal(t, 0, countCanary(r3, 10_000), "canary keys after restart of a rolled back rollout")
	})
}

func TestUnusableStateFailsSafe(t *testing.T) {
	// running writes a genuine record of a rollout running at 50%.
	running := func(t *testing.T, path string) {
		s, err := rollout.NewFileStore(path)
		require.NoError(t, err)
		r := newRollout(t, rollout.Plan{Store: s, Stages: []rollout.Stage{{Percent: 50}, {Percent: 100}}})
		require.NoError(t, r.Start(t.Context()))
	}
	tests := []struct {
		name    string
		prepare func(t *testing.T, path string)
		stages  []rollout.Stage
		want    error
	}{
		{"a file of garbage", func(t *testing.T, path string) {
			require.NoError(t, os.WriteFile(path, []byte("not a state file at all"), 0o600))
		}, nil, rollout.ErrCorruptState},
		{"a truncated file", func(t *testing.T, path string) {
			running(t, path)
			b, err := os.ReadFile(path)
			require.NoError(t, err)
			require.NoError(t, os.WriteFile(path, b[:len(b)-7], 0o600))
		}, nil, rollout.ErrCorruptState},
		{"a file with a flipped bit", func(t *testing.T, path string) {
			running(t, path)
			b, err := os.ReadFile(path)
			require.NoError(t, err)
			b[len(b)/2] ^= 0x10
			require.NoError(t, os.WriteFile(path, b, 0o600))
		}, nil, rollout.ErrCorruptState},
		{"an empty file", func(t *testing.T, path string) {
			require.NoError(t, os.WriteFile(path, nil, 0o600))
		}, nil, rollout.ErrCorruptState},
		{"a record for a different stage list", running, []rollout.Stage{{Percent: 20}, {Percent: 100}}, rollout.ErrFailSafe},
		{"a directory where the file should be", func(t *testing.T, path string) {
			require.NoError(t, os.Mkdir(path, 0o700))
		}, nil, rollout.ErrFailSafe},
	}
	for _, tt := range tests {
		t.Run(tt.name+" fails safe to the baseline", func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "rollout.state")
			tt.prepare(t, path)
			before, _ := os.ReadFile(path)
			store, err := rollout.NewFileStore(path)
			require.NoError(t, err)
			stages := tt.stages
			if stages == nil {
				stages = []rollout.Stage{{Percent: 50}, {Percent: 100}}
			}
			r := newRollout(t, rollout.Plan{Store: store, Stages: stages})
			err = r.Start(t.Context())
			require.ErrorIs(t, err, rollout.ErrFailSafe)
			require.ErrorIs(t, err, tt.want)
			assert.Equal(t, 0, countCanary(r, 10_000), "canary keys when failing safe")
			require.ErrorIs(t, r.Err(), rollout.ErrFailSafe)
			st := r.Status()
			require.ErrorIs(t, st.Err, rollout.ErrFailSafe)
			assert.Zero(t, st.Percent, "Status().Percent when failing safe")
			_, err = r.Evaluate()
			require.ErrorIs(t, err, rollout.ErrFailSafe)
			require.ErrorIs(t, r.Promote("force it"), rollout.ErrFailSafe)
			require.ErrorIs(t, r.Start(t.Context()), rollout.ErrFailSafe)
			require.ErrorIs(t, r.Run(t.Context()), rollout.ErrFailSafe)
			after, _ := os.ReadFile(path)
			assert.Equal(t, before, after, "the damaged state is left as it was")
			assert.Equal(t, 0, countCanary(r, 10_000), "canary keys at the end")
		})
	}
}

// flakyStore is a Store in memory whose saves fail while fail is set.
type flakyStore struct {
	mu      sync.Mutex
	rec     rollout.Record
	version uint64
	fail    bool
}

var errDiskFull = errors.New("disk full")

func (s *flakyStore) Load(context.Context) (rollout.Record, uint64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.version == 0 {
		return rollout.Record{}, 0, rollout.ErrNoState
	}
	return s.rec, s.version, nil
}

func (s *flakyStore) Save(_ context.Context, r rollout.Record, expect uint64) (uint64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.fail {
		return 0, errDiskFull
	}
	if expect != s.version {
		return 0, rollout.ErrConflict
	}
	s.rec = r
	s.version++
	return s.version, nil
}

func (s *flakyStore) setFail(b bool) {
	s.mu.Lock()
	s.fail = b
	s.mu.Unlock()
}

func TestSaveFailures(t *testing.T) {
	t.Run("a start that cannot be saved exposes no key", func(t *testing.T) {
		s := &flakyStore{fail: true}
		r := newRollout(t, rollout.Plan{Store: s})
		require.ErrorIs(t, r.Start(t.Context()), errDiskFull)
		assert.Equal(t, rollout.Pending, r.Status().State, "state")
		assert.Equal(t, 0, countCanary(r, 10_000), "canary keys")
		assert.Empty(t, r.History(), "History()")
		s.setFail(false)
		require.NoError(t, r.Start(t.Context()))
		assert.Equal(t, rollout.Running, r.Status().State, "state after a successful retry")
	})
	t.Run("an advance that cannot be saved does not happen", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			s := &flakyStore{}
			r := newRollout(t, rollout.Plan{Store: s})
			require.NoError(t, r.Start(t.Context()))
			for range 5 {
				healthyTraffic(r)
			}
			time.Sleep(time.Hour)
			s.setFail(true)
			_, err := r.Evaluate()
			require.ErrorIs(t, err, errDiskFull)
			assert.Equal(t, 10.0, r.Status().Percent, "percent after a failed save")
			require.ErrorIs(t, r.Err(), errDiskFull)
			require.ErrorIs(t, r.Promote("now"), errDiskFull)
			assert.Equal(t, rollout.Running, r.Status().State, "state after a failed promote")
			s.setFail(false)
			_, err = r.Evaluate()
			require.NoError(t, err)
			assert.Equal(t, 50.0, r.Status().Percent, "percent once the store works")
			require.NoError(t, r.Err())
		})
	})
	t.Run("a roll back that cannot be saved still happens", func(t *testing.T) {
		s := &flakyStore{}
		r := newRollout(t, rollout.Plan{Store: s})
		require.NoError(t, r.Start(t.Context()))
		s.setFail(true)
		require.ErrorIs(t, r.Abort("stop"), errDiskFull)
		assert.Equal(t, rollout.RolledBack, r.Status().State, "state")
		assert.Equal(t, 0, countCanary(r, 10_000), "canary keys")
		require.ErrorIs(t, r.Status().Err, errDiskFull)
	})
}

func TestControlsBeforeStartRespectTheStoredState(t *testing.T) {
	store, _ := fileStore(t)
	plan := rollout.Plan{Name: "ctl", Store: store}
	r := newRollout(t, plan)
	require.NoError(t, r.Start(t.Context()))
	require.NoError(t, r.Pause("hold"))

	// After a restart, an operator resumes before the program calls Start.
	r2 := newRollout(t, plan)
	require.NoError(t, r2.Resume("go on"))
	assert.Equal(t, rollout.Running, r2.Status().State, "state after Resume")
	require.NoError(t, r2.Start(t.Context()))
	assert.Equal(t, rollout.Running, r2.Status().State, "state after Start")
	require.NoError(t, r2.Abort("stop"))

	r3 := newRollout(t, plan)
	require.NoError(t, r3.Start(t.Context()))
	assert.Equal(t, rollout.RolledBack, r3.Status().State, "state after a second restart")
}
