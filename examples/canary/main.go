// Command canary shows a staged rollout catching a content update that
// crashes part of a fleet, before it reaches more than its first ring.
//
// A fleet of 10,000 simulated hosts loads content updates. Update 291 passes
// its pre-flight validation (the hosts' own parser accepts it), yet crashes
// 30% of the hosts that load it: a crashed host goes silent and stays down
// until someone repairs it. Pushed to every host at once it would crash
// 3,000 of them. Pushed through a rollout.Rollout in rings (1%, 10%, 50%,
// 100% of the hosts), the first ring goes silent, the judge's silence rule
// rolls the update back, and only that ring's vulnerable hosts are lost.
// Update 292 is good and is promoted ring by ring to the whole fleet. Before
// both, update 290 is malformed and is stopped by validation before any host
// sees it.
//
// The fleet is simulated in process, minute by minute: each minute every
// running host reports one health check, which the rollout observes, and then
// the rollout is evaluated. Which hosts are vulnerable, and which health
// checks fail, come from seeded generators, so every run prints the same
// numbers. The program exits with status 1 if the bad update got past its
// first ring, crashed as many hosts as an all-at-once push, or the good update
// was not promoted.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"time"

	"github.com/ringfence/ringfence/rollout"
)

const (
	hosts     = 10_000
	crashRate = 0.30 // share of hosts the bad update crashes
	seed      = 291
	// maxMinutes bounds each rollout; the judge decides long before.
	maxMinutes = 60
)

func main() {
	os.Exit(run(os.Stdout))
}

// run tells the story on w, prints the summary and returns the exit status.
func run(w io.Writer) int {
	sum, err := simulate(context.Background(), w)
	if err != nil {
		fmt.Fprintln(w, "canary:", err)
		return 1
	}
	sum.print(w)
	if err := sum.check(); err != nil {
		fmt.Fprintln(w, "\nFAIL:", err)
		return 1
	}
	fmt.Fprintln(w, "\nOK: the bad update stopped in its first ring; the good one reached every host.")
	return 0
}

// Result is the outcome of one update's rollout.
type Result struct {
	Update   string
	State    rollout.State // final state
	Stage    int           // the stage it ended at
	OnUpdate int           // hosts assigned the update at the end
	Minutes  int           // simulated minutes until the decision
	Exposed  int           // hosts that loaded the update
	Crashed  int           // hosts the update crashed
	Reason   string        // the last transition's reason
}

// Summary is the outcome of the three updates, and what an all-at-once push
// of the bad update would have done.
type Summary struct {
	Malformed, Bad, Good Result
	// AllAtOnceCrashed is the number of hosts the bad update crashes when
	// every host loads it at once.
	AllAtOnceCrashed int
}

// check returns an error naming the first invariant the story broke.
func (s Summary) check() error {
	switch {
	case s.Malformed.State != rollout.RolledBack || s.Malformed.Exposed != 0:
		return fmt.Errorf("malformed update ended %v with %d hosts exposed", s.Malformed.State, s.Malformed.Exposed)
	case s.Bad.State != rollout.RolledBack || s.Bad.Stage != 0:
		return fmt.Errorf("bad update ended %v at stage %d, want rolled back at stage 0", s.Bad.State, s.Bad.Stage)
	case s.Bad.Crashed >= s.AllAtOnceCrashed || s.Bad.Crashed > hosts/100:
		return fmt.Errorf("bad update crashed %d hosts (all at once: %d)", s.Bad.Crashed, s.AllAtOnceCrashed)
	case s.Bad.OnUpdate != 0:
		return fmt.Errorf("%d hosts still assigned the bad update after its roll back", s.Bad.OnUpdate)
	case s.Good.State != rollout.Promoted || s.Good.Exposed != hosts || s.Good.OnUpdate != hosts || s.Good.Crashed != 0:
		return fmt.Errorf("good update ended %v with %d hosts exposed, %d assigned and %d crashed",
			s.Good.State, s.Good.Exposed, s.Good.OnUpdate, s.Good.Crashed)
	}
	return nil
}

