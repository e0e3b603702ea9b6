// Command gcs runs the real Google Cloud Storage Go client
// (cloud.google.com/go/storage) through an outage of the service and back,
// with ringfence around it, and shows that the shop using it kept
// answering and lost nothing.
//
// The service is fake-gcs-server's in-process fake of the Cloud Storage
// JSON API (github.com/fsouza/fake-gcs-server/fakestorage), listening on a
// loopback port and keeping its objects on disk, so that it can really be
// stopped and started again. The client is the real SDK, configured as a
// production client would be, except for the endpoint and credentials:
//
//	storage.NewClient(ctx,
//		option.WithEndpoint(url+"/storage/v1/"),
//		option.WithoutAuthentication(),
//		option.WithHTTPClient(&http.Client{Transport:
//			retry.Transport(breaker.Transport(chaos.Transport(network)))}),
//		storage.WithJSONReads())
//	client.SetRetry(storage.WithPolicy(storage.RetryNever))
//
// The SDK's own retries are off, so that one layer (retry.Transport)
// retries, under a policy that honours Retry-After and the breaker. Reads
// of the price list go through a fallback chain whose stale step serves
// the last copy read; orders are written as new objects, and when the
// service cannot take them they are accepted into a durable outbox on
// disk, replayed in order once it is back.
//
// The story: healthy; the server stopped (connections refused); the server
// back but its front answering 503 Service Unavailable with Retry-After
// (injected by a chaos.Injector switched on with Set); recovery (Clear),
// the outbox replayed, and the service used again. The program prints the
// timeline and a summary, and exits with status 1 if an invariant fails:
// every read answered, no request reaching the server during the outage,
// every order stored exactly once (0 lost, 0 applied twice), the outbox
// empty and the breaker closed at the end.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/fsouza/fake-gcs-server/fakestorage"

	"github.com/ringfence/ringfence/breaker"
	"github.com/ringfence/ringfence/chaos"
	"github.com/ringfence/ringfence/fallback"
)

const (
	bucket    = "ringfence-shop"
	priceList = "catalog/prices.json"
	prices    = `{"tea":3.20,"coffee":2.80}`
)

func main() {
	os.Exit(run(os.Stdout))
}

// run tells the story on w in a temporary directory, prints the summary
// and returns the exit status.
func run(w io.Writer) int {
	dir, err := os.MkdirTemp("", "ringfence-gcs-")
	if err != nil {
		fmt.Fprintln(w, "gcs:", err)
		return 1
	}
	defer os.RemoveAll(dir)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	sum, err := simulate(ctx, w, dir)
	if err != nil {
		fmt.Fprintln(w, "gcs:", err)
		return 1
	}
	sum.print(w)
	if err := sum.check(); err != nil {
		fmt.Fprintln(w, "\nFAIL:", err)
		return 1
	}
	fmt.Fprintln(w, "\nOK: every read answered, no request reached the server during the outage, every order stored exactly once.")
	return 0
}

// read is one read the shop made and what answered it.
type read struct {
	Phase  string
	Source fallback.Source
}

// Summary is what happened, from the shop's side and the server's.
type Summary struct {
	Reads        []read
	Placed       map[string]string // order object -> the write chain's answer
	Deferred     int               // orders accepted into the outbox
	Replayed     int               // orders the outbox delivered
	Duplicates   int               // writes the service already held
	Failures     map[string]int    // the primary's failures, by cause
	Injected     chaos.Stats       // what chaos did in front of the service
	Server       requestCounts     // what reached the server, over the whole run
	DuringOutage int               // requests that reached the server during the outage
	Stored       map[string]bool   // order object -> stored on the server with the right content
	Pending      int               // outbox items left
	Dead         int               // outbox dead letters
	Breaker      breaker.State     // at the end
}

// Stale returns the reads answered from the last-known-good copy.
func (s Summary) Stale() []read {
	var out []read
	for _, r := range s.Reads {
		if r.Source.Kind == fallback.KindStale {
			out = append(out, r)
		}
	}
	return out
}

// The invariants of the story; check's error wraps the one broken.
var (
	errNothingDone    = errors.New("no read or write was made")
	errOutageTraffic  = errors.New("requests reached the server during the outage")
	errNoStale        = errors.New("no read was answered from the last-known-good copy")
	errNotRecovered   = errors.New("the service was not used again after the outage")
	errNoDeferred     = errors.New("no order was deferred during the outage")
	errNotReplayed    = errors.New("deferred orders were not replayed")
	errLost           = errors.New("orders lost")
	errAppliedTwice   = errors.New("orders applied more than once")
	errOutboxNotEmpty = errors.New("the outbox is not empty at the end")
	errBreakerOpen    = errors.New("the breaker is not closed at the end")
)

