package fallback

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel/metric"
)

// Mode is the operator's choice of how a dependency is used. The zero Mode
// is [ModeAuto].
//
// A Mode marshals to and from the text "auto", "manual" and "primary", so it
// can be read from flags (flag.TextVar), environment variables and config
// files.
type Mode int32

// The modes of a [Switch].
const (
	// ModeAuto calls the primary and falls back when it fails. It is the
	// normal mode and the zero Mode.
	ModeAuto Mode = iota
	// ModeManual does not call the primary at all: every call goes straight
	// to the fallbacks. It is the operator's "go manual" during an incident.
	ModeManual
	// ModePrimary calls only the primary and never falls back, so its
	// errors surface; it is meant for diagnosis.
	ModePrimary
)

// Errors about modes and their storage, checked with errors.Is.
var (
	// ErrUnknownMode is wrapped by the error for text that names no Mode,
	// and for a Mode value outside the defined constants.
	ErrUnknownMode = errors.New("fallback: unknown mode")
	// ErrNoMode is returned (possibly wrapped) by [ModeStore.Load] when
	// nothing has been stored yet.
	ErrNoMode = errors.New("fallback: no mode stored")
	// ErrModeConflict is returned (possibly wrapped) by [ModeStore.Save]
	// when the stored version is not the one the caller expected.
	ErrModeConflict = errors.New("fallback: stored mode changed concurrently")
	// ErrModeCorrupt is returned (possibly wrapped) by a [ModeStore] whose
	// stored record is damaged.
	ErrModeCorrupt = errors.New("fallback: stored mode is corrupt")
	// ErrModeUnreadable is wrapped, together with the store's own error, by
	// the error [NewSwitch] returns when its store cannot be read. The
	// Switch it returns alongside is usable; see NewSwitch.
	ErrModeUnreadable = errors.New("fallback: stored mode is unreadable")
)

var modeNames = [...]string{ModeAuto: "auto", ModeManual: "manual", ModePrimary: "primary"}

func (m Mode) valid() bool { return m >= 0 && int(m) < len(modeNames) }

// String returns "auto", "manual" or "primary", or "Mode(n)" for a value
// outside the defined constants.
func (m Mode) String() string {
	if m.valid() {
		return modeNames[m]
	}
	return fmt.Sprintf("Mode(%d)", int32(m))
}

// MarshalText returns the mode's name. It returns an error wrapping
// [ErrUnknownMode] for a value outside the defined constants.
func (m Mode) MarshalText() ([]byte, error) {
	if !m.valid() {
		return nil, fmt.Errorf("%w: %d", ErrUnknownMode, int32(m))
	}
	return []byte(modeNames[m]), nil
}

// UnmarshalText sets m from "auto", "manual" or "primary", in any letter
// case. Other text, including the empty string, leaves m unchanged and
// returns an error wrapping [ErrUnknownMode].
func (m *Mode) UnmarshalText(text []byte) error {
	for i, name := range modeNames {
		if strings.EqualFold(string(text), name) {
			*m = Mode(i)
			return nil
		}
	}
	return fmt.Errorf("%w %q (want auto, manual or primary)", ErrUnknownMode, text)
}

// ModeChange records one change of a [Switch]'s mode.
type ModeChange struct {
	Time   time.Time // when the change was made
	From   Mode      // the mode before
	To     Mode      // the mode after
	Reason string    // why, as given to Set
	Actor  string    // who made the change, as given to Set
}

// DefaultHistoryLen is the number of changes a Switch keeps when
// SwitchSettings.HistoryLen is zero.
const DefaultHistoryLen = 64

// SwitchSettings configures a [Switch]. Every zero field means the default
// its comment states, so SwitchSettings{} gives an in-memory switch that
// starts in [ModeAuto].
type SwitchSettings struct {
	// Initial is the mode the Switch starts in when Store is nil, holds no
	// record yet, or cannot be read. Zero means ModeAuto.
	Initial Mode

	// Store, if not nil, keeps the mode across restarts: NewSwitch loads
	// it, and Set saves every change before it takes effect. Nil keeps the
	// mode in memory only. When Store is also a [ModeWatcher], the Switch
	// follows the changes other writers save there until Close.
	Store ModeStore

	// HistoryLen bounds how many changes History returns; older ones are
	// dropped. Zero means DefaultHistoryLen (64); it must not be negative.
	HistoryLen int

	// OnChange, if not nil, is called after every change Set makes, on
	// the goroutine that called Set, and after every change a
	// [ModeWatcher] store pushes, on the store's goroutine (not for the
	// mode NewSwitch loads). It runs once the change is in effect and no
	// lock of the Switch is held, so it may call any method of the Switch.
	// When changes arrive concurrently their calls to OnChange may arrive
	// out of order; Mode reports the current mode.
	OnChange func(ModeChange)

	// Logger, if not nil, receives one record per change Set makes: Warn
	// when the new mode is ModeManual or ModePrimary, in which the chains
	// no longer fall back on their own, Info when it is ModeAuto; with
	// the switch's name, both modes and the reason. NewSwitch logs at
	// Error when it cannot read Store and starts in Initial. Nil means no
	// logging.
	Logger *slog.Logger

	// MeterProvider, if not nil, gets the switch's mode as the
	// OpenTelemetry gauge ringfence.fallback.mode (see METRICS.md at the
	// root of the module). The switch stays registered with the provider
	// as long as the provider lives. Nil means no instruments.
	MeterProvider metric.MeterProvider
}

