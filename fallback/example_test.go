package fallback_test

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"github.com/ringfence/ringfence/fallback"
)

// prices is a fake pricing service that can be taken offline.
type prices struct {
	down  bool
	calls int
}

func (p *prices) get(_ context.Context, sku string) (int, error) {
	p.calls++
	if p.down {
		return 0, errors.New("pricing service unavailable")
	}
	return 1200, nil
}

// A read chain: the pricing service first, then the last price it gave for
// the same product, then a list price.
func ExampleChain() {
	svc := &prices{}
	cache, err := fallback.NewCache[string, int](fallback.CacheSettings{})
	if err != nil {
		log.Fatal(err)
	}
	chain, err := fallback.NewChain("get price", fallback.ChainSettings{},
		fallback.Primary("pricing", svc.get),
		fallback.Stale("last known", cache, func(sku string) string { return sku }),
		fallback.Static[string]("list price", 1500),
	)
	if err != nil {
		log.Fatal(err)
	}
	ctx := context.Background()

	price, src, _ := chain.Run(ctx, "sku-1") // fills the cache
	fmt.Println(price, src.Kind, src.Step)

	svc.down = true
	price, src, _ = chain.Run(ctx, "sku-1")
	fmt.Println(price, src.Kind, src.Step)
	price, src, _ = chain.Run(ctx, "sku-2")
	fmt.Println(price, src.Kind, src.Step)
	// Output:
	// 1200 primary pricing
	// 1200 stale last known
	// 1500 static list price
}

// An operator takes a dependency out of service during an incident: in
// manual mode no call reaches it.
func ExampleSwitch() {
	sw, err := fallback.NewSwitch("pricing", fallback.SwitchSettings{
		OnChange: func(c fallback.ModeChange) {
			fmt.Printf("pricing: %v -> %v (%s)\n", c.From, c.To, c.Reason)
		},
	})
	if err != nil {
		log.Fatal(err)
	}
	svc := &prices{}
	chain, err := fallback.NewChain("get price", fallback.ChainSettings{Switch: sw},
		fallback.Primary("pricing", svc.get),
		fallback.Static[string]("list price", 1500),
	)
	if err != nil {
		log.Fatal(err)
	}

	if err := sw.Set(fallback.ModeManual, "incident 42: wrong prices"); err != nil {
		log.Fatal(err)
	}
	price, src, _ := chain.Run(context.Background(), "sku-1")
	fmt.Println(price, src)
	fmt.Println("calls to pricing:", svc.calls)
	// Output:
	// pricing: auto -> manual (incident 42: wrong prices)
	// 1500 static "list price" in manual mode
	// calls to pricing: 0
}

// A Mode reads from a flag, an environment variable or a config file.
func ExampleMode_UnmarshalText() {
	fs := flag.NewFlagSet("server", flag.ContinueOnError)
	var mode fallback.Mode
	fs.TextVar(&mode, "pricing-mode", fallback.ModeAuto, "auto, manual or primary")
	if err := fs.Parse([]string{"-pricing-mode=manual"}); err != nil {
		log.Fatal(err)
	}
	fmt.Println(mode)

	err := mode.UnmarshalText([]byte("off"))
	fmt.Println(errors.Is(err, fallback.ErrUnknownMode), mode)
	// Output:
	// manual
	// true manual
}

// The operator's choice survives a restart when the Switch has a store.
func ExampleNewFileModeStore() {
	dir, err := os.MkdirTemp("", "modes")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	path := filepath.Join(dir, "pricing.mode")

	start := func() *fallback.Switch {
		store, err := fallback.NewFileModeStore(path)
		if err != nil {
			log.Fatal(err)
		}
		sw, err := fallback.NewSwitch("pricing", fallback.SwitchSettings{Store: store})
		if err != nil {
			log.Fatal(err)
		}
		return sw
	}

	sw := start()
	if err := sw.Set(fallback.ModeManual, "incident 42"); err != nil {
		log.Fatal(err)
	}
	restarted := start()
	fmt.Println(restarted.Mode(), restarted.History()[0].Reason)
	// Output:
	// manual incident 42
}

// A validation error must not be hidden behind a fallback value.
func ExampleNoFallback() {
	errBadSKU := errors.New("no such product")
	chain, err := fallback.NewChain("get price", fallback.ChainSettings{},
		fallback.Primary("pricing", func(_ context.Context, sku string) (int, error) {
			if sku == "" {
				return 0, fallback.NoFallback(errBadSKU)
			}
			return 1200, nil
		}),
		fallback.Static[string]("list price", 1500),
	)
	if err != nil {
		log.Fatal(err)
	}
	_, _, err = chain.Run(context.Background(), "")
	fmt.Println(errors.Is(err, errBadSKU))
	// Output:
	// true
}

// payment is a write to a fake payment service.
type payment struct {
	ID      string // idempotency key
	Account string
	Cents   int
}

