package main

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestDayAtTheDesk(t *testing.T) {
	// The day takes about a second of wall-clock time (the breaker's waits
	// are real, the API is a real local server). The deadline is only a
	// guard against a hang, generous enough for a machine slowed many
	// times over: the outcome checked below does not depend on speed (see
	// openWait).
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	var out bytes.Buffer
	sum, err := simulate(ctx, &out)
	require.NoError(t, err, "simulate")

	t.Run("every passenger checks in, from the API or the fallbacks", func(t *testing.T) {
		assert.Equal(t, passengers, sum.CheckedIn, "checked in")
		assert.Equal(t, upAt-downAt, sum.SeatMapStale+sum.SeatMapStaleManual, "seat maps from the last-known-good copy")
		assert.Equal(t, manualAt-downAt, sum.SeatMapStale, "stale seat maps while the breaker was open")
		assert.Equal(t, passengers-(upAt-downAt), sum.SeatMapLive, "seat maps from the API")
		assert.Equal(t, manualAt-downAt, sum.PassQueued, "passes queued while the breaker was open")
		assert.Equal(t, upAt-manualAt, sum.PassQueuedManual, "passes queued in manual mode")
		assert.Equal(t, passengers-(upAt-downAt), sum.PassOnline, "passes stored online")
	})

	t.Run("every queued record is replayed once and none is lost", func(t *testing.T) {
		assert.Equal(t, upAt-downAt, sum.Queued, "records queued")
		assert.Equal(t, sum.Queued, sum.Replayed, "records replayed")
		assert.Zero(t, sum.DeadLetters, "dead letters")
		assert.Zero(t, sum.Lost, "records lost")
		assert.Zero(t, sum.DuplicatesApplied, "duplicate passes applied")
		// The write the API stored while failing its answer came back in
		// the replay, and the idempotency key made the API drop it.
		assert.Equal(t, 1, sum.DuplicatesDropped, "duplicate deliveries dropped")
	})

	t.Run("the dead API gets a handful of requests, not three per passenger", func(t *testing.T) {
		// Passenger 40's seat map (3 attempts) and boarding pass (2
		// attempts, the second tripping the breaker). Only a stall of
		// 1.6s between passengers 40 and 50 could let the breaker probe
		// the dead API, adding one request per probe; allow for two.
		assert.GreaterOrEqual(t, sum.DeadCalls, 5, "requests to the dead API")
		assert.LessOrEqual(t, sum.DeadCalls, 7, "requests to the dead API")
		assert.Equal(t, 3*(upAt-downAt), sum.Naive.DeadCalls, "naive requests to the dead API")
		assert.Less(t, sum.DeadCalls, sum.Naive.DeadCalls, "requests to the dead API, ringfence vs naive")
	})

	t.Run("the naive client turns away every passenger of the outage", func(t *testing.T) {
		assert.Equal(t, NaiveSummary{CheckedIn: passengers - (upAt - downAt), TurnedAway: upAt - downAt, DeadCalls: 3 * (upAt - downAt)}, sum.Naive)
	})

	t.Run("the invariants hold", func(t *testing.T) {
		assert.NoError(t, sum.check(), "check")
	})

	t.Run("the timeline and the report tell the story", func(t *testing.T) {
		code := report(&out, sum)
		require.Equal(t, 0, code, "report exit status; output:\n%s", out.String())
		for _, want := range []string{
			"#40   booking API goes down",
			"#40   breaker booking-api opened: 5 consecutive failures",
			"#50   operator: desk auto -> manual",
			"#120  operator: desk manual -> auto",
			"#120  outbox replay started: 80 boarding-pass records",
			"breaker booking-api closed: probe succeeded",
			"#120  outbox replay finished: 80 delivered, 0 dead letters",
			"OK: every passenger checked in",
		} {
			assert.Contains(t, out.String(), want, "output")
		}
		assert.Less(t, strings.Index(out.String(), "replay started"), strings.Index(out.String(), "replay finished"), "replay lines in order")
	})
}

func TestCheckRejectsABrokenDay(t *testing.T) {
	good := Summary{Passengers: 10, CheckedIn: 10, Queued: 3, Replayed: 3, DeadCalls: 5, Naive: NaiveSummary{DeadCalls: 30}}
	require.NoError(t, good.check(), "check of a good day")
	tests := []struct {
		name  string
		spoil func(*Summary)
	}{
		{"a passenger turned away fails", func(s *Summary) { s.CheckedIn-- }},
		{"a lost record fails", func(s *Summary) { s.Lost = 1 }},
		{"a pass applied twice fails", func(s *Summary) { s.DuplicatesApplied = 1 }},
		{"a record never replayed fails", func(s *Summary) { s.Replayed-- }},
		{"a dead letter fails", func(s *Summary) { s.DeadLetters = 1 }},
		{"as many dead calls as the naive client fails", func(s *Summary) { s.DeadCalls = s.Naive.DeadCalls }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := good
			tt.spoil(&s)
			assert.Error(t, s.check(), "check(%+v)", s)
		})
	}
}