// Switch holds the mode of one dependency: whether its chains call the
// primary and fall back ([ModeAuto]), go straight to the fallbacks
// ([ModeManual]), or call only the primary ([ModePrimary]).
//
// Mode is a single atomic load, cheap enough for every call. Set records
// the change in a bounded history, saves it to the SwitchSettings.Store if
// there is one, and then notifies SwitchSettings.OnChange. A store that is
// also a [ModeWatcher] pushes the changes other writers make (for example
// the other instances of a fleet sharing one record), and the Switch
// applies them the same way; Mode stays a local atomic load.
//
// A Switch is safe for concurrent use. The zero value is not usable; call
// [NewSwitch].
type Switch struct {
	name     string
	store    ModeStore
	onChange func(ModeChange)
	histLen  int
	logger   *slog.Logger // SwitchSettings.Logger

	mode atomic.Int32 // the current Mode

	stopWatch func() // ends a ModeWatcher's pushes; nil without one
	closeOnce sync.Once

	setMu sync.Mutex // serialises Set and pushed changes, including Set's store calls
	// version is the store version last loaded or saved, and synced says
	// whether it can be trusted: false after NewSwitch could not read the
	// store or Save reported a conflict. Both are guarded by setMu.
	version uint64
	synced  bool

	mu      sync.Mutex   // guards history
	history []ModeChange // ring of at most histLen changes
	next    int          // index in history of the oldest change once it is full
}

// NewSwitch returns a Switch for the dependency called name. ctx bounds
// the store's Load.
//
// When settings.Store holds a record, the Switch starts in the stored mode,
// and the stored change is the first entry of its history. When the store
// holds nothing yet, it starts in settings.Initial.
//
// When the store cannot be read (an I/O error or a damaged record),
// NewSwitch fails safe: it returns a usable Switch in settings.Initial
// together with an error wrapping both [ErrModeUnreadable] and the store's
// error. The operator's last choice is unknown then, and settings.Initial
// (by default ModeAuto, which calls the primary while it works and falls
// back when it fails) is the mode the deployment declared safe to run in
// without one. A caller that prefers to keep running checks
// errors.Is(err, ErrModeUnreadable) and carries on with the Switch; one
// that prefers not to start returns the error. Nothing is written to the
// store: the damaged record stays for inspection, and Set reports the
// store's error until the record is repaired or moved aside.
//
// When settings.Store is a [ModeWatcher], NewSwitch asks it to push
// changes (even when the Load failed, so that the Switch catches up once
// the store reads again); call Close to stop following them.
//
// NewSwitch returns a nil Switch and an error naming the field for invalid
// settings.
func NewSwitch(ctx context.Context, name string, settings SwitchSettings) (*Switch, error) {
	if !settings.Initial.valid() {
		return nil, fmt.Errorf("fallback: SwitchSettings.Initial must be auto, manual or primary, got %d: %w",
			int32(settings.Initial), ErrUnknownMode)
	}
	if settings.HistoryLen < 0 {
		return nil, fmt.Errorf("fallback: SwitchSettings.HistoryLen must be >= 0, got %d", settings.HistoryLen)
	}
	s := &Switch{
		name:     name,
		store:    settings.Store,
		onChange: settings.OnChange,
		histLen:  settings.HistoryLen,
	}
	if s.histLen == 0 {
		s.histLen = DefaultHistoryLen
	}
	s.logger = settings.Logger
	if err := s.instrument(settings.MeterProvider); err != nil {
		return nil, err
	}
	s.mode.Store(int32(settings.Initial))
	if s.store == nil {
		return s, nil
	}
	err := s.load(ctx, settings.Initial)
	if w, ok := s.store.(ModeWatcher); ok {
		s.stopWatch = w.Watch(s.apply)
	}
	return s, err
}

