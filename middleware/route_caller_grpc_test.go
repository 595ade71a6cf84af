package middleware_test

import (
	"net"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	testgrpc "google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/proxyless/proxyless/auth"
	"github.com/proxyless/proxyless/middleware"
	"github.com/proxyless/proxyless/route"
)

// TestGRPCClientTrustsTheCallerIdentity: a gRPC client's route fault matched on metadata is
// injected only into calls made on behalf of the caller TrustIdentities admits: the verified
// identity in the call's context (here put there as NewHandler's WithJWT puts it, for the
// call a handler makes with its request's context).
func TestGRPCClientTrustsTheCallerIdentity(t *testing.T) {
	a := newGRPCBackend(t, "a")
	r, err := route.NewRouter(route.Config{Routes: []route.RouteConfig{{
		Name:  "chaos",
		Match: route.Match{GRPC: &route.GRPCMatch{Service: testService, Method: unaryName}, Headers: []route.HeaderMatch{{Name: "X-Chaos", Exact: "abort"}}},
		Fault: &route.Fault{Abort: &route.AbortFault{GRPCCode: int(codes.PermissionDenied)}},
	}}}, route.WithTrust(route.TrustIdentities("alice")))
	require.NoError(t, err)
	f := newGRPCFixture(t, []*grpcBackend{a}, middleware.WithRoutes(r))
	call := func(sub string) error {
		ctx := auth.ContextWithClaims(ctxFor(t, 10*time.Second), &auth.Claims{Subject: sub})
		_, err := f.client.UnaryCall(metadata.AppendToOutgoingContext(ctx, "x-chaos", "abort"), &testgrpc.SimpleRequest{})
		return err
	}
	for range 5 {
		assert.Equal(t, codes.PermissionDenied, status.Code(call("alice")), "the trusted caller's fault")
		assert.NoError(t, call("mallory"), "an untrusted caller's metadata injects nothing")
	}
	assert.EqualValues(t, 5, a.calls.Load())
}

// TestGRPCServerFaultTrustsTheVerifiedIdentity: WithServerFaults on a gRPC server injects a
// fault matched on metadata only for the caller whose token (verified by WithJWT) names a
// subject TrustIdentities admits.
func TestGRPCServerFaultTrustsTheVerifiedIdentity(t *testing.T) {
	idp := newIDP(t)
	cfg, err := route.ParseConfig([]byte(grpcCallerFaults))
	require.NoError(t, err)
	r, err := route.NewRouter(cfg, route.WithTrust(route.TrustIdentities("alice")))
	require.NoError(t, err)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	srv := grpc.NewServer(serverOptions(t, middleware.WithJWT(idp.v), middleware.WithServerFaults(r))...)
	cs := &countingServer{}
	testgrpc.RegisterTestServiceServer(srv, cs)
	go func() { _ = srv.Serve(lis) }()
	t.Cleanup(srv.Stop)
	c := dialGRPC(t, lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	call := func(sub string) error {
		ctx := metadata.AppendToOutgoingContext(ctxFor(t, 10*time.Second), "x-chaos", "abort", "authorization", "Bearer "+idp.token(t, sub, ""))
		_, err := c.UnaryCall(ctx, &testgrpc.SimpleRequest{})
		return err
	}
	for range 5 {
		assert.Equal(t, codes.ResourceExhausted, status.Code(call("alice")), "the trusted identity triggers the fault")
		assert.NoError(t, call("mallory"), "an untrusted identity does not")
	}
	assert.EqualValues(t, 5, cs.calls.Load())
}
