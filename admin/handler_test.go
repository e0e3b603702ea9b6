package admin

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/ringfence/ringfence/breaker"
	"github.com/ringfence/ringfence/fallback"
	"github.com/ringfence/ringfence/rollout"
)

func TestNewRefusesSettingsItCannotServeWith(t *testing.T) {
	f := newObjects(t)
	b2, err := breaker.New(breaker.Settings{Name: "payments"})
	require.NoError(t, err)
	tests := []struct {
		name  string
		s     Settings
		field string
	}{
		{"no token at all", Settings{}, "Tokens"},
		{"an empty token list", Settings{Tokens: []Token{}}, "Tokens"},
		{"a token without a name", Settings{Tokens: []Token{{Secret: writeSecret}}}, "Tokens[0].Name"},
		{"a short secret", Settings{Tokens: []Token{{Name: "a", Secret: "short"}}}, "Tokens[0].Secret"},
		{"an empty secret", Settings{Tokens: []Token{{Name: "a"}}}, "Tokens[0].Secret"},
		{"two tokens with one name", Settings{Tokens: []Token{{Name: "a", Secret: writeSecret}, {Name: "a", Secret: readSecret}}}, "Tokens[1].Name"},
		{"two tokens with one secret", Settings{Tokens: []Token{{Name: "a", Secret: writeSecret}, {Name: "b", Secret: writeSecret}}}, "Tokens[1].Secret"},
		{"a negative MaxBody", Settings{Tokens: testTokens(), MaxBody: -1}, "MaxBody"},
		{"a negative AuditLen", Settings{Tokens: testTokens(), AuditLen: -1}, "AuditLen"},
		{"a negative BacklogSamples", Settings{Tokens: testTokens(), BacklogSamples: -1}, "BacklogSamples"},
		{"a nil breaker", Settings{Tokens: testTokens(), Objects: Objects{Breakers: []*breaker.Breaker{nil}}}, "Objects.Breakers[0]"},
		{"two breakers with one name", Settings{Tokens: testTokens(), Objects: Objects{Breakers: []*breaker.Breaker{f.payments, b2}}}, "Objects.Breakers[1]"},
		{"a group named other than its breakers", Settings{Tokens: testTokens(), Objects: Objects{Groups: map[string]*breaker.Group{"storage": f.s3}}}, `Objects.Groups["storage"]`},
		{"a nil switch", Settings{Tokens: testTokens(), Objects: Objects{Switches: []*fallback.Switch{nil}}}, "Objects.Switches[0]"},
		{"an outbox without a name", Settings{Tokens: testTokens(), Objects: Objects{Outboxes: map[string]*fallback.Outbox{"": f.outbox}}}, "Objects.Outboxes"},
		{"a nil rollout", Settings{Tokens: testTokens(), Objects: Objects{Rollouts: []*rollout.Rollout{nil}}}, "Objects.Rollouts[0]"},
	}
	for _, tt := range tests {
		t.Run("refuses "+tt.name, func(t *testing.T) {
			h, err := New(tt.s)
			require.ErrorIs(t, err, ErrInvalidSettings, "New(%s)", tt.name)
			assert.Nil(t, h)
			assert.Contains(t, err.Error(), tt.field, "New(%s) must name the field", tt.name)
		})
	}
}

func TestEveryAPIRequestNeedsAValidBearerToken(t *testing.T) {
	f := newFixture(t)
	tests := []struct {
		name   string
		header string
	}{
		{"no Authorization header", ""},
		{"a Basic credential", "Basic " + writeSecret},
		{"the secret without a scheme", writeSecret},
		{"an empty bearer token", "Bearer "},
		{"a wrong token", "Bearer not-the-secret-0123456789"},
		{"a prefix of a token", "Bearer " + writeSecret[:len(writeSecret)-1]},
		{"a token with an extra character", "Bearer " + writeSecret + "x"},
	}
	for _, path := range []string{"/api/v1/overview", "/api/v1/breakers/payments", "/api/v1/nonsense"} {
		for _, tt := range tests {
			t.Run(path+" refuses "+tt.name, func(t *testing.T) {
				req := httptest.NewRequest(http.MethodGet, path, nil)
				if tt.header != "" {
					req.Header.Set("Authorization", tt.header)
				}
				req.AddCookie(&http.Cookie{Name: "session", Value: writeSecret})
				rec := httptest.NewRecorder()
				f.h.ServeHTTP(rec, req)
				assert.Equal(t, http.StatusUnauthorized, rec.Code, "GET %s with %s", path, tt.name)
				assert.Contains(t, rec.Header().Get("WWW-Authenticate"), "Bearer")
				assert.Contains(t, rec.Body.String(), `"code": "unauthorized"`)
				assert.NotContains(t, rec.Body.String(), "payments", "a refused request must not see objects")
			})
		}
	}
	t.Run("accepts each configured token", func(t *testing.T) {
		for _, secret := range []string{writeSecret, readSecret} {
			a := call(t, f.h, http.MethodGet, "/api/v1/overview", secret, "")
			assert.Equal(t, http.StatusOK, a.status, a.raw)
		}
	})
	assert.NotContains(t, f.logs.String(), writeSecret, "a secret must never be logged")
}

