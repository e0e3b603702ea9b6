package rollout_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"time"

	"github.com/ringfence/ringfence/rollout"
)

// A rollout exposes its first ring, judges it, and widens it only when the
// ring is healthy. This one needs 100 canary calls per ring and bakes for
// no time, so each Evaluate after enough traffic moves it on.
func Example() {
	r, err := rollout.New(rollout.Plan{
		Name: "search-v2",
		Stages: []rollout.Stage{
			{Percent: 5, MinSamples: 100},
			{Percent: 50, MinSamples: 100},
			{Percent: 100, MinSamples: 100},
		},
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	if err := r.Start(context.Background()); err != nil {
		fmt.Println(err)
		return
	}
	search := func(context.Context) (string, error) { return "results", nil }
	for r.Status().State == rollout.Running {
		for i := range 2000 {
			rollout.Do(context.Background(), r, fmt.Sprintf("user-%d", i), search, search)
		}
		r.Evaluate()
	}
	for _, e := range r.History() {
		fmt.Printf("%v -> %v at %v%%: %s\n", e.From, e.To, e.Percent, e.Reason)
	}
	// Output:
	// pending -> running at 5%: started
	// running -> running at 50%: judge: healthy at 5%, advancing to 50%
	// running -> running at 100%: judge: healthy at 50%, advancing to 100%
	// running -> promoted at 100%: judge: last stage healthy
}

// A canary that fails five times as often as the baseline is rolled back
// by the error-rate test, and every key returns to the baseline.
func Example_rollBack() {
	r, _ := rollout.New(rollout.Plan{Name: "cache-v2"})
	r.Start(context.Background())
	for i := range 200_000 {
		host := fmt.Sprintf("host-%d", i)
		v := r.Variant(host)
		var err error
		if (v == rollout.Baseline && i%100 == 0) || (v == rollout.Canary && i%20 == 0) {
			err = errors.New("timeout")
		}
		r.ObserveKey(host, v, err, time.Millisecond)
	}
	v, _ := r.Evaluate()
	st := r.Status()
	fmt.Println(st.State, v.Rule)
	fmt.Printf("baseline %.1f%% of %d, canary %.1f%% of %d\n",
		100*v.Baseline.ErrorRate, v.Baseline.Samples, 100*v.Canary.ErrorRate, v.Canary.Samples)
	fmt.Println("canary keys now:", r.Variant("host-1") == rollout.Canary)
	// Output:
	// rolled-back error-rate
	// baseline 1.0% of 199791, canary 5.3% of 209
	// canary keys now: false
}

// Callers that dispatch themselves assign with Variant and report each
// call with ObserveKey, under the same key, so that the judge counts a
// host's calls together and notices hosts that stop reporting. Here every
// host that gets the canary crashes before its first report.
func ExampleRollout_ObserveKey() {
	r, _ := rollout.New(rollout.Plan{Name: "agent-v7", Stages: []rollout.Stage{{Percent: 5}, {Percent: 100}}})
	r.Start(context.Background())
	for i := range 2000 {
		host := fmt.Sprintf("host-%d", i)
		v := r.Variant(host)
		if v == rollout.Canary {
			continue // crashed on loading the update: never reports
		}
		r.ObserveKey(host, v, nil, 3*time.Millisecond)
	}
	v, _ := r.Evaluate()
	fmt.Println(r.Status().State, v.Rule)
	fmt.Printf("%d of the canary's %.0f hosts silent, %d of the baseline's followed hosts\n",
		v.SilentKeys, v.Canary.Assigned, v.SilentBaselineKeys)
	// Output:
	// rolled-back silence
	// 82 of the canary's 83 hosts silent, 0 of the baseline's followed hosts
}

// CheckTraffic says whether a plan can gather its samples at the traffic
// it will see, and which first ring can.
func ExampleCheckTraffic() {
	rep, _ := rollout.CheckTraffic(rollout.Plan{}, rollout.Traffic{CallsPerSecond: 20})
	fmt.Printf("default plan at 20 calls/s: viable %v, needs %.0f calls/s\n", rep.Viable, rep.NeededCallsPerSecond)
	first := rep.Stages[0]
	fmt.Printf("first ring %v%%: %.3f canary calls/s, %v to gather, deadline %v\n",
		first.Percent, first.CanaryCallsPerSecond, first.Gather.Round(time.Minute), first.Deadline)
	fmt.Printf("smallest viable first ring: %v%%\n", rep.FirstViablePercent)
	_, err := rollout.New(rollout.Plan{Traffic: rollout.Traffic{CallsPerSecond: 20}})
	fmt.Println(errors.Is(err, rollout.ErrPlan))
	// Output:
	// default plan at 20 calls/s: viable false, needs 23 calls/s
	// first ring 0.1%: 0.020 canary calls/s, 6h57m0s to gather, deadline 6h0m0s
	// smallest viable first ring: 0.1158%
	// true
}

// Evidence from several processes adds up to the fleet's: each process
// publishes its Rollout.Evidence, and one evaluator merges them and judges
// the sum through Plan.Evidence.
func ExampleEvidence_Merge() {
	plan := rollout.Plan{Name: "sdk-v4", Stages: []rollout.Stage{{Percent: 50, MinSamples: 100}, {Percent: 100}},
		Judge: rollout.Judge{LatencyThreshold: time.Second}}
	var published []rollout.Evidence // in production: a shared store
	for p := range 3 {
		r, _ := rollout.New(plan)
		r.Start(context.Background())
		for i := range 60 {
			host := fmt.Sprintf("p%d-host-%d", p, i)
			r.ObserveKey(host, r.Variant(host), nil, time.Millisecond)
		}
		doc, _ := json.Marshal(r.Evidence())
		var e rollout.Evidence
		if err := json.Unmarshal(doc, &e); err != nil {
			fmt.Println(err)
			return
		}
		published = append(published, e)
	}

	evaluator, _ := rollout.New(rollout.Plan{
		Name: plan.Name, Stages: plan.Stages, Judge: plan.Judge,
		Evidence: func(_ context.Context, local rollout.Evidence) (rollout.Evidence, error) {
			var fleet rollout.Evidence
			for _, e := range published {
				if err := fleet.Merge(e); err != nil {
					return rollout.Evidence{}, err
				}
			}
			return fleet, nil
		},
	})
	evaluator.Start(context.Background())
	v, _ := evaluator.Evaluate()
	fmt.Println(v.Baseline.Samples+v.Canary.Samples, "calls judged:", evaluator.Status().Percent, "percent now")
	// Output: 180 calls judged: 100 percent now
}

// A change that fails its pre-flight check is rolled back before any key
// sees it.
func ExampleRollout_Start_validation() {
	content := []byte(`{"fields": 20}`)
	parse := func(b []byte) error { // the runtime's own parser
		return errors.New("want 21 fields, got 20")
	}
	r, _ := rollout.New(rollout.Plan{
		Name:     "channel-file-291",
		Validate: func(context.Context) error { return parse(content) },
	})
	err := r.Start(context.Background())
	fmt.Println(errors.Is(err, rollout.ErrValidation))
	fmt.Println(r.Status().State, "-", r.Status().Reason)
	// Output:
	// true
	// rolled-back - validation failed: want 21 fields, got 20
}

// Variant is deterministic: every process assigns a key the same way.
func ExampleRollout_Variant() {
	r, _ := rollout.New(rollout.Plan{Salt: "checkout-v2", Stages: []rollout.Stage{{Percent: 10}, {Percent: 100}}})
	r.Start(context.Background())
	canary := 0
	for i := range 100_000 {
		if r.Variant(fmt.Sprintf("tenant-%d", i)) == rollout.Canary {
			canary++
		}
	}
	fmt.Println("tenants in the canary:", canary)
	// Output: tenants in the canary: 10087
}

func ExampleGeometric() {
	stages, _ := rollout.Geometric(0.01, 10, time.Hour)
	for _, s := range stages {
		fmt.Printf("%v%% for %v\n", s.Percent, s.Bake)
	}
	// Output:
	// 0.01% for 1h0m0s
	// 0.1% for 1h0m0s
	// 1% for 1h0m0s
	// 10% for 1h0m0s
	// 100% for 1h0m0s
}

// A restarted process resumes where the last one stopped.
func ExampleNewFileStore() {
	dir, _ := os.MkdirTemp("", "rollout")
	defer os.RemoveAll(dir)
	store, _ := rollout.NewFileStore(filepath.Join(dir, "sdk-v3.state"))
	plan := rollout.Plan{
		Name:   "sdk-v3",
		Store:  store,
		Stages: []rollout.Stage{{Percent: 1, MinSamples: 10}, {Percent: 25, MinSamples: 10}, {Percent: 100}},
	}

	first, _ := rollout.New(plan)
	first.Start(context.Background())
	first.Observe(rollout.Baseline, nil, time.Millisecond)
	for range 10 {
		first.Observe(rollout.Canary, nil, time.Millisecond)
	}
	first.Evaluate() // 1% is healthy: on to 25%

	second, _ := rollout.New(plan) // after a restart
	if err := second.Start(context.Background()); err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(second.Status().State, second.Status().Percent)
	// Output: running 25
}

// A shadow stage runs the canary next to the baseline and serves only the
// baseline's answer, without waiting for the canary; a canary that answers
// differently counts as failing.
func ExampleDoCompare() {
	r, _ := rollout.New(rollout.Plan{Stages: []rollout.Stage{{Percent: 100, Shadow: true}}})
	r.Start(context.Background())
	oldPrice := func(context.Context) (int, error) { return 100, nil }
	newPrice := func(context.Context) (int, error) { return 99, nil }
	price, err := rollout.DoCompare(context.Background(), r, "cart-7", oldPrice, newPrice,
		func(a, b int) bool { return a == b })
	fmt.Println(price, err)
	for r.Status().Verdict.Canary.Samples == 0 {
		runtime.Gosched() // the shadow runs detached; wait for it to report
	}
	fmt.Println("canary mismatches:", r.Status().Verdict.Canary.Errors)
	// Output:
	// 100 <nil>
	// canary mismatches: 1
}

// Operators can stop a rollout at any time.
func ExampleRollout_Abort() {
	r, _ := rollout.New(rollout.Plan{
		Name:    "pricing-v4",
		OnEvent: func(e rollout.Event) { fmt.Printf("%v -> %v: %s\n", e.From, e.To, e.Reason) },
	})
	r.Start(context.Background())
	r.Pause("waiting for the on-call engineer")
	r.Abort("customer reports of wrong prices")
	// Output:
	// pending -> running: started
	// running -> paused: waiting for the on-call engineer
	// paused -> rolled-back: customer reports of wrong prices
}
