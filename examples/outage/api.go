package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/http/httptest"
	"sync"

	"github.com/ringfence/ringfence/fallback"
	"github.com/ringfence/ringfence/retry"
)

// SeatMap is what the booking API says about a flight at check-in.
type SeatMap struct {
	Flight string `json:"flight"`
	Gate   string `json:"gate"`
	Free   int    `json:"free"` // seats still free
}

// BoardingPass is the record of one passenger's check-in. Key is its
// idempotency key: the desk makes it once per passenger, and every attempt to
// store the pass (a retry, a replay from the outbox) sends the same key, so
// the API can store it exactly once.
type BoardingPass struct {
	Key     string `json:"key"`
	Booking string `json:"booking"`
	Flight  string `json:"flight"`
	Seat    string `json:"seat"`
	// Manual is set on a pass the desk issued without the API; its record
	// syncs later from the outbox.
	Manual bool `json:"manual,omitempty"`
}

// bookingAPI is an in-process stand-in for the airline's cloud booking
// service, served by an httptest.Server. It can be taken down and brought
// back, and it keeps the ledger of boarding passes the story is checked
// against.
type bookingAPI struct {
	srv   *httptest.Server
	gates map[string]string // flight number to gate; read-only

	mu sync.Mutex // guards the fields below
	// down makes every request fail with 503 Service Unavailable.
	down bool
	// tornWrite makes the next boarding-pass write while down be stored
	// before the 503 goes out, as when a server crashes between committing
	// a write and answering it. The client cannot tell it apart from a
	// write that was never stored.
	tornWrite bool
	// passes is the ledger: one boarding pass per idempotency key.
	passes map[string]BoardingPass
	// deadCalls counts requests that arrived while the API was down.
	deadCalls int
	// duplicates counts writes whose key was already in the ledger; they
	// are answered with the stored pass and change nothing.
	duplicates int
}

// newBookingAPI starts the fake service for the given flights (flight
// number to gate). The caller must call close.
func newBookingAPI(gates map[string]string) *bookingAPI {
	api := &bookingAPI{gates: gates, passes: make(map[string]BoardingPass)}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /flights/{flight}/seatmap", api.seatMap)
	mux.HandleFunc("POST /boarding-passes", api.storePass)
	api.srv = httptest.NewServer(mux)
	return api
}

func (api *bookingAPI) close() { api.srv.Close() }

// setDown takes the service down or brings it back.
func (api *bookingAPI) setDown(down bool) {
	api.mu.Lock()
	defer api.mu.Unlock()
	api.down = down
	api.tornWrite = down
}

// refuseWhileDown answers 503 and reports true while the service is down,
// after counting the request: each one is load on a service that is trying
// to come back. It must be called with api.mu held.
func (api *bookingAPI) refuseWhileDown(w http.ResponseWriter) bool {
	if !api.down {
		return false
	}
	api.deadCalls++
	http.Error(w, "booking service unavailable", http.StatusServiceUnavailable)
	return true
}

func (api *bookingAPI) seatMap(w http.ResponseWriter, r *http.Request) {
	api.mu.Lock()
	defer api.mu.Unlock()
	if api.refuseWhileDown(w) {
		return
	}
	flight := r.PathValue("flight")
	gate, ok := api.gates[flight]
	if !ok {
		http.Error(w, "no such flight", http.StatusNotFound)
		return
	}
	writeJSON(w, SeatMap{Flight: flight, Gate: gate, Free: 42})
}

// storePass stores a boarding pass exactly once per idempotency key.
func (api *bookingAPI) storePass(w http.ResponseWriter, r *http.Request) {
	var p BoardingPass
	if err := json.NewDecoder(r.Body).Decode(&p); err != nil || p.Key == "" || p.Key != r.Header.Get("Idempotency-Key") {
		http.Error(w, "bad boarding pass", http.StatusBadRequest)
		return
	}
	api.mu.Lock()
	defer api.mu.Unlock()
	if api.down && api.tornWrite {
		api.tornWrite = false
		api.apply(p) // committed, but the answer below says it failed
	}
	if api.refuseWhileDown(w) {
		return
	}
	writeJSON(w, api.apply(p))
}

// apply stores p unless its key is already stored, and returns the stored
// pass. It must be called with api.mu held.
func (api *bookingAPI) apply(p BoardingPass) BoardingPass {
	if stored, ok := api.passes[p.Key]; ok {
		api.duplicates++
		return stored
	}
	api.passes[p.Key] = p
	return p
}

// ledger returns a copy of the stored passes and the counters.
func (api *bookingAPI) ledger() (passes map[string]BoardingPass, deadCalls, duplicates int) {
	api.mu.Lock()
	defer api.mu.Unlock()
	return maps.Clone(api.passes), api.deadCalls, api.duplicates
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(v)
}

// bookingClient is the desk's client for the booking API: plain HTTP calls,
// with no resilience of its own. The resilience is wrapped around it.
type bookingClient struct {
	base string
	http *http.Client
}

// errBadRequest marks an answer that says the request itself is wrong.
var errBadRequest = errors.New("booking API rejected the request")

// SeatMap fetches a flight's seat map.
func (c *bookingClient) SeatMap(ctx context.Context, flight string) (SeatMap, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.base+"/flights/"+flight+"/seatmap", nil)
	if err != nil {
		return SeatMap{}, err
	}
	var m SeatMap
	return m, c.do(req, &m)
}

// StorePass stores a boarding pass. The Idempotency-Key header lets the API
// drop a copy it has already stored, which makes the write safe to retry and
// to replay.
func (c *bookingClient) StorePass(ctx context.Context, p BoardingPass) (BoardingPass, error) {
	body, err := json.Marshal(p)
	if err != nil {
		return BoardingPass{}, err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.base+"/boarding-passes", bytes.NewReader(body))
	if err != nil {
		return BoardingPass{}, err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Idempotency-Key", p.Key)
	var stored BoardingPass
	return stored, c.do(req, &stored)
}

// do sends req and decodes a 200 answer into v. A 503 (or 429, 502, 504)
// becomes a *retry.StatusError, which retries, trips the breaker and falls
// back; any other 4xx says the request is wrong, and NoFallback keeps stale
// data from hiding that.
func (c *bookingClient) do(req *http.Request, v any) error {
	resp, err := c.http.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if err := retry.CheckResponse(resp); err != nil {
		_, _ = io.Copy(io.Discard, resp.Body)
		return err
	}
	if resp.StatusCode >= 400 && resp.StatusCode < 500 {
		return fallback.NoFallback(fmt.Errorf("%w: %s", errBadRequest, resp.Status))
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("booking API: %s", resp.Status)
	}
	return json.NewDecoder(resp.Body).Decode(v)
}
