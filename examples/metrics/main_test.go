package main

import (
	"context"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestMetricsPageListsEveryInstrument plays the story, serves /metrics on
// a loopback port and scrapes it as Prometheus would.
func TestMetricsPageListsEveryInstrument(t *testing.T) {
	a, err := newApp(t.TempDir(), &strings.Builder{})
	require.NoError(t, err, "newApp")
	t.Cleanup(a.close)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	require.NoError(t, a.story(ctx), "story")

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err, "Listen")
	srv := &http.Server{Handler: a.mux()}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	series, err := scrape(ctx, "http://"+ln.Addr().String()+"/metrics")
	require.NoError(t, err, "scrape")

	values := map[string]string{} // series without its value -> value
	names := map[string]bool{}
	for _, s := range series {
		i := strings.LastIndexByte(s, ' ')
		values[s[:i]] = s[i+1:]
		name, _, _ := strings.Cut(s[:i], "{")
		names[name] = true
	}
	for _, name := range []string{
		"ringfence_breaker_state",
		"ringfence_breaker_calls_total",
		"ringfence_breaker_transitions_total",
		"ringfence_retry_retries_total",
		"ringfence_retry_denied_total",
		"ringfence_fallback_mode",
		"ringfence_fallback_answers_total",
		"ringfence_outbox_depth",
		"ringfence_outbox_oldest_age_seconds",
		"ringfence_outbox_dead_letters",
		"ringfence_outbox_dead_lettered_total",
		"ringfence_outbox_replayed_total",
		"ringfence_outbox_delivery_failures_total",
		"ringfence_outbox_unrecorded",
		"ringfence_rollout_stage_percent",
		"ringfence_rollout_state",
		"ringfence_rollout_verdicts_total",
		"ringfence_rollout_evidence_staleness_seconds",
	} {
		assert.True(t, names[name], "series named %s on /metrics", name)
	}
	for s, want := range map[string]string{
		`ringfence_breaker_state{ringfence_breaker_name="pricing/api",state="open"}`:                                                      "1",
		`ringfence_breaker_calls_total{outcome="success",ringfence_breaker_name="pricing/api"}`:                                           "500",
		`ringfence_breaker_transitions_total{from="closed",reason="consecutive_failures",ringfence_breaker_name="pricing/api",to="open"}`: "1",
		`ringfence_fallback_answers_total{ringfence_chain_name="price",source_kind="static"}`:                                             "11",
		`ringfence_fallback_answers_total{ringfence_chain_name="update",source_kind="deferred"}`:                                          "3",
		`ringfence_fallback_mode{mode="auto",ringfence_switch_name="pricing"}`:                                                            "1",
		`ringfence_retry_denied_total{reason="budget_exhausted",ringfence_retry_name="pricing"}`:                                          "1",
		`ringfence_rollout_stage_percent{ringfence_rollout_name="price-engine-v2"}`:                                                       "100",
	} {
		assert.Equal(t, want, values[s], "value of %s", s)
	}
}

func TestRunPrintsTheSeries(t *testing.T) {
	var out strings.Builder
	require.Equal(t, 0, run(&out, "127.0.0.1:0", false), "run: %s", out.String())
	assert.Contains(t, out.String(), `ringfence_outbox_replayed_total{ringfence_outbox_dir=`, "output of run")
	assert.Contains(t, out.String(), `level=WARN msg="breaker state change" name=pricing/api from=closed to=open`, "output of run")
}
