// Command console runs a small check-in service through a live outage
// simulation with the ringfence admin handler mounted, so that a newcomer
// can open the operator's page (or use the ringfence command) and act on a
// real incident: see the breakers open, put the desk in manual mode, watch
// the outbox fill and drain, steer a canary rollout.
//
// The booking API it depends on (an in-process httptest server) goes down
// for 15 seconds in every 40, and one boarding pass in 25 carries a record
// the API refuses, so dead letters build up for requeuing. The program
// prints the console's address and two tokens (read-write and read-only),
// then runs until interrupted, or for -for if set:
//
//	go run ./examples/console
//	go run ./examples/console -addr 127.0.0.1:9090 -for 5m
package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"time"

	"github.com/ringfence/ringfence/admin"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	os.Exit(run(ctx, os.Args[1:], os.Stdout, os.Stderr))
}

// run parses args, starts the simulation and the console, prints how to
// reach it and serves until ctx is done or -for has passed. It returns the
// exit status.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("console", flag.ContinueOnError)
	fs.SetOutput(stderr)
	addr := fs.String("addr", "127.0.0.1:8080", "address to serve the console on (keep it on loopback)")
	runFor := fs.Duration("for", 0, "stop after this long (0: run until interrupted)")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if *runFor > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, *runFor)
		defer cancel()
	}
	if err := serve(ctx, *addr, stdout, stderr); err != nil {
		fmt.Fprintln(stderr, "console:", err)
		return 1
	}
	return 0
}

// serve runs the simulation and the console until ctx is done.
func serve(ctx context.Context, addr string, stdout, stderr io.Writer) error {
	dir, err := os.MkdirTemp("", "ringfence-console-*")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	sim, err := newSimulation(dir, stdout)
	if err != nil {
		return err
	}
	defer sim.close()

	operator, viewer := secret(), secret()
	h, err := admin.New(admin.Settings{
		Tokens: []admin.Token{
			{Name: "operator", Secret: operator, Write: true},
			{Name: "viewer", Secret: viewer},
		},
		Objects: sim.objects(),
		Logger:  slog.New(slog.NewTextHandler(stderr, nil)),
	})
	if err != nil {
		return err
	}
	mux := http.NewServeMux()
	mux.Handle("/admin/", http.StripPrefix("/admin", h))
	mux.Handle("/{$}", http.RedirectHandler("/admin/", http.StatusFound))

	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()

	url := "http://" + ln.Addr().String() + "/admin/"
	fmt.Fprintf(stdout, "console: %s\n", url)
	fmt.Fprintf(stdout, "token operator (read-write): %s\n", operator)
	fmt.Fprintf(stdout, "token viewer (read-only): %s\n", viewer)
	fmt.Fprintf(stdout, "open %s#token=%s\n", url, operator)
	fmt.Fprintf(stdout, "or: RINGFENCE_URL=%s RINGFENCE_TOKEN=%s go run ./cmd/ringfence status\n", url, operator)

	simDone := make(chan struct{})
	go func() {
		defer close(simDone)
		sim.run(ctx)
	}()
	select {
	case <-ctx.Done():
	case err = <-served:
	}
	shutCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if shutErr := srv.Shutdown(shutCtx); err == nil && shutErr != nil {
		err = shutErr
	}
	<-simDone
	if errors.Is(err, http.ErrServerClosed) {
		err = nil
	}
	return err
}

// secret returns a fresh random token.
func secret() string {
	b := make([]byte, 16)
	rand.Read(b)
	return hex.EncodeToString(b)
}
