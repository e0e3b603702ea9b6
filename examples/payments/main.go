// Command payments shows a shop taking card payments through an outage of
// its card processor, with store-and-forward.
//
// Four tills send each payment to the card processor (an in-process
// httptest server) through a fallback chain: retry.Policy and a
// breaker.Breaker guard the processor, and when it is unavailable the till
// approves the payment offline and stores it in a durable fallback.Outbox,
// to be forwarded later. Each payment carries an idempotency key, and each
// till is a stream of the outbox: its payments reach the processor in the
// order they were taken, even those taken after the processor came back
// while earlier ones still waited.
//
// The day is counted in payments, not seconds: the processor goes down at
// payment 30 and is back, but flaky, at payment 80; the back office replays
// the outbox at payment 90. The flaky processor refuses some requests and
// loses the answers to others after charging them, so deliveries fail and
// are retried, and some arrive twice. The processor drops a payment it has
// already charged (by its key) and checks each till's order.
//
// Amounts and tills come from a seeded generator, so every run prints the
// same numbers. The program exits with status 1 if a payment was lost,
// charged twice or charged out of order, or the ledger does not add up.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"sync"
	"time"

	"github.com/ringfence/ringfence/breaker"
	"github.com/ringfence/ringfence/fallback"
	"github.com/ringfence/ringfence/retry"
)

// The day, counted in payments.
const (
	payments = 120 // payments taken
	downAt   = 30  // the processor goes down before this payment
	upAt     = 80  // the processor is back (flaky) before this payment
	replayAt = 90  // the back office replays the outbox before this payment
	tills    = 4
	seed     = 2024 // seeds the tills and amounts
)

func main() {
	os.Exit(run(os.Stdout))
}

// run tells the story on w, prints the summary and returns the exit status.
func run(w io.Writer) int {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	sum, err := simulate(ctx, w)
	if err != nil {
		fmt.Fprintln(w, "payments:", err)
		return 1
	}
	sum.print(w)
	if err := sum.check(); err != nil {
		fmt.Fprintln(w, "\nFAIL:", err)
		return 1
	}
	fmt.Fprintln(w, "\nOK: every payment charged exactly once, in order per till; the ledger adds up.")
	return 0
}

// Summary is the outcome of the day.
type Summary struct {
	Payments    int // payments taken at the tills
	Online      int // approved by the processor at the till
	Offline     int // approved offline and stored, processor unavailable
	QueuedAfter int // of Offline: taken after the recovery, queued behind their till's earlier payments
	Declined    int // refused (none are expected)
	TakenCents  int // total of the approved payments

	DeadCalls   int // requests that reached the processor while it was down
	Replayed    int // stored payments delivered by the replay
	Redelivered int // failed deliveries the replay retried
	DeadLetters int // stored payments the replay gave up on
	Lost        int // approved payments missing from the ledger at the end

	Charged           int // charges in the processor's ledger
	ChargedCents      int // their total
	FlakyAnswers      int // requests the flaky processor failed (some after charging)
	DuplicatesDropped int // deliveries the processor recognised by key and dropped
	DuplicatesCharged int // payments charged more than once
	OutOfOrder        int // charges applied after a later payment of the same till
}

// check returns an error naming the first invariant the day broke.
func (s Summary) check() error {
	switch {
	case s.Online+s.Offline+s.Declined != s.Payments:
		return fmt.Errorf("%d payments taken but %d online, %d offline, %d declined", s.Payments, s.Online, s.Offline, s.Declined)
	case s.Lost != 0 || s.DeadLetters != 0:
		return fmt.Errorf("%d payments lost, %d dead letters", s.Lost, s.DeadLetters)
	case s.Replayed != s.Offline:
		return fmt.Errorf("%d payments stored but %d replayed", s.Offline, s.Replayed)
	case s.DuplicatesCharged != 0:
		return fmt.Errorf("%d payments charged twice", s.DuplicatesCharged)
	case s.OutOfOrder != 0:
		return fmt.Errorf("%d payments charged out of order", s.OutOfOrder)
	case s.Charged != s.Payments-s.Declined || s.ChargedCents != s.TakenCents:
		return fmt.Errorf("ledger holds %d charges for %d cents, tills approved %d for %d cents",
			s.Charged, s.ChargedCents, s.Payments-s.Declined, s.TakenCents)
	case s.Redelivered == 0 || s.DuplicatesDropped == 0:
		return fmt.Errorf("the flaky processor was not exercised: %d redeliveries, %d duplicates dropped", s.Redelivered, s.DuplicatesDropped)
	}
	return nil
}

