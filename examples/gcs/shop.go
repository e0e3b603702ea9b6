package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sync"
	"syscall"
	"time"

	"cloud.google.com/go/storage"
	"google.golang.org/api/googleapi"
	"google.golang.org/api/option"

	"github.com/ringfence/ringfence/breaker"
	"github.com/ringfence/ringfence/chaos"
	"github.com/ringfence/ringfence/fallback"
	"github.com/ringfence/ringfence/retry"
)

// order is what the shop writes: one immutable object per order.
type order struct {
	ID   string `json:"id"`
	Item string `json:"item"`
	Qty  int    `json:"qty"`
}

// object is the name of the order's object in the bucket.
func (o order) object() string { return "orders/" + o.ID + ".json" }

// ordersStream is the outbox stream of the orders: one stream keeps them
// in the order they were placed.
const ordersStream = "orders"

// Answers of the write chain.
const (
	stored   = "stored"
	accepted = "accepted, will sync"
)

// shopSettings configure a shop.
type shopSettings struct {
	Endpoint  string          // the service's base URL, without /storage/v1/
	Bucket    string          // the bucket the shop uses
	OutboxDir string          // where deferred writes are kept
	Injector  *chaos.Injector // faults in front of the service
	Logf      func(format string, args ...any)
}

// shop is the application's storage layer: the real Cloud Storage client,
// given an *http.Client that retries over a circuit breaker, with a
// last-known-good read chain and deferred writes through a durable outbox.
//
// A shop is safe for concurrent use, but its story is told by one
// goroutine; Close releases it.
type shop struct {
	client *storage.Client
	bucket *storage.BucketHandle
	wire   *http.Transport
	group  *breaker.Group
	cache  *fallback.Cache[string, []byte]
	reads  *fallback.Chain[string, []byte]
	writes *fallback.Chain[order, string]
	outbox *fallback.Outbox
	logf   func(format string, args ...any)

	changed chan struct{} // signalled, without blocking, on every breaker change

	mu         sync.Mutex // guards the fields below
	why        string     // why the primary last failed, for the timeline
	failures   map[string]int
	replayed   int // items Replay delivered
	duplicates int // writes the service already held (412 on a create)
}

// Retry and breaker settings. Durations are tiny so that the story runs in
// a fraction of a second; the shape is what a production client would use
// with longer ones.
var (
	retryPolicy = retry.Policy{
		MaxAttempts:     3,
		InitialInterval: time.Millisecond,
		MaxInterval:     2 * time.Millisecond,
		Rand:            func() float64 { return 0.5 }, // exact waits: 1ms, then 2ms
	}
	breakerSettings = breaker.Settings{
		Name:                "storage",
		ConsecutiveFailures: 3,
		OpenTimeout:         50 * time.Millisecond,
		MaxOpenTimeout:      50 * time.Millisecond,
	}
)

// breakerKey names the one breaker all requests to the service share.
const breakerKey = "gcs"

