package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// Exit statuses.
const (
	exitOK      = 0
	exitRefused = 1 // the service refused, failed or could not be reached
	exitUsage   = 2 // the command line cannot be used
)

const usage = `usage:
  ringfence [flags] status
  ringfence [flags] breaker force-open|force-close|release NAME --reason TEXT
  ringfence [flags] group force-open|force-close|release NAME [--key KEY] --reason TEXT
  ringfence [flags] mode set NAME auto|manual|primary --reason TEXT
  ringfence [flags] rollout pause|resume|promote|abort NAME --reason TEXT
  ringfence [flags] outbox dead-letters NAME
  ringfence [flags] outbox requeue NAME KEY --reason TEXT
flags (anywhere on the line):
  --url URL      admin address (default $RINGFENCE_URL)
  --token TOKEN  bearer token (default $RINGFENCE_TOKEN)
  --json         print the JSON answer
  --timeout D    give up after D (default 10s)
`

// options are the parsed flags.
type options struct {
	url, token, reason, key string
	reasonSet, keySet       bool
	json                    bool
	timeout                 time.Duration
}

// usageError is a command line that cannot be used.
type usageError struct{ msg string }

func (e *usageError) Error() string { return e.msg }

func usagef(format string, args ...any) error {
	return &usageError{msg: fmt.Sprintf(format, args...)}
}

// parseArgs separates flags, which may come anywhere, from the words of
// the command.
func parseArgs(args []string, env func(string) string) (options, []string, error) {
	o := options{url: env("RINGFENCE_URL"), token: env("RINGFENCE_TOKEN"), timeout: 10 * time.Second}
	var words []string
	for i := 0; i < len(args); i++ {
		a := args[i]
		if a == "--" {
			words = append(words, args[i+1:]...)
			break
		}
		if !strings.HasPrefix(a, "-") || a == "-" {
			words = append(words, a)
			continue
		}
		name, value, hasValue := strings.Cut(strings.TrimLeft(a, "-"), "=")
		switch name {
		case "json":
			if hasValue {
				return o, nil, usagef("--json takes no value")
			}
			o.json = true
			continue
		case "h", "help":
			return o, nil, usagef("")
		case "url", "token", "reason", "key", "timeout":
		default:
			return o, nil, usagef("unknown flag %s", a)
		}
		if !hasValue {
			if i+1 >= len(args) {
				return o, nil, usagef("flag --%s needs a value", name)
			}
			i++
			value = args[i]
		}
		switch name {
		case "url":
			o.url = value
		case "token":
			o.token = value
		case "reason":
			o.reason, o.reasonSet = value, true
		case "key":
			o.key, o.keySet = value, true
		case "timeout":
			d, err := time.ParseDuration(value)
			if err != nil || d <= 0 {
				return o, nil, usagef("--timeout %q is not a positive duration such as 10s", value)
			}
			o.timeout = d
		}
	}
	return o, words, nil
}

// request is one call the command makes.
type request struct {
	method string
	path   string // below api/v1/, already escaped
	body   map[string]string
}

// plan turns the command's words into the request to send and the printer
// of its answer.
func plan(o options, words []string) (request, printer, error) {
	if len(words) == 0 {
		return request{}, nil, usagef("no command given")
	}
	need := func(n int, form string) error {
		if len(words) != n {
			return usagef("usage: ringfence %s", form)
		}
		return nil
	}
	action := func(path string, body map[string]string) (request, printer, error) {
		if !o.reasonSet || strings.TrimSpace(o.reason) == "" {
			return request{}, nil, usagef("%s needs --reason TEXT: every action is recorded with its reason", strings.Join(words[:2], " "))
		}
		if body == nil {
			body = map[string]string{}
		}
		body["reason"] = o.reason
		return request{method: http.MethodPost, path: path, body: body}, printChange, nil
	}
	if o.keySet && words[0] != "group" {
		return request{}, nil, usagef("--key applies only to group commands")
	}
	esc := url.PathEscape
	switch words[0] {
	case "status":
		if err := need(1, "status"); err != nil {
			return request{}, nil, err
		}
		return request{method: http.MethodGet, path: "overview"}, printStatus, nil
	case "breaker", "group":
		form := words[0] + " force-open|force-close|release NAME --reason TEXT"
		if err := need(3, form); err != nil {
			return request{}, nil, err
		}
		switch words[1] {
		case "force-open", "force-close", "release":
		default:
			return request{}, nil, usagef("unknown %s command %q; usage: ringfence %s", words[0], words[1], form)
		}
		var body map[string]string
		if o.keySet {
			body = map[string]string{"key": o.key}
		}
		return action(map[string]string{"breaker": "breakers/", "group": "groups/"}[words[0]]+esc(words[2])+"/"+words[1], body)
	case "mode":
		form := "mode set NAME auto|manual|primary --reason TEXT"
		if len(words) < 2 || words[1] != "set" {
			return request{}, nil, usagef("usage: ringfence %s", form)
		}
		if err := need(4, form); err != nil {
			return request{}, nil, err
		}
		switch words[3] {
		case "auto", "manual", "primary":
		default:
			return request{}, nil, usagef("mode %q is not one of auto, manual, primary", words[3])
		}
		return action("switches/"+esc(words[2])+"/mode", map[string]string{"mode": words[3]})
	case "rollout":
		form := "rollout pause|resume|promote|abort NAME --reason TEXT"
		if err := need(3, form); err != nil {
			return request{}, nil, err
		}
		switch words[1] {
		case "pause", "resume", "promote", "abort":
		default:
			return request{}, nil, usagef("unknown rollout command %q; usage: ringfence %s", words[1], form)
		}
		return action("rollouts/"+esc(words[2])+"/"+words[1], nil)
	case "outbox":
		if len(words) >= 2 && words[1] == "dead-letters" {
			if err := need(3, "outbox dead-letters NAME"); err != nil {
				return request{}, nil, err
			}
			return request{method: http.MethodGet, path: "outboxes/" + esc(words[2]) + "/dead-letters"}, printDeadLetters, nil
		}
		if len(words) >= 2 && words[1] == "requeue" {
			if err := need(4, "outbox requeue NAME KEY --reason TEXT"); err != nil {
				return request{}, nil, err
			}
			return action("outboxes/"+esc(words[2])+"/requeue", map[string]string{"key": words[3]})
		}
		return request{}, nil, usagef("usage: ringfence outbox dead-letters NAME | outbox requeue NAME KEY --reason TEXT")
	}
	return request{}, nil, usagef("unknown command %q", words[0])
}

