package main

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestTheConsoleServesTheLiveSimulation runs the program briefly on a
// loopback port, reads the address and token it prints, and acts through
// the console it serves.
func TestTheConsoleServesTheLiveSimulation(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	pr, pw := io.Pipe()
	exit := make(chan int, 1)
	go func() {
		code := run(ctx, []string{"-addr", "127.0.0.1:0"}, pw, io.Discard)
		pw.Close()
		exit <- code
	}()
	lines := make(chan string)
	go func() {
		defer close(lines)
		sc := bufio.NewScanner(pr)
		for sc.Scan() {
			select {
			case lines <- sc.Text():
			case <-ctx.Done():
			}
		}
	}()
	var url, token string
	for url == "" || token == "" {
		select {
		case line, ok := <-lines:
			require.True(t, ok, "the program ended before printing its address and token")
			if v, ok := strings.CutPrefix(line, "console: "); ok {
				url = v
			}
			if v, ok := strings.CutPrefix(line, "token operator (read-write): "); ok {
				token = v
			}
		case <-ctx.Done():
			t.Fatal("the program printed no address and token in time")
		}
	}
	go func() {
		for range lines { // keep draining the narration
		}
	}()

	do := func(method, path, body string) (int, map[string]any) {
		t.Helper()
		req, err := http.NewRequestWithContext(ctx, method, url+path, strings.NewReader(body))
		require.NoError(t, err)
		req.Header.Set("Authorization", "Bearer "+token)
		if body != "" {
			req.Header.Set("Content-Type", "application/json")
		}
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		defer resp.Body.Close()
		var v map[string]any
		require.NoError(t, json.NewDecoder(resp.Body).Decode(&v))
		return resp.StatusCode, v
	}

	status, overview := do(http.MethodGet, "api/v1/overview", "")
	require.Equal(t, http.StatusOK, status)
	assert.Equal(t, "local", overview["scope"])
	for _, kind := range []string{"breakers", "groups", "switches", "outboxes", "rollouts"} {
		assert.NotEmpty(t, overview[kind], "the console shows the simulation's %s", kind)
	}

	status, answer := do(http.MethodPost, "api/v1/switches/check-in-desk/mode", `{"mode":"manual","reason":"booking API down"}`)
	require.Equal(t, http.StatusOK, status, "%v", answer)
	_, sw := do(http.MethodGet, "api/v1/switches/check-in-desk", "")
	assert.Equal(t, "manual", sw["switch"].(map[string]any)["mode"])

	resp, err := http.Get(url)
	require.NoError(t, err)
	resp.Body.Close()
	assert.Equal(t, http.StatusOK, resp.StatusCode, "the page is served")

	cancel()
	select {
	case code := <-exit:
		assert.Equal(t, 0, code, "the program stops cleanly")
	case <-time.After(10 * time.Second):
		t.Fatal("the program did not stop after its context ended")
	}
}
