package fallback

import (
	"fmt"
	"sync"
	"time"
)

// Defaults used for zero fields of a CacheSettings.
const (
	DefaultCacheMaxEntries = 1024
	DefaultCacheMaxAge     = 24 * time.Hour
)

// CacheSettings configures a [Cache]. Every zero field means the default
// its comment states.
type CacheSettings struct {
	// MaxEntries bounds how many keys the cache holds; putting one more
	// evicts the least recently used. Zero means DefaultCacheMaxEntries
	// (1024); it must not be negative.
	MaxEntries int

	// MaxAge is the oldest a value may be and still be served: Get treats
	// an older value as missing and drops it. Zero means
	// DefaultCacheMaxAge (24h); it must not be negative.
	MaxAge time.Duration
}

// Cache is a bounded store of last-known-good values, for a [Stale] step to
// serve when the primary is unavailable. It remembers when each value was
// put, so that Get can report its age and refuse values older than MaxAge.
// When full, it evicts the least recently used key.
//
// A Cache is safe for concurrent use. The zero value is not usable; call
// [NewCache].
type Cache[K comparable, V any] struct {
	maxEntries int
	maxAge     time.Duration

	mu    sync.Mutex
	items map[K]*cacheEntry[K, V] // guarded by mu
	// head is the sentinel of a circular list ordered from most recently
	// used (head.next) to least (head.prev); guarded by mu.
	head cacheEntry[K, V]
}

type cacheEntry[K comparable, V any] struct {
	key        K
	val        V
	put        time.Time
	prev, next *cacheEntry[K, V]
}

// NewCache returns an empty Cache. It returns an error naming the field
// for a negative MaxEntries or MaxAge.
func NewCache[K comparable, V any](settings CacheSettings) (*Cache[K, V], error) {
	if settings.MaxEntries < 0 {
		return nil, fmt.Errorf("fallback: CacheSettings.MaxEntries must be >= 0, got %d", settings.MaxEntries)
	}
	if settings.MaxAge < 0 {
		return nil, fmt.Errorf("fallback: CacheSettings.MaxAge must be >= 0, got %v", settings.MaxAge)
	}
	c := &Cache[K, V]{
		maxEntries: settings.MaxEntries,
		maxAge:     settings.MaxAge,
		items:      make(map[K]*cacheEntry[K, V]),
	}
	if c.maxEntries == 0 {
		c.maxEntries = DefaultCacheMaxEntries
	}
	if c.maxAge == 0 {
		c.maxAge = DefaultCacheMaxAge
	}
	c.head.prev, c.head.next = &c.head, &c.head
	return c, nil
}

// Put stores v under k as of now, replacing any older value, and evicts
// the least recently used key if the cache is full. Replacing a key's
// value does not allocate.
func (c *Cache[K, V]) Put(k K, v V) {
	now := time.Now()
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.items[k]
	switch {
	case ok:
		c.unlink(e)
	case len(c.items) >= c.maxEntries:
		e = c.head.prev // the least recently used entry is reused
		c.unlink(e)
		delete(c.items, e.key)
		e.key = k
		c.items[k] = e
	default:
		e = &cacheEntry[K, V]{key: k}
		c.items[k] = e
	}
	e.val, e.put = v, now
	c.pushFront(e)
}

// Get returns the value stored under k and its age, if it is no older than
// MaxAge. A value that is too old is dropped, and Get reports it missing.
func (c *Cache[K, V]) Get(k K) (v V, age time.Duration, ok bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.items[k]
	if !ok {
		return v, 0, false
	}
	// The clock is read under the lock: read before it, a Put that ran
	// in between would make the age negative.
	age = time.Since(e.put)
	if age > c.maxAge {
		c.unlink(e)
		delete(c.items, k)
		var zero V
		e.val = zero // let the garbage collector have the value
		return v, 0, false
	}
	c.unlink(e)
	c.pushFront(e)
	return e.val, age, true
}

// Delete removes k's value, if any.
func (c *Cache[K, V]) Delete(k K) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if e, ok := c.items[k]; ok {
		c.unlink(e)
		delete(c.items, k)
	}
}

// Len returns the number of keys held, including any too old to be
// served that Get has not yet dropped.
func (c *Cache[K, V]) Len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.items)
}

// unlink removes e from the list. c.mu must be held.
func (c *Cache[K, V]) unlink(e *cacheEntry[K, V]) {
	e.prev.next, e.next.prev = e.next, e.prev
	e.prev, e.next = nil, nil
}

// pushFront makes e the most recently used entry. c.mu must be held.
func (c *Cache[K, V]) pushFront(e *cacheEntry[K, V]) {
	e.prev, e.next = &c.head, c.head.next
	c.head.next.prev = e
	c.head.next = e
}
