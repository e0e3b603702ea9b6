// Command sdkclient shows how to give a cloud SDK an *http.Client that
// retries, keeps a circuit breaker per host, and, in tests, meets injected
// faults.
//
// Cloud SDKs for Go accept the *http.Client they send requests with: the
// AWS SDK through config.WithHTTPClient, the Azure SDK through the
// Transport field of its client options, the Google Cloud libraries through
// option.WithHTTPClient. Whatever the SDK, the client is built the same
// way, by stacking round trippers:
//
//	retry.Transport -> breaker.Transport -> http.DefaultTransport
//
// and, in tests, a chaos.Transport at the bottom, where the network is, so
// that the faults it makes up meet the retries and the breakers exactly as
// real ones would.
//
// The demo's "SDK" is a small storage client reading objects from two
// regions, eu.storage.example and us.storage.example, both served offline by
// httptest servers. The US region is down for the first twelve rounds; the
// EU region works but drops 30% of connections (injected by chaos). Each
// host gets its own breaker: the US breaker opens and stops the calls to
// the US region, while the EU breaker never notices it, and retries hide the
// EU region's dropped connections from the caller.
//
// The program exits with status 1 if the caller saw an EU failure, if the
// dead US region got more than the first request's attempts, or if the US
// region is not back in use by the end.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ringfence/ringfence/breaker"
	"github.com/ringfence/ringfence/chaos"
	"github.com/ringfence/ringfence/retry"
)

// The story, counted in rounds; each round reads one object from each region.
const (
	rounds = 24
	usUpAt = 13 // the US region is down before this round
	eu     = "eu.storage.example"
	us     = "us.storage.example"
)

func main() {
	os.Exit(run(os.Stdout))
}

// run tells the story on w, prints the summary and returns the exit status.
func run(w io.Writer) int {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	sum, err := simulate(ctx, w)
	if err != nil {
		fmt.Fprintln(w, "sdkclient:", err)
		return 1
	}
	sum.print(w)
	if err := sum.check(); err != nil {
		fmt.Fprintln(w, "\nFAIL:", err)
		return 1
	}
	fmt.Fprintln(w, "\nOK: the EU region's faults never reached the caller; the US outage cost one request's attempts.")
	return 0
}

// NewHTTPClient returns the client to hand to a cloud SDK: each request is
// retried under p, and each attempt goes through the breaker kept for its
// host in g, then through next (http.DefaultTransport in production).
//
// The retries sit outside the breaker, so the breaker counts every attempt
// and an open breaker ends the retries at once. The SDK retries too (three
// attempts by default in the AWS and Azure SDKs): keep one layer, either by
// turning the SDK's retries off (the AWS SDK's aws.NopRetryer, the Azure
// SDK's retry options) or by leaving retry.Transport out, or the attempts
// multiply.
func NewHTTPClient(next http.RoundTripper, g *breaker.Group, p retry.Policy) *http.Client {
	return &http.Client{
		Transport: retry.Transport(breaker.Transport(next, g, breaker.TransportOptions{}), p),
		Timeout:   10 * time.Second, // an upper bound for the whole call, retries included
	}
}

// Outcome is what the caller saw for one request.
type Outcome int

const (
	OK       Outcome = iota // 200 OK
	Status                  // the server's error status, after the retries
	Rejected                // rejected by the host's breaker: no request sent
	Failed                  // a connection error, after the retries
)

func (o Outcome) String() string {
	return [...]string{"200 OK", "server error status after retries", "rejected by its breaker, not sent", "connection error after retries"}[o]
}

// HostSummary is what happened to the requests for one host.
type HostSummary struct {
	Calls    int             // requests the caller made
	Seen     map[Outcome]int // what the caller saw, by outcome
	Served   int             // requests the host's server received
	Injected int             // attempts failed by chaos before reaching the server
	Breaker  breaker.State   // the host's breaker at the end
}

// Summary is the outcome of the run, per host.
type Summary struct {
	EU, US HostSummary
}