// load starts s in the stored mode, or reports why it starts in initial.
// It runs before any other goroutine knows s.
func (s *Switch) load(ctx context.Context, initial Mode) error {
	c, version, err := s.store.Load(ctx)
	switch {
	case errors.Is(err, ErrNoMode):
		s.synced = true
		return nil
	case err != nil:
		return s.logUnreadable(fmt.Errorf("%w: switch %q starts in %v: %w", ErrModeUnreadable, s.name, initial, err))
	case !c.To.valid():
		return s.logUnreadable(fmt.Errorf("%w: switch %q starts in %v: %w: stored mode %d",
			ErrModeUnreadable, s.name, initial, ErrModeCorrupt, int32(c.To)))
	}
	s.version, s.synced = version, true
	s.mode.Store(int32(c.To))
	s.record(c)
	return nil
}

// apply takes in a change that a ModeWatcher store pushes. A change whose
// version the Switch already has (its own Set, or an older record) and a
// change to an undefined mode are ignored.
func (s *Switch) apply(c ModeChange, version uint64) {
	if !c.To.valid() {
		return
	}
	s.setMu.Lock()
	if s.synced && version <= s.version {
		s.setMu.Unlock()
		return
	}
	s.version, s.synced = version, true
	s.mode.Store(int32(c.To))
	s.record(c)
	s.setMu.Unlock()
	s.logChange(c)

	if s.onChange != nil {
		s.onChange(c)
	}
}

// Close stops following the changes a [ModeWatcher] store pushes and waits
// until the store has stopped calling the Switch. The Switch keeps its mode
// and stays usable: Mode and Set work as before. Close is needed only with
// a ModeWatcher store; calling it more than once, or without one, does
// nothing.
func (s *Switch) Close() {
	s.closeOnce.Do(func() {
		if s.stopWatch != nil {
			s.stopWatch()
		}
	})
}

// Name returns the name given to NewSwitch.
func (s *Switch) Name() string { return s.name }

// Mode returns the current mode. It is a single atomic load.
func (s *Switch) Mode() Mode { return Mode(s.mode.Load()) }

// Set changes the mode to m, recording actor (who makes the change) and
// reason in the history and the store, and returns once the change is in
// effect and, if the Switch has a store, saved there. ctx bounds the
// store's calls. Setting the mode the Switch is already in does nothing.
//
// Set is all or nothing. If the store fails, Set returns its error
// (wrapping [ErrModeConflict] when another writer changed the record since
// this Switch last loaded or saved it, [ErrModeCorrupt] when the stored
// record is damaged) and the Switch is left exactly as it was: same mode,
// same history, no notification. So the mode in effect is always the one
// a restart comes back to.
//
// After a conflict, or when NewSwitch could not read the store, Set first
// reads the stored version again, so calling Set once more replaces the
// other writer's record: a deliberate override. A damaged record is never
// replaced; it must be repaired or moved aside.
//
// Set returns an error wrapping [ErrUnknownMode] for a Mode outside the
// defined constants.
func (s *Switch) Set(ctx context.Context, m Mode, actor, reason string) error {
	if !m.valid() {
		return fmt.Errorf("fallback: switch %q: set mode %d: %w", s.name, int32(m), ErrUnknownMode)
	}
	s.setMu.Lock()
	from := s.Mode()
	if from == m {
		s.setMu.Unlock()
		return nil
	}
	c := ModeChange{Time: time.Now(), From: from, To: m, Reason: reason, Actor: actor}
	if s.store != nil {
		if err := s.save(ctx, c); err != nil {
			s.setMu.Unlock()
			return fmt.Errorf("fallback: switch %q stays %v: %w", s.name, from, err)
		}
	}
	s.mode.Store(int32(m))
	s.record(c)
	s.setMu.Unlock()
	s.logChange(c)

	if s.onChange != nil {
		s.onChange(c)
	}
	return nil
}

// save stores c, first learning the stored version if it is not known.
// s.setMu must be held.
func (s *Switch) save(ctx context.Context, c ModeChange) error {
	if !s.synced {
		_, version, err := s.store.Load(ctx)
		switch {
		case errors.Is(err, ErrNoMode):
			version = 0
		case err != nil:
			return err
		}
		s.version, s.synced = version, true
	}
	version, err := s.store.Save(ctx, c, s.version)
	if errors.Is(err, ErrModeConflict) {
		s.synced = false
	}
	if err != nil {
		return err
	}
	s.version = version
	return nil
}

// record appends c to the history, dropping the oldest change when full.
// s.mu must not be held.
func (s *Switch) record(c ModeChange) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.history) < s.histLen {
		s.history = append(s.history, c)
		return
	}
	s.history[s.next] = c
	s.next = (s.next + 1) % s.histLen
}

// History returns the recorded changes, oldest first: at most
// SwitchSettings.HistoryLen of them, starting with the stored change that
// NewSwitch loaded, if any. The slice is the caller's to keep.
func (s *Switch) History() []ModeChange {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]ModeChange, 0, len(s.history))
	out = append(out, s.history[s.next:]...)
	return append(out, s.history[:s.next]...)
}
