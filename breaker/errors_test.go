package breaker

import (
	"context"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestOpenErrorSaysWhenItIsForced(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := mustNew(t, Settings{ConsecutiveFailures: 1, OpenTimeout: time.Second})
		trip(t, b)
		_, err := Do(context.Background(), b, ok)
		var oe *OpenError
		require.ErrorAs(t, err, &oe, "Do() when open")
		assert.False(t, oe.Forced(), "OpenError.Forced() when open")
		assert.Equal(t, time.Second, oe.RetryAfter(), "OpenError.RetryAfter() when open")

		b.ForceOpen("incident")
		_, err = Do(context.Background(), b, ok)
		require.ErrorAs(t, err, &oe, "Do() when forced open")
		assert.True(t, oe.Forced(), "OpenError.Forced() when forced open")
		assert.Zero(t, oe.RetryAfter(), "OpenError.RetryAfter() when forced open promises no moment")
	})
}

func TestOpenErrorMessage(t *testing.T) {
	cases := []struct {
		err  OpenError
		want string
	}{
		{OpenError{Name: "payments", State: Open}, "breaker: open (payments is open)"},
		{OpenError{Name: "payments", State: HalfOpen}, "breaker: open (payments is half-open)"},
		{OpenError{Name: "payments", State: ForcedOpen}, "breaker: open (payments is forced-open)"},
		{OpenError{Name: "payments", State: Closed}, "breaker: open (payments is ramping up)"},
		{OpenError{State: Open}, "breaker: open"},
		{OpenError{State: HalfOpen}, "breaker: open (half-open)"},
		{OpenError{State: ForcedOpen}, "breaker: open (forced-open)"},
		{OpenError{State: Closed}, "breaker: open (ramping up)"},
	}
	for _, c := range cases {
		assert.Equal(t, c.want, c.err.Error(), "OpenError%+v.Error()", c.err)
	}
}
