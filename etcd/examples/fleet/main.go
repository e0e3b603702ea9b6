// Command fleet runs twenty instances of a small service against one
// embedded etcd and shows what the fleet shares through it: an operator's
// manual mode reaches every instance, a forced breaker reaches every
// instance, a staged update is judged on the whole fleet's counts by one
// elected evaluator and rolled back in its first ring, and an etcd restart
// stops no instance from serving. It exits with status 1 if an invariant
// fails.
//
//	go run ./etcd/examples/fleet
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"sync"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"

	"github.com/ringfence/ringfence/breaker"
	"github.com/ringfence/ringfence/etcd"
	"github.com/ringfence/ringfence/etcd/internal/etcdtest"
	"github.com/ringfence/ringfence/fallback"
	"github.com/ringfence/ringfence/rollout"
)

const (
	instances = 20
	update    = "update-7"
	// waitLimit bounds every wait for the fleet; the promise is 1 s for a
	// change and StaleAfter for staleness.
	waitLimit = 15 * time.Second
)

var errUpdate = errors.New("update-7: nil pointer in the new price rule")

func main() {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if err := run(ctx, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "fleet:", err)
		os.Exit(1)
	}
}

// instance is one process of the service.
type instance struct {
	id      string
	client  *clientv3.Client
	modes   *etcd.ModeStore
	sw      *fallback.Switch
	control *etcd.BreakerControl
	search  *breaker.Breaker
	fe      *etcd.FleetEvidence
	judge   *etcd.RolloutJudge    // the evaluator's rollout, on the leader
	follow  *etcd.RolloutFollower // the fleet's rollout, on the others
	changed chan struct{}         // a signal per change of sw or search
}

// rollout returns the instance's current rollout.
func (in *instance) rollout() *rollout.Rollout {
	if in.follow != nil {
		return in.follow.Rollout()
	}
	if in.judge != nil {
		return in.judge.Rollout()
	}
	return nil
}

func (in *instance) poke() {
	select {
	case in.changed <- struct{}{}:
	default:
	}
}

// serve answers one request: it reads the mode and calls the search
// dependency through its breaker, never waiting for etcd.
func (in *instance) serve(ctx context.Context) error {
	if in.sw.Mode() == fallback.ModeManual {
		return nil // the manual procedure
	}
	_, err := breaker.Do(ctx, in.search, func(context.Context) (string, error) { return "ok", nil })
	return err
}

func settings() etcd.Settings {
	return etcd.Settings{
		StaleAfter:     time.Second,
		RequestTimeout: 500 * time.Millisecond,
		Logger:         slog.New(slog.DiscardHandler),
	}
}

func newInstance(ctx context.Context, n int, endpoints []string) (*instance, error) {
	in := &instance{id: fmt.Sprintf("instance-%02d", n), changed: make(chan struct{}, 1)}
	var err error
	in.client, err = clientv3.New(clientv3.Config{
		Endpoints: endpoints, DialTimeout: 2 * time.Second, Logger: zap.NewNop(),
		DialKeepAliveTime: time.Second, DialKeepAliveTimeout: time.Second,
		DialOptions: []grpc.DialOption{grpc.WithConnectParams(grpc.ConnectParams{
			Backoff:           backoff.Config{BaseDelay: 50 * time.Millisecond, Multiplier: 1.6, MaxDelay: 500 * time.Millisecond},
			MinConnectTimeout: time.Second,
		})},
	})
	if err != nil {
		return nil, err
	}
	if in.modes, err = etcd.NewModeStore(in.client, "payments", etcd.ModeStoreSettings{Settings: settings()}); err != nil {
		return nil, err
	}
	if in.sw, err = fallback.NewSwitch(ctx, "payments", fallback.SwitchSettings{
		Store: in.modes, OnChange: func(fallback.ModeChange) { in.poke() },
	}); err != nil {
		return nil, err
	}
	if in.control, err = etcd.NewBreakerControl(in.client, settings()); err != nil {
		return nil, err
	}
	if in.search, err = breaker.New(breaker.Settings{Name: "search", OnChange: func(breaker.Change) { in.poke() }}); err != nil {
		return nil, err
	}
	in.control.Attach(in.search, "backend")
	in.fe, err = etcd.NewFleetEvidence(ctx, in.client, update, etcd.EvidenceSettings{Settings: settings(), Instance: in.id})
	return in, err
}

func (in *instance) close() {
	if in.follow != nil {
		in.follow.Close()
	}
	if in.fe != nil {
		in.fe.Close()
	}
	if in.control != nil {
		in.control.Close()
	}
	if in.sw != nil {
		in.sw.Close()
	}
	if in.modes != nil {
		in.modes.Close()
	}
	if in.client != nil {
		in.client.Close()
	}
}

