package retry_test

import (
	"context"
	"testing"
	"testing/synctest"
	"time"

	"github.com/ringfence/ringfence/retry"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// With very many attempts left, the remaining retries could wait longer than
// a Duration can hold; a short requested delay must still be honoured.
func TestDoHonoursRetryAfterWithVeryManyAttempts(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		fn, calls := failing(1, &delayErr{time.Second})
		start := time.Now()
		v, err := retry.Do(context.Background(), retry.Policy{MaxAttempts: 1_000_000_000, Rand: fixed(0.5)}, fn)
		require.NoError(t, err, "Do with MaxAttempts 1e9")
		assert.Equal(t, 2, v, "Do value")
		assert.Equal(t, 2, *calls, "calls of fn")
		assert.Equal(t, time.Second, time.Since(start), "time spent in Do")
	})
}