func TestResponsesSetNoCookie(t *testing.T) {
	f := newFixture(t)
	for _, path := range []string{"/", "/api/v1/overview", "/api/v1/switches/desk/mode"} {
		rec := httptest.NewRecorder()
		req := httptest.NewRequest(http.MethodPost, path, strings.NewReader(`{"reason":"x","mode":"manual"}`))
		req.Header.Set("Authorization", "Bearer "+writeSecret)
		req.Header.Set("Content-Type", "application/json")
		f.h.ServeHTTP(rec, req)
		assert.Empty(t, rec.Header().Values("Set-Cookie"), "POST %s", path)
		assert.Empty(t, rec.Header().Get("Access-Control-Allow-Origin"), "POST %s must not allow other origins", path)
	}
}

func TestBadRequestsAreRefusedAndChangeNothing(t *testing.T) {
	tests := []struct {
		name        string
		method      string
		path        string
		secret      string
		contentType string
		body        string
		status      int
		code        string
		mentions    string
		setup       func(f fixture)
	}{
		{name: "a read-only token", path: "/api/v1/switches/desk/mode", secret: readSecret,
			body: `{"reason":"outage","mode":"manual"}`, status: 403, code: "read-only-token", mentions: "viewer"},
		{name: "a read-only token forcing a breaker", path: "/api/v1/breakers/payments/force-open", secret: readSecret,
			body: `{"reason":"outage"}`, status: 403, code: "read-only-token"},
		{name: "malformed JSON", path: "/api/v1/breakers/payments/force-open", body: `{"reason": "outage"`, status: 400, code: "malformed-json"},
		{name: "a JSON array", path: "/api/v1/breakers/payments/force-open", body: `["outage"]`, status: 400, code: "malformed-json"},
		{name: "an unknown field", path: "/api/v1/breakers/payments/force-open", body: `{"reason":"outage","force":true}`, status: 400, code: "malformed-json", mentions: "force"},
		{name: "two JSON values", path: "/api/v1/breakers/payments/force-open", body: `{"reason":"outage"}{"reason":"again"}`, status: 400, code: "malformed-json"},
		{name: "a missing reason", path: "/api/v1/breakers/payments/force-open", body: `{}`, status: 400, code: "missing-reason", mentions: "reason"},
		{name: "a blank reason", path: "/api/v1/switches/desk/mode", body: `{"reason":"  \n","mode":"manual"}`, status: 400, code: "missing-reason"},
		{name: "an empty body", path: "/api/v1/breakers/payments/force-open", body: ``, status: 400, code: "malformed-json"},
		{name: "a body over the limit", path: "/api/v1/breakers/payments/force-open", body: `{"reason":"` + strings.Repeat("x", 5000) + `"}`, status: 413, code: "body-too-large"},
		{name: "a reason over 1000 bytes", path: "/api/v1/breakers/payments/force-open", body: `{"reason":"` + strings.Repeat("x", 1001) + `"}`, status: 400, code: "bad-request"},
		{name: "a form instead of JSON", path: "/api/v1/breakers/payments/force-open", contentType: "application/x-www-form-urlencoded", body: `reason=outage`, status: 415, code: "unsupported-media-type"},
		{name: "an unknown breaker", path: "/api/v1/breakers/ledger/force-open", body: `{"reason":"outage"}`, status: 404, code: "unknown-object", mentions: "ledger"},
		{name: "an unknown switch", path: "/api/v1/switches/kiosk/mode", body: `{"reason":"outage","mode":"manual"}`, status: 404, code: "unknown-object", mentions: "kiosk"},
		{name: "an unknown rollout", path: "/api/v1/rollouts/parser-v3/promote", body: `{"reason":"looks good"}`, status: 404, code: "unknown-object"},
		{name: "an unknown group member", path: "/api/v1/groups/s3/force-open", body: `{"reason":"outage","key":"ap"}`, status: 404, code: "unknown-object", mentions: "ap"},
		{name: "an unknown dead letter", path: "/api/v1/outboxes/bookings/requeue", body: `{"reason":"fixed","key":"nope"}`, status: 404, code: "unknown-object", mentions: "nope"},
		{name: "an unknown verb", path: "/api/v1/breakers/payments/explode", body: `{"reason":"outage"}`, status: 404, code: "not-found"},
		{name: "a verb of another kind", path: "/api/v1/breakers/payments/promote", body: `{"reason":"outage"}`, status: 404, code: "not-found"},
		{name: "an unknown collection", path: "/api/v1/caches/x", method: http.MethodGet, status: 404, code: "not-found"},
		{name: "GET on an action", path: "/api/v1/breakers/payments/force-open", method: http.MethodGet, status: 405, code: "method-not-allowed"},
		{name: "DELETE on an object", path: "/api/v1/breakers/payments", method: http.MethodDelete, status: 405, code: "method-not-allowed"},
		{name: "an unknown mode", path: "/api/v1/switches/desk/mode", body: `{"reason":"outage","mode":"off"}`, status: 400, code: "bad-request", mentions: "off"},
		{name: "a mode change without a mode", path: "/api/v1/switches/desk/mode", body: `{"reason":"outage"}`, status: 400, code: "bad-request", mentions: "mode"},
		{name: "a mode for a breaker", path: "/api/v1/breakers/payments/force-open", body: `{"reason":"outage","mode":"manual"}`, status: 400, code: "bad-request"},
		{name: "a key for a rollout", path: "/api/v1/rollouts/parser-v2/pause", body: `{"reason":"outage","key":"x"}`, status: 400, code: "bad-request"},
		{name: "a requeue without a key", path: "/api/v1/outboxes/bookings/requeue", body: `{"reason":"fixed"}`, status: 400, code: "bad-request", mentions: "key"},
		{name: "the mode the switch is in", path: "/api/v1/switches/desk/mode", body: `{"reason":"outage","mode":"auto"}`, status: 409, code: "illegal-transition", mentions: "already"},
		{name: "releasing a breaker that is not forced", path: "/api/v1/breakers/payments/release", body: `{"reason":"over"}`, status: 409, code: "illegal-transition", mentions: "not forced"},
		{name: "releasing a group with no forced member", path: "/api/v1/groups/s3/release", body: `{"reason":"over"}`, status: 409, code: "illegal-transition"},
		{name: "resuming a running rollout", path: "/api/v1/rollouts/parser-v2/resume", body: `{"reason":"go on"}`, status: 409, code: "illegal-transition", mentions: "running"},
		{name: "promoting a rolled-back rollout", path: "/api/v1/rollouts/parser-v2/promote", body: `{"reason":"ship it"}`, status: 409, code: "illegal-transition", mentions: "rolled-back",
			setup: func(f fixture) { require.NoError(t, f.parser.Abort("bad canary")) }},
		{name: "aborting a rolled-back rollout", path: "/api/v1/rollouts/parser-v2/abort", body: `{"reason":"again"}`, status: 409, code: "illegal-transition",
			setup: func(f fixture) { require.NoError(t, f.parser.Abort("bad canary")) }},
	}
	for _, tt := range tests {
		t.Run("refuses "+tt.name, func(t *testing.T) {
			f := newFixture(t)
			if tt.setup != nil {
				tt.setup(f)
			}
			before := f.state(t)
			method := tt.method
			if method == "" {
				method = http.MethodPost
			}
			secret := tt.secret
			if secret == "" {
				secret = writeSecret
			}
			req := httptest.NewRequest(method, tt.path, strings.NewReader(tt.body))
			req.Header.Set("Authorization", "Bearer "+secret)
			ct := tt.contentType
			if ct == "" {
				ct = "application/json"
			}
			req.Header.Set("Content-Type", ct)
			rec := httptest.NewRecorder()
			f.h.ServeHTTP(rec, req)
			a := answer{status: rec.Code, raw: rec.Body.String()}
			assert.Equal(t, tt.status, a.status, "%s %s %s: %s", method, tt.path, tt.body, a.raw)
			assert.Contains(t, a.raw, `"code": "`+tt.code+`"`, "%s %s", method, tt.path)
			assert.Contains(t, a.raw, `"scope": "local"`)
			if tt.mentions != "" {
				assert.Contains(t, a.raw, tt.mentions, "the error must name the problem")
			}
			assert.Equal(t, before, f.state(t), "%s %s must change nothing", method, tt.path)
			assert.Empty(t, f.h.trail.recent(), "a refused action must not enter the audit trail")
		})
	}
}

