package etcd

import (
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	clientv3 "go.etcd.io/etcd/client/v3"
	"golang.org/x/time/rate"

	"github.com/ringfence/ringfence/admin"
	"github.com/ringfence/ringfence/breaker"
	"github.com/ringfence/ringfence/etcd/internal/etcdtest"
	"github.com/ringfence/ringfence/fallback"
	"github.com/ringfence/ringfence/rollout"
)

// fleetWait is how soon an action on one instance must show on another.
const fleetWait = time.Second

const (
	writeSecret = "write-secret-0123456789"
	readSecret  = "read-secret-0123456789"
)

// console is one simulated instance with its own client, mode store,
// switch, breaker control, breakers, outbox and rollout, and its admin
// handler on a loopback HTTP server acting through an Admin.
type console struct {
	sw       *fallback.Switch
	payments *breaker.Breaker
	member   *breaker.Breaker // member "eu" of group "s3"
	outbox   *fallback.Outbox
	admin    *Admin
	srv      *httptest.Server
	changes  chan struct{}
}

func newConsole(t *testing.T, timeout time.Duration, endpoints ...string) *console {
	t.Helper()
	ctx := waitCtx(t)
	c := newClient(t, endpoints...)
	in := &console{changes: make(chan struct{}, 256)}
	notify := func() {
		select {
		case in.changes <- struct{}{}:
		default:
		}
	}
	store, err := NewModeStore(c, "desk", ModeStoreSettings{Settings: quick()})
	require.NoError(t, err)
	t.Cleanup(store.Close)
	in.sw, err = fallback.NewSwitch(ctx, "desk", fallback.SwitchSettings{Store: store, OnChange: func(fallback.ModeChange) { notify() }})
	require.NoError(t, err)
	t.Cleanup(in.sw.Close)

	control, err := NewBreakerControl(c, quick())
	require.NoError(t, err)
	t.Cleanup(control.Close)
	onChange := func(breaker.Change) { notify() }
	in.payments, err = breaker.New(breaker.Settings{Name: "payments", OnChange: onChange})
	require.NoError(t, err)
	control.Attach(in.payments)
	s3, err := breaker.NewGroup(breaker.Settings{Name: "s3", OnChange: onChange}, breaker.GroupOptions{})
	require.NoError(t, err)
	in.member = s3.Get("eu")
	control.Attach(in.member, "s3")

	in.outbox, err = fallback.OpenOutbox(filepath.Join(t.TempDir(), "outbox"), fallback.OutboxOptions{Rate: rate.Inf})
	require.NoError(t, err)
	t.Cleanup(func() { in.outbox.Close() })
	parser, err := rollout.New(rollout.Plan{Name: "parser-v2", Stages: []rollout.Stage{{Percent: 10}, {Percent: 100}}})
	require.NoError(t, err)
	require.NoError(t, parser.Start(ctx))

	objects := admin.Objects{
		Breakers: []*breaker.Breaker{in.payments},
		Groups:   map[string]*breaker.Group{"s3": s3},
		Switches: []*fallback.Switch{in.sw},
		Outboxes: map[string]*fallback.Outbox{"bookings": in.outbox},
		Rollouts: []*rollout.Rollout{parser},
	}
	in.admin, err = NewAdmin(AdminSettings{Objects: objects, Modes: map[string]*ModeStore{"desk": store}, Breakers: control, Timeout: timeout})
	require.NoError(t, err)
	h, err := admin.New(admin.Settings{
		Tokens: []admin.Token{
			{Name: "alice", Secret: writeSecret, Write: true},
			{Name: "dashboard", Secret: readSecret},
		},
		Objects: objects,
		Actions: in.admin,
		Logger:  quick().Logger,
	})
	require.NoError(t, err)
	in.srv = httptest.NewServer(h)
	t.Cleanup(in.srv.Close)
	return in
}

// answer is the part of an admin answer the tests look at.
type answer struct {
	Status int
	Scope  string `json:"scope"`
	Code   string `json:"code"`
	Error  string `json:"error"`
	Change struct {
		Scope string `json:"scope"`
		Actor string `json:"actor"`
	} `json:"change"`
	Object struct {
		State string `json:"state"`
		Mode  string `json:"mode"`
	} `json:"object"`
}

