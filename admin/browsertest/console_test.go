package browsertest

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/ringfence/ringfence/admin"
	"github.com/ringfence/ringfence/breaker"
	"github.com/ringfence/ringfence/fallback"
	"github.com/ringfence/ringfence/retry"
	"github.com/ringfence/ringfence/rollout"
)

const (
	chromium    = "/usr/bin/chromium"
	writeSecret = "alice-secret-0123456789abcdef"
	readSecret  = "viewer-secret-0123456789abcdef"
	stepTimeout = 15 * time.Second
)

// requireChromium skips the test when Chromium is missing, unless CI is
// set, where a missing browser fails it.
func requireChromium(t *testing.T) {
	t.Helper()
	if _, err := os.Stat(chromium); err == nil {
		return
	}
	if os.Getenv("CI") != "" {
		t.Fatalf("%s is missing and CI is set: install it (apt-get install chromium); the console must be tested in a real browser", chromium)
	}
	t.Skipf("skipping the browser test: %s is not installed (apt-get install chromium), and CI is not set", chromium)
}

// newBrowser starts a headless Chromium with a fresh profile and returns
// its context; the browser is closed when the test ends.
func newBrowser(t *testing.T) context.Context {
	t.Helper()
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(chromium),
		chromedp.Headless,
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.NoFirstRun,
		chromedp.NoDefaultBrowserCheck,
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1280, 1100),
	}
	whole, cancelWhole := context.WithTimeout(context.Background(), 2*time.Minute)
	alloc, cancelAlloc := chromedp.NewExecAllocator(whole, opts...)
	ctx, cancelCtx := chromedp.NewContext(alloc)
	t.Cleanup(func() {
		cancelCtx()
		cancelAlloc()
		cancelWhole()
	})
	// Listen starts the browser. It must be given the browser's own
	// context, which owns the browser's lifetime; the two-minute bound on
	// that context keeps a browser that cannot start from hanging the test.
	var mu sync.Mutex
	var exceptions []string
	err := chromedp.Listen(ctx, func(ev any) {
		if e, ok := ev.(*runtime.EventExceptionThrown); ok {
			mu.Lock()
			d := e.ExceptionDetails
			msg := fmt.Sprintf("%s at line %d", d.Text, d.LineNumber+1)
			if d.Exception != nil {
				msg += ": " + d.Exception.Description
			}
			exceptions = append(exceptions, msg)
			mu.Unlock()
		}
	})
	require.NoError(t, err, "starting %s", chromium)
	t.Cleanup(func() {
		mu.Lock()
		defer mu.Unlock()
		assert.Empty(t, exceptions, "the page threw JavaScript exceptions")
	})
	return ctx
}

// step runs actions in the browser, bounded by stepTimeout.
func step(t *testing.T, ctx context.Context, name string, actions ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	sctx, cancel := context.WithTimeout(ctx, stepTimeout)
	defer cancel()
	if err := chromedp.Do(sctx, actions...); err != nil {
		if errors.Is(sctx.Err(), context.DeadlineExceeded) {
			t.Fatalf("%s: no result within %v: %v", name, stepTimeout, err)
		}
		t.Fatalf("%s: %v", name, err)
	}
}

// waitText waits until the element sel holds text.
func waitText(sel, text string) chromedp.Action[chromedp.Void] {
	js := fmt.Sprintf(`(() => { const e = document.querySelector(%s); return !!e && e.textContent.includes(%s); })()`,
		strconv.Quote(sel), strconv.Quote(text))
	return void(chromedp.Poll[bool](js, chromedp.WithPollingInterval(50*time.Millisecond)))
}

// read runs a and stores its value in *v.
func read[T any](a chromedp.Action[T], v *T) chromedp.Action[chromedp.Void] {
	return func(ctx context.Context, t *chromedp.Target) (chromedp.Void, error) {
		var err error
		*v, err = a(ctx, t)
		return chromedp.Void{}, err
	}
}

