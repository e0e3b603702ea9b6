// Command outage is ringfence's main demo: an airline check-in desk keeps
// checking passengers in while the cloud booking API it depends on is down.
//
// The desk calls the booking API (an in-process httptest server) for each
// passenger's seat map and to store the boarding pass. Every call goes
// through retry -> breaker -> fallback:
//
//   - retry.Policy tries a failed call again after a short backoff;
//   - a breaker.Breaker stops calling the API once it is clearly down, and
//     ramps traffic back up when it recovers;
//   - fallback chains serve the seat map from a last-known-good copy
//     (fallback.Cache), and issue the boarding pass at once while its record
//     waits in a durable fallback.Outbox until the API can take it;
//   - a fallback.Switch is the operator's manual-mode switch.
//
// The day is told in passengers, not seconds: the API goes down before
// passenger 40, the on-call operator puts the desk in manual mode at
// passenger 50, and the API is back before passenger 120. So every run tells
// the same story and prints the same numbers. The same day is then replayed
// with a naive client (three attempts per call, nothing else) to compare.
//
// The program exits with status 1 if a passenger was turned away, a record
// was lost or applied twice, or ringfence sent the dead API as many requests
// as the naive client did.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"time"

	"github.com/ringfence/ringfence/breaker"
	"github.com/ringfence/ringfence/fallback"
	"github.com/ringfence/ringfence/retry"
)

// The day, counted in passengers.
const (
	passengers = 200 // passengers who come to the desk
	downAt     = 40  // the booking API goes down before this passenger
	manualAt   = 50  // the operator switches the desk to manual mode
	upAt       = 120 // the booking API is back before this passenger
)

// departures returns today's flights and their gates.
func departures() map[string]string {
	return map[string]string{"RF101": "B4", "RF202": "B7", "RF303": "C2", "RF404": "C9"}
}

// flightOf gives passenger n's flight. Passengers take the flights in turn,
// so every flight's seat map is in the last-known-good cache well before
// the outage.
func flightOf(n int) string {
	return [...]string{"RF101", "RF202", "RF303", "RF404"}[n%4]
}

func main() {
	os.Exit(run(os.Stdout))
}

// run tells the story on w, prints the summary and returns the exit status.
func run(w io.Writer) int {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	sum, err := simulate(ctx, w)
	if err != nil {
		fmt.Fprintln(w, "outage:", err)
		return 1
	}
	return report(w, sum)
}

// report prints the summary and the verdict on its invariants, and returns
// the exit status.
func report(w io.Writer, sum Summary) int {
	sum.print(w)
	if err := sum.check(); err != nil {
		fmt.Fprintln(w, "\nFAIL:", err)
		return 1
	}
	fmt.Fprintln(w, "\nOK: every passenger checked in, nothing lost, nothing applied twice.")
	return 0
}

// Summary is the outcome of one day at the desk.
type Summary struct {
	Passengers int // passengers who came to the desk
	CheckedIn  int // passengers who left with a boarding pass

	// Where each checked-in passenger's seat map came from: the API, or the
	// last-known-good copy (while the breaker was open, or in manual mode).
	SeatMapLive, SeatMapStale, SeatMapStaleManual int
	// How each boarding pass was issued: stored online, or issued at the
	// desk with its record queued in the outbox (while the breaker was open,
	// or in manual mode).
	PassOnline, PassQueued, PassQueuedManual int

	// DeadCalls counts requests that reached the API while it was down.
	DeadCalls int
	// Queued counts records accepted into the outbox, Replayed those it
	// delivered after the recovery, and DeadLetters those it gave up on.
	Queued, Replayed, DeadLetters int
	// Lost counts checked-in passengers whose boarding pass is not in the
	// API's ledger at the end of the day.
	Lost int
	// DuplicatesDropped counts deliveries the API recognised by their
	// idempotency key and ignored; DuplicatesApplied counts passengers with
	// more than one boarding pass in the ledger.
	DuplicatesDropped, DuplicatesApplied int

	// Naive is the same day with a naive client.
	Naive NaiveSummary
}