// post sends an action to the console's handler over HTTP.
func (in *console) post(t *testing.T, secret, path, body string) answer {
	t.Helper()
	req, err := http.NewRequestWithContext(waitCtx(t), http.MethodPost, in.srv.URL+"/api/v1/"+path, strings.NewReader(body))
	require.NoError(t, err)
	req.Header.Set("Authorization", "Bearer "+secret)
	req.Header.Set("Content-Type", "application/json")
	resp, err := in.srv.Client().Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	var a answer
	require.NoError(t, json.Unmarshal(data, &a), "%s", data)
	a.Status = resp.StatusCode
	return a
}

// await waits until ok holds, re-checking on each change of the
// instance's objects, bounded by d.
func (in *console) await(t *testing.T, what string, d time.Duration, ok func() bool) {
	t.Helper()
	timeout := time.NewTimer(d)
	defer timeout.Stop()
	for !ok() {
		select {
		case <-in.changes:
		case <-timeout.C:
			t.Fatalf("%s: not seen within %v", what, d)
		}
	}
}

func TestAdminActsForTheWholeFleet(t *testing.T) {
	srv := etcdtest.New(t)
	a := newConsole(t, 0, srv.Endpoints()...)
	b := newConsole(t, 0, srv.Endpoints()...)

	got := a.post(t, writeSecret, "switches/desk/mode", `{"reason":"booking API down","mode":"manual"}`)
	require.Equal(t, http.StatusOK, got.Status, got.Error)
	assert.Equal(t, ScopeFleet, got.Scope)
	assert.Equal(t, ScopeFleet, got.Change.Scope)
	assert.Equal(t, "manual", got.Object.Mode, "the answer shows A's switch after it followed the fleet record")
	b.await(t, "B's switch in manual mode", fleetWait, func() bool { return b.sw.Mode() == fallback.ModeManual })
	a.await(t, "A's switch in manual mode", fleetWait, func() bool { return a.sw.Mode() == fallback.ModeManual })
	last := b.sw.History()[len(b.sw.History())-1]
	assert.Equal(t, "alice", last.Actor)
	assert.Equal(t, "booking API down", last.Reason)

	got = a.post(t, writeSecret, "switches/desk/mode", `{"reason":"again","mode":"manual"}`)
	assert.Equal(t, http.StatusConflict, got.Status, "the fleet is already in manual mode")

	got = a.post(t, writeSecret, "breakers/payments/force-open", `{"reason":"garbage answers"}`)
	require.Equal(t, http.StatusOK, got.Status, got.Error)
	assert.Equal(t, ScopeFleet, got.Scope)
	assert.Equal(t, "forced-open", got.Object.State, "the answer shows A's breaker after it followed the intent")
	b.await(t, "B's payments forced open", fleetWait, func() bool { return b.payments.State() == breaker.ForcedOpen })
	assert.Contains(t, b.payments.Snapshot().Reason, "garbage answers (by alice")

	got = a.post(t, writeSecret, "groups/s3/force-close", `{"reason":"health checks lie"}`)
	require.Equal(t, http.StatusOK, got.Status, got.Error)
	b.await(t, "B's s3/eu forced closed", fleetWait, func() bool { return b.member.State() == breaker.ForcedClosed })

	got = a.post(t, writeSecret, "breakers/payments/release", `{"reason":"fixed"}`)
	require.Equal(t, http.StatusOK, got.Status, got.Error)
	b.await(t, "B's payments released", fleetWait, func() bool { return b.payments.State() == breaker.Closed })
	got = a.post(t, writeSecret, "breakers/payments/release", `{"reason":"twice"}`)
	assert.Equal(t, http.StatusConflict, got.Status, "no fleet intent forces payments any more")
	assert.Equal(t, "illegal-transition", got.Code)

	got = a.post(t, writeSecret, "groups/s3/force-open", `{"reason":"one host","key":"eu"}`)
	assert.Equal(t, http.StatusConflict, got.Status, "a member cannot be forced fleet-wide")

	got = a.post(t, writeSecret, "rollouts/parser-v2/pause", `{"reason":"errors"}`)
	assert.Equal(t, http.StatusConflict, got.Status, "rollouts are steered by their evaluator")
	assert.Contains(t, got.Error, "evaluator")

	got = a.post(t, writeSecret, "outboxes/bookings/requeue", `{"reason":"fixed","key":"none"}`)
	assert.Equal(t, http.StatusNotFound, got.Status, "A's outbox has no such dead letter")
	assert.Equal(t, admin.ScopeLocal, a.admin.ScopeOf(admin.KindOutbox))
	assert.Equal(t, ScopeFleet, a.admin.ScopeOf(admin.KindSwitch))
}