// awaitAll waits until ok holds on every instance and returns how long
// after start the slowest got there.
func awaitAll(ctx context.Context, start time.Time, fleet []*instance, ok func(*instance) bool) (time.Duration, error) {
	ctx, cancel := context.WithTimeout(ctx, waitLimit)
	defer cancel()
	var slowest time.Duration
	for _, in := range fleet {
		for !ok(in) {
			select {
			case <-in.changed:
			case <-time.After(20 * time.Millisecond):
			case <-ctx.Done():
				return 0, fmt.Errorf("%s did not follow within %v", in.id, waitLimit)
			}
		}
		slowest = max(slowest, time.Since(start))
	}
	return slowest, nil
}

func run(ctx context.Context, w io.Writer) error {
	dir, err := os.MkdirTemp("", "fleet-etcd")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	srv, err := etcdtest.Start(ctx, dir)
	if err != nil {
		return err
	}
	defer srv.Stop()

	begin := time.Now()
	say := func(format string, args ...any) {
		fmt.Fprintf(w, "%7.3fs  %s\n", time.Since(begin).Seconds(), fmt.Sprintf(format, args...))
	}
	var fleet []*instance
	defer func() {
		for _, in := range fleet {
			in.close()
		}
	}()
	for n := range instances {
		in, err := newInstance(ctx, n, srv.Endpoints())
		if in != nil {
			fleet = append(fleet, in)
		}
		if err != nil {
			return err
		}
	}
	say("etcd and %d instances are up", len(fleet))

	// 1. One operator action, every instance.
	start := time.Now()
	if err := fleet[7].sw.Set(ctx, fallback.ModeManual, "alice", "payments provider returns wrong totals"); err != nil {
		return err
	}
	say("alice puts payments in manual mode on %s", fleet[7].id)
	slowest, err := awaitAll(ctx, start, fleet, func(in *instance) bool { return in.sw.Mode() == fallback.ModeManual })
	if err != nil {
		return err
	}
	say("all %d instances are in manual mode; the slowest followed after %v", len(fleet), slowest.Round(time.Millisecond))

	start = time.Now()
	if err := fleet[0].control.Set(ctx, etcd.Intent{Group: "backend", Action: etcd.ForceOpen, Actor: "bob", Reason: "search cluster reindexing"}); err != nil {
		return err
	}
	slowest, err = awaitAll(ctx, start, fleet, func(in *instance) bool { return in.search.State() == breaker.ForcedOpen })
	if err != nil {
		return err
	}
	say("bob forces the backend breakers open: all %d follow within %v", len(fleet), slowest.Round(time.Millisecond))
	if err := fleet[0].control.Set(ctx, etcd.Intent{Group: "backend", Action: etcd.Release, Actor: "bob", Reason: "reindex done"}); err != nil {
		return err
	}
	if _, err := awaitAll(ctx, start, fleet, func(in *instance) bool { return in.search.State() == breaker.Closed }); err != nil {
		return err
	}
	say("bob releases them: every search breaker is back under automatic control")

	// 2. A staged update judged on the fleet's counts.
	if err := rollOut(ctx, fleet, say); err != nil {
		return err
	}

	// 3. etcd goes away; nobody stops serving.
	srv.Stop()
	start = time.Now()
	say("etcd stops")
	served := 0
	for _, in := range fleet {
		for range 50 {
			if err := in.serve(ctx); err != nil {
				return fmt.Errorf("%s failed to serve while etcd was down: %w", in.id, err)
			}
			served++
		}
	}
	say("while etcd is down the fleet serves %d requests, still in manual mode", served)
	slowest, err = awaitAll(ctx, start, fleet, func(in *instance) bool { return in.modes.Freshness().Stale })
	if err != nil {
		return err
	}
	f := fleet[0].modes.Freshness()
	say("every instance reports its fleet view stale after %v", slowest.Round(time.Millisecond))
	say("  (%s: stale since %v into the run, last heard %v ago)",
		fleet[0].id, f.Since.Sub(begin).Round(time.Millisecond), f.Age(time.Now()).Round(time.Millisecond))
	if err := srv.Restart(ctx); err != nil {
		return err
	}
	start = time.Now()
	say("etcd restarts")
	slowest, err = awaitAll(ctx, start, fleet, func(in *instance) bool {
		return !in.modes.Freshness().Stale && !in.control.Freshness().Stale
	})
	if err != nil {
		return err
	}
	say("every instance is current again within %v, with no restart", slowest.Round(time.Millisecond))
	start = time.Now()
	if err := fleet[12].sw.Set(ctx, fallback.ModeAuto, "alice", "provider fixed"); err != nil {
		return err
	}
	slowest, err = awaitAll(ctx, start, fleet, func(in *instance) bool { return in.sw.Mode() == fallback.ModeAuto })
	if err != nil {
		return err
	}
	say("alice returns payments to auto on %s: all %d follow within %v", fleet[12].id, len(fleet), slowest.Round(time.Millisecond))
	hist, err := fleet[0].modes.History(ctx)
	if err != nil {
		return err
	}
	for _, c := range hist {
		say("  fleet history: %v -> %v by %s (%s)", c.From, c.To, c.Actor, c.Reason)
	}
	return nil
}