func TestActionsChangeTheObjectsAndRecordTheActor(t *testing.T) {
	type check func(t *testing.T, f fixture)
	tests := []struct {
		name  string
		path  string
		body  string
		setup func(t *testing.T, f fixture)
		check check
	}{
		{"force a breaker open", "/api/v1/breakers/payments/force-open", `{"reason":"payments API returns garbage"}`, nil,
			func(t *testing.T, f fixture) {
				s := f.payments.Snapshot()
				assert.Equal(t, breaker.ForcedOpen, s.State)
				assert.Equal(t, "forced open: payments API returns garbage (by alice)", s.Reason)
			}},
		{"force a breaker closed", "/api/v1/breakers/payments/force-close", `{"reason":"false alarm"}`, nil,
			func(t *testing.T, f fixture) { assert.Equal(t, breaker.ForcedClosed, f.payments.State()) }},
		{"release a forced breaker", "/api/v1/breakers/payments/release", `{"reason":"over"}`,
			func(t *testing.T, f fixture) { f.payments.ForceOpen("drill") },
			func(t *testing.T, f fixture) { assert.Equal(t, breaker.Closed, f.payments.State()) }},
		{"force every member of a group open", "/api/v1/groups/s3/force-open", `{"reason":"region down"}`, nil,
			func(t *testing.T, f fixture) {
				for _, s := range f.s3.Snapshots() {
					assert.Equal(t, breaker.ForcedOpen, s.State, s.Name)
				}
			}},
		{"force one member of a group open", "/api/v1/groups/s3/force-open", `{"reason":"eu down","key":"eu"}`, nil,
			func(t *testing.T, f fixture) {
				assert.Equal(t, breaker.ForcedOpen, f.s3.Get("eu").State())
				assert.Equal(t, breaker.Closed, f.s3.Get("us").State())
			}},
		{"release the forced members of a group", "/api/v1/groups/s3/release", `{"reason":"over"}`,
			func(t *testing.T, f fixture) { f.s3.Get("eu").ForceOpen("drill") },
			func(t *testing.T, f fixture) { assert.Equal(t, breaker.Closed, f.s3.Get("eu").State()) }},
		{"set a switch to manual mode", "/api/v1/switches/desk/mode", `{"reason":"booking API down","mode":"manual"}`, nil,
			func(t *testing.T, f fixture) {
				assert.Equal(t, fallback.ModeManual, f.desk.Mode())
				h := f.desk.History()
				assert.Equal(t, "booking API down", h[len(h)-1].Reason)
				assert.Equal(t, "alice", h[len(h)-1].Actor)
			}},
		{"requeue a dead letter", "/api/v1/outboxes/bookings/requeue", `{"reason":"record fixed","key":"bad-1"}`, nil,
			func(t *testing.T, f fixture) {
				assert.Equal(t, 2, f.outbox.Pending())
				assert.Equal(t, 0, f.outbox.Stats().Dead)
			}},
		{"pause a rollout", "/api/v1/rollouts/parser-v2/pause", `{"reason":"incident"}`, nil,
			func(t *testing.T, f fixture) {
				assert.Equal(t, rollout.Paused, f.parser.Status().State)
				h := f.parser.History()
				assert.Equal(t, "incident (by alice)", h[len(h)-1].Reason)
			}},
		{"resume a rollout", "/api/v1/rollouts/parser-v2/resume", `{"reason":"incident over"}`,
			func(t *testing.T, f fixture) { require.NoError(t, f.parser.Pause("incident")) },
			func(t *testing.T, f fixture) { assert.Equal(t, rollout.Running, f.parser.Status().State) }},
		{"promote a rollout", "/api/v1/rollouts/parser-v2/promote", `{"reason":"verified by hand"}`, nil,
			func(t *testing.T, f fixture) { assert.Equal(t, rollout.Promoted, f.parser.Status().State) }},
		{"abort a rollout", "/api/v1/rollouts/parser-v2/abort", `{"reason":"crashes hosts"}`, nil,
			func(t *testing.T, f fixture) { assert.Equal(t, rollout.RolledBack, f.parser.Status().State) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t)
			if tt.setup != nil {
				tt.setup(t, f)
			}
			a := call(t, f.h, http.MethodPost, tt.path, writeSecret, tt.body)
			require.Equal(t, http.StatusOK, a.status, "POST %s: %s", tt.path, a.raw)
			tt.check(t, f)
			change, ok := a.body["change"].(map[string]any)
			require.True(t, ok, "the answer holds the change: %s", a.raw)
			assert.Equal(t, "alice", change["actor"])
			assert.Equal(t, "local", change["scope"])
			assert.NotNil(t, a.body["object"], "the answer holds the object's new view")
			trail := f.h.trail.recent()
			require.Len(t, trail, 1)
			assert.Equal(t, "alice", trail[0].Actor)
			logs := f.logs.String()
			assert.Contains(t, logs, `"msg":"admin: action applied"`)
			assert.Contains(t, logs, `"actor":"alice"`)
			assert.Contains(t, logs, `"scope":"local"`)
		})
	}
}