// simulate runs the day and writes its timeline to w.
func simulate(ctx context.Context, w io.Writer) (Summary, error) {
	proc := newProcessor()
	defer proc.close()
	client := &processorClient{base: proc.srv.URL, http: proc.srv.Client()}
	tl := &timeline{w: w}

	// One breaker for the processor. Three failures in a row trip it: a
	// till should not keep a customer waiting on a dead processor. A
	// payment the processor rejected as malformed shows that it is up, so
	// it does not count as a failure.
	var br *breaker.Breaker
	br, err := breaker.New(breaker.Settings{
		Name:                "card-processor",
		ConsecutiveFailures: 3,
		OpenTimeout:         time.Second, // outlasts the outage's payments even on a busy machine
		IsFailure:           func(err error) bool { return !errors.Is(err, errRejected) },
		OnChange: func(c breaker.Change) {
			name, from, to := c.Name, c.From, c.To
			// The move to half-open happens on a timer, at a moment that
			// varies from run to run; the timeline shows what follows it.
			if to != breaker.HalfOpen {
				tl.logf("breaker %s: %v -> %v (%s)", name, from, to, br.Snapshot().Reason)
			}
		},
	})
	if err != nil {
		return Summary{}, err
	}

	// Store-and-forward lives in a directory that survives a restart of the
	// till; a temporary one for the demo.
	dir, err := os.MkdirTemp("", "ringfence-payments-")
	if err != nil {
		return Summary{}, err
	}
	defer os.RemoveAll(dir)
	outbox, err := fallback.OpenOutbox(dir, fallback.OutboxOptions{
		RetryInitial: 2 * time.Millisecond,
		RetryMax:     20 * time.Millisecond,
		Rate:         1000, // deliveries per second
	})
	if err != nil {
		return Summary{}, err
	}
	defer outbox.Close()

	// The chain: the processor, with three attempts 1ms and 2ms apart
	// (Rand pinned, so the waits are exact), else store and forward. The
	// stream is the till, so a till's payments are charged in the order
	// they were taken.
	pay, err := fallback.NewChain("card payment",
		fallback.ChainSettings{
			Breaker: br,
			Retry: &retry.Policy{
				MaxAttempts:     3,
				InitialInterval: time.Millisecond,
				MaxInterval:     10 * time.Millisecond,
				Rand:            func() float64 { return 0.5 },
			},
		},
		fallback.Primary("card processor", client.Charge),
		fallback.Deferred("store and forward", outbox,
			func(p Payment) (fallback.Item, error) {
				payload, err := json.Marshal(p)
				return fallback.Item{Key: p.Key, Stream: p.Till, Payload: payload}, err
			},
			func(p Payment) Receipt { return Receipt{Key: p.Key, Offline: true} }),
	)
	if err != nil {
		return Summary{}, err
	}

	fmt.Fprintf(w, "Shop with %d tills, %d card payments; the processor is down from payment %d to %d, then flaky.\n\n",
		tills, payments, downAt, upAt-1)
	rng := rand.New(rand.NewPCG(seed, seed))
	seq := make(map[string]int) // each till's last sequence number
	sum := Summary{Payments: payments}
	approved := make(map[string]Payment)
	lastHow := ""
	for n := 1; n <= payments; n++ {
		tl.at(n)
		switch n {
		case downAt:
			proc.setDown(true)
			tl.logf("card processor goes down")
		case upAt:
			proc.setDown(false)
			tl.logf("card processor is back, but flaky: it refuses some requests and loses some answers")
		case replayAt:
			if err := replay(ctx, tl, outbox, br, client, &sum); err != nil {
				return Summary{}, err
			}
		}

		till := fmt.Sprintf("till-%d", 1+rng.IntN(tills))
		seq[till]++
		p := Payment{Key: fmt.Sprintf("%s/%04d", till, seq[till]), Till: till, Seq: seq[till], Cents: 100 + rng.IntN(9900)}
		waiting := outbox.StreamPending(till)
		_, src, err := pay.Run(ctx, p)
		var how string
		switch {
		case err != nil:
			sum.Declined++
			how = "declined: " + err.Error()
		case src.Kind == fallback.KindPrimary:
			sum.Online++
			how = "approved online"
		case n >= upAt && waiting > 0:
			sum.Offline++
			sum.QueuedAfter++
			how = "approved offline, queued behind its till's earlier payments (the processor is up)"
		default:
			sum.Offline++
			how = "approved offline, stored to forward later"
		}
		if err == nil {
			approved[p.Key] = p
			sum.TakenCents += p.Cents
		}
		if how != lastHow {
			tl.logf("payment %d (%s, %s): %s", n, p.Key, euros(p.Cents), how)
			lastHow = how
		}
	}
	tl.at(payments)
	tl.logf("shop closes")

	led := proc.ledger()
	sum.DeadCalls = led.deadCalls
	sum.FlakyAnswers = led.flakes
	sum.DuplicatesDropped = led.duplicates
	sum.OutOfOrder = led.outOfOrder
	sum.Charged = len(led.charges)
	times := make(map[string]int)
	for _, c := range led.charges {
		sum.ChargedCents += c.Cents
		times[c.Key]++
	}
	for key := range approved {
		switch times[key] {
		case 0:
			sum.Lost++
		case 1:
		default:
			sum.DuplicatesCharged++
		}
	}
	sum.DeadLetters = outbox.Stats().Dead
	return sum, nil
}

