package fallback

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/ringfence/ringfence/internal/statefile"
)

func TestModeText(t *testing.T) {
	tests := []struct {
		text string
		want Mode
	}{
		{"auto", ModeAuto},
		{"manual", ModeManual},
		{"primary", ModePrimary},
		{"MANUAL", ModeManual},
		{"Primary", ModePrimary},
	}
	for _, tt := range tests {
		t.Run(tt.text+" parses", func(t *testing.T) {
			m := Mode(-1)
			require.NoError(t, m.UnmarshalText([]byte(tt.text)))
			assert.Equal(t, tt.want, m, "UnmarshalText(%q)", tt.text)
		})
	}
	for _, m := range []Mode{ModeAuto, ModeManual, ModePrimary} {
		t.Run(m.String()+" round-trips through text", func(t *testing.T) {
			text, err := m.MarshalText()
			require.NoError(t, err)
			assert.Equal(t, m.String(), string(text), "MarshalText(%v)", m)
			var got Mode
			require.NoError(t, got.UnmarshalText(text))
			assert.Equal(t, m, got, "UnmarshalText(MarshalText(%v))", m)
		})
	}
}

func TestModeBadText(t *testing.T) {
	for _, text := range []string{"", "off", "auto ", " manual", "automatic", "1"} {
		t.Run("rejects "+`"`+text+`"`, func(t *testing.T) {
			m := ModeManual
			err := m.UnmarshalText([]byte(text))
			require.ErrorIs(t, err, ErrUnknownMode, "UnmarshalText(%q)", text)
			assert.Equal(t, ModeManual, m, "UnmarshalText(%q) changed the mode", text)
		})
	}
	t.Run("an undefined mode does not marshal", func(t *testing.T) {
		_, err := Mode(7).MarshalText()
		require.ErrorIs(t, err, ErrUnknownMode)
		assert.Equal(t, "Mode(7)", Mode(7).String())
	})
}

func TestModeFromFlagsAndJSON(t *testing.T) {
	t.Run("a flag set parses it", func(t *testing.T) {
		fs := flag.NewFlagSet("test", flag.ContinueOnError)
		var m Mode
		fs.TextVar(&m, "mode", ModeAuto, "mode")
		require.NoError(t, fs.Parse([]string{"-mode=manual"}))
		assert.Equal(t, ModeManual, m)
	})
	t.Run("JSON round-trips it as text", func(t *testing.T) {
		b, err := json.Marshal(struct{ Mode Mode }{ModePrimary})
		require.NoError(t, err)
		assert.JSONEq(t, `{"Mode":"primary"}`, string(b))
		var v struct{ Mode Mode }
		require.NoError(t, json.Unmarshal(b, &v))
		assert.Equal(t, ModePrimary, v.Mode)
	})
}

func TestNewSwitchRejectsBadSettings(t *testing.T) {
	tests := []struct {
		name string
		s    SwitchSettings
	}{
		{"negative history length", SwitchSettings{HistoryLen: -1}},
		{"undefined initial mode", SwitchSettings{Initial: Mode(3)}},
	}
	for _, tt := range tests {
		t.Run("rejects "+tt.name, func(t *testing.T) {
			s, err := NewSwitch(t.Context(), "db", tt.s)
			require.Error(t, err, "NewSwitch(%+v)", tt.s)
			assert.Nil(t, s)
		})
	}
}

func TestSwitchSetRecordsHistory(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s, err := NewSwitch(t.Context(), "db", SwitchSettings{HistoryLen: 2})
		require.NoError(t, err)
		assert.Equal(t, "db", s.Name())
		assert.Equal(t, ModeAuto, s.Mode(), "Mode() of a new switch")
		assert.Empty(t, s.History())

		start := time.Now()
		require.NoError(t, s.Set(t.Context(), ModeManual, "op", "incident 42"))
		time.Sleep(10 * time.Minute)
		require.NoError(t, s.Set(t.Context(), ModeManual, "op", "again"), "setting the same mode")
		require.NoError(t, s.Set(t.Context(), ModePrimary, "op", "diagnose"))
		time.Sleep(time.Minute)
		require.NoError(t, s.Set(t.Context(), ModeAuto, "op", "resolved"))

		assert.Equal(t, ModeAuto, s.Mode())
		assert.Equal(t, []ModeChange{
			{Time: start.Add(10 * time.Minute), From: ModeManual, To: ModePrimary, Reason: "diagnose", Actor: "op"},
			{Time: start.Add(11 * time.Minute), From: ModePrimary, To: ModeAuto, Reason: "resolved", Actor: "op"},
		}, s.History(), "History() keeps the last HistoryLen changes, oldest first")
	})
}

