// Command metrics shows every ringfence instrument on a Prometheus
// /metrics page, through the OpenTelemetry SDK and its Prometheus exporter.
//
// A small price service guards its pricing API with a breaker group and a
// retry policy, answers from a static price while the API is down, defers
// price updates into a durable outbox, lets an operator switch to manual
// mode, and rolls out a new price engine in rings. Each piece is given the
// same MeterProvider and a logger; ringfence itself depends only on the
// OpenTelemetry metric API, so the application chooses the SDK and the
// exporter, as here.
//
// The program plays a short outage (the API fails, the breaker opens, the
// chain serves the static price, updates wait in the outbox, the operator
// goes manual and back, the outbox replays), then serves /metrics on a
// loopback port, scrapes it once and prints the ringfence series. With
// -serve it keeps serving until interrupted, for a Prometheus to scrape.
package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	otelprom "go.opentelemetry.io/otel/exporters/prometheus"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"

	"github.com/ringfence/ringfence/breaker"
	"github.com/ringfence/ringfence/chaos"
	"github.com/ringfence/ringfence/fallback"
	"github.com/ringfence/ringfence/retry"
	"github.com/ringfence/ringfence/rollout"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:0", "address to serve /metrics on")
	serve := flag.Bool("serve", false, "keep serving /metrics until interrupted")
	flag.Parse()
	os.Exit(run(os.Stdout, *addr, *serve))
}

// run plays the story, serves /metrics on addr, prints the scraped
// ringfence series to w and returns the exit status.
func run(w io.Writer, addr string, serve bool) int {
	dir, err := os.MkdirTemp("", "ringfence-metrics-")
	if err != nil {
		fmt.Fprintln(w, "metrics:", err)
		return 1
	}
	defer os.RemoveAll(dir)
	a, err := newApp(dir, w)
	if err != nil {
		fmt.Fprintln(w, "metrics:", err)
		return 1
	}
	defer a.close()
	if err := a.story(context.Background()); err != nil {
		fmt.Fprintln(w, "metrics:", err)
		return 1
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		fmt.Fprintln(w, "metrics:", err)
		return 1
	}
	srv := &http.Server{Handler: a.mux(), ReadHeaderTimeout: 5 * time.Second}
	go srv.Serve(ln)
	defer srv.Close()
	url := "http://" + ln.Addr().String() + "/metrics"
	series, err := scrape(context.Background(), url)
	if err != nil {
		fmt.Fprintln(w, "metrics:", err)
		return 1
	}
	fmt.Fprintf(w, "\nringfence series on %s:\n", url)
	for _, s := range series {
		fmt.Fprintln(w, s)
	}
	if serve {
		fmt.Fprintf(w, "\nserving %s until interrupted\n", url)
		ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
		defer stop()
		<-ctx.Done()
	}
	return 0
}

// app is the price service and its instruments.
type app struct {
	provider *sdkmetric.MeterProvider
	registry *prometheus.Registry
	inject   *chaos.Injector
	breakers *breaker.Group
	sw       *fallback.Switch
	outbox   *fallback.Outbox
	prices   *fallback.Chain[string, int]
	updates  *fallback.Chain[update, string]
	engine   *rollout.Rollout
}

// update is a price change to send to the pricing API.
type update struct {
	SKU   string
	Price int
}