// newShop builds the client stack:
//
//	storage.Client (its own retries off)
//	  -> retry.Transport -> breaker.Transport -> chaos.Transport -> the network
//
// The Cloud Storage client retries transient errors by default; two
// layers of retries multiply the attempts, so its retries are turned off
// with SetRetry(storage.WithPolicy(storage.RetryNever)) and retry.Transport
// does the retrying, under a policy that also sees the breaker. chaos sits
// where the network is, so that the faults it makes up meet the retries
// and the breaker exactly as real ones would; in production it is left out.
func newShop(ctx context.Context, s shopSettings) (*shop, error) {
	sh := &shop{
		wire:     http.DefaultTransport.(*http.Transport).Clone(),
		logf:     s.Logf,
		changed:  make(chan struct{}, 1),
		failures: map[string]int{},
	}
	bs := breakerSettings
	bs.OnChange = func(c breaker.Change) {
		sh.logf("breaker %s: %v -> %v (%s)", c.Name, c.From, c.To, c.Reason)
		select {
		case sh.changed <- struct{}{}:
		default:
		}
	}
	group, err := breaker.NewGroup(bs, breaker.GroupOptions{})
	if err != nil {
		return nil, err
	}
	sh.group = group
	rt := retry.Transport(
		breaker.Transport(
			chaos.Transport(sh.wire, s.Injector),
			group,
			breaker.TransportOptions{Key: func(*http.Request) string { return breakerKey }},
		),
		retryPolicy,
	)
	client, err := storage.NewClient(ctx,
		option.WithEndpoint(s.Endpoint+"/storage/v1/"),
		option.WithoutAuthentication(),
		option.WithHTTPClient(&http.Client{Transport: rt}),
		storage.WithJSONReads(), // reads go to the JSON API on the same endpoint
		storage.WithDisabledClientMetrics(),
	)
	if err != nil {
		return nil, fmt.Errorf("storage client: %w", err)
	}
	client.SetRetry(storage.WithPolicy(storage.RetryNever))
	sh.client = client
	sh.bucket = client.Bucket(s.Bucket)

	if sh.cache, err = fallback.NewCache[string, []byte](fallback.CacheSettings{}); err != nil {
		return nil, errors.Join(err, sh.Close())
	}
	sh.reads, err = fallback.NewChain("read object", fallback.ChainSettings{},
		fallback.Primary("cloud storage", sh.read),
		fallback.Stale("last known good", sh.cache, func(name string) string { return name }),
	)
	if err != nil {
		return nil, errors.Join(err, sh.Close())
	}
	sh.outbox, err = fallback.OpenOutbox(s.OutboxDir, fallback.OutboxOptions{
		RetryInitial: 5 * time.Millisecond,
		RetryMax:     50 * time.Millisecond,
	})
	if err != nil {
		return nil, errors.Join(err, sh.Close())
	}
	sh.writes, err = fallback.NewChain("store order", fallback.ChainSettings{},
		fallback.Primary("cloud storage", sh.store),
		fallback.Deferred("outbox", sh.outbox, orderItem, func(order) string { return accepted }),
	)
	if err != nil {
		return nil, errors.Join(err, sh.Close())
	}
	return sh, nil
}

// Close closes the outbox, the storage client and idle connections.
func (sh *shop) Close() error {
	var errs []error
	if sh.outbox != nil {
		errs = append(errs, sh.outbox.Close())
	}
	if sh.client != nil {
		errs = append(errs, sh.client.Close())
	}
	sh.wire.CloseIdleConnections()
	return errors.Join(errs...)
}

// Read returns an object's content and where it came from: the service, or
// the last copy read from it.
func (sh *shop) Read(ctx context.Context, name string) ([]byte, fallback.Source, error) {
	return sh.reads.Run(ctx, name)
}

// Place stores an order, or accepts it into the outbox when the service
// cannot take it now.
func (sh *shop) Place(ctx context.Context, o order) (string, fallback.Source, error) {
	return sh.writes.Run(ctx, o)
}

// Replay delivers the deferred orders, in order, once the service takes
// them; it returns when none is left. Deliveries go through the same
// client, so through the breaker: while it is open, the outbox waits for
// as long as the breaker says, and its first delivery is the breaker's
// probe.
func (sh *shop) Replay(ctx context.Context) error {
	return sh.outbox.Replay(ctx, func(ctx context.Context, it fallback.Item) error {
		err := sh.write(ctx, it.Key, it.Payload)
		if err != nil {
			sh.logf("  replay %s: %s; the outbox will try again", it.Key, describe(err))
			if permanent(err) {
				return retry.Permanent(err)
			}
			return err
		}
		sh.mu.Lock()
		sh.replayed++
		sh.mu.Unlock()
		sh.logf("  replayed %s, queued %v before", it.Key, time.Since(it.Enqueued).Round(time.Millisecond))
		return nil
	})
}

// awaitHalfOpen waits until the breaker lets a probe through.
func (sh *shop) awaitHalfOpen(ctx context.Context) error {
	for sh.breaker().State() != breaker.HalfOpen {
		select {
		case <-sh.changed:
		case <-ctx.Done():
			return fmt.Errorf("waiting for the breaker to let a probe through: %w", ctx.Err())
		}
	}
	return nil
}

func (sh *shop) breaker() *breaker.Breaker { return sh.group.Get(breakerKey) }

// read is the read chain's primary: one object read through the SDK.
func (sh *shop) read(ctx context.Context, name string) ([]byte, error) {
	r, err := sh.bucket.Object(name).NewReader(ctx)
	if err == nil {
		var data []byte
		data, err = io.ReadAll(r)
		r.Close()
		if err == nil {
			return data, nil
		}
	}
	sh.failed(err)
	if permanent(err) {
		return nil, fallback.NoFallback(err)
	}
	return nil, err
}

