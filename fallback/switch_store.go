package fallback

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/ringfence/ringfence/internal/statefile"
)

// ModeStore keeps a [Switch]'s last change so that the operator's choice
// survives a restart. It holds one versioned record; Save replaces it only
// if its version is still the one the caller last saw, so that two writers
// cannot silently undo each other.
//
// [FileModeStore] keeps the record in a local file. An implementation that
// shares one record across a fleet plugs in the same way, and can push the
// changes other writers make by also implementing [ModeWatcher].
//
// Both methods take a context first: a store that crosses a network
// returns the context's error once it is done, rather than hang.
// Implementations must be safe for concurrent use.
type ModeStore interface {
	// Load returns the stored change and its version, a positive number.
	// It returns an error wrapping ErrNoMode when nothing is stored yet and
	// one wrapping ErrModeCorrupt when the stored record is damaged.
	Load(ctx context.Context) (c ModeChange, version uint64, err error)

	// Save stores c if the stored version is expect (0 when nothing is
	// stored yet) and returns the new version. It returns an error
	// wrapping ErrModeConflict when the stored version differs and one
	// wrapping ErrModeCorrupt when the stored record is damaged; it never
	// overwrites a damaged record. When Save returns nil, c is durable.
	Save(ctx context.Context, c ModeChange, expect uint64) (version uint64, err error)
}

// ModeWatcher is implemented by a [ModeStore] that learns of changes saved
// by other writers, such as a store shared by a fleet. [NewSwitch] checks
// its store for it, so the Switch follows those changes without a call of
// its own; Switch.Mode stays a local atomic load.
type ModeWatcher interface {
	// Watch arranges for apply to be called with every change the store
	// learns of and its version, and returns a function that stops the
	// calls and returns only once no call is running or will start. The
	// store calls apply from its own goroutine, one call at a time, in
	// increasing version order, holding none of its locks, and should
	// also deliver the latest record it already knows: a Switch ignores a
	// version it has. A change Save stores may come back through apply.
	Watch(apply func(c ModeChange, version uint64)) (stop func())
}

// FileModeStore is a [ModeStore] that keeps the record in one file,
// replaced atomically and checked with a checksum, so a crash leaves either
// the old record or the new one and damage is reported, never read as a
// mode.
//
// Its compare-and-swap holds between the goroutines of one process; two
// processes must not share the file. A FileModeStore is safe for
// concurrent use. The zero value is not usable; call [NewFileModeStore].
type FileModeStore struct {
	f *statefile.File
}

// NewFileModeStore returns a store that keeps the record at path. It does
// not touch the file system; path's directory must exist by the first Save.
// It returns an error if path is empty.
func NewFileModeStore(path string) (*FileModeStore, error) {
	f, err := statefile.New(path)
	if err != nil {
		return nil, fmt.Errorf("fallback: mode store: %w", err)
	}
	return &FileModeStore{f: f}, nil
}

// modeRecord is the file's JSON body.
type modeRecord struct {
	Mode   Mode      `json:"mode"`
	From   Mode      `json:"from"`
	Reason string    `json:"reason,omitempty"`
	Actor  string    `json:"actor,omitempty"`
	Time   time.Time `json:"time"`
}

// Load implements [ModeStore]. It returns ctx's error, reading nothing,
// if ctx is already done.
func (s *FileModeStore) Load(ctx context.Context) (ModeChange, uint64, error) {
	if err := ctx.Err(); err != nil {
		return ModeChange{}, 0, fmt.Errorf("fallback: mode store: %w", err)
	}
	data, version, err := s.f.Load()
	switch {
	case errors.Is(err, statefile.ErrNotFound):
		return ModeChange{}, 0, fmt.Errorf("%w: %w", ErrNoMode, err)
	case errors.Is(err, statefile.ErrCorrupt):
		return ModeChange{}, 0, fmt.Errorf("%w: %w", ErrModeCorrupt, err)
	case err != nil:
		return ModeChange{}, 0, err
	}
	var r modeRecord
	if err := json.Unmarshal(data, &r); err != nil {
		return ModeChange{}, 0, fmt.Errorf("%w: %s: %w", ErrModeCorrupt, s.f.Path(), err)
	}
	return ModeChange{Time: r.Time, From: r.From, To: r.Mode, Reason: r.Reason, Actor: r.Actor}, version, nil
}

// Save implements [ModeStore]. It returns ctx's error, writing nothing, if
// ctx is already done.
func (s *FileModeStore) Save(ctx context.Context, c ModeChange, expect uint64) (uint64, error) {
	if err := ctx.Err(); err != nil {
		return 0, fmt.Errorf("fallback: mode store: %w", err)
	}
	data, err := json.Marshal(modeRecord{Mode: c.To, From: c.From, Reason: c.Reason, Actor: c.Actor, Time: c.Time})
	if err != nil {
		return 0, fmt.Errorf("fallback: mode store: %w", err)
	}
	version, err := s.f.Save(data, expect)
	switch {
	case errors.Is(err, statefile.ErrConflict):
		return 0, fmt.Errorf("%w: %w", ErrModeConflict, err)
	case errors.Is(err, statefile.ErrCorrupt):
		return 0, fmt.Errorf("%w: %w", ErrModeCorrupt, err)
	case err != nil:
		return 0, err
	}
	return version, nil
}