// newApp builds the service with its outbox in dir, logging to w.
func newApp(dir string, w io.Writer) (*app, error) {
	a := &app{registry: prometheus.NewRegistry()}
	exp, err := otelprom.New(otelprom.WithRegisterer(a.registry), otelprom.WithoutScopeInfo())
	if err != nil {
		return nil, err
	}
	a.provider = sdkmetric.NewMeterProvider(sdkmetric.WithReader(exp))
	mp := a.provider
	log := slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{
		ReplaceAttr: func(_ []string, at slog.Attr) slog.Attr {
			if at.Key == slog.TimeKey {
				return slog.Attr{} // keep the output the same from run to run
			}
			return at
		},
	}))

	// The pricing API, with chaos standing in for its outages.
	if a.inject, err = chaos.New(chaos.Settings{Logger: log}); err != nil {
		return nil, err
	}
	if a.breakers, err = breaker.NewGroup(breaker.Settings{
		Name: "pricing", ConsecutiveFailures: 3, MeterProvider: mp, Logger: log,
	}, breaker.GroupOptions{}); err != nil {
		return nil, err
	}
	retries, err := retry.NewMetrics(mp, "pricing")
	if err != nil {
		return nil, err
	}
	budget, err := retry.NewBudget(0.1, 2)
	if err != nil {
		return nil, err
	}
	policy := &retry.Policy{MaxAttempts: 2, InitialInterval: time.Microsecond, MaxInterval: time.Microsecond,
		Budget: budget, Metrics: retries, Logger: log}
	if a.sw, err = fallback.NewSwitch(context.Background(), "pricing", fallback.SwitchSettings{MeterProvider: mp, Logger: log}); err != nil {
		return nil, err
	}
	if a.outbox, err = fallback.OpenOutbox(dir, fallback.OutboxOptions{MeterProvider: mp, Logger: log}); err != nil {
		return nil, err
	}
	price := func(ctx context.Context, sku string) (int, error) {
		if err := a.inject.Inject(ctx); err != nil {
			return 0, err
		}
		return 100 + len(sku), nil
	}
	if a.prices, err = fallback.NewChain("price", fallback.ChainSettings{
		Switch: a.sw, Breaker: a.breakers.Get("api"), Retry: policy, MeterProvider: mp, Logger: log,
	}, fallback.Primary("pricing-api", price), fallback.Static[string]("list-price", 99)); err != nil {
		return nil, err
	}
	send := func(ctx context.Context, u update) (string, error) {
		if err := a.inject.Inject(ctx); err != nil {
			return "", err
		}
		return "saved", nil
	}
	if a.updates, err = fallback.NewChain("update", fallback.ChainSettings{
		Switch: a.sw, Breaker: a.breakers.Get("api"), MeterProvider: mp, Logger: log,
	}, fallback.Primary("pricing-api", send), fallback.Deferred("outbox", a.outbox,
		func(u update) (fallback.Item, error) {
			return fallback.Item{Key: fmt.Sprintf("%s@%d", u.SKU, u.Price), Stream: u.SKU, Payload: []byte(fmt.Sprint(u.Price))}, nil
		},
		func(update) string { return "accepted, will sync" })); err != nil {
		return nil, err
	}
	a.engine, err = rollout.New(rollout.Plan{
		Name:          "price-engine-v2",
		Stages:        []rollout.Stage{{Percent: 10, MinSamples: 50}, {Percent: 100, MinSamples: 50}},
		MeterProvider: mp, Logger: log,
	})
	if err != nil {
		return nil, err
	}
	return a, nil
}

// story plays the outage and the recovery.
func (a *app) story(ctx context.Context) error {
	if err := a.engine.Start(ctx); err != nil {
		return err
	}
	for i := range 500 {
		key := fmt.Sprintf("customer-%d", i)
		a.engine.ObserveKey(key, a.engine.Variant(key), nil, time.Millisecond)
		if _, _, err := a.prices.Run(ctx, "sku-1"); err != nil {
			return err
		}
	}
	if _, err := a.engine.Evaluate(); err != nil {
		return err
	}

	// The pricing API goes down: the retries and the breaker see it, the
	// chain answers with the list price and updates wait in the outbox.
	if err := a.inject.Set(chaos.Faults{ErrorRate: 1}); err != nil {
		return err
	}
	for range 10 {
		if _, _, err := a.prices.Run(ctx, "sku-1"); err != nil {
			return err
		}
	}
	for i := range 3 {
		if _, _, err := a.updates.Run(ctx, update{SKU: "sku-1", Price: 120 + i}); err != nil {
			return err
		}
	}
	if err := a.sw.Set(ctx, fallback.ModeManual, "oncall", "pricing API down, incident 17"); err != nil {
		return err
	}
	if _, _, err := a.prices.Run(ctx, "sku-1"); err != nil {
		return err
	}

	// It recovers: the operator returns to auto and the outbox replays.
	a.inject.Clear()
	if err := a.sw.Set(ctx, fallback.ModeAuto, "oncall", "pricing API back"); err != nil {
		return err
	}
	return a.outbox.Replay(ctx, func(ctx context.Context, it fallback.Item) error {
		return a.inject.Inject(ctx)
	})
}

// mux serves the Prometheus page.
func (a *app) mux() http.Handler {
	m := http.NewServeMux()
	m.Handle("/metrics", promhttp.HandlerFor(a.registry, promhttp.HandlerOpts{}))
	return m
}

func (a *app) close() {
	a.outbox.Close()
	a.provider.Shutdown(context.Background())
}

// scrape fetches url and returns its ringfence series, without comments.
func scrape(ctx context.Context, url string) ([]string, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, errors.New("scrape: " + resp.Status)
	}
	var series []string
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		if line := sc.Text(); strings.HasPrefix(line, "ringfence_") {
			series = append(series, line)
		}
	}
	return series, sc.Err()
}
