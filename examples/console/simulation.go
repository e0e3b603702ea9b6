package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ringfence/ringfence/admin"
	"github.com/ringfence/ringfence/breaker"
	"github.com/ringfence/ringfence/fallback"
	"github.com/ringfence/ringfence/retry"
	"github.com/ringfence/ringfence/rollout"
)

// The outage schedule, in ticks of the simulation.
const (
	tick       = 100 * time.Millisecond // one passenger per tick
	cycle      = 400                    // ticks in one cycle of the schedule (40s)
	outageFrom = 100                    // the API goes down at this tick of the cycle
	outageTo   = 250                    // and comes back at this one
	badEvery   = 25                     // one boarding pass in badEvery is refused
)

// simulation is the check-in desk with its resilience objects, calling a
// booking API that fails on schedule.
type simulation struct {
	out      io.Writer
	api      *httptest.Server
	down     atomic.Bool
	booking  *breaker.Breaker
	regions  *breaker.Group
	desk     *fallback.Switch
	outbox   *fallback.Outbox
	seatmap  *rollout.Rollout
	seats    *fallback.Chain[string, string]
	passes   *fallback.Chain[int, string]
	client   *http.Client
	replayMu sync.Mutex // held while a replay runs
}

func newSimulation(dir string, out io.Writer) (*simulation, error) {
	s := &simulation{out: out, client: &http.Client{Timeout: time.Second}}
	s.api = httptest.NewServer(http.HandlerFunc(s.serveAPI))
	var err error
	if s.booking, err = breaker.New(breaker.Settings{Name: "booking-api", ConsecutiveFailures: 3, OpenTimeout: 3 * time.Second, Ramp: 5 * time.Second}); err != nil {
		return nil, err
	}
	if s.regions, err = breaker.NewGroup(breaker.Settings{Name: "region", ConsecutiveFailures: 3, OpenTimeout: 5 * time.Second}, breaker.GroupOptions{}); err != nil {
		return nil, err
	}
	if s.desk, err = fallback.NewSwitch(context.Background(), "check-in-desk", fallback.SwitchSettings{}); err != nil {
		return nil, err
	}
	if s.outbox, err = fallback.OpenOutbox(filepath.Join(dir, "outbox"), fallback.OutboxOptions{Rate: 20, MaxAttempts: 5}); err != nil {
		return nil, err
	}
	s.seatmap, err = rollout.New(rollout.Plan{
		Name:     "seatmap-v2",
		Stages:   []rollout.Stage{{Percent: 10, Bake: 20 * time.Second, MinSamples: 20}, {Percent: 50, Bake: 30 * time.Second, MinSamples: 50}, {Percent: 100}},
		Interval: time.Second,
	})
	if err != nil {
		return nil, err
	}
	cache, err := fallback.NewCache[string, string](fallback.CacheSettings{})
	if err != nil {
		return nil, err
	}
	if s.seats, err = fallback.NewChain("seat map", fallback.ChainSettings{Switch: s.desk, Breaker: s.booking},
		fallback.Primary("booking API", s.fetchSeatMap),
		fallback.Stale("last known", cache, func(flight string) string { return flight }),
		fallback.Static[string]("blank map", "seat map unavailable: seat at the gate"),
	); err != nil {
		return nil, err
	}
	if s.passes, err = fallback.NewChain("boarding pass", fallback.ChainSettings{Switch: s.desk, Breaker: s.booking},
		fallback.Primary("booking API", func(ctx context.Context, n int) (string, error) { return "stored", s.storePass(ctx, n) }),
		fallback.Deferred("outbox", s.outbox, passItem, func(int) string { return "accepted; will sync" }),
	); err != nil {
		return nil, err
	}
	return s, nil
}

func (s *simulation) objects() admin.Objects {
	return admin.Objects{
		Breakers: []*breaker.Breaker{s.booking},
		Groups:   map[string]*breaker.Group{"region": s.regions},
		Switches: []*fallback.Switch{s.desk},
		Outboxes: map[string]*fallback.Outbox{"boarding-passes": s.outbox},
		Rollouts: []*rollout.Rollout{s.seatmap},
	}
}

func (s *simulation) close() {
	s.outbox.Close()
	s.api.Close()
}