func TestAdminRefusesWhatTheHandlerMustRefuse(t *testing.T) {
	srv := etcdtest.New(t)
	a := newConsole(t, 0, srv.Endpoints()...)
	b := newConsole(t, 0, srv.Endpoints()...)

	got := a.post(t, readSecret, "switches/desk/mode", `{"reason":"outage","mode":"manual"}`)
	assert.Equal(t, http.StatusForbidden, got.Status)
	assert.Equal(t, "read-only-token", got.Code)
	got = a.post(t, readSecret, "breakers/payments/force-open", `{"reason":"outage"}`)
	assert.Equal(t, http.StatusForbidden, got.Status)

	for path, body := range map[string]string{
		"switches/nope/mode":       `{"reason":"outage","mode":"manual"}`,
		"breakers/nope/force-open": `{"reason":"outage"}`,
		"groups/nope/release":      `{"reason":"outage"}`,
		"rollouts/nope/abort":      `{"reason":"outage"}`,
	} {
		got = a.post(t, writeSecret, path, body)
		assert.Equal(t, http.StatusNotFound, got.Status, path)
		assert.Equal(t, "unknown-object", got.Code, path)
	}
	// The Admin refuses unknown names itself too, whoever calls it.
	ctx := waitCtx(t)
	for _, act := range []admin.Action{
		{Kind: admin.KindSwitch, Name: "nope", Verb: admin.VerbSetMode, Mode: fallback.ModeManual},
		{Kind: admin.KindBreaker, Name: "nope", Verb: admin.VerbForceOpen},
		{Kind: admin.KindGroup, Name: "nope", Verb: admin.VerbForceOpen},
		{Kind: admin.KindRollout, Name: "nope", Verb: admin.VerbPause},
		{Kind: admin.KindOutbox, Name: "nope", Verb: admin.VerbRequeue, Key: "k"},
	} {
		act.Reason, act.Actor = "r", "alice"
		assert.ErrorIs(t, a.admin.Apply(ctx, act), admin.ErrUnknownObject, "%s %q", act.Kind, act.Name)
	}
	assert.ErrorIs(t, a.admin.Apply(ctx, admin.Action{Kind: admin.KindBreaker, Name: "payments", Verb: admin.VerbSetMode, Reason: "r"}), admin.ErrTransition)
	assert.ErrorIs(t, a.admin.Apply(ctx, admin.Action{Kind: admin.KindSwitch, Name: "desk", Verb: admin.VerbSetMode, Mode: 7, Reason: "r"}), fallback.ErrUnknownMode)

	// Nothing reached the fleet.
	assert.Equal(t, fallback.ModeAuto, b.sw.Mode())
	assert.Equal(t, breaker.Closed, b.payments.State())
}