func TestSwitchSetRejectsUndefinedMode(t *testing.T) {
	s, err := NewSwitch(t.Context(), "db", SwitchSettings{})
	require.NoError(t, err)
	require.ErrorIs(t, s.Set(t.Context(), Mode(9), "op", "typo"), ErrUnknownMode)
	assert.Equal(t, ModeAuto, s.Mode())
	assert.Empty(t, s.History())
}

func TestSwitchOnChangeMayUseTheSwitch(t *testing.T) {
	var (
		s    *Switch
		got  []ModeChange
		seen []Mode
	)
	s, err := NewSwitch(t.Context(), "db", SwitchSettings{OnChange: func(c ModeChange) {
		got = append(got, c)
		seen = append(seen, s.Mode())
		_ = s.History()
		if c.To == ModeManual {
			// A callback may even change the mode again.
			require.NoError(t, s.Set(t.Context(), ModeAuto, "op", "undo"))
		}
	}})
	require.NoError(t, err)
	require.NoError(t, s.Set(t.Context(), ModeManual, "op", "go manual"))

	require.Len(t, got, 2)
	assert.Equal(t, ModeManual, got[0].To)
	assert.Equal(t, ModeAuto, got[1].To)
	assert.Equal(t, []Mode{ModeManual, ModeAuto}, seen, "Mode() read inside OnChange")
	assert.Equal(t, ModeAuto, s.Mode())
}

func TestSwitchPersistsMode(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "db.mode")
		store, err := NewFileModeStore(path)
		require.NoError(t, err)

		s, err := NewSwitch(t.Context(), "db", SwitchSettings{Store: store})
		require.NoError(t, err, "NewSwitch with an empty store")
		assert.Equal(t, ModeAuto, s.Mode())
		require.NoError(t, s.Set(t.Context(), ModeManual, "op", "incident 42"))
		want := ModeChange{Time: time.Now(), From: ModeAuto, To: ModeManual, Reason: "incident 42", Actor: "op"}

		store2, err := NewFileModeStore(path)
		require.NoError(t, err)
		restarted, err := NewSwitch(t.Context(), "db", SwitchSettings{Store: store2, Initial: ModePrimary})
		require.NoError(t, err, "NewSwitch after a restart")
		assert.Equal(t, ModeManual, restarted.Mode(), "Mode() after a restart")
		hist := restarted.History()
		require.Len(t, hist, 1)
		assert.True(t, want.Time.Equal(hist[0].Time), "restored Time = %v, want %v", hist[0].Time, want.Time)
		hist[0].Time = want.Time
		assert.Equal(t, want, hist[0])

		require.NoError(t, restarted.Set(t.Context(), ModeAuto, "op", "resolved"), "Set after a restart continues the versions")
		c, version, err := store2.Load(t.Context())
		require.NoError(t, err)
		assert.Equal(t, ModeAuto, c.To)
		assert.Equal(t, uint64(2), version)
	})
}

