package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/time/rate"

	"github.com/ringfence/ringfence/admin"
	"github.com/ringfence/ringfence/breaker"
	"github.com/ringfence/ringfence/fallback"
	"github.com/ringfence/ringfence/retry"
	"github.com/ringfence/ringfence/rollout"
)

const (
	writeSecret = "oncall-secret-0123456789"
	readSecret  = "viewer-secret-0123456789"
)

// service is a real admin handler on loopback over real objects.
type service struct {
	url      string
	payments *breaker.Breaker
	s3       *breaker.Group
	desk     *fallback.Switch
	outbox   *fallback.Outbox
	parser   *rollout.Rollout
}

func newService(t *testing.T) *service {
	t.Helper()
	s := &service{}
	var err error
	s.payments, err = breaker.New(breaker.Settings{Name: "payments"})
	require.NoError(t, err)
	s.s3, err = breaker.NewGroup(breaker.Settings{Name: "s3"}, breaker.GroupOptions{})
	require.NoError(t, err)
	s.s3.Get("eu")
	s.desk, err = fallback.NewSwitch(context.Background(), "desk", fallback.SwitchSettings{})
	require.NoError(t, err)
	s.outbox, err = fallback.OpenOutbox(filepath.Join(t.TempDir(), "outbox"), fallback.OutboxOptions{Rate: rate.Inf})
	require.NoError(t, err)
	t.Cleanup(func() { s.outbox.Close() })
	ctx := context.Background()
	require.NoError(t, s.outbox.Enqueue(ctx, fallback.Item{Key: "bad-1", Stream: "RF101", Payload: []byte("seat 12A")}))
	require.NoError(t, s.outbox.Replay(ctx, func(context.Context, fallback.Item) error {
		return retry.Permanent(errors.New("booking rejected the record"))
	}))
	s.parser, err = rollout.New(rollout.Plan{Name: "parser-v2", Stages: []rollout.Stage{{Percent: 1}, {Percent: 100}}})
	require.NoError(t, err)
	require.NoError(t, s.parser.Start(ctx))
	h, err := admin.New(admin.Settings{
		Tokens: []admin.Token{{Name: "oncall", Secret: writeSecret, Write: true}, {Name: "viewer", Secret: readSecret}},
		Objects: admin.Objects{
			Breakers: []*breaker.Breaker{s.payments},
			Groups:   map[string]*breaker.Group{"s3": s.s3},
			Switches: []*fallback.Switch{s.desk},
			Outboxes: map[string]*fallback.Outbox{"bookings": s.outbox},
			Rollouts: []*rollout.Rollout{s.parser},
		},
		Logger: slog.New(slog.DiscardHandler),
	})
	require.NoError(t, err)
	mux := http.NewServeMux()
	mux.Handle("/admin/", http.StripPrefix("/admin", h))
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	s.url = srv.URL + "/admin/"
	return s
}

// env returns an environment holding the service's URL and token.
func (s *service) env(secret string) func(string) string {
	return func(k string) string {
		switch k {
		case "RINGFENCE_URL":
			return s.url
		case "RINGFENCE_TOKEN":
			return secret
		}
		return ""
	}
}

func noEnv(string) string { return "" }

// ringfence runs the command in process and returns its exit status and
// output.
func ringfence(env func(string) string, args ...string) (int, string, string) {
	var out, errOut bytes.Buffer
	code := run(args, env, &out, &errOut)
	return code, out.String(), errOut.String()
}

func TestStatusShowsEveryObjectInTables(t *testing.T) {
	s := newService(t)
	s.payments.ForceOpen("drill")
	code, out, errOut := ringfence(s.env(readSecret), "status")
	require.Equal(t, 0, code, errOut)
	for _, want := range []string{
		"scope: local", "token: viewer (read-only)",
		"BREAKER", "payments", "forced-open", "forced open: drill", "s3/eu",
		"SWITCH", "desk", "auto",
		"OUTBOX", "bookings",
		"ROLLOUT", "parser-v2", "running", "1/2", "gathering",
	} {
		assert.Contains(t, out, want, "ringfence status")
	}
}

func TestJSONPrintsTheServersAnswer(t *testing.T) {
	s := newService(t)
	code, out, errOut := ringfence(s.env(readSecret), "status", "--json")
	require.Equal(t, 0, code, errOut)
	var o admin.Overview
	require.NoError(t, json.Unmarshal([]byte(out), &o), "ringfence status --json: %s", out)
	assert.Equal(t, "local", o.Scope)
	require.Len(t, o.Breakers, 1)
	assert.Equal(t, "payments", o.Breakers[0].Name)

	code, out, errOut = ringfence(s.env(writeSecret), "--json", "mode", "set", "desk", "manual", "--reason", "outage")
	require.Equal(t, 0, code, errOut)
	var a struct {
		Scope  string
		Change admin.Change
	}
	require.NoError(t, json.Unmarshal([]byte(out), &a), "ringfence --json mode set: %s", out)
	assert.Equal(t, admin.Change{Time: a.Change.Time, Actor: "oncall", Kind: admin.KindSwitch, Name: "desk",
		Verb: admin.VerbSetMode, Mode: "manual", Reason: "outage", Scope: "local"}, a.Change)
}

