package rollout_test

import (
	"context"
	"fmt"
	"log/slog"
	"os"

	"github.com/ringfence/ringfence/rollout"
)

// A rollout with a logger records every transition: Info while it moves
// forward, Warn when it pauses or rolls back.
func ExampleNew_logger() {
	log := slog.New(slog.NewTextHandler(os.Stdout, &slog.HandlerOptions{
		ReplaceAttr: func(_ []string, a slog.Attr) slog.Attr {
			if a.Key == slog.TimeKey {
				return slog.Attr{}
			}
			return a
		},
	}))
	r, err := rollout.New(rollout.Plan{Name: "search-v2", Logger: log})
	if err != nil {
		fmt.Println(err)
		return
	}
	r.Start(context.Background())
	r.Abort("wrong build")
	// Output:
	// level=INFO msg="rollout transition" rollout=search-v2 from=pending to=running stage=0 percent=0.1 reason=started outcome=gathering rule=""
	// level=WARN msg="rollout transition" rollout=search-v2 from=running to=rolled-back stage=0 percent=0 reason="wrong build" outcome=gathering rule=""
}