// check returns an error naming the first invariant the run broke.
func (s Summary) check() error {
	switch {
	case s.EU.Seen[OK] != s.EU.Calls:
		return fmt.Errorf("the caller saw %d of %d EU requests succeed", s.EU.Seen[OK], s.EU.Calls)
	case s.EU.Injected == 0:
		return errors.New("chaos injected no fault into the EU region")
	case s.US.Served > 3+(rounds-usUpAt+1):
		return fmt.Errorf("the US region served %d requests, want at most %d", s.US.Served, 3+(rounds-usUpAt+1))
	case s.US.Seen[OK] != rounds-usUpAt+1:
		return fmt.Errorf("%d US requests succeeded after the recovery, want %d", s.US.Seen[OK], rounds-usUpAt+1)
	case s.EU.Breaker != breaker.Closed || s.US.Breaker != breaker.Closed:
		return fmt.Errorf("breakers end %v (EU) and %v (US), want closed", s.EU.Breaker, s.US.Breaker)
	}
	return nil
}

// simulate runs the rounds and writes their timeline to w.
func simulate(ctx context.Context, w io.Writer) (Summary, error) {
	euSrv, usSrv := newRegion(), newRegion()
	defer euSrv.close()
	defer usSrv.close()
	usSrv.down.Store(true)

	// In production next is http.DefaultTransport. Here a transport resolves
	// the two regions' names to the httptest servers, and chaos drops 30%
	// of the connections to the EU region, with a fixed seed so that the
	// same attempts fail on every run.
	injector, err := chaos.New(chaos.Settings{Seed: 11, Faults: chaos.Faults{ErrorRate: 0.3}})
	if err != nil {
		return Summary{}, err
	}
	network := regions(map[string]*region{eu: euSrv, us: usSrv})
	next := perHost{eu: chaos.Transport(network, injector), "": network}

	var mu sync.Mutex // orders timeline lines from breaker callbacks
	round := 0
	logf := func(format string, args ...any) {
		mu.Lock()
		defer mu.Unlock()
		fmt.Fprintf(w, "  round %-3d %s\n", round, fmt.Sprintf(format, args...))
	}

	// One breaker per host, made on first use and named "storage/<host>".
	// Three failed attempts in a row open a host's breaker. Its open wait
	// outlasts the demo: left alone, the breaker would send one probe
	// request an hour to the dead region. Here the region's recovery is
	// announced, and the operator releases its breaker at once.
	group, err := breaker.NewGroup(breaker.Settings{
		Name:                "storage",
		ConsecutiveFailures: 3,
		OpenTimeout:         time.Hour,
		OnChange: func(c breaker.Change) {
			logf("breaker %s: %v -> %v (%s)", c.Name, c.From, c.To, c.Reason)
		},
	}, breaker.GroupOptions{})
	if err != nil {
		return Summary{}, err
	}
	client := NewHTTPClient(next, group, retry.Policy{
		MaxAttempts:     3,
		InitialInterval: time.Millisecond,
		MaxInterval:     10 * time.Millisecond,
		Rand:            func() float64 { return 0.5 }, // exact waits: 1ms, then 2ms
		OnRetry: func(attempt int, err error, wait time.Duration) {
			logf("  retry: attempt %d failed (%v); trying again in %v", attempt, err, wait)
		},
	})

	// The SDK takes the client in its options, as the cloud SDKs do.
	euStore := newStorageClient("http://"+eu, StorageOptions{HTTPClient: client})
	usStore := newStorageClient("http://"+us, StorageOptions{HTTPClient: client})

	fmt.Fprintf(w, "One *http.Client, two regions: %s drops 30%% of connections (chaos), %s is down until round %d.\n\n", eu, us, usUpAt)
	sum := Summary{
		EU: HostSummary{Seen: make(map[Outcome]int)},
		US: HostSummary{Seen: make(map[Outcome]int)},
	}
	last := map[string]string{}
	for round = 1; round <= rounds; round++ {
		if round == usUpAt {
			usSrv.down.Store(false)
			logf("the US region is back")
			// The operator, told the region has recovered, does not wait
			// out the open wait: forcing the breaker closed lets requests
			// through at once, and releasing it hands it back to
			// automatic control in a fresh closed state, so it trips
			// again if the region was not really back.
			b := group.Get(us)
			b.ForceClose("operator: the US region has recovered")
			b.Release()
		}
		for _, r := range []struct {
			host  string
			store *storageClient
			sum   *HostSummary
		}{{eu, euStore, &sum.EU}, {us, usStore, &sum.US}} {
			name := fmt.Sprintf("objects/%03d", round)
			_, err := r.store.Get(ctx, name)
			outcome, detail := classify(err)
			r.sum.Calls++
			r.sum.Seen[outcome]++
			if detail != last[r.host] { // one line each time what the caller sees changes
				logf("%s: %s", r.host, detail)
				last[r.host] = detail
			}
		}
	}

	sum.EU.Served, sum.US.Served = int(euSrv.served.Load()), int(usSrv.served.Load())
	st := injector.Stats()
	sum.EU.Injected = int(st.Errors)
	sum.EU.Breaker, sum.US.Breaker = group.Get(eu).State(), group.Get(us).State()
	return sum, nil
}