// store is the write chain's primary: the order written as a new object.
func (sh *shop) store(ctx context.Context, o order) (string, error) {
	data, err := orderItemPayload(o)
	if err != nil {
		return "", fallback.NoFallback(err)
	}
	if err := sh.write(ctx, o.object(), data); err != nil {
		sh.failed(err)
		if permanent(err) {
			return "", fallback.NoFallback(err)
		}
		return "", err
	}
	return stored, nil
}

// write creates object name with data, only if it does not exist yet, so
// that a write applied once and sent again (a replay after a lost answer)
// is not applied twice: the service answers 412 Precondition Failed, and
// write reports success.
func (sh *shop) write(ctx context.Context, name string, data []byte) error {
	w := sh.bucket.Object(name).If(storage.Conditions{DoesNotExist: true}).NewWriter(ctx)
	w.ChunkSize = 0 // one request, no resumable session
	w.ContentType = "application/json"
	_, werr := w.Write(data)
	err := errors.Join(werr, w.Close())
	var ge *googleapi.Error
	if errors.As(err, &ge) && ge.Code == http.StatusPreconditionFailed {
		sh.mu.Lock()
		sh.duplicates++
		sh.mu.Unlock()
		return nil
	}
	return err
}

// orderItem turns an order into its outbox item: the object name is the
// idempotency key.
func orderItem(o order) (fallback.Item, error) {
	data, err := orderItemPayload(o)
	if err != nil {
		return fallback.Item{}, err
	}
	return fallback.Item{Key: o.object(), Stream: ordersStream, Payload: data}, nil
}

// orderItemPayload is the content of the order's object.
func orderItemPayload(o order) ([]byte, error) { return json.Marshal(o) }

// failed records why the primary failed.
func (sh *shop) failed(err error) {
	d := describe(err)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	sh.why = d
	sh.failures[cause(err)]++
}

// lastFailure returns why the primary last failed.
func (sh *shop) lastFailure() string {
	sh.mu.Lock()
	defer sh.mu.Unlock()
	return sh.why
}

// permanent reports whether err is the service's answer that the request
// itself is wrong (a 4xx other than 408 and 429), which no retry, stale
// copy or replay can mend.
func permanent(err error) bool {
	var ge *googleapi.Error
	return errors.As(err, &ge) && ge.Code >= 400 && ge.Code < 500 &&
		ge.Code != http.StatusRequestTimeout && ge.Code != http.StatusTooManyRequests
}

// Causes of the primary's failures, as counted in the summary.
const (
	causeRefused  = "connection refused"
	causeRejected = "rejected by the open breaker, not sent"
	causeStatus   = "503 Service Unavailable from the service's front"
	causeOther    = "other"
)

// cause classifies a primary's error. The SDK keeps the errors of the
// *http.Client it was given in its chain, so errors.As and errors.Is see
// the breaker's and the network's errors through it.
func cause(err error) string {
	var oe *breaker.OpenError
	var ge *googleapi.Error
	switch {
	case errors.As(err, &oe):
		return causeRejected
	case errors.Is(err, syscall.ECONNREFUSED):
		return causeRefused
	case errors.As(err, &ge) && ge.Code == http.StatusServiceUnavailable:
		return causeStatus
	}
	return causeOther
}

// describe says what an error was, in a line of the timeline.
func describe(err error) string {
	var oe *breaker.OpenError
	var ge *googleapi.Error
	var re *retry.Error
	switch {
	case errors.As(err, &oe):
		return fmt.Sprintf("rejected by breaker %s (%v, retry in %v), no request sent",
			oe.Name, oe.State, oe.RetryAfter().Round(time.Millisecond))
	case errors.Is(err, syscall.ECONNREFUSED) && errors.As(err, &re):
		return fmt.Sprintf("connection refused, %d attempts", re.Attempts)
	case errors.Is(err, syscall.ECONNREFUSED):
		return "connection refused"
	case errors.As(err, &ge):
		s := fmt.Sprintf("%d %s", ge.Code, http.StatusText(ge.Code))
		if ra := ge.Header.Get("Retry-After"); ra != "" {
			s += ", Retry-After: " + ra + "s (longer than the retries may wait: not retried)"
		}
		return s
	}
	return err.Error()
}