func TestSwitchFailsSafeOnCorruptStore(t *testing.T) {
	path := filepath.Join(t.TempDir(), "db.mode")
	damaged := []byte("RFS1 not a record at all")
	require.NoError(t, os.WriteFile(path, damaged, 0o600))
	store, err := NewFileModeStore(path)
	require.NoError(t, err)

	var calls int
	s, err := NewSwitch(t.Context(), "db", SwitchSettings{Store: store, Initial: ModeManual, OnChange: func(ModeChange) { calls++ }})
	require.ErrorIs(t, err, ErrModeUnreadable)
	require.ErrorIs(t, err, ErrModeCorrupt)
	require.NotNil(t, s, "NewSwitch returns a usable switch with ErrModeUnreadable")
	assert.Equal(t, ModeManual, s.Mode(), "the switch starts in Initial")

	err = s.Set(t.Context(), ModeAuto, "op", "operator")
	require.ErrorIs(t, err, ErrModeCorrupt, "Set over a damaged record")
	assert.Equal(t, ModeManual, s.Mode(), "a failed Set leaves the mode")
	assert.Empty(t, s.History(), "a failed Set records nothing")
	assert.Zero(t, calls, "a failed Set notifies nobody")
	got, err := os.ReadFile(path)
	require.NoError(t, err)
	assert.Equal(t, damaged, got, "the damaged record is left alone")

	require.NoError(t, os.Rename(path, path+".bad"))
	require.NoError(t, s.Set(t.Context(), ModeAuto, "op", "operator"), "Set once the damaged record is moved aside")
	assert.Equal(t, ModeAuto, s.Mode())
	assert.Equal(t, 1, calls)
}

func TestFileModeStoreReportsDamage(t *testing.T) {
	tests := []struct {
		name string
		body string
	}{
		{"a body that is not JSON", "{"},
		{"an unknown mode", `{"mode":"off","from":"auto","time":"2026-01-01T00:00:00Z"}`},
	}
	for _, tt := range tests {
		t.Run("reports "+tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "db.mode")
			f, err := statefile.New(path)
			require.NoError(t, err)
			_, err = f.Save([]byte(tt.body), 0)
			require.NoError(t, err)

			store, err := NewFileModeStore(path)
			require.NoError(t, err)
			_, _, err = store.Load(t.Context())
			require.ErrorIs(t, err, ErrModeCorrupt, "Load() of %s", tt.name)
			_, err = NewSwitch(t.Context(), "db", SwitchSettings{Store: store})
			require.ErrorIs(t, err, ErrModeUnreadable)
		})
	}
	t.Run("rejects an empty path", func(t *testing.T) {
		_, err := NewFileModeStore("")
		require.Error(t, err)
	})
}

func TestSwitchSetConflict(t *testing.T) {
	path := filepath.Join(t.TempDir(), "db.mode")
	open := func() *Switch {
		store, err := NewFileModeStore(path)
		require.NoError(t, err)
		s, err := NewSwitch(t.Context(), "db", SwitchSettings{Store: store})
		require.NoError(t, err)
		return s
	}
	a, b := open(), open()
	require.NoError(t, a.Set(t.Context(), ModeManual, "op", "first writer"))
	err := b.Set(t.Context(), ModePrimary, "op", "second writer")
	require.ErrorIs(t, err, ErrModeConflict, "Set by a writer that missed a change")
	assert.Equal(t, ModeAuto, b.Mode(), "a conflicting Set leaves the mode")
	assert.Equal(t, ModeManual, open().Mode(), "the first writer's change is kept")

	require.NoError(t, b.Set(t.Context(), ModePrimary, "op", "override"), "Set again after a conflict")
	assert.Equal(t, ModePrimary, b.Mode())
	assert.Equal(t, ModePrimary, open().Mode(), "the override is stored")
}

// flakyStore fails its first Load with a read error, then serves inner.
type flakyStore struct {
	ModeStore
	failed bool
}

func (f *flakyStore) Load(ctx context.Context) (ModeChange, uint64, error) {
	if !f.failed {
		f.failed = true
		return ModeChange{}, 0, errors.New("read error")
	}
	return f.ModeStore.Load(ctx)
}

