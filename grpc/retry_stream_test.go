package grpc_test

import (
	"io"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/grpc/status"

	rfgrpc "github.com/ringfence/ringfence/grpc"
)

const streamingOutputMethod = "/grpc.testing.TestService/StreamingOutputCall"

// serverStreamDesc describes StreamingOutputCall for cc.NewStream.
var serverStreamDesc = &grpc.StreamDesc{StreamName: "StreamingOutputCall", ServerStreams: true}

// dialConn connects to addr through the stream interceptors and returns
// the connection itself, until the test ends.
func dialConn(t *testing.T, addr string, stream ...grpc.StreamClientInterceptor) *grpc.ClientConn {
	t.Helper()
	cc, err := grpc.NewClient(addr,
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithChainStreamInterceptor(stream...),
		grpc.WithDisableRetry())
	require.NoError(t, err, "NewClient")
	t.Cleanup(func() { cc.Close() })
	return cc
}

func TestRetryStreamBeforeAndAfterOpening(t *testing.T) {
	srv, addr := startServer(t)
	var w waits
	r := newRetrier(t, rfgrpc.RetryOptions{Policy: fastPolicy(&w)})
	cc := dialConn(t, addr, r.Stream)
	ctx := bounded(t)
	srv.script(answer{code: codes.Unavailable, pushback: []string{"-1"}})

	st, err := cc.NewStream(ctx, serverStreamDesc, streamingOutputMethod)
	require.NoError(t, err, "NewStream")
	assert.Equal(t, ctx, st.Context(), "Context before opening")
	assert.Nil(t, st.Trailer(), "Trailer before opening")
	require.NoError(t, st.SendMsg(&grpc_testing.StreamingOutputCallRequest{}), "SendMsg")
	err = st.SendMsg(&grpc_testing.StreamingOutputCallRequest{})
	assert.Equal(t, codes.Internal, status.Code(err), "second SendMsg before opening = %v", err)
	require.NoError(t, st.CloseSend(), "CloseSend")

	err = st.RecvMsg(&grpc_testing.StreamingOutputCallResponse{})
	assert.Equal(t, codes.Unavailable, status.Code(err), "RecvMsg = %v", err)
	assert.Equal(t, int64(1), srv.hits.Load(), "server hits: the pushback forbade a retry")
	assert.Equal(t, []string{"-1"}, st.Trailer()[rfgrpc.PushbackKey], "Trailer after the stream ended")
	assert.NotEqual(t, ctx, st.Context(), "Context after opening is the stream's own")
	assert.Equal(t, io.EOF, st.SendMsg(&grpc_testing.StreamingOutputCallRequest{}), "SendMsg after the stream failed")
	assert.NoError(t, st.CloseSend(), "CloseSend after the stream failed")
}

func TestRetryCustomCodes(t *testing.T) {
	srv, addr := startServer(t)
	var w waits
	r := newRetrier(t, rfgrpc.RetryOptions{Policy: fastPolicy(&w), Codes: []codes.Code{codes.Internal}})
	client := dial(t, addr, []grpc.UnaryClientInterceptor{r.Unary}, nil)
	ctx := bounded(t)

	srv.script(answer{code: codes.Internal})
	_, err := client.UnaryCall(ctx, &grpc_testing.SimpleRequest{})
	require.NoError(t, err, "UnaryCall(INTERNAL, then OK)")
	assert.Equal(t, int64(2), srv.hits.Load(), "server hits: INTERNAL retried")

	srv.script(answer{code: codes.Unavailable})
	_, err = client.UnaryCall(ctx, &grpc_testing.SimpleRequest{})
	assert.Equal(t, codes.Unavailable, status.Code(err), "UnaryCall(UNAVAILABLE) = %v", err)
	assert.Equal(t, int64(3), srv.hits.Load(), "server hits: UNAVAILABLE no longer retried")
}

func TestTargetKey(t *testing.T) {
	assert.Empty(t, rfgrpc.TargetKey(bounded(t), unaryMethod, nil), "TargetKey(nil connection)")
	assert.Equal(t, unaryMethod, rfgrpc.MethodKey(bounded(t), unaryMethod, nil), "MethodKey")
}