// A write chain: while the payment service is down, payments are accepted
// into a durable outbox and replayed, in order, once it is back.
func ExampleDeferred() {
	dir, err := os.MkdirTemp("", "outbox")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	outbox, err := fallback.OpenOutbox(dir, fallback.OutboxOptions{})
	if err != nil {
		log.Fatal(err)
	}
	defer outbox.Close()

	down := true
	charge := func(_ context.Context, p payment) (string, error) {
		if down {
			return "", errors.New("payment service unavailable")
		}
		return "paid", nil
	}
	chain, err := fallback.NewChain("charge", fallback.ChainSettings{},
		fallback.Primary("payments", charge),
		fallback.Deferred("outbox", outbox,
			func(p payment) (fallback.Item, error) {
				return fallback.Item{Key: p.ID, Stream: p.Account, Payload: fmt.Appendf(nil, "%d", p.Cents)}, nil
			},
			func(payment) string { return "accepted; will sync" }),
	)
	if err != nil {
		log.Fatal(err)
	}
	ctx := context.Background()

	status, src, _ := chain.Run(ctx, payment{ID: "p1", Account: "alice", Cents: 500})
	fmt.Println(status, src.Kind)

	down = false
	// Alice's first payment still waits, so her next one queues behind it.
	status, src, _ = chain.Run(ctx, payment{ID: "p2", Account: "alice", Cents: 700})
	fmt.Println(status, src.Kind)
	status, src, _ = chain.Run(ctx, payment{ID: "p3", Account: "bob", Cents: 900})
	fmt.Println(status, src.Kind)

	err = outbox.Replay(ctx, func(_ context.Context, it fallback.Item) error {
		fmt.Printf("replayed %s for %s: %s cents\n", it.Key, it.Stream, it.Payload)
		return nil
	})
	fmt.Println(err, outbox.Pending())
	// Output:
	// accepted; will sync deferred
	// accepted; will sync deferred
	// paid primary
	// replayed p1 for alice: 500 cents
	// replayed p2 for alice: 700 cents
	// <nil> 0
}

// notFoundError stands in for a cloud SDK's response error that keeps the
// HTTP status in a field, as Azure's *azcore.ResponseError (StatusCode)
// and Google's *googleapi.Error (Code) do.
type notFoundError struct{ StatusCode int }

func (e *notFoundError) Error() string { return fmt.Sprintf("blob service: status %d", e.StatusCode) }

// A deleted blob must not be served from the cache: the chain's classifier
// says which errors mean "unavailable". Errors with an HTTPStatusCode()
// method, such as the AWS SDK's, need no classifier of their own.
func ExampleChainSettings_shouldFallback() {
	status := http.StatusNotFound
	read := func(context.Context, string) (string, error) { return "", &notFoundError{StatusCode: status} }
	cache, err := fallback.NewCache[string, string](fallback.CacheSettings{})
	if err != nil {
		log.Fatal(err)
	}
	cache.Put("report.pdf", "old contents")
	chain, err := fallback.NewChain("read blob", fallback.ChainSettings{
		ShouldFallback: func(err error) bool {
			var se *notFoundError // *azcore.ResponseError, *googleapi.Error, ...
			if errors.As(err, &se) {
				return fallback.UnavailableStatus(se.StatusCode)
			}
			return fallback.Unavailable(err)
		},
	},
		fallback.Primary("blob service", read),
		fallback.Stale("last known", cache, func(name string) string { return name }),
	)
	if err != nil {
		log.Fatal(err)
	}
	_, _, err = chain.Run(context.Background(), "report.pdf")
	var se *notFoundError
	fmt.Println(errors.As(err, &se), se.StatusCode)

	status = http.StatusServiceUnavailable
	v, src, _ := chain.Run(context.Background(), "report.pdf")
	fmt.Println(v, src.Kind)
	// Output:
	// true 404
	// old contents stale
}

// A write whose primary call used up the caller's deadline is still
// deferred: its outcome is unknown, the outbox gets time of the chain's
// own (ChainSettings.FallbackTimeout), and the replay, keyed by the
// idempotency key, makes the outcome certain.
func ExampleChainSettings_fallbackTimeout() {
	dir, err := os.MkdirTemp("", "outbox")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	outbox, err := fallback.OpenOutbox(dir, fallback.OutboxOptions{})
	if err != nil {
		log.Fatal(err)
	}
	defer outbox.Close()

	charge := func(ctx context.Context, _ payment) (string, error) {
		<-ctx.Done() // the service stopped answering
		return "", ctx.Err()
	}
	chain, err := fallback.NewChain("charge", fallback.ChainSettings{FallbackTimeout: 500 * time.Millisecond},
		fallback.Primary("payments", charge),
		fallback.Deferred("outbox", outbox,
			func(p payment) (fallback.Item, error) {
				return fallback.Item{Key: p.ID, Stream: p.Account, Payload: fmt.Appendf(nil, "%d", p.Cents)}, nil
			},
			func(payment) string { return "accepted; will sync" }),
	)
	if err != nil {
		log.Fatal(err)
	}
	// A caller whose deadline has passed by the time the primary gives up.
	ctx, cancel := context.WithDeadline(context.Background(), time.Now().Add(-time.Second))
	defer cancel()
	status, src, err := chain.Run(ctx, payment{ID: "p1", Account: "alice", Cents: 500})
	fmt.Println(status, src.Kind, err, outbox.Pending())
	// Output:
	// accepted; will sync deferred <nil> 1
}
