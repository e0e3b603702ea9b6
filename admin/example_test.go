package admin_test

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"

	"github.com/ringfence/ringfence/admin"
	"github.com/ringfence/ringfence/breaker"
	"github.com/ringfence/ringfence/fallback"
)

// post sends an action to h as the holder of secret and returns the status
// and the answer's code or scope.
func post(h http.Handler, secret, path, body string) (int, map[string]any) {
	req := httptest.NewRequest(http.MethodPost, path, strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+secret)
	req.Header.Set("Content-Type", "application/json")
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	var answer map[string]any
	json.Unmarshal(rec.Body.Bytes(), &answer)
	return rec.Code, answer
}

// An operator puts a dependency in manual mode through the API. The
// switch's history records the reason and who gave it.
func ExampleNew() {
	desk, _ := fallback.NewSwitch(context.Background(), "check-in", fallback.SwitchSettings{})
	h, err := admin.New(admin.Settings{
		Tokens:  []admin.Token{{Name: "alice", Secret: "s3cr3t-for-the-example", Write: true}},
		Objects: admin.Objects{Switches: []*fallback.Switch{desk}},
		Logger:  slog.New(slog.DiscardHandler),
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	mux := http.NewServeMux()
	mux.Handle("/admin/", http.StripPrefix("/admin", h))

	status, answer := post(mux, "s3cr3t-for-the-example", "/admin/api/v1/switches/check-in/mode",
		`{"mode": "manual", "reason": "booking API returns errors"}`)
	fmt.Println(status, answer["scope"])
	fmt.Println(desk.Mode())
	history := desk.History()
	fmt.Println(history[len(history)-1].Actor+":", history[len(history)-1].Reason)
	// Output:
	// 200 local
	// manual
	// alice: booking API returns errors
}

// New refuses to build a handler without a token: it never serves an
// unauthenticated API.
func ExampleNew_noToken() {
	_, err := admin.New(admin.Settings{})
	fmt.Println(err)
	// Output:
	// admin: invalid settings: Tokens: at least one token is required; the handler never serves without one
}

// A read-only token may look but not act, and a refused action changes
// nothing.
func ExampleHandler_readOnly() {
	payments, _ := breaker.New(breaker.Settings{Name: "payments"})
	h, _ := admin.New(admin.Settings{
		Tokens: []admin.Token{
			{Name: "oncall", Secret: "oncall-secret-0123", Write: true},
			{Name: "dashboard", Secret: "dashboard-secret-0123"},
		},
		Objects: admin.Objects{Breakers: []*breaker.Breaker{payments}},
		Logger:  slog.New(slog.DiscardHandler),
	})

	status, answer := post(h, "dashboard-secret-0123", "/api/v1/breakers/payments/force-open", `{"reason": "drill"}`)
	fmt.Println(status, answer["code"], payments.State())

	status, answer = post(h, "oncall-secret-0123", "/api/v1/breakers/payments/force-open", `{}`)
	fmt.Println(status, answer["code"], payments.State())

	status, _ = post(h, "oncall-secret-0123", "/api/v1/breakers/payments/force-open", `{"reason": "drill"}`)
	fmt.Println(status, payments.State())
	// Output:
	// 403 read-only-token closed
	// 400 missing-reason closed
	// 200 forced-open
}
