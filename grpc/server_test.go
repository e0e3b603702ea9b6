package grpc_test

import (
	"context"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

// testTimeout bounds every test's calls to the loopback server.
const testTimeout = 10 * time.Second

// answer scripts one call of the test server.
type answer struct {
	code     codes.Code    // the status to end with; OK for a success
	pushback []string      // values of the pushback trailer, if any
	hang     bool          // block until the call's context ends
	sent     int           // stream messages to send before ending (streams only)
	arrived  chan struct{} // closed when the call reaches the server, if set
}

// server is a real gRPC test service on loopback that answers calls as
// scripted, in order, and then with success; it counts the calls that
// reached it.
type server struct {
	grpc_testing.UnimplementedTestServiceServer
	hits atomic.Int64

	mu      sync.Mutex
	answers []answer
}

// script queues answers for the next calls.
func (s *server) script(as ...answer) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.answers = append(s.answers, as...)
}

// next counts a call and returns its answer.
func (s *server) next() answer {
	s.hits.Add(1)
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.answers) == 0 {
		return answer{sent: 3}
	}
	a := s.answers[0]
	s.answers = s.answers[1:]
	if a.arrived != nil {
		close(a.arrived)
	}
	return a
}

// end applies an answer's pushback, hang and status.
func end(ctx context.Context, a answer) error {
	if len(a.pushback) > 0 {
		md := metadata.MD{}
		md["grpc-retry-pushback-ms"] = a.pushback
		grpc.SetTrailer(ctx, md)
	}
	if a.hang {
		<-ctx.Done()
		return status.FromContextError(ctx.Err()).Err()
	}
	if a.code != codes.OK {
		return status.Error(a.code, "scripted "+a.code.String())
	}
	return nil
}

func (s *server) UnaryCall(ctx context.Context, _ *grpc_testing.SimpleRequest) (*grpc_testing.SimpleResponse, error) {
	if err := end(ctx, s.next()); err != nil {
		return nil, err
	}
	return &grpc_testing.SimpleResponse{}, nil
}

func (s *server) EmptyCall(ctx context.Context, _ *grpc_testing.Empty) (*grpc_testing.Empty, error) {
	if err := end(ctx, s.next()); err != nil {
		return nil, err
	}
	return &grpc_testing.Empty{}, nil
}

func (s *server) StreamingOutputCall(_ *grpc_testing.StreamingOutputCallRequest, st grpc.ServerStreamingServer[grpc_testing.StreamingOutputCallResponse]) error {
	a := s.next()
	for range a.sent {
		if err := st.Send(&grpc_testing.StreamingOutputCallResponse{}); err != nil {
			return err
		}
	}
	return end(st.Context(), a)
}

func (s *server) StreamingInputCall(st grpc.ClientStreamingServer[grpc_testing.StreamingInputCallRequest, grpc_testing.StreamingInputCallResponse]) error {
	a := s.next()
	n := 0
	for {
		_, err := st.Recv()
		if err == io.EOF {
			break
		}
		if err != nil {
			return err
		}
		n++
	}
	if err := end(st.Context(), a); err != nil {
		return err
	}
	return st.SendAndClose(&grpc_testing.StreamingInputCallResponse{AggregatedPayloadSize: int32(n)})
}

// startServer serves a scripted test service on 127.0.0.1 until the test
// ends, and returns it with its address.
func startServer(t testing.TB) (*server, string) {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err, "Listen")
	srv := &server{}
	gs := grpc.NewServer()
	grpc_testing.RegisterTestServiceServer(gs, srv)
	go gs.Serve(lis)
	t.Cleanup(gs.Stop)
	return srv, lis.Addr().String()
}

// dial connects to addr through the interceptors, until the test ends.
func dial(t testing.TB, addr string, unary []grpc.UnaryClientInterceptor, stream []grpc.StreamClientInterceptor) grpc_testing.TestServiceClient {
	t.Helper()
	cc, err := grpc.NewClient(addr,
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithChainUnaryInterceptor(unary...),
		grpc.WithChainStreamInterceptor(stream...),
		grpc.WithDisableRetry())
	require.NoError(t, err, "NewClient")
	t.Cleanup(func() { cc.Close() })
	return grpc_testing.NewTestServiceClient(cc)
}

// bounded returns a context that ends when the test does, or after
// testTimeout.
func bounded(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	t.Cleanup(cancel)
	return ctx
}

const (
	unaryMethod = "/grpc.testing.TestService/UnaryCall"
	emptyMethod = "/grpc.testing.TestService/EmptyCall"
)