// serveAPI is the booking API: 503 while down, 422 for a bad record.
func (s *simulation) serveAPI(w http.ResponseWriter, r *http.Request) {
	if s.down.Load() {
		http.Error(w, "booking API unavailable", http.StatusServiceUnavailable)
		return
	}
	if r.Method == http.MethodPost && r.URL.Query().Get("bad") == "1" {
		http.Error(w, "record refused: passenger name missing", http.StatusUnprocessableEntity)
		return
	}
	json.NewEncoder(w).Encode(map[string]string{"flight": r.URL.Query().Get("flight"), "seats": "12A 12B 14C"})
}

func (s *simulation) call(ctx context.Context, method, query string) error {
	req, err := http.NewRequestWithContext(ctx, method, s.api.URL+"/?"+query, nil)
	if err != nil {
		return err
	}
	resp, err := s.client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	io.Copy(io.Discard, resp.Body)
	switch {
	case resp.StatusCode == http.StatusUnprocessableEntity:
		return retry.Permanent(fmt.Errorf("booking API: %s", resp.Status))
	case resp.StatusCode >= 300:
		return fmt.Errorf("booking API: %s", resp.Status)
	}
	return nil
}

// fetchSeatMap reads a flight's seat map through its region's breaker.
func (s *simulation) fetchSeatMap(ctx context.Context, flight string) (string, error) {
	region := map[bool]string{true: "eu", false: "us"}[flight[len(flight)-1]%2 == 0]
	return breaker.Do(ctx, s.regions.Get(region), func(ctx context.Context) (string, error) {
		return "seat map of " + flight, s.call(ctx, http.MethodGet, "flight="+flight)
	})
}

func (s *simulation) storePass(ctx context.Context, n int) error {
	bad := "0"
	if n%badEvery == 0 {
		bad = "1"
	}
	return s.call(ctx, http.MethodPost, "pass="+strconv.Itoa(n)+"&bad="+bad)
}

func passItem(n int) (fallback.Item, error) {
	return fallback.Item{Key: "pass-" + strconv.Itoa(n), Stream: flightOf(n), Payload: []byte(strconv.Itoa(n))}, nil
}

func flightOf(n int) string { return [...]string{"RF101", "RF202", "RF303", "RF404"}[n%4] }

// run checks a passenger in every tick until ctx is done, following the
// outage schedule, and replays the outbox while the API is up.
func (s *simulation) run(ctx context.Context) {
	var wg sync.WaitGroup
	defer wg.Wait()
	if err := s.seatmap.Start(ctx); err == nil {
		wg.Go(func() { s.seatmap.Run(ctx) })
	}
	t := time.NewTicker(tick)
	defer t.Stop()
	for n := 1; ; n++ {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		switch n % cycle {
		case outageFrom:
			s.down.Store(true)
			fmt.Fprintln(s.out, "simulation: the booking API is down")
		case outageTo:
			s.down.Store(false)
			fmt.Fprintln(s.out, "simulation: the booking API is back")
		}
		s.checkIn(ctx, n)
		if n%10 == 0 && s.outbox.Pending() > 0 && s.booking.State() == breaker.Closed && s.replayMu.TryLock() {
			wg.Go(func() {
				defer s.replayMu.Unlock()
				rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
				defer cancel()
				s.outbox.Replay(rctx, func(ctx context.Context, it fallback.Item) error {
					n, _ := strconv.Atoi(string(it.Payload))
					_, err := breaker.Do(ctx, s.booking, func(ctx context.Context) (struct{}, error) { return struct{}{}, s.storePass(ctx, n) })
					return err
				})
			})
		}
	}
}

// checkIn serves passenger n: the seat map (through the rollout) and the
// boarding pass.
func (s *simulation) checkIn(ctx context.Context, n int) {
	cctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	key := "passenger-" + strconv.Itoa(n)
	seats := func(ctx context.Context) (string, error) {
		v, _, err := s.seats.Run(ctx, flightOf(n))
		return v, err
	}
	rollout.Do(cctx, s.seatmap, key, seats, seats)
	if _, _, err := s.passes.Run(cctx, n); err != nil && !errors.Is(err, context.Canceled) {
		fmt.Fprintln(s.out, "simulation: boarding pass", n, "failed:", err)
	}
}
