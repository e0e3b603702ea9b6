package etcd_test

import (
	"context"
	"fmt"
	"log"
	"log/slog"
	"os"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/ringfence/ringfence/breaker"
	"github.com/ringfence/ringfence/etcd"
	"github.com/ringfence/ringfence/etcd/internal/etcdtest"
	"github.com/ringfence/ringfence/fallback"
)

// startEtcd starts an embedded etcd for an example; a deployment dials its
// own cluster instead.
func startEtcd(ctx context.Context) (endpoints []string, stop func()) {
	dir, err := os.MkdirTemp("", "etcd-example")
	if err != nil {
		log.Fatal(err)
	}
	srv, err := etcdtest.Start(ctx, dir)
	if err != nil {
		log.Fatal(err)
	}
	return srv.Endpoints(), func() { srv.Stop(); os.RemoveAll(dir) }
}

func dial(endpoints []string) *clientv3.Client {
	c, err := clientv3.New(clientv3.Config{Endpoints: endpoints, DialTimeout: 2 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		log.Fatal(err)
	}
	return c
}

// waitUntil polls ok for up to ten seconds.
func waitUntil(ok func() bool) bool {
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
		if ok() {
			return true
		}
	}
	return false
}

// Two instances share the payments switch: the operator's change on one
// reaches the other through etcd, and Mode stays a local atomic load.
func ExampleModeStore() {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	endpoints, stop := startEtcd(ctx)
	defer stop()
	quiet := etcd.Settings{Logger: slog.New(slog.DiscardHandler)}

	var switches []*fallback.Switch
	for range 2 {
		client := dial(endpoints)
		defer client.Close()
		store, err := etcd.NewModeStore(client, "payments", etcd.ModeStoreSettings{Settings: quiet})
		if err != nil {
			log.Fatal(err)
		}
		defer store.Close()
		sw, err := fallback.NewSwitch(ctx, "payments", fallback.SwitchSettings{Store: store})
		if err != nil {
			log.Fatal(err)
		}
		defer sw.Close()
		switches = append(switches, sw)
	}

	if err := switches[0].Set(ctx, fallback.ModeManual, "alice", "provider outage"); err != nil {
		log.Fatal(err)
	}
	waitUntil(func() bool { return switches[1].Mode() == fallback.ModeManual })
	last := switches[1].History()[0]
	fmt.Println("the other instance:", switches[1].Mode(), "by", last.Actor, "-", last.Reason)
	// Output:
	// the other instance: manual by alice - provider outage
}

// An operator forces every breaker of the "backend" group open on every
// instance, then releases them.
func ExampleBreakerControl() {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	endpoints, stop := startEtcd(ctx)
	defer stop()
	client := dial(endpoints)
	defer client.Close()

	control, err := etcd.NewBreakerControl(client, etcd.Settings{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		log.Fatal(err)
	}
	defer control.Close()
	search, err := breaker.New(breaker.Settings{Name: "search"})
	if err != nil {
		log.Fatal(err)
	}
	control.Attach(search, "backend")

	err = control.Set(ctx, etcd.Intent{Group: "backend", Action: etcd.ForceOpen, Actor: "bob", Reason: "reindexing"})
	if err != nil {
		log.Fatal(err)
	}
	waitUntil(func() bool { return search.State() == breaker.ForcedOpen })
	fmt.Println(search.State(), "-", search.Snapshot().Reason)

	if err := control.Set(ctx, etcd.Intent{Group: "backend", Action: etcd.Release, Actor: "bob"}); err != nil {
		log.Fatal(err)
	}
	waitUntil(func() bool { return search.State() == breaker.Closed })
	fmt.Println(search.State())
	// Output:
	// forced-open - forced open: reindexing (by bob, fleet intent for group backend)
	// closed
}