// replay forwards the stored payments. Each delivery goes through the
// breaker: while it is still open from the outage a delivery fails at once,
// and the outbox retries the same payment after a backoff, so a till's
// payments stay in order. The first delivery after the open wait is the
// breaker's probe.
func replay(ctx context.Context, tl *timeline, outbox *fallback.Outbox, br *breaker.Breaker,
	client *processorClient, sum *Summary) error {
	tl.logf("back office replays the outbox: %d stored payments", outbox.Pending())
	err := outbox.Replay(ctx, func(ctx context.Context, it fallback.Item) error {
		var p Payment
		if err := json.Unmarshal(it.Payload, &p); err != nil {
			return retry.Permanent(err) // never deliverable: keep it as a dead letter
		}
		_, err := breaker.Do(ctx, br, func(ctx context.Context) (Receipt, error) {
			return client.Charge(ctx, p)
		})
		switch {
		case err == nil:
			sum.Replayed++
		case errors.Is(err, errRejected):
			return retry.Permanent(err)
		case !errors.Is(err, breaker.ErrOpen):
			// The processor failed this delivery; the outbox will send
			// the same payment, with the same key, again. (Rejections
			// by the breaker while it waits to probe are not counted:
			// how many there are depends on timing.)
			sum.Redelivered++
		}
		return err
	})
	if err != nil {
		return fmt.Errorf("replaying the outbox: %w", err)
	}
	tl.logf("replay finished: %d payments forwarded, %d failed deliveries retried, %d dead letters",
		sum.Replayed, sum.Redelivered, outbox.Stats().Dead)
	return nil
}

func euros(cents int) string { return fmt.Sprintf("€%d.%02d", cents/100, cents%100) }

// print writes the summary table.
func (s Summary) print(w io.Writer) {
	fmt.Fprintln(w)
	row := func(label string, v any) { fmt.Fprintf(w, "  %-62s %10v\n", label, v) }
	row("payments taken", s.Payments)
	row("  approved online", s.Online)
	row("  approved offline, stored and forwarded", s.Offline)
	row("    of which queued behind earlier payments after the recovery", s.QueuedAfter)
	row("  declined", s.Declined)
	row("amount approved at the tills", euros(s.TakenCents))
	row("requests that reached the dead processor", s.DeadCalls)
	row("stored payments replayed", s.Replayed)
	row("  failed deliveries retried", s.Redelivered)
	row("  lost", s.Lost)
	row("processor ledger: charges", s.Charged)
	row("  amount charged", euros(s.ChargedCents))
	row("  requests the flaky processor failed", s.FlakyAnswers)
	row("  duplicate deliveries dropped (idempotency key)", s.DuplicatesDropped)
	row("  payments charged twice", s.DuplicatesCharged)
	row("  payments charged out of order (per till)", s.OutOfOrder)
}

// timeline prints one line per notable event, stamped with the payment
// being taken. It is safe for concurrent use: breaker callbacks may run on
// other goroutines.
type timeline struct {
	mu sync.Mutex // guards the fields below and writes to w
	w  io.Writer
	n  int // the payment being taken
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
