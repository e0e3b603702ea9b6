package admin

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// Handler serves the admin API and the console page; see the package
// documentation for the endpoints. Create one with New; the zero value is
// not usable. A Handler is safe for concurrent use and starts no
// goroutines.
type Handler struct {
	tokens   []tokenHash
	ix       *index
	actions  Actions
	log      *slog.Logger
	maxBody  int64
	trail    *trail
	backlogs map[string]*backlog // by outbox name; the map is never changed
	page     []byte
	pageCSP  string
}

// tokenHash is a token with the SHA-256 of its secret, so that comparing
// secrets of different lengths takes the same time.
type tokenHash struct {
	name  string
	sum   [sha256.Size]byte
	write bool
}

// New returns a Handler for s. It returns an error wrapping
// ErrInvalidSettings, naming the field, when s has no token (the handler
// never serves without one), a token without a name or with a secret
// shorter than MinSecretLen, a duplicate name or secret, a nil object, an
// object without a name, or a negative limit.
func New(s Settings) (*Handler, error) {
	if err := checkTokens(s.Tokens); err != nil {
		return nil, err
	}
	switch {
	case s.MaxBody < 0:
		return nil, invalid("MaxBody: %d is negative", s.MaxBody)
	case s.AuditLen < 0:
		return nil, invalid("AuditLen: %d is negative", s.AuditLen)
	case s.BacklogSamples < 0:
		return nil, invalid("BacklogSamples: %d is negative", s.BacklogSamples)
	}
	ix, err := newIndex(s.Objects)
	if err != nil {
		return nil, err
	}
	h := &Handler{
		ix:       ix,
		actions:  s.Actions,
		log:      s.Logger,
		maxBody:  cmp(s.MaxBody, DefaultMaxBody),
		trail:    newTrail(int(cmp(int64(s.AuditLen), DefaultAuditLen))),
		backlogs: make(map[string]*backlog, len(ix.outboxes)),
	}
	if h.actions == nil {
		h.actions = &Local{ix: ix}
	}
	if h.log == nil {
		h.log = slog.Default()
	}
	for _, t := range s.Tokens {
		h.tokens = append(h.tokens, tokenHash{name: t.Name, sum: sha256.Sum256([]byte(t.Secret)), write: t.Write})
	}
	n := int(cmp(int64(s.BacklogSamples), DefaultBacklogN))
	for name := range ix.outboxes {
		h.backlogs[name] = &backlog{max: n}
	}
	h.page, h.pageCSP, err = buildPage()
	if err != nil {
		return nil, err
	}
	return h, nil
}

// cmp returns v, or def when v is zero.
func cmp(v, def int64) int64 {
	if v == 0 {
		return def
	}
	return v
}

// Scope returns the scope of the Handler's Actions: where its actions take
// effect.
func (h *Handler) Scope() string { return h.actions.Scope() }

// scopeOf returns where actions on objects of kind k take effect.
func (h *Handler) scopeOf(k Kind) string {
	if ks, ok := h.actions.(KindScoper); ok {
		return ks.ScopeOf(k)
	}
	return h.actions.Scope()
}

// apiError is an error answer: a status, a stable code and a message that
// names the problem.
type apiError struct {
	status int
	code   string
	msg    string
}

func (e *apiError) Error() string { return e.msg }

func fail(status int, code, format string, args ...any) *apiError {
	return &apiError{status: status, code: code, msg: fmt.Sprintf(format, args...)}
}

// ServeHTTP implements http.Handler. It serves the console page at "/"
// without credentials (the page holds no data) and every path under
// "/api/v1/" only with a valid bearer token. Mount it with
// http.StripPrefix when it does not sit at the root of the mux.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	path := r.URL.EscapedPath()
	if path == "" || path == "/" {
		h.servePage(w, r)
		return
	}
	rest, ok := strings.CutPrefix(path, "/api/v1/")
	if !ok {
		h.writeError(w, fail(http.StatusNotFound, "not-found", "no such path %q; the API is under api/v1/", r.URL.Path))
		return
	}
	tok, err := h.authenticate(r)
	if err != nil {
		w.Header().Set("WWW-Authenticate", `Bearer realm="ringfence"`)
		h.log.LogAttrs(r.Context(), slog.LevelWarn, "admin: request refused",
			slog.String("path", r.URL.Path), slog.String("remote", r.RemoteAddr), slog.String("error", err.Error()))
		h.writeError(w, err)
		return
	}
	segs, err := splitPath(rest)
	if err != nil {
		h.writeError(w, err)
		return
	}
	h.route(w, r, tok, segs)
}