func TestReadsShowEveryObject(t *testing.T) {
	f := newFixture(t)
	f.payments.ForceOpen("drill")
	tests := []struct {
		path     string
		mentions []string
	}{
		{"/api/v1/overview", []string{`"forced-open"`, `"desk"`, `"s3/eu"`, `"bookings"`, `"parser-v2"`, `"token"`, `"viewer"`}},
		{"/api/v1/breakers", []string{`"payments"`, `"forced open: drill"`}},
		{"/api/v1/breakers/payments", []string{`"state": "forced-open"`, `"forced": true`}},
		{"/api/v1/groups/s3", []string{`"s3/eu"`, `"s3/us"`}},
		{"/api/v1/switches/desk", []string{`"mode": "auto"`, `"history"`}},
		{"/api/v1/outboxes/bookings", []string{`"pending": 1`, `"dead": 1`, `"dead_lettered": 1`, `"backlog"`, `"oldest"`}},
		{"/api/v1/outboxes/bookings/dead-letters", []string{`"key": "bad-1"`, `"stream": "RF101"`, `"booking rejected the record"`, `"total": 1`}},
		{"/api/v1/rollouts/parser-v2", []string{`"state": "running"`, `"stages"`, `"verdict"`, `"outcome": "gathering"`, `"history"`}},
		{"/api/v1/changes", []string{`"changes": []`}},
	}
	for _, tt := range tests {
		t.Run("GET "+tt.path, func(t *testing.T) {
			a := call(t, f.h, http.MethodGet, tt.path, readSecret, "")
			require.Equal(t, http.StatusOK, a.status, a.raw)
			for _, m := range tt.mentions {
				assert.Contains(t, a.raw, m, "GET %s", tt.path)
			}
		})
	}
	t.Run("GET an unknown object", func(t *testing.T) {
		for _, p := range []string{"/api/v1/breakers/ledger", "/api/v1/outboxes/nope/dead-letters", "/api/v1/rollouts/x"} {
			a := call(t, f.h, http.MethodGet, p, readSecret, "")
			assert.Equal(t, http.StatusNotFound, a.status, p)
			assert.Equal(t, "unknown-object", a.body["code"], p)
		}
	})
}

