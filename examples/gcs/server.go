package main

import (
	"bytes"
	"fmt"
	"net/http"
	"net/url"
	"regexp"
	"strconv"
	"sync"

	"github.com/fsouza/fake-gcs-server/fakestorage"
)

// storageServer is the storage service: an in-process fake of Cloud
// Storage's JSON API on a loopback port, keeping its objects in a directory
// so that it can be stopped and started again, on the same port, without
// losing them. It logs every request it receives, which is how the story
// counts the requests that reached it.
type storageServer struct {
	dir  string // the fake's storage root
	port uint16 // fixed by the first start
	log  *requestLog
	srv  *fakestorage.Server // nil while stopped
}

// startServer starts the service on a free loopback port with bucket
// created and the given objects in it.
func startServer(dir, bucket string, objects ...fakestorage.Object) (*storageServer, error) {
	s := &storageServer{dir: dir, log: &requestLog{}}
	if err := s.start(); err != nil {
		return nil, err
	}
	s.srv.CreateBucketWithOpts(fakestorage.CreateBucketOpts{Name: bucket})
	for _, o := range objects {
		s.srv.CreateObject(o)
	}
	return s, nil
}

// start listens on s.port (a free port chosen by the system the first
// time) and serves.
func (s *storageServer) start() error {
	srv, err := fakestorage.NewServerWithOptions(fakestorage.Options{
		Scheme:      "http",
		Host:        "127.0.0.1",
		Port:        s.port,
		StorageRoot: s.dir,
		Writer:      s.log,
	})
	if err != nil {
		return fmt.Errorf("start the storage server on port %d: %w", s.port, err)
	}
	if s.port == 0 {
		u, err := url.Parse(srv.URL())
		if err != nil {
			srv.Stop()
			return err
		}
		p, err := strconv.ParseUint(u.Port(), 10, 16)
		if err != nil {
			srv.Stop()
			return fmt.Errorf("storage server URL %q: %w", srv.URL(), err)
		}
		s.port = uint16(p)
	}
	s.srv = srv
	return nil
}

// URL returns the service's base URL, the same across restarts.
func (s *storageServer) URL() string { return fmt.Sprintf("http://127.0.0.1:%d", s.port) }

// stop closes the listener and every connection, and waits for the
// requests in progress: from then on, dialling the port is refused.
func (s *storageServer) stop() {
	if s.srv != nil {
		s.srv.Stop()
		s.srv = nil
	}
}

// object returns the stored content of an object, read on the server side,
// or false if it does not exist. The server must be running.
func (s *storageServer) object(bucket, name string) ([]byte, bool) {
	o, err := s.srv.GetObject(bucket, name)
	if err != nil {
		return nil, false
	}
	return o.Content, true
}

// requestLog receives the fake server's access log (one line per request
// in the common log format) and counts the requests it describes. It is
// safe for concurrent use: the server writes to it from its handlers.
type requestLog struct {
	mu      sync.Mutex // guards the fields below
	partial []byte     // the start of a line not yet ended
	reads   int        // object downloads answered 200
	created map[string]int
	total   int
	byCode  map[int]int
}

// logLine matches a request line and status of the common log format:
// "POST /upload/storage/v1/b/shop/o?... HTTP/1.1" 200
var logLine = regexp.MustCompile(`"([A-Z]+) (\S+) HTTP/[0-9.]+" ([0-9]{3})`)

// Write takes any part of the log and counts each complete line.
func (l *requestLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.partial = append(l.partial, p...)
	for {
		i := bytes.IndexByte(l.partial, '\n')
		if i < 0 {
			return len(p), nil
		}
		l.count(string(l.partial[:i]))
		l.partial = l.partial[i+1:]
	}
}

// count records one log line. l.mu must be held.
func (l *requestLog) count(line string) {
	m := logLine.FindStringSubmatch(line)
	if m == nil {
		return // not a request: the fake's own messages
	}
	method, target := m[1], m[2]
	code, _ := strconv.Atoi(m[3])
	l.total++
	if l.byCode == nil {
		l.byCode, l.created = map[int]int{}, map[string]int{}
	}
	l.byCode[code]++
	u, err := url.Parse(target)
	if err != nil || code != http.StatusOK {
		return
	}
	switch q := u.Query(); {
	case method == http.MethodPost && q.Get("uploadType") != "":
		l.created[q.Get("name")]++
	case method == http.MethodGet && q.Get("alt") == "media":
		l.reads++
	}
}

// requestCounts is what the server's log says it received.
type requestCounts struct {
	Total   int            // requests received
	ByCode  map[int]int    // by the status answered
	Reads   int            // object downloads answered 200
	Created map[string]int // successful uploads, by object name
}

// counts returns a copy of the counts so far.
func (l *requestLog) counts() requestCounts {
	l.mu.Lock()
	defer l.mu.Unlock()
	c := requestCounts{Total: l.total, Reads: l.reads, ByCode: map[int]int{}, Created: map[string]int{}}
	for k, v := range l.byCode {
		c.ByCode[k] = v
	}
	for k, v := range l.created {
		c.Created[k] = v
	}
	return c
}
