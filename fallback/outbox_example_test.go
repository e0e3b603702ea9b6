package fallback_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"os"

	"golang.org/x/time/rate"

	"github.com/ringfence/ringfence/fallback"
	"github.com/ringfence/ringfence/retry"
)

// The outbox accepts writes while a service is down and delivers them, in
// order, once it is back.
func ExampleOutbox() {
	dir, err := os.MkdirTemp("", "outbox")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)

	ob, err := fallback.OpenOutbox(dir, fallback.OutboxOptions{Rate: rate.Inf})
	if err != nil {
		log.Fatal(err)
	}
	defer ob.Close()

	ctx := context.Background()
	// During the outage: each Enqueue returns once the write is on disk.
	for _, it := range []fallback.Item{
		{Key: "pay-1", Stream: "acct-7", Payload: []byte("debit 10")},
		{Key: "pay-2", Stream: "acct-9", Payload: []byte("debit 5")},
		{Key: "pay-3", Stream: "acct-7", Payload: []byte("credit 3")},
		{Key: "pay-1", Stream: "acct-7", Payload: []byte("debit 10")}, // a retry: stored once
	} {
		if err := ob.Enqueue(ctx, it); err != nil {
			log.Fatal(err)
		}
	}
	fmt.Println("pending:", ob.Pending(), "on acct-7:", ob.StreamPending("acct-7"))

	// The service is back: deliver everything, in order within each stream.
	err = ob.Replay(ctx, func(ctx context.Context, it fallback.Item) error {
		fmt.Printf("deliver %s %s: %s\n", it.Stream, it.Key, it.Payload)
		return nil
	})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("pending:", ob.Pending())
	// Output:
	// pending: 3 on acct-7: 2
	// deliver acct-7 pay-1: debit 10
	// deliver acct-9 pay-2: debit 5
	// deliver acct-7 pay-3: credit 3
	// pending: 0
}

// An item the receiver rejects for good is kept as a dead letter, to be
// fixed and requeued, never dropped.
func ExampleOutbox_DeadLetters() {
	dir, err := os.MkdirTemp("", "outbox")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	ob, err := fallback.OpenOutbox(dir, fallback.OutboxOptions{Rate: rate.Inf})
	if err != nil {
		log.Fatal(err)
	}
	defer ob.Close()

	ctx := context.Background()
	_ = ob.Enqueue(ctx, fallback.Item{Key: "order-1", Stream: "shop", Payload: []byte("2 apples")})
	_ = ob.Enqueue(ctx, fallback.Item{Key: "order-2", Stream: "shop", Payload: []byte("-1 pears")})

	fixed := false
	deliver := func(ctx context.Context, it fallback.Item) error {
		if string(it.Payload) == "-1 pears" && !fixed {
			return retry.Permanent(errors.New("quantity must be positive"))
		}
		fmt.Println("delivered", it.Key)
		return nil
	}
	if err := ob.Replay(ctx, deliver); err != nil {
		log.Fatal(err)
	}
	dead, err := ob.DeadLetters(ctx)
	if err != nil {
		log.Fatal(err)
	}
	for _, d := range dead {
		fmt.Printf("dead letter %s: %s\n", d.Item.Key, d.Reason)
	}

	// An operator fixes the receiver and requeues the item.
	fixed = true
	if err := ob.Requeue("order-2"); err != nil {
		log.Fatal(err)
	}
	if err := ob.Replay(ctx, deliver); err != nil {
		log.Fatal(err)
	}
	fmt.Println("dead letters:", ob.Stats().Dead)
	// Output:
	// delivered order-1
	// dead letter order-2: quantity must be positive
	// delivered order-2
	// dead letters: 0
}
