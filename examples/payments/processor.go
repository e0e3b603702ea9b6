package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"

	"github.com/ringfence/ringfence/fallback"
	"github.com/ringfence/ringfence/retry"
)

// Payment is one card payment taken at a till. Key is its idempotency key,
// made once when the card is tapped: every attempt to send the payment, and
// every replay from the outbox, carries the same key.
type Payment struct {
	Key   string `json:"key"`
	Till  string `json:"till"`
	Seq   int    `json:"seq"` // the till's own count, 1, 2, 3, ...
	Cents int    `json:"cents"`
}

// Receipt is what the till prints.
type Receipt struct {
	Key     string `json:"key"`
	Offline bool   `json:"offline,omitempty"` // approved by the till, to be sent later
}

// processor is an in-process stand-in for the card processor, served by an
// httptest.Server. It can go down, and after it comes back it is flaky for
// the rest of the day. It keeps the ledger the shop reconciles against.
type processor struct {
	srv *httptest.Server

	mu sync.Mutex // guards the fields below
	// down makes every request fail with 503 Service Unavailable.
	down bool
	// flaky makes some requests fail once the processor is back: request k
	// (counted from the recovery) is refused with 503 when k%5 == 3, and is
	// charged but answered with 503 (its answer "lost") when k%7 == 6. No
	// three requests in a row fail.
	flaky   bool
	sinceUp int
	// charges is the ledger, in the order charges were applied, and
	// applied indexes it by idempotency key.
	charges []Payment
	applied map[string]bool
	// lastSeq is the last sequence number applied per till.
	lastSeq map[string]int

	deadCalls  int // requests that arrived while the processor was down
	flakes     int // requests refused or answered 503 while flaky
	duplicates int // charges whose key was already applied: dropped
	outOfOrder int // charges applied after a later one of the same till
}

// newProcessor starts the fake processor. The caller must call close.
func newProcessor() *processor {
	p := &processor{applied: make(map[string]bool), lastSeq: make(map[string]int)}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /charges", p.charge)
	p.srv = httptest.NewServer(mux)
	return p
}

func (p *processor) close() { p.srv.Close() }

// setDown takes the processor down, or brings it back flaky.
func (p *processor) setDown(down bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.down = down
	if !down {
		p.flaky = true
		p.sinceUp = 0
	}
}

func (p *processor) charge(w http.ResponseWriter, r *http.Request) {
	var pay Payment
	if err := json.NewDecoder(r.Body).Decode(&pay); err != nil || pay.Key == "" || pay.Key != r.Header.Get("Idempotency-Key") {
		http.Error(w, "bad payment", http.StatusBadRequest)
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.down {
		p.deadCalls++
		http.Error(w, "processor unavailable", http.StatusServiceUnavailable)
		return
	}
	if p.flaky {
		p.sinceUp++
		switch k := p.sinceUp; {
		case k%5 == 3:
			p.flakes++
			http.Error(w, "processor busy", http.StatusServiceUnavailable)
			return
		case k%7 == 6:
			p.flakes++
			p.apply(pay) // charged, but the answer never arrives
			http.Error(w, "gateway timeout", http.StatusGatewayTimeout)
			return
		}
	}
	p.apply(pay)
	writeJSON(w, Receipt{Key: pay.Key})
}

// apply charges pay once per idempotency key and checks the order of each
// till's charges. It must be called with p.mu held.
func (p *processor) apply(pay Payment) {
	if p.applied[pay.Key] {
		p.duplicates++
		return
	}
	if pay.Seq <= p.lastSeq[pay.Till] {
		p.outOfOrder++
	}
	p.lastSeq[pay.Till] = pay.Seq
	p.applied[pay.Key] = true
	p.charges = append(p.charges, pay)
}

// ledgerCopy returns a copy of the ledger with its counters.
type ledgerCopy struct {
	charges                                   []Payment
	deadCalls, flakes, duplicates, outOfOrder int
}

func (p *processor) ledger() ledgerCopy {
	p.mu.Lock()
	defer p.mu.Unlock()
	return ledgerCopy{
		charges:   append([]Payment(nil), p.charges...),
		deadCalls: p.deadCalls, flakes: p.flakes, duplicates: p.duplicates, outOfOrder: p.outOfOrder,
	}
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(v)
}

// processorClient is the shop's plain HTTP client for the processor.
type processorClient struct {
	base string
	http *http.Client
}

// errRejected marks a payment the processor refused as malformed: sending it
// again will not help.
var errRejected = errors.New("processor rejected the payment")

// Charge sends one payment. The Idempotency-Key header lets the processor
// drop a payment it has already charged, which makes Charge safe to retry
// and to replay. A 429, 502, 503 or 504 answer comes back as a
// *retry.StatusError, which the retry policy retries and the breaker counts.
func (c *processorClient) Charge(ctx context.Context, pay Payment) (Receipt, error) {
	body, err := json.Marshal(pay)
	if err != nil {
		return Receipt{}, err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.base+"/charges", bytes.NewReader(body))
	if err != nil {
		return Receipt{}, err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Idempotency-Key", pay.Key)
	resp, err := c.http.Do(req)
	if err != nil {
		return Receipt{}, err
	}
	defer resp.Body.Close()
	if err := retry.CheckResponse(resp); err != nil {
		_, _ = io.Copy(io.Discard, resp.Body)
		return Receipt{}, err
	}
	if resp.StatusCode != http.StatusOK {
		// The processor answered: the payment itself is wrong. NoFallback
		// keeps the till from storing it for later, and the retry policy
		// from sending it again.
		return Receipt{}, fallback.NoFallback(fmt.Errorf("%w: %s", errRejected, resp.Status))
	}
	var rc Receipt
	return rc, json.NewDecoder(resp.Body).Decode(&rc)
}