// void drops the value of a.
func void[T any](a chromedp.Action[T]) chromedp.Action[chromedp.Void] {
	var discard T
	return read(a, &discard)
}

// act clicks the button sel, gives the reason and confirms.
func act(sel, reason string) chromedp.Action[chromedp.Void] {
	return chromedp.Steps(
		chromedp.Click(chromedp.CSS(sel)),
		chromedp.WaitVisible(chromedp.CSS(`#dialog`)),
		chromedp.SendKeys(chromedp.CSS(`#dialog-reason`), reason),
		chromedp.WaitEnabled(chromedp.CSS(`#dialog-confirm`)),
		chromedp.Click(chromedp.CSS(`#dialog-confirm`)),
		chromedp.WaitNotVisible(chromedp.CSS(`#dialog`)),
	)
}

// signIn types secret into the page's token form.
func signIn(secret string) chromedp.Action[chromedp.Void] {
	return chromedp.Steps(
		chromedp.WaitVisible(chromedp.CSS(`#token`)),
		chromedp.SendKeys(chromedp.CSS(`#token`), secret),
		chromedp.Click(chromedp.CSS(`#login-btn`)),
	)
}

// console is a real admin handler on loopback over real objects.
type console struct {
	url      string
	payments *breaker.Breaker
	desk     *fallback.Switch
	outbox   *fallback.Outbox
	parser   *rollout.Rollout
}

func newConsole(t *testing.T) *console {
	t.Helper()
	c := &console{}
	var err error
	c.payments, err = breaker.New(breaker.Settings{Name: "payments"})
	require.NoError(t, err)
	c.desk, err = fallback.NewSwitch(context.Background(), "check-in-desk", fallback.SwitchSettings{})
	require.NoError(t, err)
	c.outbox, err = fallback.OpenOutbox(filepath.Join(t.TempDir(), "outbox"), fallback.OutboxOptions{Rate: 1000})
	require.NoError(t, err)
	t.Cleanup(func() { c.outbox.Close() })
	ctx := context.Background()
	for i := range 3 {
		require.NoError(t, c.outbox.Enqueue(ctx, fallback.Item{Key: fmt.Sprintf("pass-%d", i), Stream: "RF101"}))
	}
	require.NoError(t, c.outbox.Replay(ctx, func(_ context.Context, it fallback.Item) error {
		if it.Key == "pass-0" {
			return retry.Permanent(errors.New("record refused"))
		}
		return nil
	}))
	require.NoError(t, c.outbox.Enqueue(ctx, fallback.Item{Key: "pass-9", Stream: "RF202"}))
	c.parser, err = rollout.New(rollout.Plan{Name: "parser-v2", Stages: []rollout.Stage{{Percent: 1}, {Percent: 10}, {Percent: 100}}})
	require.NoError(t, err)
	require.NoError(t, c.parser.Start(ctx))
	h, err := admin.New(admin.Settings{
		Tokens: []admin.Token{{Name: "alice", Secret: writeSecret, Write: true}, {Name: "viewer", Secret: readSecret}},
		Objects: admin.Objects{
			Breakers: []*breaker.Breaker{c.payments},
			Switches: []*fallback.Switch{c.desk},
			Outboxes: map[string]*fallback.Outbox{"boarding-passes": c.outbox},
			Rollouts: []*rollout.Rollout{c.parser},
		},
		Logger: slog.New(slog.DiscardHandler),
	})
	require.NoError(t, err)
	mux := http.NewServeMux()
	mux.Handle("/admin/", http.StripPrefix("/admin", h))
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	c.url = srv.URL + "/admin/"
	return c
}

