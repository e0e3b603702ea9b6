package etcd_test

import (
	"context"
	"fmt"
	"log"
	"log/slog"
	"strings"
	"time"

	"github.com/ringfence/ringfence/admin"
	"github.com/ringfence/ringfence/etcd"
	"github.com/ringfence/ringfence/rollout"
)

// An operator pauses the fleet's rollout from the console of an instance
// that does not judge it: the intent goes through etcd to the elected
// judge, which applies it, and the instance's own follower follows.
func ExampleRolloutControl() {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	endpoints, stop := startEtcd(ctx)
	defer stop()
	quiet := etcd.Settings{Logger: slog.New(slog.DiscardHandler)}
	plan := rollout.Plan{Name: "parser-v2", Stages: []rollout.Stage{{Percent: 10, Bake: time.Hour}, {Percent: 100}}}

	// The judging instance.
	leader := dial(endpoints)
	defer leader.Close()
	e, err := etcd.NewEvaluator(ctx, leader, "parser-v2", etcd.EvaluatorSettings{Settings: quiet, ID: "judge"})
	if err != nil {
		log.Fatal(err)
	}
	defer e.Close()
	fe, err := etcd.NewFleetEvidence(ctx, leader, "parser-v2", etcd.EvidenceSettings{Settings: quiet})
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
	runCtx, stopJudge := context.WithCancel(ctx)
	ran := make(chan error, 1)
	go func() { ran <- judge.Run(runCtx) }()
	defer func() {
		stopJudge()
		<-ran
	}()
	waitUntil(func() bool { return judge.Judged().Status().State == rollout.Running })

	// Another instance, with the operator's console.
	client := dial(endpoints)
	defer client.Close()
	follower, err := etcd.FollowRollout(client, plan, quiet)
	if err != nil {
		log.Fatal(err)
	}
	defer follower.Close()
	rc, err := etcd.NewRolloutControl(client, "parser-v2", quiet)
	if err != nil {
		log.Fatal(err)
	}
	fleet, err := etcd.NewAdmin(etcd.AdminSettings{
		Objects:  admin.Objects{Rollouts: []*rollout.Rollout{follower.Rollout()}},
		Rollouts: map[string]*etcd.RolloutControl{"parser-v2": rc},
	})
	if err != nil {
		log.Fatal(err)
	}
	waitUntil(func() bool { return follower.Rollout().Status().State == rollout.Running })

	err = fleet.Apply(ctx, admin.Action{Kind: admin.KindRollout, Name: "parser-v2", Verb: admin.VerbPause, Reason: "parse errors up", Actor: "alice"})
	fmt.Println("pause:", err)
	st := judge.Judged().Status()
	reason, _, _ := strings.Cut(st.Reason, ", intent ")
	fmt.Println("judged:", st.State, "-", reason+")")
	waitUntil(func() bool { return follower.Rollout().Status().State == rollout.Paused })
	fmt.Println("follower:", follower.Rollout().Status().State)
	// Output:
	// pause: <nil>
	// judged: paused - parse errors up (by alice)
	// follower: paused
}