// authenticate returns the token r carries, or a 401 error.
func (h *Handler) authenticate(r *http.Request) (tokenHash, *apiError) {
	auth := r.Header.Get("Authorization")
	scheme, secret, ok := strings.Cut(auth, " ")
	if auth == "" {
		return tokenHash{}, fail(http.StatusUnauthorized, "unauthorized", "missing bearer token: send the header Authorization: Bearer TOKEN")
	}
	if !ok || !strings.EqualFold(scheme, "Bearer") || secret == "" {
		return tokenHash{}, fail(http.StatusUnauthorized, "unauthorized", "the Authorization header is not a bearer token")
	}
	sum := sha256.Sum256([]byte(strings.TrimSpace(secret)))
	found := -1
	for i := range h.tokens { // every token is compared, so timing shows nothing
		if subtle.ConstantTimeCompare(sum[:], h.tokens[i].sum[:]) == 1 {
			found = i
		}
	}
	if found < 0 {
		return tokenHash{}, fail(http.StatusUnauthorized, "unauthorized", "unknown bearer token")
	}
	return h.tokens[found], nil
}

// splitPath splits an escaped path into unescaped segments.
func splitPath(p string) ([]string, *apiError) {
	parts := strings.Split(strings.TrimSuffix(p, "/"), "/")
	for i, s := range parts {
		u, err := url.PathUnescape(s)
		if err != nil || u == "" {
			return nil, fail(http.StatusNotFound, "not-found", "no such path %q", "/api/v1/"+p)
		}
		parts[i] = u
	}
	return parts, nil
}

// kinds maps the API's collection names to kinds.
func kindOf(collection string) (Kind, bool) {
	switch collection {
	case "breakers":
		return KindBreaker, true
	case "groups":
		return KindGroup, true
	case "switches":
		return KindSwitch, true
	case "outboxes":
		return KindOutbox, true
	case "rollouts":
		return KindRollout, true
	}
	return "", false
}

// verbOf maps an action path segment to the verb of kind k.
func verbOf(k Kind, seg string) (Verb, bool) {
	v := Verb(seg)
	switch {
	case k == KindSwitch && seg == "mode":
		return VerbSetMode, true
	case k == KindSwitch && seg == string(VerbSetMode):
		return "", false
	case k.allows(v):
		return v, true
	}
	return "", false
}

// route dispatches an authenticated API request.
func (h *Handler) route(w http.ResponseWriter, r *http.Request, tok tokenHash, segs []string) {
	notFound := fail(http.StatusNotFound, "not-found", "no such path %q", r.URL.Path)
	switch {
	case len(segs) == 1 && (segs[0] == "overview" || segs[0] == "changes"):
		if !h.allowMethod(w, r, http.MethodGet) {
			return
		}
		if segs[0] == "changes" {
			h.writeJSON(w, http.StatusOK, map[string]any{"scope": h.Scope(), "changes": h.trail.recent()})
			return
		}
		h.writeJSON(w, http.StatusOK, h.overview(r.Context(), tok))
		return
	}
	kind, ok := kindOf(segs[0])
	if !ok || len(segs) > 3 {
		h.writeError(w, notFound)
		return
	}
	switch len(segs) {
	case 1:
		if h.allowMethod(w, r, http.MethodGet) {
			h.writeJSON(w, http.StatusOK, map[string]any{"scope": h.Scope(), segs[0]: h.list(r.Context(), kind)})
		}
	case 2:
		if !h.allowMethod(w, r, http.MethodGet) {
			return
		}
		v, err := h.detail(r.Context(), kind, segs[1])
		if err != nil {
			h.writeError(w, err)
			return
		}
		h.writeJSON(w, http.StatusOK, map[string]any{"scope": h.Scope(), string(kind): v})
	case 3:
		if kind == KindOutbox && segs[2] == "dead-letters" {
			if h.allowMethod(w, r, http.MethodGet) {
				h.serveDeadLetters(w, r, segs[1])
			}
			return
		}
		verb, ok := verbOf(kind, segs[2])
		if !ok {
			h.writeError(w, notFound)
			return
		}
		if h.allowMethod(w, r, http.MethodPost) {
			h.act(w, r, tok, kind, segs[1], verb)
		}
	}
}