func TestAdminChangesNothingWhileEtcdIsDown(t *testing.T) {
	srv := etcdtest.New(t)
	a := newConsole(t, 300*time.Millisecond, srv.Endpoints()...)
	b := newConsole(t, 300*time.Millisecond, srv.Endpoints()...)

	fresh, stale := freshnessLog(quick())
	control, err := NewBreakerControl(newClient(t, srv.Endpoints()...), fresh)
	require.NoError(t, err)
	t.Cleanup(control.Close)
	awaitFreshness(t, stale, false, "a control with etcd up")

	srv.Stop()
	awaitFreshness(t, stale, true, "a control with etcd down")
	for path, body := range map[string]string{
		"switches/desk/mode":           `{"reason":"outage","mode":"manual"}`,
		"breakers/payments/force-open": `{"reason":"outage"}`,
		"groups/s3/force-open":         `{"reason":"outage"}`,
	} {
		got := a.post(t, writeSecret, path, body)
		assert.Equal(t, http.StatusServiceUnavailable, got.Status, "%s: %s", path, got.Error)
		assert.Equal(t, "unavailable", got.Code, path)
		assert.Contains(t, got.Error, "nothing was changed", path)
	}
	err = a.admin.Apply(waitCtx(t), admin.Action{Kind: admin.KindSwitch, Name: "desk", Verb: admin.VerbSetMode, Mode: fallback.ModeManual, Reason: "r", Actor: "alice"})
	assert.ErrorIs(t, err, admin.ErrUnavailable)
	assert.Equal(t, fallback.ModeAuto, a.sw.Mode(), "A's own switch did not change")
	lone, err := NewAdmin(AdminSettings{Breakers: control, Objects: admin.Objects{Breakers: []*breaker.Breaker{a.payments}}, Timeout: 300 * time.Millisecond})
	require.NoError(t, err)
	err = lone.Apply(waitCtx(t), admin.Action{Kind: admin.KindBreaker, Name: "payments", Verb: admin.VerbForceOpen, Reason: "r", Actor: "alice"})
	require.ErrorIs(t, err, admin.ErrUnavailable)
	assert.Contains(t, err.Error(), "stale since", "the error says since when the view is stale")
	assert.Equal(t, breaker.Closed, a.payments.State(), "A's own breaker did not change")

	require.NoError(t, srv.Restart(waitCtx(t)))
	c := newClient(t, srv.Endpoints()...)
	resp, err := c.Get(waitCtx(t), DefaultPrefix, clientv3.WithPrefix())
	require.NoError(t, err)
	assert.Empty(t, resp.Kvs, "nothing was written to etcd")
	assert.Equal(t, fallback.ModeAuto, b.sw.Mode())
	assert.Equal(t, breaker.Closed, b.payments.State())

	// Once etcd is back and A has reconnected, the same action goes through.
	eventually(t, "A's breaker control fresh again", testWait, func() bool { return !a.admin.bc.Freshness().Stale })
	got := a.post(t, writeSecret, "breakers/payments/force-open", `{"reason":"outage"}`)
	require.Equal(t, http.StatusOK, got.Status, got.Error)
	b.await(t, "B's payments forced open", testWait, func() bool { return b.payments.State() == breaker.ForcedOpen })
}

func TestNewAdminRefusesSettingsItCannotUse(t *testing.T) {
	srv := etcdtest.New(t)
	c := newClient(t, srv.Endpoints()...)
	store, err := NewModeStore(c, "desk", ModeStoreSettings{Settings: quick()})
	require.NoError(t, err)
	t.Cleanup(store.Close)
	sw, err := fallback.NewSwitch(waitCtx(t), "desk", fallback.SwitchSettings{Store: store})
	require.NoError(t, err)
	t.Cleanup(sw.Close)
	b, err := breaker.New(breaker.Settings{Name: "payments"})
	require.NoError(t, err)
	tests := []struct {
		name  string
		s     AdminSettings
		field string
	}{
		{"a nil switch", AdminSettings{Objects: admin.Objects{Switches: []*fallback.Switch{nil}}}, "Objects.Switches[0]"},
		{"a switch without a store", AdminSettings{Objects: admin.Objects{Switches: []*fallback.Switch{sw}}}, "Modes"},
		{"a store for no switch", AdminSettings{Modes: map[string]*ModeStore{"desk": store}}, `Modes["desk"]`},
		{"breakers without a control", AdminSettings{Objects: admin.Objects{Breakers: []*breaker.Breaker{b}}}, "Breakers"},
		{"a negative Timeout", AdminSettings{Timeout: -time.Second}, "Timeout"},
	}
	for _, tt := range tests {
		_, err := NewAdmin(tt.s)
		require.Error(t, err, tt.name)
		assert.Contains(t, err.Error(), tt.field, tt.name)
	}
	_, err = NewAdmin(AdminSettings{Objects: admin.Objects{Switches: []*fallback.Switch{nil}}})
	assert.True(t, errors.Is(err, admin.ErrInvalidSettings))
}