// check returns an error naming the first invariant the day broke.
func (s Summary) check() error {
	switch {
	case s.CheckedIn != s.Passengers:
		return fmt.Errorf("%d of %d passengers checked in", s.CheckedIn, s.Passengers)
	case s.Lost != 0:
		return fmt.Errorf("%d boarding-pass records lost", s.Lost)
	case s.DuplicatesApplied != 0:
		return fmt.Errorf("%d boarding passes applied twice", s.DuplicatesApplied)
	case s.Replayed != s.Queued || s.DeadLetters != 0:
		return fmt.Errorf("%d records queued but %d replayed and %d dead", s.Queued, s.Replayed, s.DeadLetters)
	case s.DeadCalls >= s.Naive.DeadCalls:
		return fmt.Errorf("%d requests reached the dead API, the naive client sent %d", s.DeadCalls, s.Naive.DeadCalls)
	}
	return nil
}

// simulate runs the day with ringfence and with the naive client, writing
// the timeline of the first to w.
func simulate(ctx context.Context, w io.Writer) (Summary, error) {
	// The naive desk has its own copy of the API and runs at the same time,
	// since it spends most of its day waiting between retries.
	type result struct {
		sum NaiveSummary
		err error
	}
	naive := make(chan result, 1)
	go func() {
		sum, err := naiveDay(ctx)
		naive <- result{sum, err}
	}()
	sum, err := ringfenceDay(ctx, w)
	n := <-naive
	if err != nil {
		return Summary{}, err
	}
	sum.Naive = n.sum
	return sum, n.err
}

// The desk's settings. Times are milliseconds so the demo runs in about a
// second; in production they would be seconds and minutes.
const (
	// openWait is the breaker's first open wait. It is long enough that the
	// ten passengers served between the trip and the operator's switch to
	// manual never see a probe, even on a machine busy enough to slow them
	// tenfold, so every run sends the dead API the same requests. The demo
	// waits out the rest of it when the API comes back.
	openWait = 2 * time.Second
	// ramp is how long the breaker takes to let all traffic through after
	// the API recovers.
	ramp = 300 * time.Millisecond
)

