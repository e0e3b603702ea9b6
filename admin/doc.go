// Package admin is the operator's console for a service built with
// ringfence: an HTTP handler that shows every breaker, breaker group,
// switch, outbox and rollout of the process, lets an operator act on them
// during an incident, and serves a self-contained web page to do it from a
// browser. The ringfence command (cmd/ringfence) speaks the same API from a
// terminal.
//
// # Mounting
//
// The application creates the handler with its objects and its tokens, and
// mounts it on its own mux, preferably on a listener that only operators
// can reach:
//
//	h, err := admin.New(admin.Settings{
//		Tokens: []admin.Token{
//			{Name: "oncall", Secret: os.Getenv("ADMIN_TOKEN"), Write: true},
//			{Name: "dashboard", Secret: os.Getenv("ADMIN_READ_TOKEN")},
//		},
//		Objects: admin.Objects{
//			Breakers: []*breaker.Breaker{payments},
//			Switches: []*fallback.Switch{paymentsMode},
//			Outboxes: map[string]*fallback.Outbox{"payments": outbox},
//			Rollouts: []*rollout.Rollout{parserV2},
//		},
//	})
//	if err != nil {
//		return err // no token, a short secret, a duplicate name...
//	}
//	mux.Handle("/admin/", http.StripPrefix("/admin", h))
//
// The page is then at /admin/ and the API under /admin/api/v1/.
//
// # Security
//
// Every API request needs "Authorization: Bearer SECRET" with the secret of
// one of Settings.Tokens; secrets are compared in constant time (hashed
// first, every token compared), never logged and never defaulted: New
// refuses Settings without a token. A token without Token.Write may only
// read. Every action needs a reason; the reason and the actor (the token's
// name) are kept in the handler's audit trail, logged, and passed on to
// the object (see Local). Request bodies are limited to Settings.MaxBody and
// must be a single JSON object with no unknown field, sent as
// application/json. The handler reads and sets no cookie, so there is
// nothing for another site to ride on (no CSRF surface), and it sends no
// CORS header, so other origins cannot read its answers. The page itself
// is served at "/" without a token, because it holds no data: it asks for
// the token, keeps it in the tab's session storage and sends it in the
// Authorization header. Its Content-Security-Policy allows only its own
// inline script and style and requests to its own origin.
//
// # The API
//
// Every answer is a JSON object with a "scope" field saying where actions
// take effect: "local" (this process only) with the default Local
// Actions, "fleet" (every instance) with the Actions of the etcd module
// (github.com/ringfence/ringfence/etcd, etcd.NewAdmin). The answer to an
// action names the scope of that action, which may differ by kind of
// object (see KindScoper): outboxes, for one, are always local. Errors are 4xx (or 5xx) answers of the form
//
//	{"scope": "local", "code": "illegal-transition", "error": "admin: transition not allowed: ..."}
//
// and an action answered with an error changed nothing, except for
// "action-failed" (500), which says what may have taken effect. The codes
// are unauthorized (401), read-only-token (403), not-found and
// unknown-object (404), method-not-allowed (405), illegal-transition (409),
// body-too-large (413), unsupported-media-type (415), malformed-json,
// missing-reason and bad-request (400), unavailable (503) when the store
// Actions acts through could not be reached, and canceled (503) when the
// request ended before Actions answered.
//
// Reads (GET):
//
//	api/v1/overview                       every object and the recent changes
//	api/v1/changes                        the audit trail, newest first
//	api/v1/breakers, api/v1/breakers/NAME breaker snapshots
//	api/v1/groups, api/v1/groups/NAME     groups and their member breakers
//	api/v1/switches, api/v1/switches/NAME mode and history of changes
//	api/v1/outboxes, api/v1/outboxes/NAME pending, oldest, replay progress, backlog samples
//	api/v1/outboxes/NAME/dead-letters     dead letters (at most 1000, with the total)
//	api/v1/rollouts, api/v1/rollouts/NAME status, rings, verdict with figures, history
//
// Actions (POST, body {"reason": "..."} plus the fields named):
//
//	api/v1/breakers/NAME/force-open | force-close | release
//	api/v1/groups/NAME/force-open | force-close | release   optional "key": one member
//	api/v1/switches/NAME/mode                                "mode": auto | manual | primary
//	api/v1/outboxes/NAME/requeue                             "key": the dead letter's key
//	api/v1/rollouts/NAME/pause | resume | promote | abort
//
// Names in paths are path-escaped (a group member "s3/host" is addressed
// through its group and key). An action answers with the recorded change
// and the object's new view.
//
// # Where actions go
//
// The handler checks each action (token, body, reason, object) and hands
// it to Settings.Actions. The default, Local, applies it to the objects of
// this process through their own methods. The etcd module's Actions
// (etcd.NewAdmin) plugs in the same way: it records switch modes and
// forced breakers in the fleet's etcd store, which every instance
// follows, and hands rollout controls (pause, resume, promote, abort) to
// the fleet's elected judge, which applies each once and answers; its
// scope "fleet" tells operators, the page and the command-line tool that
// their action reached the whole fleet rather than one instance. Outboxes
// hold per-instance work, so their actions stay "local".
//
// # The page
//
// GET on the handler's root serves one HTML page, embedded in the binary,
// with no external resource: it works offline. It shows each object's state
// in colour, a rollout's rings and its verdict history, each outbox's
// backlog over time as a small chart (from samples the handler takes, at
// most one a second, whenever the outbox is read), and the recent changes.
// It refreshes itself every two seconds, and every action asks for a reason
// and a confirmation before it is sent.
//
// All types in this package are safe for concurrent use.
package admin
