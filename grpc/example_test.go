package grpc_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/grpc/status"

	"github.com/ringfence/ringfence/breaker"
	"github.com/ringfence/ringfence/chaos"
	rfgrpc "github.com/ringfence/ringfence/grpc"
	"github.com/ringfence/ringfence/retry"
)

// exampleServer serves the scripted test service on 127.0.0.1 and returns
// it, its address and a function that stops it.
func exampleServer() (*server, string, func()) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	srv := &server{}
	gs := grpc.NewServer()
	grpc_testing.RegisterTestServiceServer(gs, srv)
	go gs.Serve(lis)
	return srv, lis.Addr().String(), gs.Stop
}

// An open breaker rejects calls without touching the network.
func ExampleBreaker() {
	srv, addr, stop := exampleServer()
	defer stop()
	srv.script(answer{code: codes.Unavailable}, answer{code: codes.Unavailable})

	group, err := breaker.NewGroup(breaker.Settings{Name: "test", ConsecutiveFailures: 2}, breaker.GroupOptions{})
	if err != nil {
		fmt.Println(err)
		return
	}
	b := rfgrpc.NewBreaker(group, rfgrpc.BreakerOptions{})
	conn, err := grpc.NewClient(addr,
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithChainUnaryInterceptor(b.Unary),
		grpc.WithChainStreamInterceptor(b.Stream))
	if err != nil {
		fmt.Println(err)
		return
	}
	defer conn.Close()
	client := grpc_testing.NewTestServiceClient(conn)

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for i := range 3 {
		_, err := client.UnaryCall(ctx, &grpc_testing.SimpleRequest{})
		fmt.Printf("call %d: %v, open breaker: %t\n", i, status.Code(err), errors.Is(err, breaker.ErrOpen))
	}
	fmt.Println("calls that reached the server:", srv.hits.Load())
	// Output:
	// call 0: Unavailable, open breaker: false
	// call 1: Unavailable, open breaker: false
	// call 2: Unavailable, open breaker: true
	// calls that reached the server: 2
}

// A server's pushback trailer sets the wait before the retry.
func ExampleRetrier() {
	srv, addr, stop := exampleServer()
	defer stop()
	srv.script(answer{code: codes.ResourceExhausted, pushback: []string{"5"}})

	r, err := rfgrpc.NewRetrier(rfgrpc.RetryOptions{Policy: retry.Policy{
		InitialInterval: time.Millisecond,
		MaxInterval:     10 * time.Millisecond,
		OnRetry: func(attempt int, err error, wait time.Duration) {
			fmt.Printf("attempt %d: %v, retry in %v\n", attempt, status.Code(err), wait)
		},
	}})
	if err != nil {
		fmt.Println(err)
		return
	}
	conn, err := grpc.NewClient(addr,
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithChainUnaryInterceptor(r.Unary),
		grpc.WithChainStreamInterceptor(r.Stream),
		grpc.WithDisableRetry())
	if err != nil {
		fmt.Println(err)
		return
	}
	defer conn.Close()

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err = grpc_testing.NewTestServiceClient(conn).UnaryCall(ctx, &grpc_testing.SimpleRequest{})
	fmt.Println("result:", status.Code(err))
	fmt.Println("calls that reached the server:", srv.hits.Load())
	// Output:
	// attempt 1: ResourceExhausted, retry in 5ms
	// result: OK
	// calls that reached the server: 2
}

// In a test, chaos stands in for a failing network; the retry and the
// breaker see its faults as they would see real ones.
func ExampleChaos() {
	srv, addr, stop := exampleServer()
	defer stop()

	in, err := chaos.New(chaos.Settings{Faults: chaos.Faults{
		ErrorRate: 1,
		Err:       status.Error(codes.Unavailable, "zone down"),
	}})
	if err != nil {
		fmt.Println(err)
		return
	}
	c, err := rfgrpc.NewChaos(in, rfgrpc.ChaosOptions{})
	if err != nil {
		fmt.Println(err)
		return
	}
	group, err := breaker.NewGroup(breaker.Settings{Name: "test", ConsecutiveFailures: 2, OpenTimeout: time.Hour}, breaker.GroupOptions{})
	if err != nil {
		fmt.Println(err)
		return
	}
	b := rfgrpc.NewBreaker(group, rfgrpc.BreakerOptions{})
	r, err := rfgrpc.NewRetrier(rfgrpc.RetryOptions{Policy: retry.Policy{
		MaxAttempts:     5,
		InitialInterval: time.Millisecond,
		MaxInterval:     time.Millisecond,
	}})
	if err != nil {
		fmt.Println(err)
		return
	}
	conn, err := grpc.NewClient(addr,
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithChainUnaryInterceptor(r.Unary, b.Unary, c.Unary),
		grpc.WithDisableRetry())
	if err != nil {
		fmt.Println(err)
		return
	}
	defer conn.Close()

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err = grpc_testing.NewTestServiceClient(conn).UnaryCall(ctx, &grpc_testing.SimpleRequest{})
	fmt.Println("code:", status.Code(err))
	fmt.Println("open breaker:", errors.Is(err, breaker.ErrOpen))
	fmt.Println("injected failures:", in.Stats().Errors)
	fmt.Println("calls that reached the server:", srv.hits.Load())
	// Output:
	// code: Unavailable
	// open breaker: true
	// injected failures: 2
	// calls that reached the server: 0
}

// DefaultClassify tells failures of the dependency from definite answers.
func ExampleDefaultClassify() {
	for _, c := range []codes.Code{codes.Unavailable, codes.NotFound, codes.Canceled} {
		fmt.Printf("%v: %v\n", c, rfgrpc.DefaultClassify(c))
	}
	// Output:
	// Unavailable: failure
	// NotFound: success
	// Canceled: excluded
}
