package main

import (
	"context"
	"fmt"
	"time"
)

// NaiveSummary is the outcome of the same day at a desk with a naive client:
// three attempts per call, and nothing else.
type NaiveSummary struct {
	CheckedIn  int // passengers who left with a boarding pass
	TurnedAway int // passengers sent to the ticket counter
	// DeadCalls counts requests that reached the API while it was down.
	DeadCalls int
}

// naiveDay runs the same day, against a fresh copy of the booking API,
// with a client that tries every call three times, 2ms and 4ms apart, and
// turns the passenger away when the third attempt fails. It has no breaker,
// no fallback and no outbox: each passenger during the outage costs the
// struggling API three more requests, and leaves without a boarding pass.
func naiveDay(ctx context.Context) (NaiveSummary, error) {
	api := newBookingAPI(departures())
	defer api.close()
	client := &bookingClient{base: api.srv.URL, http: api.srv.Client()}

	var sum NaiveSummary
	for n := 1; n <= passengers; n++ {
		switch n {
		case downAt:
			api.setDown(true)
		case upAt:
			api.setDown(false)
		}
		flight := flightOf(n)
		booking := fmt.Sprintf("PNR%04d", n)
		_, err := threeTimes(ctx, func() (SeatMap, error) { return client.SeatMap(ctx, flight) })
		if err == nil {
			_, err = threeTimes(ctx, func() (BoardingPass, error) {
				return client.StorePass(ctx, BoardingPass{Key: flight + "/" + booking, Booking: booking, Flight: flight})
			})
		}
		if ctx.Err() != nil {
			return NaiveSummary{}, ctx.Err()
		}
		if err != nil {
			sum.TurnedAway++
			continue
		}
		sum.CheckedIn++
	}
	_, sum.DeadCalls, _ = api.ledger()
	return sum, nil
}

// threeTimes is the retry loop found in many clients: try, wait, try again.
func threeTimes[T any](ctx context.Context, call func() (T, error)) (T, error) {
	wait := 2 * time.Millisecond
	for attempt := 1; ; attempt++ {
		v, err := call()
		if err == nil || attempt == 3 || ctx.Err() != nil {
			return v, err
		}
		time.Sleep(wait)
		wait *= 2
	}
}