// rings is the plan's stage list: 1% of the hosts, then 10%, 50% and all.
// Each ring advances once its canary hosts have sent MinSamples health
// checks and the judge finds no regression. A production plan would also
// set Bake, a wall-clock soak time per ring; the simulation counts minutes
// itself, so it leaves Bake at zero.
func rings() []rollout.Stage {
	return []rollout.Stage{
		{Percent: 1, MinSamples: 300},
		{Percent: 10, MinSamples: 2_000},
		{Percent: 50, MinSamples: 5_000},
		{Percent: 100, MinSamples: 10_000},
	}
}

// judge is how the canary is judged: the defaults. A crashed host sends
// nothing, so the silence rule is what catches a crashing update: hosts
// are the rollout's keys (each health check is observed with its host's
// name), and among the hosts Variant gave the update, far more never
// report than among the hosts it did not; the default ratio (0.8) fires
// once a fifth or more of a ring's hosts have gone silent.
func judge() rollout.Judge {
	return rollout.Judge{}
}

// simulate runs the three rollouts on w and an all-at-once push of the bad
// update for comparison.
func simulate(ctx context.Context, w io.Writer) (Summary, error) {
	var sum Summary
	var err error

	fmt.Fprintf(w, "A fleet of %d hosts; content updates go out in rings of 1%%, 10%%, 50%% and 100%%.\n\n", hosts)

	// Update 290 is malformed. Validation runs the hosts' own parser on it
	// before a single host is exposed.
	sum.Malformed, err = push(ctx, w, update{
		name:    "content-290",
		content: []byte("channel 290: 20 fields"),
	})
	if err != nil {
		return Summary{}, err
	}

	// Update 291 parses, but crashes 30% of the hosts that load it.
	bad := update{name: "content-291", content: []byte("channel 291: 21 fields"), crashes: vulnerable(seed)}
	sum.Bad, err = push(ctx, w, bad)
	if err != nil {
		return Summary{}, err
	}
	fmt.Fprintf(w, "  the %d hosts it crashed are repaired by hand\n", sum.Bad.Crashed)
	sum.AllAtOnceCrashed = allAtOnce(bad)

	// Update 292 is good.
	sum.Good, err = push(ctx, w, update{name: "content-292", content: []byte("channel 292: 21 fields")})
	if err != nil {
		return Summary{}, err
	}
	return sum, nil
}

// update is a content update.
type update struct {
	name    string
	content []byte
	// crashes reports whether loading the update crashes a host; nil
	// means it crashes none.
	crashes func(host int) bool
}

// parse is the hosts' own content parser, which the rollout's validation
// runs before any host is exposed. Validating with a different tool than
// the one the hosts run lets the two disagree.
func parse(content []byte) error {
	var channel, fields int
	if _, err := fmt.Sscanf(string(content), "channel %d: %d fields", &channel, &fields); err != nil {
		return err
	}
	if fields != 21 {
		return fmt.Errorf("channel %d: want 21 fields, got %d", channel, fields)
	}
	return nil
}

// errHealthCheck is a health check failure, the noise every fleet has.
var errHealthCheck = errors.New("health check failed")