// rollOut elects an evaluator, sends keyed traffic through every
// instance's rollout with a bad canary, and checks that the evaluator
// rolls the update back in its first ring and every instance follows.
func rollOut(ctx context.Context, fleet []*instance, say func(string, ...any)) error {
	stages := []rollout.Stage{{Percent: 5}, {Percent: 50}, {Percent: 100}}
	evaluators := make([]*etcd.Evaluator, len(fleet))
	for i, in := range fleet {
		e, err := etcd.NewEvaluator(ctx, in.client, update, etcd.EvaluatorSettings{Settings: settings(), ID: in.id})
		if err != nil {
			return err
		}
		defer e.Close()
		evaluators[i] = e
	}
	type won struct {
		i     int
		store *etcd.RolloutStore
	}
	campaign, stopCampaigns := context.WithCancel(ctx)
	wins := make(chan won, len(fleet))
	var wg sync.WaitGroup
	defer func() {
		stopCampaigns() // the candidates that did not win stop waiting
		wg.Wait()
	}()
	for i, e := range evaluators {
		wg.Go(func() {
			if rs, err := e.Campaign(campaign); err == nil {
				wins <- won{i, rs}
			}
		})
	}
	var leader won
	select {
	case leader = <-wins:
	case <-time.After(waitLimit):
		return errors.New("no evaluator elected")
	}
	say("%s is elected to judge %s for the fleet", fleet[leader.i].id, update)

	judged := fleet[leader.i]
	// The judge serves the baseline to every key if its fleet view goes
	// stale; here it is stepped by hand rather than with its Run.
	var err error
	judged.judge, err = evaluators[leader.i].JudgeRollout(rollout.Plan{Name: update, Stages: stages}, leader.store, judged.fe)
	if err != nil {
		return err
	}
	r := judged.judge.Judged()
	if err := r.Start(ctx); err != nil {
		return err
	}
	for i, in := range fleet {
		if i == leader.i {
			continue
		}
		if in.follow, err = etcd.FollowRollout(in.client, rollout.Plan{Name: update, Stages: stages}, settings()); err != nil {
			return err
		}
	}
	if _, err := awaitAll(ctx, time.Now(), fleet, func(in *instance) bool { return in.rollout().Status().State == rollout.Running }); err != nil {
		return err
	}
	say("%s starts at %v%% of keys on every instance", update, stages[0].Percent)

	canary, failed := 0, 0
	for i, in := range fleet {
		for k := range 400 {
			key := fmt.Sprintf("customer-%d-%d", i, k)
			v := in.rollout().Variant(key)
			var err error
			if v == rollout.Canary {
				canary++
				if k%5 != 0 {
					err = errUpdate
					failed++
				}
			}
			in.rollout().ObserveKey(key, v, err, time.Millisecond)
		}
		if err := in.fe.PublishOnce(ctx, in.rollout().Evidence()); err != nil {
			return err
		}
	}
	say("the fleet serves %d requests; %d reach the update and %d of those fail", 400*len(fleet), canary, failed)

	start := time.Now()
	v, err := r.Evaluate()
	if err != nil {
		return err
	}
	if st := r.Status(); st.State != rollout.RolledBack || st.Stage != 0 {
		return fmt.Errorf("evaluator: %s is %v at stage %d after a %v verdict, want rolled back in the first ring", update, st.State, st.Stage, v.Outcome)
	}
	say("%s judges the fleet's counts (canary %d calls, %d errors): %v, rolled back at %v%%",
		fleet[leader.i].id, v.Canary.Samples, v.Canary.Errors, v.Outcome, stages[0].Percent)
	slowest, err := awaitAll(ctx, start, fleet, func(in *instance) bool { return in.rollout().Status().State == rollout.RolledBack })
	if err != nil {
		return err
	}
	for i, in := range fleet {
		for k := range 400 {
			if in.rollout().Variant(fmt.Sprintf("customer-%d-%d", i, k)) != rollout.Baseline {
				return fmt.Errorf("%s still sends a key to the rolled-back update", in.id)
			}
		}
	}
	say("every instance sends every key to the baseline within %v", slowest.Round(time.Millisecond))
	return nil
}