// allowMethod reports whether r uses method, answering 405 if not.
func (h *Handler) allowMethod(w http.ResponseWriter, r *http.Request, method string) bool {
	if r.Method == method || (method == http.MethodGet && r.Method == http.MethodHead) {
		return true
	}
	w.Header().Set("Allow", method)
	h.writeError(w, fail(http.StatusMethodNotAllowed, "method-not-allowed", "%s %s is not allowed; use %s", r.Method, r.URL.Path, method))
	return false
}

// overview returns every object and the recent changes.
func (h *Handler) overview(ctx context.Context, tok tokenHash) Overview {
	return Overview{
		Scope:    h.Scope(),
		Time:     time.Now(),
		Token:    TokenView{Name: tok.name, Write: tok.write},
		Breakers: h.list(ctx, KindBreaker).([]BreakerView),
		Groups:   h.list(ctx, KindGroup).([]GroupView),
		Switches: h.list(ctx, KindSwitch).([]SwitchView),
		Outboxes: h.list(ctx, KindOutbox).([]OutboxView),
		Rollouts: h.list(ctx, KindRollout).([]RolloutView),
		Changes:  h.trail.recent(),
	}
}

// list returns the views of every object of kind k, sorted by name.
func (h *Handler) list(ctx context.Context, k Kind) any {
	switch k {
	case KindBreaker:
		out := make([]BreakerView, 0, len(h.ix.breakers))
		for _, name := range sortedKeys(h.ix.breakers) {
			out = append(out, breakerView(h.ix.breakers[name].Snapshot()))
		}
		return out
	case KindGroup:
		out := make([]GroupView, 0, len(h.ix.groups))
		for _, name := range sortedKeys(h.ix.groups) {
			out = append(out, groupView(name, h.ix.groups[name]))
		}
		return out
	case KindSwitch:
		out := make([]SwitchView, 0, len(h.ix.switches))
		for _, name := range sortedKeys(h.ix.switches) {
			out = append(out, switchView(h.ix.switches[name]))
		}
		return out
	case KindOutbox:
		out := make([]OutboxView, 0, len(h.ix.outboxes))
		for _, name := range sortedKeys(h.ix.outboxes) {
			out = append(out, h.outboxView(name))
		}
		return out
	default:
		out := make([]RolloutView, 0, len(h.ix.rollouts))
		for _, name := range sortedKeys(h.ix.rollouts) {
			out = append(out, rolloutView(h.ix.rollouts[name]))
		}
		return out
	}
}

// outboxView returns the view of the outbox called name, recording a
// backlog sample.
func (h *Handler) outboxView(name string) OutboxView {
	o := h.ix.outboxes[name]
	st := o.Stats()
	samples := h.backlogs[name].record(time.Now(), st.Pending, st.Dead)
	return outboxView(name, o, samples)
}

// exists reports whether an object of kind k is called name.
func (h *Handler) exists(k Kind, name string) bool {
	var ok bool
	switch k {
	case KindBreaker:
		_, ok = h.ix.breakers[name]
	case KindGroup:
		_, ok = h.ix.groups[name]
	case KindSwitch:
		_, ok = h.ix.switches[name]
	case KindOutbox:
		_, ok = h.ix.outboxes[name]
	case KindRollout:
		_, ok = h.ix.rollouts[name]
	}
	return ok
}