// check returns an error wrapping the first invariant the run broke.
func (s Summary) check() error {
	lost, twice := s.lost(), s.twice()
	switch {
	case len(s.Reads) == 0 || len(s.Placed) == 0:
		return errNothingDone
	case s.DuringOutage != 0:
		return fmt.Errorf("%w: %d, want 0", errOutageTraffic, s.DuringOutage)
	case len(s.Stale()) == 0:
		return errNoStale
	case s.Reads[len(s.Reads)-1].Source.Kind != fallback.KindPrimary:
		return fmt.Errorf("%w: the last read came from %v", errNotRecovered, s.Reads[len(s.Reads)-1].Source)
	case s.Deferred == 0:
		return errNoDeferred
	case s.Replayed != s.Deferred:
		return fmt.Errorf("%w: %d of %d replayed", errNotReplayed, s.Replayed, s.Deferred)
	case len(lost) > 0:
		return fmt.Errorf("%w: %d: %s", errLost, len(lost), strings.Join(lost, ", "))
	case len(twice) > 0:
		return fmt.Errorf("%w: %d: %s", errAppliedTwice, len(twice), strings.Join(twice, ", "))
	case s.Pending != 0 || s.Dead != 0:
		return fmt.Errorf("%w: %d pending, %d dead letters", errOutboxNotEmpty, s.Pending, s.Dead)
	case s.Breaker != breaker.Closed:
		return fmt.Errorf("%w: it is %v", errBreakerOpen, s.Breaker)
	}
	return nil
}

// lost returns the orders the shop was told were stored or accepted that
// the server does not hold with their content.
func (s Summary) lost() []string {
	var out []string
	for name := range s.Placed {
		if !s.Stored[name] {
			out = append(out, name)
		}
	}
	sort.Strings(out)
	return out
}

// twice returns the orders the server's log shows created more than once.
func (s Summary) twice() []string {
	var out []string
	for name, n := range s.Server.Created {
		if n > 1 {
			out = append(out, name)
		}
	}
	sort.Strings(out)
	return out
}

// print writes the summary.
func (s Summary) print(w io.Writer) {
	row := func(label string, v any) { fmt.Fprintf(w, "  %-58s %v\n", label, v) }
	fmt.Fprintln(w, "\nSummary")
	primary := len(s.Reads) - len(s.Stale())
	row("reads of the price list", len(s.Reads))
	row("  answered by the service", primary)
	row("  answered from the last-known-good copy", len(s.Stale()))
	for _, r := range s.Stale() {
		row("    "+r.Phase+": copy aged", r.Source.Age.Round(100*time.Microsecond))
	}
	row("orders placed", len(s.Placed))
	row("  stored at once", len(s.Placed)-s.Deferred)
	row("  deferred to the outbox", s.Deferred)
	row("  replayed from the outbox", s.Replayed)
	fmt.Fprintf(w, "  %s\n", "calls of the shop that the service did not answer, by cause")
	for _, c := range []string{causeRefused, causeStatus, causeRejected, causeOther} {
		if n := s.Failures[c]; n > 0 {
			row("  "+c, n)
		}
	}
	row("503s made up by chaos in front of the server", s.Injected.Statuses)
	row("requests that reached the server", s.Server.Total)
	row("  during the outage", s.DuringOutage)
	row("  object reads answered 200", s.Server.Reads)
	created := 0
	for _, n := range s.Server.Created {
		created += n
	}
	row("  objects created", created)
	row("  writes the service already held (412, not applied again)", s.Duplicates)
	row("orders lost", len(s.lost()))
	row("orders applied twice", len(s.twice()))
	row("outbox at the end (pending, dead letters)", fmt.Sprintf("%d, %d", s.Pending, s.Dead))
	row("breaker at the end", s.Breaker)
}

