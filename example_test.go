package ringfence_test

import (
	"errors"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"time"

	"github.com/ringfence/ringfence/breaker"
	"github.com/ringfence/ringfence/retry"
)

// bearer stands in for a cloud SDK's authenticating transport, such as
// oauth2.Transport or the one google.golang.org/api/transport/http builds:
// it adds a fresh token to every request it sends.
type bearer struct {
	next http.RoundTripper
	mu   sync.Mutex
	n    int
}

func (b *bearer) RoundTrip(req *http.Request) (*http.Response, error) {
	b.mu.Lock()
	b.n++
	token := fmt.Sprintf("Bearer token-%d", b.n)
	b.mu.Unlock()
	req = req.Clone(req.Context()) // a RoundTripper must not modify the caller's request
	req.Header.Set("Authorization", token)
	return b.next.RoundTrip(req)
}

// storageServer is an offline object store with one URL per bucket,
// /b/{bucket}/o/{object}, as Google Cloud Storage's JSON API has. The
// "logs" bucket is down, "photos" works, and "inbox" refuses its first two
// requests.
type storageServer struct {
	mu       sync.Mutex
	hits     map[string]int
	unsigned int
}

func (s *storageServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	bucket := bucketOf(r)
	s.mu.Lock()
	s.hits[bucket]++
	n := s.hits[bucket]
	if r.Header.Get("Authorization") == "" {
		s.unsigned++
	}
	s.mu.Unlock()
	switch {
	case bucket == "logs", bucket == "inbox" && n <= 2:
		http.Error(w, "unavailable", http.StatusServiceUnavailable)
	case r.Method == http.MethodPost:
		w.WriteHeader(http.StatusCreated)
	default:
		io.WriteString(w, "ok")
	}
}

func (s *storageServer) count(bucket string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.hits[bucket]
}

func (s *storageServer) unsignedCount() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.unsigned
}

// bucketOf returns the bucket of a /b/{bucket}/o/{object} request.
func bucketOf(r *http.Request) string {
	parts := strings.SplitN(r.URL.Path, "/", 4) // "", "b", bucket, rest
	if len(parts) < 3 {
		return ""
	}
	return parts[2]
}

// The *http.Client to hand a cloud SDK, with the SDK's own retries turned
// off: ringfence's retries outermost, a breaker per bucket beneath them,
// the SDK's authentication beneath both, so that every attempt is
// authorized afresh. A failing bucket is cut off without touching the
// others, and an upload is retried only when it carries an
// Idempotency-Key.
func Example_cloudSDKClient() {
	srv := &storageServer{hits: map[string]int{}}
	ts := httptest.NewServer(srv)
	defer ts.Close()

	buckets, err := breaker.NewGroup(breaker.Settings{Name: "storage", ConsecutiveFailures: 3, OpenTimeout: time.Minute}, breaker.GroupOptions{})
	if err != nil {
		log.Fatal(err)
	}
	budget, err := retry.NewBudget(0.1, 10)
	if err != nil {
		log.Fatal(err)
	}
	client := &http.Client{Transport: retry.Transport(
		breaker.Transport(&bearer{next: http.DefaultTransport}, buckets, breaker.TransportOptions{
			Key: bucketOf, // one host serves every bucket: key the breakers by bucket
		}),
		retry.Policy{Budget: budget, InitialInterval: time.Millisecond, MaxInterval: time.Millisecond},
	)}
	get := func(bucket string) string {
		resp, err := client.Get(ts.URL + "/b/" + bucket + "/o/x")
		if err != nil {
			return fmt.Sprintf("error, breaker open: %v", errors.Is(err, breaker.ErrOpen))
		}
		defer resp.Body.Close()
		return resp.Status
	}
	upload := func(key string) string {
		req, err := http.NewRequest(http.MethodPost, ts.URL+"/b/inbox/o", strings.NewReader("report"))
		if err != nil {
			log.Fatal(err)
		}
		if key != "" {
			req.Header.Set("Idempotency-Key", key)
		}
		before := srv.count("inbox")
		resp, err := client.Do(req)
		if err != nil {
			log.Fatal(err)
		}
		resp.Body.Close()
		return fmt.Sprintf("%d after %d request(s)", resp.StatusCode, srv.count("inbox")-before)
	}

	fmt.Println("photos:", get("photos"))
	fmt.Println("logs:", get("logs"))
	fmt.Println("logs again:", get("logs"), "-", srv.count("logs"), "requests reached the bucket")
	fmt.Println("photos:", get("photos"))
	fmt.Println("upload without Idempotency-Key:", upload(""))
	fmt.Println("upload with Idempotency-Key:", upload("upload-7"))
	fmt.Println("requests without a token:", srv.unsignedCount())
	// Output:
	// photos: 200 OK
	// logs: 503 Service Unavailable
	// logs again: error, breaker open: true - 3 requests reached the bucket
	// photos: 200 OK
	// upload without Idempotency-Key: 503 after 1 request(s)
	// upload with Idempotency-Key: 201 after 2 request(s)
	// requests without a token: 0
}
