package fallback

import (
	"fmt"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestNewCacheRejectsBadSettings(t *testing.T) {
	tests := []struct {
		name string
		s    CacheSettings
	}{
		{"negative MaxEntries", CacheSettings{MaxEntries: -1}},
		{"negative MaxAge", CacheSettings{MaxAge: -time.Second}},
	}
	for _, tt := range tests {
		t.Run("rejects "+tt.name, func(t *testing.T) {
			c, err := NewCache[string, int](tt.s)
			require.Error(t, err, "NewCache(%+v)", tt.s)
			assert.Nil(t, c)
		})
	}
}

func TestCacheEvictsLeastRecentlyUsed(t *testing.T) {
	c, err := NewCache[string, int](CacheSettings{MaxEntries: 3})
	require.NoError(t, err)
	c.Put("a", 1)
	c.Put("b", 2)
	c.Put("c", 3)
	_, _, ok := c.Get("a") // a is now the most recently used
	require.True(t, ok)
	c.Put("b", 20) // so is b, with a new value
	c.Put("d", 4)  // c is the least recently used and goes

	assert.Equal(t, 3, c.Len())
	for _, tt := range []struct {
		key    string
		want   int
		wantOK bool
	}{{"a", 1, true}, {"b", 20, true}, {"c", 0, false}, {"d", 4, true}} {
		got, _, ok := c.Get(tt.key)
		assert.Equal(t, tt.wantOK, ok, "Get(%q) ok", tt.key)
		assert.Equal(t, tt.want, got, "Get(%q)", tt.key)
	}

	c.Delete("a")
	c.Delete("nothing")
	_, _, ok = c.Get("a")
	assert.False(t, ok, "Get(a) after Delete(a)")
	assert.Equal(t, 2, c.Len())
}

func TestCacheStaysWithinMaxEntries(t *testing.T) {
	for _, limit := range []int{1, 2, 10} {
		t.Run(fmt.Sprintf("holds at most %d keys", limit), func(t *testing.T) {
			c, err := NewCache[int, int](CacheSettings{MaxEntries: limit})
			require.NoError(t, err)
			for i := range 100 {
				c.Put(i, i)
				assert.LessOrEqual(t, c.Len(), limit)
			}
			for i := range 100 {
				_, _, ok := c.Get(i)
				assert.Equal(t, i >= 100-limit, ok, "Get(%d) ok", i)
			}
		})
	}
	t.Run("defaults to DefaultCacheMaxEntries", func(t *testing.T) {
		c, err := NewCache[int, int](CacheSettings{})
		require.NoError(t, err)
		for i := range DefaultCacheMaxEntries + 10 {
			c.Put(i, i)
		}
		assert.Equal(t, DefaultCacheMaxEntries, c.Len())
	})
}

func TestCacheMaxAge(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c, err := NewCache[string, string](CacheSettings{MaxAge: time.Hour})
		require.NoError(t, err)
		c.Put("k", "v1")
		time.Sleep(59 * time.Minute)
		got, age, ok := c.Get("k")
		require.True(t, ok, "Get(k) after 59m")
		assert.Equal(t, "v1", got)
		assert.Equal(t, 59*time.Minute, age)

		c.Put("k", "v2") // a new value is young again
		time.Sleep(time.Hour)
		got, age, ok = c.Get("k")
		require.True(t, ok, "Get(k) exactly MaxAge after Put")
		assert.Equal(t, "v2", got)
		assert.Equal(t, time.Hour, age)

		time.Sleep(time.Nanosecond)
		_, _, ok = c.Get("k")
		assert.False(t, ok, "Get(k) once older than MaxAge")
		assert.Zero(t, c.Len(), "an expired value is dropped")
	})
	t.Run("defaults to DefaultCacheMaxAge", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			c, err := NewCache[string, string](CacheSettings{})
			require.NoError(t, err)
			c.Put("k", "v")
			time.Sleep(DefaultCacheMaxAge)
			_, _, ok := c.Get("k")
			assert.True(t, ok, "Get(k) at DefaultCacheMaxAge")
			time.Sleep(time.Second)
			_, _, ok = c.Get("k")
			assert.False(t, ok, "Get(k) after DefaultCacheMaxAge")
		})
	})
}

func TestCacheConcurrentUse(t *testing.T) {
	c, err := NewCache[int, int](CacheSettings{MaxEntries: 16})
	require.NoError(t, err)
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range 1000 {
				k := (g*7 + i) % 40
				c.Put(k, k)
				if v, _, ok := c.Get(k); ok {
					assert.Equal(t, k, v, "Get(%d)", k)
				}
				if i%10 == 0 {
					c.Delete(k)
				}
			}
		})
	}
	wg.Wait()
	assert.LessOrEqual(t, c.Len(), 16)
}