// detail returns the view of the object of kind k called name.
func (h *Handler) detail(_ context.Context, k Kind, name string) (any, *apiError) {
	if !h.exists(k, name) {
		return nil, fail(http.StatusNotFound, "unknown-object", "no %s named %q", k, name)
	}
	switch k {
	case KindBreaker:
		return breakerView(h.ix.breakers[name].Snapshot()), nil
	case KindGroup:
		return groupView(name, h.ix.groups[name]), nil
	case KindSwitch:
		return switchView(h.ix.switches[name]), nil
	case KindOutbox:
		return h.outboxView(name), nil
	default:
		return rolloutView(h.ix.rollouts[name]), nil
	}
}

// serveDeadLetters lists the dead letters of the outbox called name.
func (h *Handler) serveDeadLetters(w http.ResponseWriter, r *http.Request, name string) {
	o, ok := h.ix.outboxes[name]
	if !ok {
		h.writeError(w, fail(http.StatusNotFound, "unknown-object", "no outbox named %q", name))
		return
	}
	dl, total, err := deadLetterViews(r.Context(), o)
	if err != nil {
		h.writeError(w, fail(http.StatusInternalServerError, "read-failed", "reading the dead letters of outbox %q: %v", name, err))
		return
	}
	h.writeJSON(w, http.StatusOK, map[string]any{"scope": h.Scope(), "outbox": name, "total": total, "dead_letters": dl})
}

// actionRequest is the body of an action.
type actionRequest struct {
	Reason string  `json:"reason"`
	Mode   *string `json:"mode"`
	Key    *string `json:"key"`
}

// act checks and applies one action.
func (h *Handler) act(w http.ResponseWriter, r *http.Request, tok tokenHash, k Kind, name string, v Verb) {
	a, err := h.parseAction(w, r, tok, k, name, v)
	if err != nil {
		h.refuse(r, tok, k, name, v, err)
		h.writeError(w, err)
		return
	}
	applyErr := h.actions.Apply(r.Context(), a)
	switch {
	case errors.Is(applyErr, ErrUnknownObject):
		err = fail(http.StatusNotFound, "unknown-object", "%v", applyErr)
	case errors.Is(applyErr, ErrTransition):
		err = fail(http.StatusConflict, "illegal-transition", "%v", applyErr)
	case errors.Is(applyErr, ErrUnavailable):
		err = fail(http.StatusServiceUnavailable, "unavailable", "the action was not completed, nothing was changed: %v", applyErr)
	case errors.Is(applyErr, context.Canceled), errors.Is(applyErr, context.DeadlineExceeded):
		err = fail(http.StatusServiceUnavailable, "canceled", "the action was not completed: %v", applyErr)
	}
	if err != nil {
		h.refuse(r, tok, k, name, v, err)
		h.writeError(w, err)
		return
	}
	c := Change{
		Time: time.Now(), Actor: tok.name, Kind: k, Name: name, Verb: v, Key: a.Key,
		Reason: a.Reason, Scope: h.scopeOf(k),
	}
	if v == VerbSetMode {
		c.Mode = a.Mode.String()
	}
	if applyErr != nil {
		c.Error = applyErr.Error()
	}
	h.trail.add(c)
	level := slog.LevelInfo
	if applyErr != nil {
		level = slog.LevelError
	}
	h.log.LogAttrs(r.Context(), level, "admin: action applied",
		slog.String("actor", c.Actor), slog.String("kind", string(k)), slog.String("name", name),
		slog.String("verb", string(v)), slog.String("key", c.Key), slog.String("mode", c.Mode),
		slog.String("reason", c.Reason), slog.String("scope", c.Scope), slog.String("error", c.Error))
	if applyErr != nil {
		h.writeError(w, fail(http.StatusInternalServerError, "action-failed", "%s %s %q by %s may have taken effect in part: %v", v, k, name, tok.name, applyErr))
		return
	}
	obj, _ := h.detail(r.Context(), k, name)
	h.writeJSON(w, http.StatusOK, map[string]any{"scope": c.Scope, "change": c, "object": obj})
}

