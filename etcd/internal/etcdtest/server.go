// Package etcdtest runs a single-member etcd server inside the process, on
// 127.0.0.1, for the module's tests, benchmarks and examples.
package etcdtest

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"sync"
	"testing"
	"time"

	"go.etcd.io/etcd/server/v3/embed"
	"go.uber.org/zap"
)

// startTimeout bounds how long Start and Restart wait for the server.
const startTimeout = 20 * time.Second

// startAttempts is how many times Start tries fresh ports before it gives
// up: a port found free can be taken by another process before etcd binds it.
const startAttempts = 5

// Server is an embedded etcd member whose data lives in one directory. It
// can be stopped and started again on the same data and ports, so clients
// see an outage and a recovery. A Server is safe for concurrent use.
type Server struct {
	dir string

	mu     sync.Mutex // guards client, peer and e
	client url.URL
	peer   url.URL
	e      *embed.Etcd // nil while stopped
}

// New starts a Server with its data in t.TempDir() and stops it in
// t.Cleanup. It fails the test if the server does not start in time.
func New(t testing.TB) *Server {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), startTimeout)
	defer cancel()
	s, err := Start(ctx, t.TempDir())
	if err != nil {
		t.Fatalf("etcdtest.Start: %v", err)
	}
	t.Cleanup(s.Stop)
	return s
}

// Start starts a member keeping its data in dir, listening on free ports
// of 127.0.0.1. The caller must call Stop.
func Start(ctx context.Context, dir string) (*Server, error) {
	s := &Server{dir: dir}
	var err error
	for range startAttempts {
		var ports [2]int
		if ports, err = freePorts(); err != nil {
			continue
		}
		s.client = url.URL{Scheme: "http", Host: fmt.Sprintf("127.0.0.1:%d", ports[0])}
		s.peer = url.URL{Scheme: "http", Host: fmt.Sprintf("127.0.0.1:%d", ports[1])}
		if err = s.start(ctx); err == nil {
			return s, nil
		}
		if ctx.Err() != nil {
			break
		}
	}
	return nil, fmt.Errorf("etcdtest: start in %s: %w", dir, err)
}

// freePorts returns two ports that were free a moment ago.
func freePorts() ([2]int, error) {
	var ports [2]int
	var ls []net.Listener
	defer func() {
		for _, l := range ls {
			l.Close()
		}
	}()
	for i := range ports {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return ports, err
		}
		ls = append(ls, l)
		ports[i] = l.Addr().(*net.TCPAddr).Port
	}
	return ports, nil
}

// start runs the member on s's ports. s.mu must not be held.
func (s *Server) start(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.e != nil {
		return errors.New("etcdtest: already running")
	}
	cfg := embed.NewConfig()
	cfg.Name = "etcdtest"
	cfg.Dir = s.dir
	cfg.ListenClientUrls = []url.URL{s.client}
	cfg.AdvertiseClientUrls = []url.URL{s.client}
	cfg.ListenPeerUrls = []url.URL{s.peer}
	cfg.AdvertisePeerUrls = []url.URL{s.peer}
	cfg.InitialCluster = cfg.InitialClusterFromName(cfg.Name)
	cfg.ZapLoggerBuilder = embed.NewZapLoggerBuilder(zap.NewNop())
	// Tests share a busy disk; a clean Stop still leaves the data for
	// Restart, and no test needs it to survive a power cut.
	cfg.UnsafeNoFsync = true
	e, err := embed.StartEtcd(cfg)
	if err != nil {
		return err
	}
	select {
	case <-e.Server.ReadyNotify():
		s.e = e
		return nil
	case err := <-e.Err():
		e.Close()
		return err
	case <-ctx.Done():
		e.Server.Stop()
		e.Close()
		return ctx.Err()
	}
}

// Addr returns the client address, "127.0.0.1:port", for a Proxy.
func (s *Server) Addr() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.client.Host
}

// Endpoints returns the client URLs to give clientv3.Config. They stay the
// same across Stop and Restart.
func (s *Server) Endpoints() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return []string{s.client.String()}
}

// Stop stops the member and waits until it has released its ports and
// data. Stopping a stopped Server does nothing.
func (s *Server) Stop() {
	s.mu.Lock()
	e := s.e
	s.e = nil
	s.mu.Unlock()
	if e != nil {
		e.Close()
	}
}

// Restart starts a stopped member again on the same data and ports,
// retrying while the old listeners are still being released.
func (s *Server) Restart(ctx context.Context) error {
	for {
		err := s.start(ctx)
		if err == nil || ctx.Err() != nil {
			return err
		}
		t := time.NewTimer(50 * time.Millisecond)
		select {
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("etcdtest: restart: %w", err)
		case <-t.C:
		}
	}
}
