package chaos_test

import (
	"context"
	"fmt"
	"log/slog"
	"os"

	"github.com/ringfence/ringfence/chaos"
)

// An injector with a logger records when a test switches an outage on
// and off, so that injected failures in the logs are never taken for real
// ones.
func ExampleInjector_Set_logger() {
	log := slog.New(slog.NewTextHandler(os.Stdout, &slog.HandlerOptions{
		ReplaceAttr: func(_ []string, a slog.Attr) slog.Attr {
			if a.Key == slog.TimeKey {
				return slog.Attr{}
			}
			return a
		},
	}))
	in, err := chaos.New(chaos.Settings{Logger: log})
	if err != nil {
		fmt.Println(err)
		return
	}
	in.Set(chaos.Faults{ErrorRate: 1, Status: 503})
	fmt.Println(in.Inject(context.Background()) != nil)
	in.Clear()
	fmt.Println(in.Inject(context.Background()) != nil)
	// Output:
	// level=WARN msg="chaos faults set" error_rate=1 status=503
	// true
	// level=INFO msg="chaos faults cleared"
	// false
}
