package fallback_test

import (
	"context"
	"fmt"
	"log/slog"
	"os"

	"github.com/ringfence/ringfence/fallback"
)

// exampleLogger logs to standard output without times, so that the
// examples' output is the same on every run.
func exampleLogger() *slog.Logger {
	return slog.New(slog.NewTextHandler(os.Stdout, &slog.HandlerOptions{
		ReplaceAttr: func(_ []string, a slog.Attr) slog.Attr {
			if a.Key == slog.TimeKey {
				return slog.Attr{}
			}
			return a
		},
	}))
}

// A switch with a logger records every mode change an operator makes:
// going manual at Warn, since the chains stop falling back on their own,
// and back to auto at Info.
func ExampleNewSwitch_logger() {
	sw, err := fallback.NewSwitch(context.Background(), "bookings", fallback.SwitchSettings{Logger: exampleLogger()})
	if err != nil {
		fmt.Println(err)
		return
	}
	sw.Set(context.Background(), fallback.ModeManual, "oncall", "bookings API down, incident 17")
	sw.Set(context.Background(), fallback.ModeAuto, "oncall", "recovered")
	// Output:
	// level=WARN msg="fallback mode change" switch=bookings from=auto to=manual reason="bookings API down, incident 17" actor=oncall
	// level=INFO msg="fallback mode change" switch=bookings from=manual to=auto reason=recovered actor=oncall
}