func TestSwitchRecoversFromUnreadableStore(t *testing.T) {
	path := filepath.Join(t.TempDir(), "db.mode")
	store, err := NewFileModeStore(path)
	require.NoError(t, err)
	first, err := NewSwitch(t.Context(), "db", SwitchSettings{Store: store})
	require.NoError(t, err)
	require.NoError(t, first.Set(t.Context(), ModeManual, "op", "incident"))

	s, err := NewSwitch(t.Context(), "db", SwitchSettings{Store: &flakyStore{ModeStore: store}})
	require.ErrorIs(t, err, ErrModeUnreadable, "NewSwitch when the first read fails")
	assert.Equal(t, ModeAuto, s.Mode())
	require.NoError(t, s.Set(t.Context(), ModePrimary, "op", "operator"), "Set once the store reads again")
	_, version, err := store.Load(t.Context())
	require.NoError(t, err)
	assert.Equal(t, uint64(2), version)
}

// failingStore is a ModeStore whose Save fails with err.
type failingStore struct{ err error }

func (f failingStore) Load(context.Context) (ModeChange, uint64, error) {
	return ModeChange{}, 0, ErrNoMode
}
func (f failingStore) Save(context.Context, ModeChange, uint64) (uint64, error) { return 0, f.err }

func TestSwitchSetSaveFails(t *testing.T) {
	diskFull := errors.New("disk full")
	s, err := NewSwitch(t.Context(), "db", SwitchSettings{Store: failingStore{diskFull}})
	require.NoError(t, err)
	require.ErrorIs(t, s.Set(t.Context(), ModeManual, "op", "incident"), diskFull)
	assert.Equal(t, ModeAuto, s.Mode())
	assert.Empty(t, s.History())
}

func TestSwitchConcurrentSet(t *testing.T) {
	s, err := NewSwitch(t.Context(), "db", SwitchSettings{Store: nil, HistoryLen: 8})
	require.NoError(t, err)
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Go(func() {
			for j := range 100 {
				_ = s.Set(t.Context(), Mode((i+j)%3), "op", "flip")
				_ = s.Mode()
				_ = s.History()
			}
		})
	}
	wg.Wait()
	hist := s.History()
	require.NotEmpty(t, hist)
	assert.LessOrEqual(t, len(hist), 8)
	assert.Equal(t, hist[len(hist)-1].To, s.Mode(), "the last change is the current mode")
	for i := 1; i < len(hist); i++ {
		assert.Equal(t, hist[i-1].To, hist[i].From, "History()[%d].From", i)
	}
}

// pushStore is a ModeWatcher over an inner store whose pushes the test
// makes by calling push, standing in for a shared store's watch.
type pushStore struct {
	ModeStore
	mu      sync.Mutex
	apply   func(ModeChange, uint64) // nil before Watch and after stop
	watches int
}

func (p *pushStore) Watch(apply func(ModeChange, uint64)) func() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.apply = apply
	p.watches++
	return func() {
		p.mu.Lock()
		defer p.mu.Unlock()
		p.apply = nil
	}
}

// push delivers c as the store's version v, if a Switch is watching.
func (p *pushStore) push(c ModeChange, v uint64) {
	p.mu.Lock()
	apply := p.apply
	p.mu.Unlock()
	if apply != nil {
		apply(c, v)
	}
}