func TestGroupMembersAreAddressedByEscapedNames(t *testing.T) {
	f := newObjects(t)
	g, err := breaker.NewGroup(breaker.Settings{Name: "hosts"}, breaker.GroupOptions{})
	require.NoError(t, err)
	g.Get("api.example.com:443")
	b, err := breaker.New(breaker.Settings{Name: "east/west"})
	require.NoError(t, err)
	h, err := New(Settings{Tokens: testTokens(), Objects: Objects{Groups: map[string]*breaker.Group{"hosts": g}, Breakers: []*breaker.Breaker{b, f.payments}}, Logger: discard()})
	require.NoError(t, err)
	a := call(t, h, http.MethodPost, "/api/v1/breakers/east%2Fwest/force-open", writeSecret, `{"reason":"slash"}`)
	require.Equal(t, http.StatusOK, a.status, a.raw)
	assert.Equal(t, breaker.ForcedOpen, b.State())
	a = call(t, h, http.MethodPost, "/api/v1/groups/hosts/force-close", writeSecret, `{"reason":"x","key":"api.example.com:443"}`)
	require.Equal(t, http.StatusOK, a.status, a.raw)
	assert.Equal(t, breaker.ForcedClosed, g.Get("api.example.com:443").State())
}

func TestThePageNeedsNoTokenAndLoadsNothingFromElsewhere(t *testing.T) {
	f := newFixture(t)
	rec := httptest.NewRecorder()
	f.h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/", nil))
	require.Equal(t, http.StatusOK, rec.Code)
	assert.Equal(t, "text/html; charset=utf-8", rec.Header().Get("Content-Type"))
	csp := rec.Header().Get("Content-Security-Policy")
	assert.Contains(t, csp, "default-src 'none'")
	assert.Contains(t, csp, "script-src 'sha256-")
	assert.NotContains(t, csp, "unsafe-inline")
	page := rec.Body.String()
	// The SVG namespace is a name, not a resource: nothing is fetched from it.
	offline := strings.ReplaceAll(page, `"http://www.w3.org/2000/svg"`, "")
	for _, external := range []string{"http://", "https://", "//cdn", "@import", "src=\"", "href=\"", "url("} {
		assert.False(t, strings.Contains(offline, external), "the page must work offline, but it holds %q", external)
	}
	assert.False(t, strings.Contains(page, "document.cookie"), "the page must not use cookies")
	assert.True(t, strings.Contains(page, "sessionStorage"), "the page keeps the token in session storage")
	assert.False(t, strings.Contains(page, "<style></style>"), "the style must be inlined")

	rec = httptest.NewRecorder()
	f.h.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, "/", nil))
	assert.Equal(t, http.StatusMethodNotAllowed, rec.Code, "POST /")
	a := call(t, f.h, http.MethodGet, "/elsewhere", "", "")
	assert.Equal(t, http.StatusNotFound, a.status)
}

