package etcd

import (
	"sync"
	"time"
)

// view tracks how fresh an object's view of etcd is: when etcd last
// answered, the last error, and whether the view is stale (etcd silent for
// Settings.StaleAfter). It logs a line when the view goes stale and when
// it is fresh again, and calls Settings.OnFreshness at both moments, with
// no lock held. Its methods are safe for concurrent use.
type view struct {
	what string // names the object in logs
	s    Settings

	mu          sync.Mutex // guards fr and loggedStale
	fr          Freshness
	loggedStale bool // a stale line was logged and no fresh line since
}

// init starts the view: fresh if etcd has just answered (answered), stale
// with errNoAnswer otherwise.
func (f *view) init(what string, s Settings, answered bool) {
	now := time.Now()
	f.what, f.s = what, s
	f.fr = Freshness{Stale: true, Since: now, Err: errNoAnswer}
	if answered {
		f.fr = Freshness{Since: now, Heard: now}
	}
}

// freshness returns the current Freshness.
func (f *view) freshness() Freshness {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.fr
}

// heard records that etcd answered at revision rev. It reports whether
// the view had been reported stale, so the caller should read again.
func (f *view) heard(rev int64) (wasStale bool) {
	now := time.Now()
	f.mu.Lock()
	wasStale = f.fr.Stale
	f.fr.Heard, f.fr.Err = now, nil
	if rev > f.fr.Revision {
		f.fr.Revision = rev
	}
	var logged bool
	if wasStale {
		f.fr.Stale, f.fr.Since = false, now
		logged, f.loggedStale = f.loggedStale, false
	}
	fr := f.fr
	f.mu.Unlock()
	if logged {
		f.s.Logger.Info("ringfence: fleet view is current again", "object", f.what, "revision", rev)
	}
	if wasStale && f.s.OnFreshness != nil {
		f.s.OnFreshness(fr)
	}
	return wasStale
}

// failed records err as the last error.
func (f *view) failed(err error) {
	f.mu.Lock()
	f.fr.Err = err
	f.mu.Unlock()
}

// check marks the view stale once etcd has been silent for StaleAfter,
// and reports whether it is stale.
func (f *view) check(now time.Time) (stale bool) {
	f.mu.Lock()
	if f.fr.Stale && f.loggedStale || now.Sub(f.lastHeard()) <= f.s.StaleAfter {
		stale = f.fr.Stale
		f.mu.Unlock()
		return stale
	}
	changed := !f.fr.Stale
	if changed {
		f.fr.Stale, f.fr.Since = true, now
	}
	f.loggedStale = true
	fr := f.fr
	f.mu.Unlock()
	f.s.Logger.Warn("ringfence: fleet view is stale; keeping the last known state",
		"object", f.what, "since", fr.Since, "last_heard", fr.Heard, "error", fr.Err)
	if changed && f.s.OnFreshness != nil {
		f.s.OnFreshness(fr)
	}
	return true
}

// lastHeard is when etcd last answered, or when the follower started if
// it never did. f.mu must be held.
func (f *view) lastHeard() time.Time {
	if f.fr.Heard.IsZero() {
		return f.fr.Since
	}
	return f.fr.Heard
}