func TestSwitchFollowsPushedChanges(t *testing.T) {
	newPushed := func(t *testing.T, inner ModeStore) (*Switch, *pushStore, *[]ModeChange) {
		ps := &pushStore{ModeStore: inner}
		var mu sync.Mutex
		var seen []ModeChange
		s, err := NewSwitch(t.Context(), "db", SwitchSettings{Store: ps, OnChange: func(c ModeChange) {
			mu.Lock()
			defer mu.Unlock()
			seen = append(seen, c)
		}})
		require.NoError(t, err)
		t.Cleanup(s.Close)
		return s, ps, &seen
	}
	fileStore := func(t *testing.T) ModeStore {
		store, err := NewFileModeStore(filepath.Join(t.TempDir(), "db.mode"))
		require.NoError(t, err)
		return store
	}
	other := ModeChange{From: ModeAuto, To: ModeManual, Reason: "incident", Actor: "bob"}

	t.Run("a newer change takes effect and is notified", func(t *testing.T) {
		s, ps, seen := newPushed(t, fileStore(t))
		ps.push(other, 3)
		assert.Equal(t, ModeManual, s.Mode(), "Mode() after a push")
		assert.Equal(t, []ModeChange{other}, s.History())
		assert.Equal(t, []ModeChange{other}, *seen, "OnChange calls")
	})
	t.Run("the switch's own saved change is not applied twice", func(t *testing.T) {
		s, ps, seen := newPushed(t, fileStore(t))
		require.NoError(t, s.Set(t.Context(), ModePrimary, "op", "diagnose"))
		c, v, err := ps.Load(t.Context())
		require.NoError(t, err)
		ps.push(c, v)
		assert.Len(t, s.History(), 1, "History() after its own change comes back")
		assert.Len(t, *seen, 1, "OnChange calls")
	})
	t.Run("an older change and an undefined mode are ignored", func(t *testing.T) {
		s, ps, _ := newPushed(t, fileStore(t))
		ps.push(other, 5)
		ps.push(ModeChange{From: ModeManual, To: ModePrimary}, 4)
		ps.push(ModeChange{From: ModeManual, To: Mode(7)}, 6)
		assert.Equal(t, ModeManual, s.Mode())
		assert.Len(t, s.History(), 1)
	})
	t.Run("a push brings a switch that could not load in sync", func(t *testing.T) {
		inner := fileStore(t)
		ps := &pushStore{ModeStore: &flakyStore{ModeStore: inner}}
		s, err := NewSwitch(t.Context(), "db", SwitchSettings{Store: ps})
		require.ErrorIs(t, err, ErrModeUnreadable)
		require.Equal(t, 1, ps.watches, "NewSwitch watches even when Load fails")
		version, err := inner.Save(t.Context(), other, 0)
		require.NoError(t, err)
		ps.push(other, version)
		assert.Equal(t, ModeManual, s.Mode())
		require.NoError(t, s.Set(t.Context(), ModeAuto, "op", "resolved"),
			"Set after a push uses the pushed version")
	})
	t.Run("Close stops following", func(t *testing.T) {
		s, ps, _ := newPushed(t, fileStore(t))
		s.Close()
		s.Close()
		ps.push(other, 9)
		assert.Equal(t, ModeAuto, s.Mode(), "Mode() after Close and a push")
		require.NoError(t, s.Set(t.Context(), ModePrimary, "op", "diagnose"), "Set after Close")
	})
}

func TestSwitchPushesRaceWithSet(t *testing.T) {
	store, err := NewFileModeStore(filepath.Join(t.TempDir(), "db.mode"))
	require.NoError(t, err)
	ps := &pushStore{ModeStore: store}
	s, err := NewSwitch(t.Context(), "db", SwitchSettings{Store: ps, HistoryLen: 1000})
	require.NoError(t, err)
	defer s.Close()
	var wg sync.WaitGroup
	wg.Go(func() {
		for i := range 100 {
			_ = s.Set(t.Context(), Mode(i%3), "op", "flip")
		}
	})
	wg.Go(func() {
		for range 100 {
			if c, v, err := store.Load(t.Context()); err == nil {
				ps.push(c, v)
			}
			_ = s.Mode()
		}
	})
	wg.Wait()
	c, _, err := store.Load(t.Context())
	require.NoError(t, err)
	assert.Equal(t, c.To, s.Mode(), "Mode() ends at the stored mode")
}

func FuzzModeUnmarshalText(f *testing.F) {
	for _, s := range []string{"auto", "manual", "primary", "MANUAL", "", "off", "\xff"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, text string) {
		m := Mode(-1)
		if err := m.UnmarshalText([]byte(text)); err != nil {
			require.ErrorIs(t, err, ErrUnknownMode, "UnmarshalText(%q)", text)
			assert.Equal(t, Mode(-1), m, "UnmarshalText(%q) changed the mode on error", text)
			return
		}
		out, err := m.MarshalText()
		require.NoError(t, err, "MarshalText after UnmarshalText(%q)", text)
		var again Mode
		require.NoError(t, again.UnmarshalText(out))
		assert.Equal(t, m, again, "UnmarshalText(MarshalText(UnmarshalText(%q)))", text)
	})
}