func TestTheConsoleInARealBrowser(t *testing.T) {
	requireChromium(t)
	c := newConsole(t)
	c.payments.ForceOpen("payments API returns garbage")
	ctx := newBrowser(t)

	step(t, ctx, "load the page and give the token",
		chromedp.Navigate(c.url),
		signIn(writeSecret),
		waitText(`#whoami`, "as alice"),
		waitText(`#scope`, "scope: local"),
		waitText(`[data-switch="check-in-desk"] .mode`, "auto"),
	)

	t.Run("shows a forced-open breaker as such", func(t *testing.T) {
		var state string
		var class chromedp.AttributeResult
		step(t, ctx, "read the breaker's card",
			waitText(`[data-breaker="payments"] .state`, "forced-open"),
			read(chromedp.TextContent(chromedp.CSS(`[data-breaker="payments"] .state`)), &state),
			read(chromedp.AttributeValue(chromedp.CSS(`[data-breaker="payments"]`), "class"), &class),
		)
		assert.Equal(t, "forced-open", state)
		assert.Contains(t, class.Value, "b-forced-open", "the card is coloured as forced open")
	})

	t.Run("manual mode changes the page and the Go object", func(t *testing.T) {
		step(t, ctx, "put the desk in manual mode",
			act(`[data-switch="check-in-desk"] button[data-action="manual mode"]`, "booking API down"),
			waitText(`#banner.ok`, "done (local): set-mode switch check-in-desk to manual by alice"),
			waitText(`[data-switch="check-in-desk"] .mode`, "manual"),
			chromedp.WaitVisible(chromedp.CSS(`[data-switch="check-in-desk"].m-manual`)),
			waitText(`#changes tbody`, "booking API down"),
		)
		assert.Equal(t, fallback.ModeManual, c.desk.Mode(), "the Go switch follows the page")
		h := c.desk.History()
		require.NotEmpty(t, h)
		assert.Equal(t, "booking API down", h[len(h)-1].Reason)
		assert.Equal(t, "alice", h[len(h)-1].Actor)
	})

	t.Run("shows the rollout's rings and the outbox's backlog", func(t *testing.T) {
		var rings, charts int
		step(t, ctx, "count rings and charts",
			waitText(`[data-rollout="parser-v2"] .ring.current`, "1%"),
			waitText(`[data-outbox="boarding-passes"] .pending`, "1 pending"),
			read(chromedp.Evaluate[int](`document.querySelectorAll('[data-rollout="parser-v2"] .ring').length`), &rings),
			read(chromedp.Evaluate[int](`document.querySelectorAll('[data-outbox="boarding-passes"] svg.chart polyline').length`), &charts),
		)
		assert.Equal(t, 3, rings, "one ring per stage")
		assert.Equal(t, 2, charts, "the backlog chart draws pending and dead letters")
	})

	t.Run("saves a screenshot", func(t *testing.T) {
		var png []byte
		step(t, ctx, "take a screenshot", read(chromedp.FullScreenshot(100), &png))
		path := filepath.Join(t.TempDir(), "console.png")
		require.NoError(t, os.WriteFile(path, png, 0o644))
		t.Logf("screenshot of the console: %s (%d bytes)", path, len(png))
	})

	t.Run("a read-only token is refused and nothing changes", func(t *testing.T) {
		step(t, ctx, "sign in with the read-only token",
			chromedp.Click(chromedp.CSS(`#signout`)),
			signIn(readSecret),
			waitText(`#whoami`, "as viewer (read-only)"),
		)
		step(t, ctx, "try to release the breaker",
			act(`[data-breaker="payments"] button[data-action="release"]`, "looks fine"),
			waitText(`#banner.error`, "HTTP 403"),
			waitText(`#banner.error`, `token "viewer" may only read`),
		)
		assert.Equal(t, breaker.ForcedOpen, c.payments.State(), "a refused action changes nothing")
	})

	var cookies string
	step(t, ctx, "read the cookies", read(chromedp.Evaluate[string](`document.cookie`), &cookies))
	assert.Empty(t, cookies, "the console sets no cookie")
}