func TestActionsChangeTheObjects(t *testing.T) {
	tests := []struct {
		name  string
		args  []string
		setup func(s *service)
		check func(t *testing.T, s *service)
		out   string
	}{
		{"breaker force-open", []string{"breaker", "force-open", "payments", "--reason", "payments API returns garbage"}, nil,
			func(t *testing.T, s *service) {
				assert.Equal(t, breaker.ForcedOpen, s.payments.State())
				assert.Equal(t, "forced open: payments API returns garbage (by oncall)", s.payments.Snapshot().Reason)
			}, "force-open breaker payments: forced-open (scope local, by oncall"},
		{"flags before the command", []string{"--reason=drill", "breaker", "force-close", "payments"}, nil,
			func(t *testing.T, s *service) { assert.Equal(t, breaker.ForcedClosed, s.payments.State()) }, "forced-closed"},
		{"breaker release", []string{"breaker", "release", "payments", "--reason", "over"},
			func(s *service) { s.payments.ForceOpen("drill") },
			func(t *testing.T, s *service) { assert.Equal(t, breaker.Closed, s.payments.State()) }, "closed"},
		{"group force-open of one key", []string{"group", "force-open", "s3", "--key", "eu", "--reason", "eu down"}, nil,
			func(t *testing.T, s *service) { assert.Equal(t, breaker.ForcedOpen, s.s3.Get("eu").State()) }, "group s3 [eu]"},
		{"mode set manual", []string{"mode", "set", "desk", "manual", "--reason", "booking API down"}, nil,
			func(t *testing.T, s *service) { assert.Equal(t, fallback.ModeManual, s.desk.Mode()) }, "set-mode switch desk: manual"},
		{"rollout pause", []string{"rollout", "pause", "parser-v2", "--reason", "incident"}, nil,
			func(t *testing.T, s *service) { assert.Equal(t, rollout.Paused, s.parser.Status().State) }, "paused"},
		{"rollout resume", []string{"rollout", "resume", "parser-v2", "--reason", "over"},
			func(s *service) { s.parser.Pause("incident") },
			func(t *testing.T, s *service) { assert.Equal(t, rollout.Running, s.parser.Status().State) }, "running"},
		{"rollout promote", []string{"rollout", "promote", "parser-v2", "--reason", "verified"}, nil,
			func(t *testing.T, s *service) { assert.Equal(t, rollout.Promoted, s.parser.Status().State) }, "promoted"},
		{"rollout abort", []string{"rollout", "abort", "parser-v2", "--reason", "crashes hosts"}, nil,
			func(t *testing.T, s *service) { assert.Equal(t, rollout.RolledBack, s.parser.Status().State) }, "rolled-back"},
		{"outbox requeue", []string{"outbox", "requeue", "bookings", "bad-1", "--reason", "record fixed"}, nil,
			func(t *testing.T, s *service) { assert.Equal(t, 1, s.outbox.Pending()) }, "1 pending"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newService(t)
			if tt.setup != nil {
				tt.setup(s)
			}
			code, out, errOut := ringfence(s.env(writeSecret), tt.args...)
			require.Equal(t, 0, code, "ringfence %v: %s", tt.args, errOut)
			assert.Contains(t, out, tt.out, "ringfence %v", tt.args)
			tt.check(t, s)
		})
	}
}

func TestOutboxDeadLettersListsThem(t *testing.T) {
	s := newService(t)
	code, out, errOut := ringfence(s.env(readSecret), "outbox", "dead-letters", "bookings")
	require.Equal(t, 0, code, errOut)
	assert.Contains(t, out, "KEY")
	assert.Contains(t, out, "bad-1")
	assert.Contains(t, out, "RF101")
	assert.Contains(t, out, "booking rejected the record")

	require.NoError(t, s.outbox.Requeue("bad-1"))
	code, out, _ = ringfence(s.env(readSecret), "outbox", "dead-letters", "bookings")
	require.Equal(t, 0, code)
	assert.Contains(t, out, "outbox bookings has no dead letters")
}

func TestFlagsOverrideTheEnvironment(t *testing.T) {
	s := newService(t)
	code, _, errOut := ringfence(s.env(readSecret), "--token", writeSecret, "mode", "set", "desk", "manual", "--reason", "outage")
	require.Equal(t, 0, code, errOut)
	assert.Equal(t, fallback.ModeManual, s.desk.Mode())
	code, out, errOut := ringfence(noEnv, "--url", s.url, "--token="+readSecret, "status")
	require.Equal(t, 0, code, errOut)
	assert.Contains(t, out, "token: viewer")
}

