package rollout

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/ringfence/ringfence/internal/statefile"
)

// Errors of a Store, checked with errors.Is.
var (
	// ErrNoState means the store holds no record yet.
	ErrNoState = errors.New("rollout: no stored state")
	// ErrCorruptState means the store holds a record that cannot be read.
	ErrCorruptState = errors.New("rollout: stored state is corrupt")
	// ErrConflict means Save was given a version other than the stored one.
	ErrConflict = errors.New("rollout: stored state version conflict")
)

// Counts are one variant's observation counts, as stored in a Record.
type Counts struct {
	Samples uint64 `json:"samples"` // observations
	Errors  uint64 `json:"errors"`  // observations that carried an error
}

// Record is the durable state of a rollout: enough for a restarted process
// to resume at the same stage with the remaining bake time.
type Record struct {
	// Name and Salt are the plan's; Stages and Percent describe its stage
	// list and current stage, so a changed plan is detected on resume.
	Name    string  `json:"name"`
	Salt    string  `json:"salt"`
	Stages  int     `json:"stages"`
	Stage   int     `json:"stage"`
	Percent float64 `json:"percent"`

	// State is the lifecycle state and Reason the reason of the last
	// transition.
	State  State  `json:"state"`
	Reason string `json:"reason"`

	// Elapsed is the running time spent in the current stage, which
	// counts towards its bake; DeadlineFrom is the elapsed time at which
	// the stage's deadline started to run.
	Elapsed      time.Duration `json:"elapsed"`
	DeadlineFrom time.Duration `json:"deadline_from"`

	// Baseline and Canary are the stage's observation counts.
	Baseline Counts `json:"baseline"`
	Canary   Counts `json:"canary"`

	// Evidence is the stage's full evidence, from which a resumed stage
	// restores its counts; a record without it (written before it existed)
	// resumes with Baseline and Canary as calls observed without a key.
	Evidence *Evidence `json:"evidence,omitempty"`

	// Saved is when the record was saved.
	Saved time.Time `json:"saved"`
}

// Store keeps a rollout's Record across restarts with compare-and-swap
// semantics, so that a store shared by a fleet can later refuse a writer
// that did not see the latest record.
//
// Load returns the record and its version, or an error wrapping ErrNoState
// when there is none, or ErrCorruptState when it cannot be read. Save
// writes r if the stored version is expect (0 when none is stored) and
// returns the new version; it returns an error wrapping ErrConflict when
// the version differs. Implementations must be safe for concurrent use.
// A Rollout calls its Store while holding its own mutex, so that saves
// happen in the order of the transitions they record; a Store must not
// call back into the Rollout.
type Store interface {
	Load(ctx context.Context) (r Record, version uint64, err error)
	Save(ctx context.Context, r Record, expect uint64) (version uint64, err error)
}

// FormatVersion is the version of the JSON document FileStore writes.
const FormatVersion = 1

// FileStore is a Store that keeps the record in one file, written
// atomically (temporary file, fsync, rename, fsync of the directory) with a
// CRC-32C checksum and a version number for compare-and-swap. The record is
// a JSON document {"format": 1, "record": {...}}.
//
// Compare-and-swap holds between the goroutines of one process; two
// processes must not share a file. A FileStore is safe for concurrent use;
// create one with [NewFileStore].
type FileStore struct {
	f *statefile.File
}

// NewFileStore returns a FileStore keeping its record at path. It does not
// touch the file system; the directory must exist by the first Save.
func NewFileStore(path string) (*FileStore, error) {
	f, err := statefile.New(path)
	if err != nil {
		return nil, fmt.Errorf("rollout: %w", err)
	}
	return &FileStore{f: f}, nil
}

type fileDoc struct {
	Format int     `json:"format"`
	Record *Record `json:"record"`
}

// Load implements Store. A missing file wraps ErrNoState; a damaged file,
// an unknown format or a document without a record wraps ErrCorruptState.
func (s *FileStore) Load(ctx context.Context) (Record, uint64, error) {
	data, version, err := s.f.Load()
	switch {
	case errors.Is(err, statefile.ErrNotFound):
		return Record{}, 0, fmt.Errorf("%w: %w", ErrNoState, err)
	case errors.Is(err, statefile.ErrCorrupt):
		return Record{}, 0, fmt.Errorf("%w: %w", ErrCorruptState, err)
	case err != nil:
		return Record{}, 0, fmt.Errorf("rollout: %w", err)
	}
	var doc fileDoc
	if err := json.Unmarshal(data, &doc); err != nil {
		return Record{}, 0, fmt.Errorf("%w: %s: %v", ErrCorruptState, s.f.Path(), err)
	}
	if doc.Format != FormatVersion {
		return Record{}, 0, fmt.Errorf("%w: %s: format %d, want %d", ErrCorruptState, s.f.Path(), doc.Format, FormatVersion)
	}
	if doc.Record == nil {
		return Record{}, 0, fmt.Errorf("%w: %s: no record", ErrCorruptState, s.f.Path())
	}
	return *doc.Record, version, nil
}

// Save implements Store. When it returns nil the record is on stable
// storage. A damaged file is never overwritten: Save returns an error
// wrapping ErrCorruptState.
func (s *FileStore) Save(ctx context.Context, r Record, expect uint64) (uint64, error) {
	data, err := json.Marshal(fileDoc{Format: FormatVersion, Record: &r})
	if err != nil {
		return 0, fmt.Errorf("rollout: encode state: %w", err)
	}
	v, err := s.f.Save(data, expect)
	switch {
	case errors.Is(err, statefile.ErrConflict):
		return 0, fmt.Errorf("%w: %w", ErrConflict, err)
	case errors.Is(err, statefile.ErrCorrupt):
		return 0, fmt.Errorf("%w: %w", ErrCorruptState, err)
	case err != nil:
		return 0, fmt.Errorf("rollout: %w", err)
	}
	return v, nil
}
