package etcd_test

import (
	"context"
	"errors"
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
	"github.com/ringfence/ringfence/rollout"
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

// The instance that wins the election judges the fleet's rollout; another
// instance follows it, and refuses operator controls, which belong on the
// judge.
func ExampleEvaluator_JudgeRollout() {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	endpoints, stop := startEtcd(ctx)
	defer stop()
	quiet := etcd.Settings{Logger: slog.New(slog.DiscardHandler)}
	plan := rollout.Plan{Name: "checkout", Stages: []rollout.Stage{{Percent: 10}, {Percent: 100}}}

	leader := dial(endpoints)
	defer leader.Close()
	e, err := etcd.NewEvaluator(ctx, leader, "checkout", etcd.EvaluatorSettings{Settings: quiet, ID: "instance-1"})
	if err != nil {
		log.Fatal(err)
	}
	defer e.Close()
	fe, err := etcd.NewFleetEvidence(ctx, leader, "checkout", etcd.EvidenceSettings{Settings: quiet, Instance: "instance-1"})
	if err != nil {
		log.Fatal(err)
	}
	defer fe.Close()
	store, err := e.Campaign(ctx)
	if err != nil {
		log.Fatal(err)
	}
	judge, err := e.JudgeRollout(plan, store, fe)
	if err != nil {
		log.Fatal(err)
	}
	// Run would also evaluate every Plan.Interval and watch the view's
	// freshness; this example only starts the rollout.
	if err := judge.Judged().Start(ctx); err != nil {
		log.Fatal(err)
	}

	other := dial(endpoints)
	defer other.Close()
	follower, err := etcd.FollowRollout(other, plan, quiet)
	if err != nil {
		log.Fatal(err)
	}
	defer follower.Close()
	waitUntil(func() bool { return follower.Rollout().Status().State == rollout.Running })
	waitUntil(func() bool { return !e.Freshness().Stale }) // the evaluator's first read of the election

	fmt.Println("judge:", judge.Rollout().Status().State, "at", judge.Rollout().Status().Percent, "%")
	fmt.Println("follower:", follower.Rollout().Status().State, "at", follower.Rollout().Status().Percent, "%")
	err = follower.Rollout().Pause("operator on the wrong instance")
	fmt.Println("pause on the follower refused:", errors.Is(err, etcd.ErrFollower))
	fmt.Println("follower after it:", follower.Rollout().Status().State)
	fmt.Println("evaluator's view stale:", e.Freshness().Stale, "- evidence view stale:", fe.Freshness().Stale)
	// Output:
	// judge: running at 10 %
	// follower: running at 10 %
	// pause on the follower refused: true
	// follower after it: running
	// evaluator's view stale: false - evidence view stale: false
}