func TestTheAuditTrailIsBoundedAndNewestFirst(t *testing.T) {
	f := newObjects(t)
	h, err := New(Settings{Tokens: testTokens(), Objects: f.objects(), AuditLen: 3, Logger: discard()})
	require.NoError(t, err)
	verbs := []string{"force-open", "force-close", "force-open", "force-close", "release"}
	for _, v := range verbs {
		a := call(t, h, http.MethodPost, "/api/v1/breakers/payments/"+v, writeSecret, `{"reason":"step `+v+`"}`)
		require.Equal(t, http.StatusOK, a.status, a.raw)
	}
	got := h.trail.recent()
	require.Len(t, got, 3)
	assert.Equal(t, []Verb{"release", "force-close", "force-open"}, []Verb{got[0].Verb, got[1].Verb, got[2].Verb})
}

func TestBacklogSamplesAreBounded(t *testing.T) {
	f := newObjects(t)
	h, err := New(Settings{Tokens: testTokens(), Objects: f.objects(), BacklogSamples: 2, Logger: discard()})
	require.NoError(t, err)
	b := h.backlogs["bookings"]
	start := timeZero()
	for i := range 5 {
		b.record(start.Add(secondsDur(i)), i, 0)
	}
	got := b.record(start.Add(secondsDur(4)), 99, 0) // under a second after the last: not recorded
	require.Len(t, got, 2)
	assert.Equal(t, []int{3, 4}, []int{got[0].Pending, got[1].Pending})
}

// recorder is an Actions that records what it is given, standing in for a
// fleet-wide backend to show that the Handler reports its scope.
type recorder struct {
	mu  sync.Mutex
	got []Action
}

func (r *recorder) Scope() string { return "fleet" }

func (r *recorder) Apply(_ context.Context, a Action) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.got = append(r.got, a)
	if a.Verb == VerbAbort {
		return errors.New("store unreachable")
	}
	return nil
}

