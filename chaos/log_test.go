package chaos

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func decodeRecords(t *testing.T, buf *bytes.Buffer) []map[string]any {
	t.Helper()
	var recs []map[string]any
	dec := json.NewDecoder(buf)
	for dec.More() {
		var m map[string]any
		require.NoError(t, dec.Decode(&m), "decoding a log record")
		delete(m, "time")
		recs = append(recs, m)
	}
	return recs
}

func TestInjectorLogsSetAndClear(t *testing.T) {
	var buf bytes.Buffer
	in, err := New(Settings{Logger: slog.New(slog.NewJSONHandler(&buf, nil))})
	require.NoError(t, err, "New")
	require.NoError(t, in.Set(Faults{ErrorRate: 1, Status: 503}), "Set")
	_ = in.Inject(context.Background())
	in.Clear()
	_ = in.Inject(context.Background())
	assert.Equal(t, []map[string]any{
		{"level": "WARN", "msg": "chaos faults set", "error_rate": 1.0, "status": 503.0},
		{"level": "INFO", "msg": "chaos faults cleared"},
	}, decodeRecords(t, &buf), "log records of Set and Clear")
}

func TestInjectorLogsPhaseChangesOnce(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var buf bytes.Buffer
		in, err := New(Settings{
			Logger: slog.New(slog.NewJSONHandler(&buf, nil)),
			Phases: []Phase{{Name: "outage", Start: time.Second, Duration: time.Second, Faults: Faults{ErrorRate: 1}}},
		})
		require.NoError(t, err, "New")
		ctx := context.Background()
		for range 3 { // before the phase: nothing injected, nothing logged
			_ = in.Inject(ctx)
		}
		time.Sleep(time.Second)
		for range 3 {
			_ = in.Inject(ctx)
		}
		time.Sleep(time.Second)
		for range 3 {
			_ = in.Inject(ctx)
		}
		assert.Equal(t, []map[string]any{
			{"level": "WARN", "msg": "chaos phase", "phase": "outage", "error_rate": 1.0},
			{"level": "INFO", "msg": "chaos phase", "phase": ""},
		}, decodeRecords(t, &buf), "log records of the schedule")
	})
}
