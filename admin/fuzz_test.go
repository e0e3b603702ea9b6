package admin

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// FuzzActions sends arbitrary paths and bodies to the handler: it must
// answer each with JSON and a status from the documented set, and a
// request the handler refuses must change nothing.
func FuzzActions(f *testing.F) {
	f.Add("breakers/payments/force-open", `{"reason":"x"}`, true)
	f.Add("switches/desk/mode", `{"reason":"x","mode":"manual"}`, true)
	f.Add("switches/desk/mode", `{"reason":"x","mode":"MANUAL","key":"a"}`, false)
	f.Add("groups/s3/release", `{"reason":"x","key":"eu"}`, true)
	f.Add("outboxes/bookings/requeue", `{"reason":"x","key":"bad-1"}`, true)
	f.Add("rollouts/parser-v2/promote", `{"reason":"\u0000"}`, true)
	f.Add("rollouts/%zz/promote", `{"reason":1}`, true)
	f.Add("breakers/payments/force-open", `{"reason":"x"} trailing`, true)
	fx := newFixture(f)
	f.Fuzz(func(t *testing.T, path, body string, write bool) {
		secret := readSecret
		if write {
			secret = writeSecret
		}
		before := fx.state(t)
		req := httptest.NewRequest(http.MethodPost, "/api/v1/", strings.NewReader(body))
		req.URL.RawPath = ""
		req.URL.Path = "/api/v1/" + path
		req.Header.Set("Authorization", "Bearer "+secret)
		req.Header.Set("Content-Type", "application/json")
		rec := httptest.NewRecorder()
		fx.h.ServeHTTP(rec, req)
		switch rec.Code {
		case 200, 400, 403, 404, 405, 409, 413, 415, 500:
		default:
			t.Fatalf("POST %q %q = %d, not a documented status: %s", path, body, rec.Code, rec.Body)
		}
		if !strings.HasPrefix(rec.Header().Get("Content-Type"), "application/json") {
			t.Fatalf("POST %q %q answered %q, not JSON", path, body, rec.Header().Get("Content-Type"))
		}
		if rec.Code != 200 && rec.Code != 500 && fx.state(t) != before {
			t.Fatalf("POST %q %q was refused with %d but changed the objects", path, body, rec.Code)
		}
		if !write && rec.Code == 200 {
			t.Fatalf("POST %q %q with a read-only token succeeded", path, body)
		}
	})
}