// push rolls u out to the fleet, one simulated minute at a time, and
// returns what happened.
func push(ctx context.Context, w io.Writer, u update) (Result, error) {
	res := Result{Update: u.name}
	minute := 0
	r, err := rollout.New(rollout.Plan{
		Name:     u.name, // also the salt: each update picks its own first ring
		Stages:   rings(),
		Judge:    judge(),
		Validate: func(context.Context) error { return parse(u.content) },
		OnEvent: func(e rollout.Event) {
			why := e.Reason
			if e.Verdict.Outcome == rollout.Regressed && e.Verdict.Rule == rollout.RuleSilence {
				why += fmt.Sprintf(": %d of the %.0f hosts given the update never reported",
					e.Verdict.SilentKeys, e.Verdict.Canary.Assigned)
			}
			fmt.Fprintf(w, "  minute %-3d %s: %v -> %v at %v%% (%s)\n", minute, e.Rollout, e.From, e.To, e.Percent, why)
		},
	})
	if err != nil {
		return Result{}, err
	}
	if err := r.Start(ctx); err != nil && !errors.Is(err, rollout.ErrValidation) {
		return Result{}, err
	}

	// The fleet: which hosts have loaded the update, and which crashed.
	loaded := make([]bool, hosts)
	crashed := make([]bool, hosts)
	noise := rand.New(rand.NewPCG(seed, uint64(len(u.name))))
	names := hostNames()
	for r.Status().State == rollout.Running && minute < maxMinutes {
		minute++
		loadedNow, crashedNow := 0, 0
		for h := range hosts {
			if crashed[h] {
				continue // a crashed host reports nothing
			}
			v := r.Variant(names[h])
			if v == rollout.Canary && !loaded[h] {
				loaded[h] = true
				loadedNow++
				if u.crashes != nil && u.crashes(h) {
					crashed[h] = true
					crashedNow++
					continue
				}
			}
			// One health check a minute: 0.5% fail on either version,
			// and each takes 2 to 6ms.
			var err error
			if noise.Float64() < 0.005 {
				err = errHealthCheck
			}
			r.ObserveKey(names[h], v, err, time.Duration(2+noise.IntN(5))*time.Millisecond)
		}
		if loadedNow > 0 {
			fmt.Fprintf(w, "  minute %-3d %d hosts load %s", minute, loadedNow, u.name)
			if crashedNow > 0 {
				fmt.Fprintf(w, "; %d of them crash and go silent", crashedNow)
			}
			fmt.Fprintln(w)
		}
		res.Exposed += loadedNow
		res.Crashed += crashedNow
		if _, err := r.Evaluate(); err != nil {
			return Result{}, err
		}
	}
	st := r.Status()
	res.State, res.Stage, res.Minutes, res.Reason = st.State, st.Stage, minute, st.Reason
	for h := range hosts {
		if r.Variant(names[h]) == rollout.Canary {
			res.OnUpdate++
		}
	}
	return res, nil
}

// vulnerable returns the hosts the bad update crashes: exactly 30% of the
// fleet, chosen by a seeded shuffle.
func vulnerable(seed uint64) func(host int) bool {
	rng := rand.New(rand.NewPCG(seed, seed))
	set := make([]bool, hosts)
	for _, h := range rng.Perm(hosts)[:int(crashRate*hosts)] {
		set[h] = true
	}
	return func(h int) bool { return set[h] }
}

// allAtOnce pushes u to every host at once and counts the crashes.
func allAtOnce(u update) int {
	crashed := 0
	for h := range hosts {
		if u.crashes != nil && u.crashes(h) {
			crashed++
		}
	}
	return crashed
}

func hostNames() []string {
	names := make([]string, hosts)
	for h := range names {
		names[h] = fmt.Sprintf("host-%05d", h)
	}
	return names
}

// print writes the summary table.
func (s Summary) print(w io.Writer) {
	fmt.Fprintf(w, "\n  %-38s %16s %16s %16s %16s\n", "", s.Malformed.Update, s.Bad.Update, "291 all at once", s.Good.Update)
	row := func(label string, a, b, c, d any) { fmt.Fprintf(w, "  %-38s %16v %16v %16v %16v\n", label, a, b, c, d) }
	row("outcome", s.Malformed.State, s.Bad.State, "-", s.Good.State)
	row("hosts assigned the update at the end", s.Malformed.OnUpdate, s.Bad.OnUpdate, hosts, s.Good.OnUpdate)
	row("hosts that loaded it", s.Malformed.Exposed, s.Bad.Exposed, hosts, s.Good.Exposed)
	row("hosts crashed", s.Malformed.Crashed, s.Bad.Crashed, s.AllAtOnceCrashed, s.Good.Crashed)
	row("minutes to the decision", s.Malformed.Minutes, s.Bad.Minutes, "-", s.Good.Minutes)
}
