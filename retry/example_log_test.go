package retry_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"time"

	"github.com/ringfence/ringfence/retry"
)

// A policy with a logger records each retry at Debug, with the attempt
// that failed, its error and the wait before the next one.
func ExamplePolicy_logger() {
	log := slog.New(slog.NewTextHandler(os.Stdout, &slog.HandlerOptions{
		Level: slog.LevelDebug,
		ReplaceAttr: func(_ []string, a slog.Attr) slog.Attr {
			if a.Key == slog.TimeKey {
				return slog.Attr{}
			}
			return a
		},
	}))
	p := retry.Policy{
		MaxAttempts:     3,
		InitialInterval: time.Millisecond,
		Rand:            func() float64 { return 0.5 }, // waits without jitter, the same every run
		Logger:          log,
	}
	calls := 0
	v, err := retry.Do(context.Background(), p, func(context.Context) (string, error) {
		if calls++; calls < 3 {
			return "", errors.New("connection reset")
		}
		return "ok", nil
	})
	fmt.Println(v, err)
	// Output:
	// level=DEBUG msg=retry attempt=1 wait=1ms error="connection reset"
	// level=DEBUG msg=retry attempt=2 wait=2ms error="connection reset"
	// ok <nil>
}