// parseAction checks the caller's right to act and the request body, in
// that order, and returns the action.
func (h *Handler) parseAction(w http.ResponseWriter, r *http.Request, tok tokenHash, k Kind, name string, v Verb) (Action, *apiError) {
	if !tok.write {
		return Action{}, fail(http.StatusForbidden, "read-only-token", "token %q may only read; %s needs a read-write token", tok.name, v)
	}
	mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if err != nil || mt != "application/json" {
		return Action{}, fail(http.StatusUnsupportedMediaType, "unsupported-media-type", "the body must be JSON, sent with Content-Type: application/json")
	}
	var req actionRequest
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, h.maxBody))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			return Action{}, fail(http.StatusRequestEntityTooLarge, "body-too-large", "the body is larger than %d bytes", h.maxBody)
		}
		return Action{}, fail(http.StatusBadRequest, "malformed-json", "the body is not a valid action: %v", err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			return Action{}, fail(http.StatusRequestEntityTooLarge, "body-too-large", "the body is larger than %d bytes", h.maxBody)
		}
		return Action{}, fail(http.StatusBadRequest, "malformed-json", "the body holds more than one JSON value")
	}
	req.Reason = strings.TrimSpace(req.Reason)
	if req.Reason == "" {
		return Action{}, fail(http.StatusBadRequest, "missing-reason", "every action needs a reason: send {\"reason\": \"...\"}")
	}
	if len(req.Reason) > maxReasonLen {
		return Action{}, fail(http.StatusBadRequest, "bad-request", "the reason is longer than %d bytes", maxReasonLen)
	}
	a := Action{Kind: k, Name: name, Verb: v, Reason: req.Reason, Actor: tok.name}
	if req.Mode != nil {
		if k != KindSwitch {
			return Action{}, fail(http.StatusBadRequest, "bad-request", "the field mode does not apply to a %s", k)
		}
		if err := a.Mode.UnmarshalText([]byte(*req.Mode)); err != nil {
			return Action{}, fail(http.StatusBadRequest, "bad-request", "mode %q is not one of auto, manual, primary", *req.Mode)
		}
	} else if k == KindSwitch {
		return Action{}, fail(http.StatusBadRequest, "bad-request", "setting a mode needs {\"mode\": \"auto\" | \"manual\" | \"primary\"}")
	}
	if req.Key != nil {
		if k != KindGroup && k != KindOutbox {
			return Action{}, fail(http.StatusBadRequest, "bad-request", "the field key does not apply to a %s", k)
		}
		if *req.Key == "" {
			return Action{}, fail(http.StatusBadRequest, "bad-request", "the field key is empty")
		}
		a.Key = *req.Key
	} else if k == KindOutbox {
		return Action{}, fail(http.StatusBadRequest, "bad-request", "requeue needs the dead letter's {\"key\": \"...\"}")
	}
	if !h.exists(k, name) {
		return Action{}, fail(http.StatusNotFound, "unknown-object", "no %s named %q", k, name)
	}
	return a, nil
}

// refuse logs a refused action.
func (h *Handler) refuse(r *http.Request, tok tokenHash, k Kind, name string, v Verb, err *apiError) {
	h.log.LogAttrs(r.Context(), slog.LevelWarn, "admin: action refused",
		slog.String("actor", tok.name), slog.String("kind", string(k)), slog.String("name", name),
		slog.String("verb", string(v)), slog.String("code", err.code), slog.String("error", err.msg))
}

// errorBody is the JSON of an error answer.
type errorBody struct {
	Scope string `json:"scope"`
	Code  string `json:"code"`
	Error string `json:"error"`
}

func (h *Handler) writeError(w http.ResponseWriter, err *apiError) {
	h.writeJSON(w, err.status, errorBody{Scope: h.Scope(), Code: err.code, Error: err.msg})
}

func (h *Handler) writeJSON(w http.ResponseWriter, status int, v any) {
	hd := w.Header()
	hd.Set("Content-Type", "application/json; charset=utf-8")
	hd.Set("Cache-Control", "no-store")
	hd.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	if err := enc.Encode(v); err != nil {
		h.log.Error("admin: writing a response", slog.String("error", err.Error()))
	}
}