// simulate tells the story, writing its timeline to w, with the server's
// data and the outbox under dir.
func simulate(ctx context.Context, w io.Writer, dir string) (sum Summary, err error) {
	var mu sync.Mutex // orders the timeline's lines; breaker changes come from its timer
	start := time.Now()
	logf := func(format string, args ...any) {
		mu.Lock()
		defer mu.Unlock()
		fmt.Fprintf(w, "  %7.1fms  %s\n", float64(time.Since(start).Microseconds())/1000, fmt.Sprintf(format, args...))
	}

	srv, err := startServer(dir+"/gcs", bucket, fakestorage.Object{
		ObjectAttrs: fakestorage.ObjectAttrs{BucketName: bucket, Name: priceList, ContentType: "application/json"},
		Content:     []byte(prices),
	})
	if err != nil {
		return sum, err
	}
	defer srv.stop()
	injector, err := chaos.New(chaos.Settings{}) // no faults until the story sets them
	if err != nil {
		return sum, err
	}
	sh, err := newShop(ctx, shopSettings{
		Endpoint:  srv.URL(),
		Bucket:    bucket,
		OutboxDir: dir + "/outbox",
		Injector:  injector,
		Logf:      logf,
	})
	if err != nil {
		return sum, err
	}
	defer func() { err = errors.Join(err, sh.Close()) }()

	sum.Placed = map[string]string{}
	phase := ""
	section := func(name, what string) {
		phase = name
		mu.Lock()
		fmt.Fprintf(w, "\n%s: %s\n", name, what)
		mu.Unlock()
	}
	doRead := func() error {
		cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		data, src, err := sh.Read(cctx, priceList)
		if err != nil {
			return fmt.Errorf("read %s in %s: %w", priceList, phase, err)
		}
		sum.Reads = append(sum.Reads, read{Phase: phase, Source: src})
		line := fmt.Sprintf("read %s: %s from %v", priceList, data, src)
		if src.Kind == fallback.KindStale {
			line = fmt.Sprintf("read %s: %s from %s %q, %v old; the service: %s",
				priceList, data, src.Kind, src.Step, src.Age.Round(100*time.Microsecond), sh.lastFailure())
		}
		logf("%s", line)
		return nil
	}
	n := 0
	payloads := map[string][]byte{} // order object -> what the shop wrote
	doPlace := func(item string, qty int) error {
		n++
		o := order{ID: fmt.Sprintf("%04d", n), Item: item, Qty: qty}
		cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		ans, src, err := sh.Place(cctx, o)
		if err != nil {
			return fmt.Errorf("place order %s in %s: %w", o.ID, phase, err)
		}
		sum.Placed[o.object()] = ans
		payloads[o.object()], _ = orderItemPayload(o)
		if src.Kind == fallback.KindDeferred {
			sum.Deferred++
			why := sh.lastFailure()
			if sh.outbox.StreamPending(ordersStream) > 1 {
				why = "earlier orders are queued: this one goes behind them, the service is not called"
			}
			logf("order %s (%d %s): %s; the service: %s", o.ID, qty, item, ans, why)
			return nil
		}
		logf("order %s (%d %s): %s", o.ID, qty, item, ans)
		return nil
	}
	steps := func(fs ...func() error) error {
		for _, f := range fs {
			if err := f(); err != nil {
				return err
			}
		}
		return nil
	}
	place := func(item string, qty int) func() error { return func() error { return doPlace(item, qty) } }

	fmt.Fprintf(w, "The Cloud Storage Go client against a fake Cloud Storage on %s, bucket %s.\n", srv.URL(), bucket)

	section("healthy", "the service answers")
	if err := steps(place("tea", 2), doRead, place("coffee", 1)); err != nil {
		return sum, err
	}

	section("server stopped", "the storage server is shut down: every connection is refused")
	srv.stop()
	outageStart := srv.log.counts().Total
	if err := steps(doRead, place("tea", 1), doRead); err != nil {
		return sum, err
	}

	section("overloaded", "the server is back, but its front answers 503 Service Unavailable, Retry-After: 1")
	if err := injector.Set(chaos.Faults{ErrorRate: 1, Status: http.StatusServiceUnavailable, RetryAfter: time.Second}); err != nil {
		return sum, err
	}
	if err := srv.start(); err != nil {
		return sum, err
	}
	logf("waiting for the breaker to let a probe through")
	if err := sh.awaitHalfOpen(ctx); err != nil {
		return sum, err
	}
	if err := steps(doRead, place("coffee", 3), doRead); err != nil {
		return sum, err
	}
	sum.DuringOutage = srv.log.counts().Total - outageStart

	section("recovered", "the front answers again; the outbox replays the deferred orders")
	injector.Clear()
	rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := sh.Replay(rctx); err != nil {
		return sum, fmt.Errorf("replay: %w", err)
	}
	if err := steps(doRead, place("tea", 4)); err != nil {
		return sum, err
	}

	// What the server holds, read on its side, and what its log shows.
	sum.Stored = map[string]bool{}
	for name := range sum.Placed {
		data, ok := srv.object(bucket, name)
		sum.Stored[name] = ok && string(data) == string(payloads[name])
	}
	sh.mu.Lock()
	sum.Replayed, sum.Duplicates = sh.replayed, sh.duplicates
	sum.Failures = map[string]int{}
	for k, v := range sh.failures {
		sum.Failures[k] = v
	}
	sh.mu.Unlock()
	st := sh.outbox.Stats()
	sum.Pending, sum.Dead = st.Pending, st.Dead
	sum.Breaker = sh.breaker().State()
	sum.Injected = injector.Stats()
	srv.stop() // waits for every request in progress, so that the log is complete
	sum.Server = srv.log.counts()
	return sum, nil
}
