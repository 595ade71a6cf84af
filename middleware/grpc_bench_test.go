package middleware_test

import (
	"context"
	"testing"

	"github.com/failsafe-go/failsafe-go/circuitbreaker"
	"github.com/failsafe-go/failsafe-go/failsafegrpc"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	testgrpc "google.golang.org/grpc/interop/grpc_testing"

	"github.com/proxyless/proxyless/discovery"
	"github.com/proxyless/proxyless/middleware"
)

// BenchmarkGRPCUnary compares, in one run, a loopback unary call through a bare
// grpc.NewClient, through DialOptions (without and with otelgrpc's stats handler, against the
// global no-op providers), and through failsafegrpc's interceptor with a retry policy and a
// circuit breaker.
func BenchmarkGRPCUnary(b *testing.B) {
	be := newGRPCBackend(b, "a")
	static := discovery.MustNewStatic(map[string][]discovery.Endpoint{"svc": {be.endpoint()}})
	creds := grpc.WithTransportCredentials(insecure.NewCredentials())
	run := func(b *testing.B, target string, dopts ...grpc.DialOption) {
		conn, err := grpc.NewClient(target, append(dopts, creds)...)
		require.NoError(b, err)
		defer conn.Close()
		client := testgrpc.NewTestServiceClient(conn)
		ctx := context.Background()
		req := &testgrpc.SimpleRequest{}
		_, err = client.UnaryCall(ctx, req, grpc.WaitForReady(true))
		require.NoError(b, err)
		b.ReportAllocs()
		b.ResetTimer()
		for b.Loop() {
			if _, err := client.UnaryCall(ctx, req); err != nil {
				b.Fatal(err)
			}
		}
	}
	b.Run("bare", func(b *testing.B) { run(b, be.addr) })
	b.Run("proxyless", func(b *testing.B) {
		run(b, "proxyless:///svc", dialOptions(b, static, middleware.WithGRPCStatsHandler(nil))...)
	})
	b.Run("proxyless-otelgrpc-noop", func(b *testing.B) {
		run(b, "proxyless:///svc", dialOptions(b, static)...)
	})
	b.Run("failsafegrpc", func(b *testing.B) {
		retry := failsafegrpc.NewRetryPolicyBuilder[any]().Build()
		cb := circuitbreaker.NewBuilder[any]().WithFailureRateThreshold(0.5, 20, 0).Build()
		run(b, be.addr, grpc.WithUnaryInterceptor(failsafegrpc.NewUnaryClientInterceptor[any](retry, cb)))
	})
}
