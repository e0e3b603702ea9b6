package etcd

import (
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"
)

// Defaults of [Settings].
const (
	// DefaultPrefix is the key prefix when Settings.Prefix is empty.
	DefaultPrefix = "/ringfence/"
	// DefaultStaleAfter is Settings.StaleAfter when it is zero.
	DefaultStaleAfter = 3 * time.Second
	// DefaultMaxRecordSize is Settings.MaxRecordSize when it is zero.
	DefaultMaxRecordSize = 64 << 10
	// DefaultRequestTimeout is Settings.RequestTimeout when it is zero.
	DefaultRequestTimeout = 2 * time.Second
)

// FormatVersion is the version of the JSON records this package writes.
// A record with another version was written by an incompatible release and
// is reported as damaged, never trusted.
const FormatVersion = 1

// Errors of this package, checked with errors.Is.
var (
	// ErrClosed is returned by the methods of an object after its Close.
	ErrClosed = errors.New("etcd: closed")
	// ErrBadRecord is wrapped by the error for a record in etcd that is
	// not JSON of this package, has another FormatVersion, or is larger
	// than Settings.MaxRecordSize. The stores wrap their package's
	// corruption sentinel with it as well.
	ErrBadRecord = errors.New("etcd: bad record")
)

// Settings configures the objects of this package. Every zero field means
// the default its comment states, so Settings{} is sensible.
type Settings struct {
	// Prefix is put before every key this package reads or writes, so that
	// several deployments can share one etcd cluster. Empty means
	// DefaultPrefix ("/ringfence/"); otherwise it must end with "/".
	Prefix string

	// StaleAfter is how long an object may go without hearing from etcd
	// before it reports its fleet view as stale (and logs so). The object
	// asks etcd for a sign of life three times per StaleAfter. Zero means
	// DefaultStaleAfter (3 s); it must not be negative.
	StaleAfter time.Duration

	// RequestTimeout bounds each request the object's own goroutine makes
	// (reads after a reconnect, sign-of-life requests), and each read and
	// write of a RolloutStore and of FleetEvidence.Merge, which a
	// rollout.Rollout makes with no deadline of its own. Other calls a
	// user makes are bounded by their context instead. Zero means
	// DefaultRequestTimeout (2 s); it must not be negative.
	RequestTimeout time.Duration

	// MaxRecordSize is the largest record, in bytes, the object writes or
	// trusts; a larger one read from etcd is reported as damaged. Zero
	// means DefaultMaxRecordSize (64 KiB); it must not be negative.
	MaxRecordSize int

	// Logger receives a line when the fleet view goes stale, when it is
	// fresh again, and when a damaged record is read. Nil means
	// slog.Default().
	Logger *slog.Logger

	// OnFreshness, if not nil, is called with the new [Freshness] each time
	// the fleet view goes stale or becomes fresh again, on the object's
	// goroutine, with no lock held.
	OnFreshness func(Freshness)
}

// withDefaults checks s and fills its zero fields; what names the caller.
func (s Settings) withDefaults(what string) (Settings, error) {
	switch {
	case s.Prefix != "" && !strings.HasSuffix(s.Prefix, "/"):
		return s, fmt.Errorf("etcd: %s: Settings.Prefix must end with \"/\", got %q", what, s.Prefix)
	case s.StaleAfter < 0:
		return s, fmt.Errorf("etcd: %s: Settings.StaleAfter must be >= 0, got %v", what, s.StaleAfter)
	case s.RequestTimeout < 0:
		return s, fmt.Errorf("etcd: %s: Settings.RequestTimeout must be >= 0, got %v", what, s.RequestTimeout)
	case s.MaxRecordSize < 0:
		return s, fmt.Errorf("etcd: %s: Settings.MaxRecordSize must be >= 0, got %d", what, s.MaxRecordSize)
	}
	if s.Prefix == "" {
		s.Prefix = DefaultPrefix
	}
	if s.StaleAfter == 0 {
		s.StaleAfter = DefaultStaleAfter
	}
	if s.RequestTimeout == 0 {
		s.RequestTimeout = DefaultRequestTimeout
	}
	if s.MaxRecordSize == 0 {
		s.MaxRecordSize = DefaultMaxRecordSize
	}
	if s.Logger == nil {
		s.Logger = slog.Default()
	}
	return s, nil
}

// checkName rejects a name that would change the key layout.
func checkName(what, name string) error {
	if name == "" || strings.ContainsAny(name, "/\x00") {
		return fmt.Errorf("etcd: %s name must be non-empty without \"/\", got %q", what, name)
	}
	return nil
}

// Freshness says how current an object's view of the fleet's state in
// etcd is. While etcd is unreachable the object keeps acting on its last
// known state, and Freshness says since when that state may be behind.
type Freshness struct {
	// Stale is true while the object has not heard from etcd for
	// Settings.StaleAfter, and before its first successful read.
	Stale bool
	// Since is when the view went stale (Stale) or became fresh again.
	Since time.Time
	// Heard is the last time etcd answered; zero before the first answer.
	Heard time.Time
	// Revision is the etcd revision the view reflects.
	Revision int64
	// Err is the last error met while following etcd, or nil. It stays
	// set while Stale and is cleared when the view is fresh again.
	Err error
}

// Age returns how far behind the view may be at now: the time since etcd
// last answered (since the view went stale if it never answered), or 0
// for a view that is not stale.
func (f Freshness) Age(now time.Time) time.Duration {
	switch {
	case !f.Stale:
		return 0
	case f.Heard.IsZero():
		return now.Sub(f.Since)
	}
	return now.Sub(f.Heard)
}