// ringfenceDay runs the day at a desk protected by ringfence.
func ringfenceDay(ctx context.Context, w io.Writer) (Summary, error) {
	api := newBookingAPI(departures())
	defer api.close()
	client := &bookingClient{base: api.srv.URL, http: api.srv.Client()}
	tl := &timeline{w: w}

	// The breaker guards every call to the booking API, reads and writes
	// alike: they fail together when the service is down. Five failures in
	// a row trip it (the default).
	var br *breaker.Breaker
	closed := make(chan time.Time, 1) // when the breaker closed after the outage
	br, err := breaker.New(breaker.Settings{
		Name:        "booking-api",
		OpenTimeout: openWait,
		Ramp:        ramp,
		// The callback runs after the change, with no lock held, so it
		// may read the breaker. The move from open to half-open happens
		// on a timer, at a moment that differs from run to run; the
		// probe's outcome, which follows, is what the timeline shows.
		OnChange: func(c breaker.Change) {
			name, from, to := c.Name, c.From, c.To
			switch {
			case to == breaker.Open:
				tl.logf("breaker %s opened: %s; calls now fall back at once", name, br.Snapshot().Reason)
			case from == breaker.HalfOpen && to == breaker.Closed:
				select {
				case closed <- time.Now():
				default:
				}
				tl.logf("breaker %s closed: probe succeeded; ramping traffic up over %v", name, ramp)
			}
		},
	})
	if err != nil {
		return Summary{}, err
	}

	// The operator's switch. A deployment would give it a
	// fallback.FileModeStore so the choice survives a restart.
	sw, err := fallback.NewSwitch("booking-api", fallback.SwitchSettings{
		OnChange: func(c fallback.ModeChange) {
			tl.logf("operator: desk %v -> %v (%s)", c.From, c.To, c.Reason)
		},
	})
	if err != nil {
		return Summary{}, err
	}

	// Retries: three attempts, 2ms then 4ms apart. Rand is pinned so the
	// waits are exact. An open breaker's rejection asks for a wait longer
	// than the remaining retries would take, so it ends the retries at once.
	policy := retry.Policy{
		MaxAttempts:     3,
		InitialInterval: 2 * time.Millisecond,
		MaxInterval:     20 * time.Millisecond,
		Rand:            func() float64 { return 0.5 },
	}
	guard := fallback.ChainSettings{Switch: sw, Breaker: br, Retry: &policy}

	// Seat maps: the API, else the last copy it gave for the flight.
	seatMaps, err := fallback.NewCache[string, SeatMap](fallback.CacheSettings{MaxAge: 12 * time.Hour})
	if err != nil {
		return Summary{}, err
	}
	seatMapChain, err := fallback.NewChain("seat map", guard,
		fallback.Primary("booking API", client.SeatMap),
		fallback.Stale("last-known-good copy", seatMaps, func(flight string) string { return flight }),
	)
	if err != nil {
		return Summary{}, err
	}

	// Boarding passes: the API, else issue the pass at the desk and queue
	// its record in the outbox, durably, to be replayed later. The outbox
	// lives in a temporary directory for the demo.
	dir, err := os.MkdirTemp("", "ringfence-outage-")
	if err != nil {
		return Summary{}, err
	}
	defer os.RemoveAll(dir)
	outbox, err := fallback.OpenOutbox(dir, fallback.OutboxOptions{
		RetryInitial: 5 * time.Millisecond,
		RetryMax:     50 * time.Millisecond,
		Rate:         500, // deliveries per second, so the recovering API is not stampeded
		Burst:        10,
	})
	if err != nil {
		return Summary{}, err
	}
	defer outbox.Close()
	passChain, err := fallback.NewChain("boarding pass", guard,
		fallback.Primary("booking API", client.StorePass),
		fallback.Deferred("outbox", outbox, passRecord, issueAtDesk),
	)
	if err != nil {
		return Summary{}, err
	}

	fmt.Fprintf(w, "Check-in desk: %d passengers; the booking API is down from passenger %d to %d.\n\n", passengers, downAt, upAt-1)
	sum := Summary{Passengers: passengers}
	issued := make(map[string]BoardingPass) // by idempotency key
	lastHow := ""
	for n := 1; n <= passengers; n++ {
		tl.at(n)
		switch n {
		case downAt:
			api.setDown(true)
			tl.logf("booking API goes down (it stores one more boarding pass, but its answer is lost)")
		case manualAt:
			if err := sw.Set(fallback.ModeManual, "booking API outage confirmed; stop calling it"); err != nil {
				return Summary{}, err
			}
		case upAt:
			api.setDown(false)
			tl.logf("booking API is back")
			if err := recoverDesk(ctx, tl, sw, outbox, br, client, &sum, closed); err != nil {
				return Summary{}, err
			}
		}

		pass, how, err := checkIn(ctx, n, seatMapChain, passChain, &sum)
		if err != nil {
			tl.logf("passenger %d turned away: %v", n, err)
			continue
		}
		sum.CheckedIn++
		issued[pass.Key] = pass
		if how != lastHow { // one line each time the way passengers are served changes
			tl.logf("passenger %d checked in: %s", n, how)
			lastHow = how
		}
	}
	tl.at(passengers)
	tl.logf("check-in closes")

	ledger, deadCalls, dropped := api.ledger()
	sum.DeadCalls = deadCalls
	sum.DuplicatesDropped = dropped
	perBooking := make(map[string]int)
	for _, p := range ledger {
		perBooking[p.Booking]++
	}
	for key, p := range issued {
		if _, ok := ledger[key]; !ok {
			sum.Lost++
		}
		if perBooking[p.Booking] > 1 {
			sum.DuplicatesApplied++
		}
	}
	// A record still in the outbox, or dead, is missing from the ledger and
	// so counted as lost above.
	sum.DeadLetters = outbox.Stats().Dead
	return sum, nil
}

// checkIn serves passenger n: seat map, then boarding pass. It returns the
// pass and a description of how the passenger was served.
func checkIn(ctx context.Context, n int, seatMapChain *fallback.Chain[string, SeatMap],
	passChain *fallback.Chain[BoardingPass, BoardingPass], sum *Summary) (BoardingPass, string, error) {
	flight := flightOf(n)
	seatMap, mapSrc, err := seatMapChain.Run(ctx, flight)
	if err != nil {
		return BoardingPass{}, "", err
	}
	booking := fmt.Sprintf("PNR%04d", n)
	pass, passSrc, err := passChain.Run(ctx, BoardingPass{
		Key:     flight + "/" + booking, // the same for every attempt to store this pass
		Booking: booking,
		Flight:  flight,
		Seat:    fmt.Sprintf("%d%c", 10+n/6, 'A'+n%6),
	})
	if err != nil {
		return BoardingPass{}, "", err
	}
	_ = seatMap // the desk would show the gate and the free seats

	switch {
	case mapSrc.Kind == fallback.KindPrimary:
		sum.SeatMapLive++
	case mapSrc.Mode == fallback.ModeManual:
		sum.SeatMapStaleManual++
	default:
		sum.SeatMapStale++
	}
	switch {
	case passSrc.Kind == fallback.KindPrimary:
		sum.PassOnline++
	case passSrc.Mode == fallback.ModeManual:
		sum.PassQueuedManual++
	default:
		sum.PassQueued++
	}
	if passSrc.Kind == fallback.KindDeferred {
		sum.Queued++
	}
	return pass, describe(mapSrc, passSrc), nil
}