func TestAnotherActionsReceivesCheckedActionsAndNamesItsScope(t *testing.T) {
	f := newObjects(t)
	rec := &recorder{}
	h, err := New(Settings{Tokens: testTokens(), Objects: f.objects(), Actions: rec, Logger: discard()})
	require.NoError(t, err)
	w := httptest.NewRecorder()
	req := httptest.NewRequest(http.MethodPost, "/api/v1/switches/desk/mode", strings.NewReader(`{"reason":"outage","mode":"manual"}`))
	req.Header.Set("Authorization", "Bearer "+writeSecret)
	req.Header.Set("Content-Type", "application/json")
	h.ServeHTTP(w, req)
	require.Equal(t, http.StatusOK, w.Code, w.Body.String())
	assert.Contains(t, w.Body.String(), `"scope": "fleet"`)
	assert.Equal(t, []Action{{Kind: KindSwitch, Name: "desk", Verb: VerbSetMode, Mode: fallback.ModeManual, Reason: "outage", Actor: "alice"}}, rec.got)
	assert.Equal(t, fallback.ModeAuto, f.desk.Mode(), "another Actions decides; the handler does not touch the object itself")

	w = httptest.NewRecorder()
	req = httptest.NewRequest(http.MethodPost, "/api/v1/rollouts/parser-v2/abort", strings.NewReader(`{"reason":"bad"}`))
	req.Header.Set("Authorization", "Bearer "+writeSecret)
	req.Header.Set("Content-Type", "application/json")
	h.ServeHTTP(w, req)
	assert.Equal(t, http.StatusInternalServerError, w.Code)
	assert.Contains(t, w.Body.String(), "store unreachable")
	assert.Contains(t, w.Body.String(), `"code": "action-failed"`)
	require.Len(t, h.trail.recent(), 2, "an action that may have taken effect is audited")
	assert.Equal(t, "store unreachable", h.trail.recent()[0].Error)
}

func TestConcurrentReadsAndActions(t *testing.T) {
	f := newFixture(t)
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Go(func() {
			for j := range 20 {
				if i%2 == 0 {
					call(t, f.h, http.MethodGet, "/api/v1/overview", readSecret, "")
					continue
				}
				verb := []string{"force-open", "force-close"}[j%2]
				call(t, f.h, http.MethodPost, "/api/v1/groups/s3/"+verb, writeSecret, `{"reason":"load"}`)
			}
		})
	}
	wg.Wait()
	assert.Len(t, f.h.trail.recent(), 80)
}

// kindScoped is an Actions acting fleet-wide on every kind but outboxes,
// and failing to reach its store for rollouts.
type kindScoped struct{ recorder }

func (k *kindScoped) ScopeOf(kind Kind) string {
	if kind == KindOutbox {
		return ScopeLocal
	}
	return "fleet"
}

func (k *kindScoped) Apply(ctx context.Context, a Action) error {
	if a.Kind == KindRollout {
		return fmt.Errorf("%w: store down", ErrUnavailable)
	}
	return k.recorder.Apply(ctx, a)
}

func TestTheScopeOfAnActionCanDependOnTheKind(t *testing.T) {
	f := newObjects(t)
	ks := &kindScoped{}
	h, err := New(Settings{Tokens: testTokens(), Objects: f.objects(), Actions: ks, Logger: discard()})
	require.NoError(t, err)
	post := func(path, body string) *httptest.ResponseRecorder {
		w := httptest.NewRecorder()
		req := httptest.NewRequest(http.MethodPost, path, strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+writeSecret)
		req.Header.Set("Content-Type", "application/json")
		h.ServeHTTP(w, req)
		return w
	}
	w := post("/api/v1/outboxes/bookings/requeue", `{"reason":"fixed","key":"k"}`)
	require.Equal(t, http.StatusOK, w.Code, w.Body.String())
	assert.Contains(t, w.Body.String(), `"scope": "local"`)
	assert.NotContains(t, w.Body.String(), `"scope": "fleet"`)
	w = post("/api/v1/switches/desk/mode", `{"reason":"outage","mode":"manual"}`)
	require.Equal(t, http.StatusOK, w.Code, w.Body.String())
	assert.NotContains(t, w.Body.String(), `"scope": "local"`)
	changes := h.trail.recent()
	require.Len(t, changes, 2)
	assert.Equal(t, "fleet", changes[0].Scope)
	assert.Equal(t, ScopeLocal, changes[1].Scope)
	assert.Equal(t, "fleet", h.Scope())

	w = post("/api/v1/rollouts/parser-v2/pause", `{"reason":"bad"}`)
	assert.Equal(t, http.StatusServiceUnavailable, w.Code)
	assert.Contains(t, w.Body.String(), `"code": "unavailable"`)
	assert.Len(t, h.trail.recent(), 2, "an action that changed nothing is not audited")
}
