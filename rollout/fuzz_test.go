package rollout_test

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/ringfence/ringfence/internal/statefile"
	"github.com/ringfence/ringfence/rollout"
)

// FuzzFileStoreLoad checks that no file content makes Load panic or return
// a record without a version, and that every failure is classified.
func FuzzFileStoreLoad(f *testing.F) {
	f.Add([]byte(`{"format":1,"record":{"name":"n","state":"running"}}`), true)
	f.Add([]byte(`{"format":1}`), true)
	f.Add([]byte("RFS1garbage"), false)
	f.Fuzz(func(t *testing.T, data []byte, wrap bool) {
		path := filepath.Join(t.TempDir(), "state")
		if wrap {
			sf, err := statefile.New(path)
			require.NoError(t, err)
			if _, err := sf.Save(data, 0); err != nil {
				t.Skip(err)
			}
		} else {
			require.NoError(t, os.WriteFile(path, data, 0o600))
		}
		s, err := rollout.NewFileStore(path)
		require.NoError(t, err)
		_, v, err := s.Load(t.Context())
		if err != nil {
			require.ErrorIs(t, err, rollout.ErrCorruptState)
			return
		}
		assert.NotZero(t, v, "Load version")
	})
}

// FuzzLifecycle drives a rollout with a random sequence of traffic, time,
// evaluations and operator controls, and checks its invariants after every
// step.
func FuzzLifecycle(f *testing.F) {
	f.Add([]byte{0, 1, 2, 3, 4, 5, 6, 7, 8, 1, 1, 2, 2, 0, 0})
	f.Add([]byte{0, 0, 2, 0, 0, 2, 0, 0, 2, 3, 4, 2, 5})
	f.Add([]byte{7, 7, 2, 1, 6, 2})
	f.Fuzz(func(t *testing.T, ops []byte) {
		synctest.Test(t, func(t *testing.T) {
			r := newRollout(t, rollout.Plan{Stages: []rollout.Stage{
				{Percent: 1, Bake: time.Minute, MinSamples: 20},
				{Percent: 30, Bake: time.Minute, MinSamples: 20, Shadow: true},
				{Percent: 100, Bake: time.Minute, MinSamples: 20},
			}})
			require.NoError(t, r.Start(t.Context()))
			terminal := rollout.State(255)
			for _, op := range ops {
				switch op % 9 {
				case 0:
					healthyTraffic(r)
				case 1:
					observe(r, rollout.Canary, 50, 40, time.Second)
				case 2:
					r.Evaluate()
				case 3:
					time.Sleep(time.Minute)
				case 4:
					r.Pause("p")
				case 5:
					r.Resume("r")
				case 6:
					r.Promote("up")
				case 7:
					r.Abort("down")
				case 8:
					time.Sleep(2 * time.Hour)
				}
				st := r.Status()
				if terminal != 255 {
					require.Equal(t, terminal, st.State, "a final state never changes")
				}
				switch st.State {
				case rollout.Promoted, rollout.RolledBack:
					terminal = st.State
				}
				want := map[rollout.State]int{rollout.Promoted: 1000, rollout.RolledBack: 0, rollout.Pending: 0}
				if n, ok := want[st.State]; ok {
					require.Equal(t, n, countCanary(r, 1000), "canary keys when %v", st.State)
				} else {
					require.Equal(t, r.Stages()[st.Stage].Percent, st.Percent, "percent when %v", st.State)
				}
				h := r.History()
				for i := 1; i < len(h); i++ {
					require.Equal(t, h[i-1].To, h[i].From, "event %d follows event %d", i, i-1)
					require.False(t, h[i].Time.Before(h[i-1].Time), "events in time order")
				}
				require.NoError(t, st.Err)
			}
		})
	})
}

func TestErrorsAreDistinct(t *testing.T) {
	errs := []error{rollout.ErrPlan, rollout.ErrTransition, rollout.ErrValidation, rollout.ErrFailSafe,
		rollout.ErrMismatch, rollout.ErrNoState, rollout.ErrCorruptState, rollout.ErrConflict}
	for i, a := range errs {
		for j, b := range errs {
			if i != j && errors.Is(a, b) {
				t.Errorf("errors.Is(%v, %v) = true, want false", a, b)
			}
		}
	}
}

// FuzzEvidenceJSON checks that no document makes Unmarshal panic, that
// every refusal wraps ErrEvidence, and that accepted evidence validates,
// merges with itself and survives a round trip.
func FuzzEvidenceJSON(f *testing.F) {
	r, err := rollout.New(rollout.Plan{Name: "fz", Stages: []rollout.Stage{{Percent: 10}, {Percent: 100}}})
	require.NoError(f, err)
	require.NoError(f, r.Start(f.Context()))
	for i := range 100 {
		r.ObserveKey(string(rune('a'+i%26))+"-host", r.Variant("k"), nil, time.Millisecond)
	}
	doc, err := json.Marshal(r.Evidence())
	require.NoError(f, err)
	f.Add(doc)
	f.Add([]byte(`{"v":1}`))
	f.Add([]byte(`{"v":1,"stages":2,"ppm":5,"baseline":{"n":[1]}}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		var e rollout.Evidence
		if err := json.Unmarshal(data, &e); err != nil {
			var syntax *json.SyntaxError
			if !errors.As(err, &syntax) {
				require.ErrorIs(t, err, rollout.ErrEvidence)
			}
			return
		}
		require.NoError(t, e.Validate(), "Validate of accepted evidence")
		back, err := json.Marshal(e)
		require.NoError(t, err)
		var again rollout.Evidence
		require.NoError(t, json.Unmarshal(back, &again))
		assert.Equal(t, e, again, "evidence after a round trip")
		m := e
		if err := m.Merge(e); err != nil {
			require.ErrorIs(t, err, rollout.ErrEvidence)
		}
	})
}
