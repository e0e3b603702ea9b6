package fallback_test

import (
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
	sw, err := fallback.NewSwitch("bookings", fallback.SwitchSettings{Logger: exampleLogger()})
	if err != nil {
		fmt.Println(err)
		return
	}
	sw.Set(fallback.ModeManual, "bookings API down, incident 17")
	sw.Set(fallback.ModeAuto, "recovered")
	// Output:
	// level=WARN msg="fallback mode change" switch=bookings from=auto to=manual reason="bookings API down, incident 17"
	// level=INFO msg="fallback mode change" switch=bookings from=manual to=auto reason=recovered
}