// classify says what the caller saw, as an Outcome and a line of text. The
// errors come wrapped: http.Client's *url.Error around retry's *retry.Error
// around the last attempt's error; errors.Is and errors.As see through all
// of them.
func classify(err error) (Outcome, string) {
	var se *StatusError
	var oe *breaker.OpenError
	switch {
	case err == nil:
		return OK, "200 OK"
	case errors.As(err, &se):
		return Status, fmt.Sprintf("%d %s: the server's own answer, after the retries", se.StatusCode, http.StatusText(se.StatusCode))
	case errors.As(err, &oe):
		return Rejected, fmt.Sprintf("rejected at once by breaker %s (%v), no request sent", oe.Name, oe.State)
	case errors.Is(err, chaos.ErrInjected):
		return Failed, "connection refused (injected), after the retries"
	default:
		return Failed, err.Error()
	}
}

// print writes the summary table.
func (s Summary) print(w io.Writer) {
	fmt.Fprintf(w, "\n  %-46s %20s %20s\n", "", eu, us)
	row := func(label string, a, b any) { fmt.Fprintf(w, "  %-46s %20v %20v\n", label, a, b) }
	row("requests made by the caller", s.EU.Calls, s.US.Calls)
	for o := OK; o <= Failed; o++ {
		row("  "+o.String(), s.EU.Seen[o], s.US.Seen[o])
	}
	row("attempts failed by chaos (connection refused)", s.EU.Injected, "-")
	row("requests the region's server received", s.EU.Served, s.US.Served)
	row("breaker at the end", s.EU.Breaker, s.US.Breaker)
}

// region is an in-process stand-in for one region of the storage service.
type region struct {
	srv    *httptest.Server
	down   atomic.Bool  // answer 503 Service Unavailable to everything
	served atomic.Int64 // requests received, down or not
}

func newRegion() *region {
	rg := &region{}
	rg.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rg.served.Add(1)
		if rg.down.Load() {
			http.Error(w, "region unavailable", http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintf(w, "contents of %s", r.URL.Path)
	}))
	return rg
}

func (rg *region) close() { rg.srv.Close() }

// regions returns a transport that dials each region's name to its
// httptest server, so that URLs, and breaker keys, carry the real names.
func regions(byHost map[string]*region) http.RoundTripper {
	var d net.Dialer
	return &http.Transport{
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			host, _, err := net.SplitHostPort(addr)
			if err != nil {
				return nil, err
			}
			rg, ok := byHost[host]
			if !ok {
				return nil, fmt.Errorf("no such region: %s", host)
			}
			return d.DialContext(ctx, network, rg.srv.Listener.Addr().String())
		},
	}
}

// perHost sends each request through the round tripper kept for its host,
// or the one under "" for other hosts. It lets the demo inject faults into
// one region only.
type perHost map[string]http.RoundTripper

func (p perHost) RoundTrip(r *http.Request) (*http.Response, error) {
	if rt, ok := p[r.URL.Hostname()]; ok {
		return rt.RoundTrip(r)
	}
	return p[""].RoundTrip(r)
}
