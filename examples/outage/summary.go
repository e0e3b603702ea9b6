package main

import (
	"fmt"
	"io"
)

// print writes the summary table.
func (s Summary) print(w io.Writer) {
	fmt.Fprintf(w, "\nThe same day with a naive client (3 attempts per call, no breaker, no fallback), for comparison:\n\n")
	row := func(label string, rf, naive any) {
		fmt.Fprintf(w, "  %-58s %9v %6v\n", label, rf, naive)
	}
	row("", "ringfence", "naive")
	row("passengers at the desk", s.Passengers, s.Passengers)
	row("checked in", s.CheckedIn, s.Naive.CheckedIn)
	row("turned away", s.Passengers-s.CheckedIn, s.Naive.TurnedAway)
	row("  seat map from the booking API", s.SeatMapLive, s.Naive.CheckedIn)
	row("  seat map from the last-known-good copy, breaker open", s.SeatMapStale, "-")
	row("  seat map from the last-known-good copy, manual mode", s.SeatMapStaleManual, "-")
	row("  boarding pass stored online", s.PassOnline, s.Naive.CheckedIn)
	row("  boarding pass issued, record queued, breaker open", s.PassQueued, "-")
	row("  boarding pass issued, record queued, manual mode", s.PassQueuedManual, "-")
	row("requests that reached the dead API", s.DeadCalls, s.Naive.DeadCalls)
	row("records queued in the outbox", s.Queued, "-")
	row("  replayed after recovery", s.Replayed, "-")
	row("  lost", s.Lost, "-")
	row("duplicate deliveries dropped by the API (idempotency key)", s.DuplicatesDropped, "-")
	row("duplicate boarding passes applied", s.DuplicatesApplied, "-")
}
