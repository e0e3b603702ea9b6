// Package grpc protects gRPC clients with ringfence: client interceptors
// that put calls behind circuit breakers, retry them under a budget, and
// inject faults in tests. It is the gRPC face of the core packages, as
// breaker.Transport, retry.Transport and chaos.Transport are their HTTP
// face, and it lives in its own module so that users of the core never
// download gRPC.
//
// The package's name clashes with google.golang.org/grpc; import it under
// another name:
//
//	import (
//		"google.golang.org/grpc"
//		rfgrpc "github.com/ringfence/ringfence/grpc"
//	)
//
// # Interceptors
//
// Each concept is a type with two methods, Unary and Stream, that are a
// grpc.UnaryClientInterceptor and a grpc.StreamClientInterceptor with the
// same options:
//
//   - [Breaker] sends each call through the breaker of a breaker.Group,
//     one per target or per method, and rejects calls without touching the
//     network while that breaker is open;
//   - [Retrier] tries failed calls again under a retry.Policy, with its
//     backoff, deadline, Budget and Throttle, honouring the server's
//     grpc-retry-pushback-ms trailer;
//   - [Chaos] injects status codes, delays and hangs from a chaos.Injector.
//
// Chain them outermost first, in the order of the HTTP transports: retry,
// then breaker, then (in tests) chaos in place of the network:
//
//	group, _ := breaker.NewGroup(breaker.Settings{Name: "inventory"}, breaker.GroupOptions{})
//	b := rfgrpc.NewBreaker(group, rfgrpc.BreakerOptions{})
//	r, err := rfgrpc.NewRetrier(rfgrpc.RetryOptions{
//		Policy:     retry.Policy{Budget: budget},
//		Idempotent: rfgrpc.Methods("/inventory.v1.Inventory/GetItem"),
//	})
//	if err != nil {
//		return err
//	}
//	conn, err := grpc.NewClient(target,
//		grpc.WithTransportCredentials(creds),
//		grpc.WithChainUnaryInterceptor(r.Unary, b.Unary),
//		grpc.WithChainStreamInterceptor(r.Stream, b.Stream),
//		grpc.WithDisableRetry())
//
// Every attempt of the retry then passes through the breaker, which counts
// each real call; when the breaker opens, the next attempt is rejected at
// once with an error whose RetryAfter tells the retry how long to wait, or
// to give up. A cloud SDK that takes gRPC dial options (most Google Cloud
// clients take option.WithGRPCDialOption) accepts the same options; turn
// the SDK's own retries off so that the Budget sees every attempt.
//
// # How calls count
//
// The breaker judges a call by its status code ([DefaultClassify], or
// BreakerOptions.Classify):
//
//	status code                                               counts as
//	OK                                                        success
//	UNAVAILABLE, RESOURCE_EXHAUSTED, DEADLINE_EXCEEDED,       failure
//	INTERNAL, UNKNOWN, DATA_LOSS
//	INVALID_ARGUMENT, NOT_FOUND, ALREADY_EXISTS,              success: the dependency answered
//	PERMISSION_DENIED, UNAUTHENTICATED, FAILED_PRECONDITION,
//	ABORTED, OUT_OF_RANGE, UNIMPLEMENTED
//	CANCELED                                                  not counted
//	any code, when the caller canceled the call's context     not counted
//
// # Errors
//
// Errors made by this package carry a gRPC status, so status.Code and
// status.FromError work on them as on gRPC's own, and they wrap the error
// that explains them: a rejection by an open breaker has code UNAVAILABLE
// and matches breaker.ErrOpen (errors.As finds the *breaker.OpenError); an
// injected fault matches chaos.ErrInjected; a retry that stopped for a
// reason of its own returns the *retry.Error, which matches that reason
// (retry.ErrBudgetExhausted, for one) and keeps the last attempt's code.
// Errors from the server pass through unchanged.
//
// # Testing
//
// The interceptors work against any gRPC server; this package's tests use
// a real one on 127.0.0.1. gRPC's transport runs goroutines of its own and
// real sockets, which testing/synctest bubbles do not accept, so tests
// that need time to pass give the breaker and the policy tiny durations
// and wait for the breaker's state changes (Settings.OnChange), bounded by
// a context, rather than for the clock.
package grpc