// run is the whole command: it parses args, calls the service and prints
// the answer, and returns the exit status.
func run(args []string, env func(string) string, stdout, stderr io.Writer) int {
	o, words, err := parseArgs(args, env)
	var req request
	var print printer
	if err == nil {
		req, print, err = plan(o, words)
	}
	if err == nil {
		err = checkTarget(o, stderr)
	}
	if ue := (*usageError)(nil); errors.As(err, &ue) {
		if ue.msg != "" {
			fmt.Fprintln(stderr, "ringfence:", ue.msg)
		}
		fmt.Fprint(stderr, usage)
		return exitUsage
	}
	ctx, cancel := context.WithTimeout(context.Background(), o.timeout)
	defer cancel()
	status, body, err := send(ctx, o, req)
	if err != nil {
		fmt.Fprintln(stderr, "ringfence:", err)
		return exitRefused
	}
	if status/100 != 2 {
		var e struct{ Code, Error string }
		if json.Unmarshal(body, &e) != nil || e.Error == "" {
			fmt.Fprintf(stderr, "ringfence: refused: HTTP %d with no error message from %s\n", status, o.url)
			return exitRefused
		}
		fmt.Fprintf(stderr, "ringfence: refused (HTTP %d, %s): %s\n", status, e.Code, e.Error)
		return exitRefused
	}
	if o.json {
		stdout.Write(body)
		return exitOK
	}
	if err := print(stdout, body); err != nil {
		fmt.Fprintln(stderr, "ringfence: the answer cannot be read:", err)
		return exitRefused
	}
	return exitOK
}

// checkTarget refuses a missing URL or token, and warns when the token
// would cross the network unencrypted.
func checkTarget(o options, stderr io.Writer) error {
	if o.url == "" {
		return usagef("no admin URL: pass --url or set RINGFENCE_URL")
	}
	if o.token == "" {
		return usagef("no token: set RINGFENCE_TOKEN or pass --token")
	}
	u, err := url.Parse(o.url)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return usagef("--url %q is not an http or https address", o.url)
	}
	if u.Scheme == "http" {
		if ip := net.ParseIP(u.Hostname()); u.Hostname() != "localhost" && (ip == nil || !ip.IsLoopback()) {
			fmt.Fprintf(stderr, "ringfence: warning: sending the token unencrypted to %s; use https\n", u.Host)
		}
	}
	return nil
}

// send makes the request and returns the status and body of the answer.
func send(ctx context.Context, o options, r request) (int, []byte, error) {
	base := strings.TrimSuffix(o.url, "/") + "/api/v1/"
	var body io.Reader
	if r.body != nil {
		b, err := json.Marshal(r.body)
		if err != nil {
			return 0, nil, err
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, r.method, base+r.path, body)
	if err != nil {
		return 0, nil, fmt.Errorf("bad request: %w", err)
	}
	req.Header.Set("Authorization", "Bearer "+o.token)
	req.Header.Set("Accept", "application/json")
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	client := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := client.Do(req)
	if err != nil {
		return 0, nil, fmt.Errorf("cannot reach the admin API at %s: %w", o.url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return 0, nil, fmt.Errorf("reading the answer from %s: %w", o.url, err)
	}
	return resp.StatusCode, b, nil
}