// describe says how a passenger was served, from the Sources the chains
// returned. (Source.String says it too, with the age of stale data; the
// demo leaves ages out so that its output is the same on every run.)
func describe(seatMap, pass fallback.Source) string {
	how := "seat map from the booking API"
	if seatMap.Kind == fallback.KindStale {
		how = "seat map from the last-known-good copy"
	}
	if pass.Kind == fallback.KindDeferred {
		how += ", boarding pass issued at the desk with its record queued in the outbox"
	} else {
		how += ", boarding pass stored online"
	}
	if pass.Mode == fallback.ModeManual {
		how += " (manual mode: the API is not called)"
	}
	return how
}

// passRecord turns a boarding pass into its outbox item. The stream is the
// booking, so that the writes of one booking are replayed in order.
func passRecord(p BoardingPass) (fallback.Item, error) {
	payload, err := json.Marshal(p)
	return fallback.Item{Key: p.Key, Stream: p.Booking, Payload: payload}, err
}

// issueAtDesk is what the passenger gets while the record waits in the
// outbox: a pass issued at the desk.
func issueAtDesk(p BoardingPass) BoardingPass {
	p.Manual = true
	return p
}

// recoverDesk is the operator's recovery procedure, run when the API is back:
// switch the desk back to auto, replay the outbox through the breaker, and
// let the breaker's ramp finish before the next passenger.
func recoverDesk(ctx context.Context, tl *timeline, sw *fallback.Switch, outbox *fallback.Outbox,
	br *breaker.Breaker, client *bookingClient, sum *Summary, closed <-chan time.Time) error {
	if err := sw.Set(fallback.ModeAuto, "booking API recovered"); err != nil {
		return err
	}
	tl.logf("outbox replay started: %d boarding-pass records", outbox.Pending())
	// Each delivery goes through the breaker. While it is still open, or
	// ramping up and holding a delivery back, the delivery fails at once
	// and the outbox retries the same item after a backoff, so the order
	// holds and nothing is dropped. The first delivery after the open wait
	// is the breaker's probe.
	err := outbox.Replay(ctx, func(ctx context.Context, it fallback.Item) error {
		var p BoardingPass
		if err := json.Unmarshal(it.Payload, &p); err != nil {
			return retry.Permanent(err) // it will never parse: keep it as a dead letter
		}
		_, err := breaker.Do(ctx, br, func(ctx context.Context) (BoardingPass, error) {
			return client.StorePass(ctx, p)
		})
		if errors.Is(err, errBadRequest) {
			return retry.Permanent(err)
		}
		if err == nil {
			sum.Replayed++
		}
		return err
	})
	if err != nil {
		return fmt.Errorf("replaying the outbox: %w", err)
	}
	tl.logf("outbox replay finished: %d delivered, %d dead letters", sum.Replayed, outbox.Stats().Dead)

	// The ramp admits a share of calls that grows with time. Waiting for
	// its end here keeps the rest of the day the same on every run; a real
	// desk would go on serving passengers, some of them from the fallbacks
	// while the ramp holds their calls back.
	// Every delivery succeeded, so the breaker has closed. Its callback sends
	// the time, possibly a moment later from another goroutine: a breaker
	// delivers its changes in order, on whichever goroutine is delivering.
	var closedAt time.Time
	select {
	case closedAt = <-closed:
	case <-ctx.Done():
		return ctx.Err()
	}
	t := time.NewTimer(time.Until(closedAt.Add(ramp)))
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
	}
	tl.logf("breaker ramp complete: all calls go through again")
	return nil
}

// timeline prints one line per notable event, stamped with the passenger
// at the desk when it happened. It is safe for concurrent use, as breaker
// callbacks may run on other goroutines.
type timeline struct {
	mu sync.Mutex // guards the fields below and writes to w
	w  io.Writer
	n  int // the passenger at the desk
}

func (t *timeline) at(n int) {
	t.mu.Lock()
	t.n = n
	t.mu.Unlock()
}

func (t *timeline) logf(format string, args ...any) {
	t.mu.Lock()
	defer t.mu.Unlock()
	fmt.Fprintf(t.w, "  #%-4d %s\n", t.n, fmt.Sprintf(format, args...))
}
