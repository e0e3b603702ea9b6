package main

import (
	"bytes"
	"context"
	"io"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestShopDay(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	sum, err := simulate(ctx, io.Discard)
	require.NoError(t, err, "simulate")

	t.Run("every payment is approved, online or offline", func(t *testing.T) {
		assert.Zero(t, sum.Declined, "declined")
		assert.Equal(t, payments, sum.Online+sum.Offline, "approved")
		// Payments 30 to 89 were stored: the outage, then the ten taken
		// after the recovery, which queued behind their tills' stored
		// payments until the replay at payment 90.
		assert.Equal(t, replayAt-downAt, sum.Offline, "approved offline")
		assert.Equal(t, replayAt-upAt, sum.QueuedAfter, "queued behind earlier payments")
	})

	t.Run("every stored payment is charged exactly once, in order", func(t *testing.T) {
		assert.Equal(t, sum.Offline, sum.Replayed, "replayed")
		assert.Zero(t, sum.Lost, "lost")
		assert.Zero(t, sum.DeadLetters, "dead letters")
		assert.Zero(t, sum.DuplicatesCharged, "charged twice")
		assert.Zero(t, sum.OutOfOrder, "charged out of order")
		assert.Equal(t, payments, sum.Charged, "charges in the ledger")
		assert.Equal(t, sum.TakenCents, sum.ChargedCents, "amount charged")
	})

	t.Run("the flaky processor makes deliveries fail and arrive twice", func(t *testing.T) {
		// Its pattern of failures is fixed, and the shop's calls are made
		// one at a time, so these are the same on every run.
		assert.Equal(t, 40, sum.FlakyAnswers, "requests the flaky processor failed")
		assert.Equal(t, 26, sum.Redelivered, "failed deliveries retried by the replay")
		assert.Equal(t, 14, sum.DuplicatesDropped, "duplicate deliveries dropped")
	})

	t.Run("the dead processor sees only the first payment's attempts", func(t *testing.T) {
		// Payment 30's three attempts trip the breaker. A probe could
		// reach the dead processor only if taking the next few payments
		// stalled for the whole open wait (800ms at least); allow for two.
		assert.GreaterOrEqual(t, sum.DeadCalls, 3, "requests to the dead processor")
		assert.LessOrEqual(t, sum.DeadCalls, 5, "requests to the dead processor")
	})

	t.Run("the invariants hold", func(t *testing.T) {
		assert.NoError(t, sum.check(), "check")
	})
}

func TestRunPrintsTheStory(t *testing.T) {
	var out bytes.Buffer
	code := run(&out)
	require.Equal(t, 0, code, "run exit status; output:\n%s", out.String())
	for _, want := range []string{
		"#30   breaker card-processor: closed -> open (3 consecutive failures)",
		"queued behind its till's earlier payments",
		"#90   back office replays the outbox: 60 stored payments",
		"#90   replay finished: 60 payments forwarded, 26 failed deliveries retried, 0 dead letters",
		"OK: every payment charged exactly once",
	} {
		assert.Contains(t, out.String(), want, "run output")
	}
}

func TestCheckRejectsABrokenDay(t *testing.T) {
	good := Summary{
		Payments: 10, Online: 6, Offline: 4, TakenCents: 1000,
		Replayed: 4, Redelivered: 1, Charged: 10, ChargedCents: 1000, DuplicatesDropped: 1,
	}
	require.NoError(t, good.check(), "check of a good day")
	tests := []struct {
		name  string
		spoil func(*Summary)
	}{
		{"a lost payment fails", func(s *Summary) { s.Lost = 1 }},
		{"a dead letter fails", func(s *Summary) { s.DeadLetters = 1 }},
		{"a stored payment never replayed fails", func(s *Summary) { s.Replayed-- }},
		{"a payment charged twice fails", func(s *Summary) { s.DuplicatesCharged = 1 }},
		{"a payment charged out of order fails", func(s *Summary) { s.OutOfOrder = 1 }},
		{"a ledger that does not add up fails", func(s *Summary) { s.ChargedCents++ }},
		{"a missing charge fails", func(s *Summary) { s.Charged-- }},
		{"an unexercised flaky processor fails", func(s *Summary) { s.Redelivered = 0 }},
		{"a payment unaccounted for fails", func(s *Summary) { s.Online-- }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := good
			tt.spoil(&s)
			assert.Error(t, s.check(), "check(%+v)", s)
		})
	}
}

func TestProcessorCatchesDuplicatesAndDisorder(t *testing.T) {
	p := &processor{applied: make(map[string]bool), lastSeq: make(map[string]int)}
	p.apply(Payment{Key: "till-1/0002", Till: "till-1", Seq: 2, Cents: 200})
	p.apply(Payment{Key: "till-1/0001", Till: "till-1", Seq: 1, Cents: 100}) // overtaken
	p.apply(Payment{Key: "till-1/0002", Till: "till-1", Seq: 2, Cents: 200}) // sent again
	p.apply(Payment{Key: "till-2/0001", Till: "till-2", Seq: 1, Cents: 300})
	led := p.ledger()
	assert.Equal(t, 1, led.outOfOrder, "out of order")
	assert.Equal(t, 1, led.duplicates, "duplicates dropped")
	assert.Len(t, led.charges, 3, "charges")
}