func TestRefusalsExitNonZeroWithTheReason(t *testing.T) {
	tests := []struct {
		name   string
		env    func(s *service) func(string) string
		args   []string
		setup  func(s *service)
		code   int
		stderr []string
	}{
		{"a read-only token", func(s *service) func(string) string { return s.env(readSecret) },
			[]string{"breaker", "force-open", "payments", "--reason", "drill"}, nil, 1, []string{"HTTP 403", "read-only-token", "viewer"}},
		{"a wrong token", func(s *service) func(string) string { return s.env("wrong-secret-0123456789") },
			[]string{"status"}, nil, 1, []string{"HTTP 401", "unknown bearer token"}},
		{"an unknown breaker", func(s *service) func(string) string { return s.env(writeSecret) },
			[]string{"breaker", "force-open", "ledger", "--reason", "drill"}, nil, 1, []string{"HTTP 404", "unknown-object", "ledger"}},
		{"promoting a rolled-back rollout", func(s *service) func(string) string { return s.env(writeSecret) },
			[]string{"rollout", "promote", "parser-v2", "--reason", "ship"}, func(s *service) { s.parser.Abort("bad") }, 1,
			[]string{"HTTP 409", "illegal-transition", "rolled-back"}},
		{"the mode the switch is in", func(s *service) func(string) string { return s.env(writeSecret) },
			[]string{"mode", "set", "desk", "auto", "--reason", "x"}, nil, 1, []string{"illegal-transition", "already"}},
		{"an action without a reason", func(s *service) func(string) string { return s.env(writeSecret) },
			[]string{"breaker", "force-open", "payments"}, nil, 2, []string{"needs --reason", "usage:"}},
		{"a blank reason", func(s *service) func(string) string { return s.env(writeSecret) },
			[]string{"breaker", "force-open", "payments", "--reason", " "}, nil, 2, []string{"needs --reason"}},
		{"no token", func(s *service) func(string) string {
			return func(k string) string { return map[string]string{"RINGFENCE_URL": s.url}[k] }
		},
			[]string{"status"}, nil, 2, []string{"no token", "RINGFENCE_TOKEN"}},
		{"no URL", func(s *service) func(string) string { return noEnv },
			[]string{"--token", writeSecret, "status"}, nil, 2, []string{"no admin URL", "RINGFENCE_URL"}},
		{"an unknown command", func(s *service) func(string) string { return s.env(writeSecret) },
			[]string{"reboot"}, nil, 2, []string{`unknown command "reboot"`}},
		{"an unknown flag", func(s *service) func(string) string { return s.env(writeSecret) },
			[]string{"status", "--force"}, nil, 2, []string{"unknown flag --force"}},
		{"an unknown mode", func(s *service) func(string) string { return s.env(writeSecret) },
			[]string{"mode", "set", "desk", "off", "--reason", "x"}, nil, 2, []string{`mode "off"`}},
		{"a flag without its value", func(s *service) func(string) string { return s.env(writeSecret) },
			[]string{"status", "--url"}, nil, 2, []string{"--url needs a value"}},
		{"a bad timeout", func(s *service) func(string) string { return s.env(writeSecret) },
			[]string{"status", "--timeout", "soon"}, nil, 2, []string{"--timeout"}},
		{"an unreachable service", func(s *service) func(string) string {
			return func(k string) string {
				return map[string]string{"RINGFENCE_URL": "http://127.0.0.1:1/admin/", "RINGFENCE_TOKEN": writeSecret}[k]
			}
		}, []string{"status"}, nil, 1, []string{"cannot reach the admin API"}},
	}
	for _, tt := range tests {
		t.Run("refuses "+tt.name, func(t *testing.T) {
			s := newService(t)
			if tt.setup != nil {
				tt.setup(s)
			}
			before := [3]string{s.payments.State().String(), s.desk.Mode().String(), s.parser.Status().State.String()}
			code, out, errOut := ringfence(tt.env(s), tt.args...)
			assert.Equal(t, tt.code, code, "ringfence %v: %s", tt.args, errOut)
			assert.Empty(t, out, "a refusal prints nothing on stdout")
			for _, want := range tt.stderr {
				assert.Contains(t, errOut, want, "ringfence %v", tt.args)
			}
			after := [3]string{s.payments.State().String(), s.desk.Mode().String(), s.parser.Status().State.String()}
			assert.Equal(t, before, after, "ringfence %v must change nothing", tt.args)
		})
	}
}

func TestAPlainHTTPAddressElsewhereIsWarnedAbout(t *testing.T) {
	var errOut bytes.Buffer
	o := options{url: "http://admin.example.com/admin/", token: writeSecret}
	require.NoError(t, checkTarget(o, &errOut))
	assert.True(t, strings.Contains(errOut.String(), "unencrypted"), errOut.String())
	errOut.Reset()
	o.url = "http://127.0.0.1:8080/"
	require.NoError(t, checkTarget(o, &errOut))
	assert.Empty(t, errOut.String())
}
