package benchmarks

import (
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/failsafe-go/failsafe-go/circuitbreaker"
	"github.com/failsafe-go/failsafe-go/failsafegrpc"
	"go.opentelemetry.io/contrib/instrumentation/google.golang.org/grpc/otelgrpc"
	metricnoop "go.opentelemetry.io/otel/metric/noop"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	testgrpc "google.golang.org/grpc/interop/grpc_testing"

	"github.com/proxyless/proxyless/discovery"
	"github.com/proxyless/proxyless/middleware"
)

// BenchmarkLoopbackHTTP is one GET to a real HTTP server on loopback, in this process, over a
// kept-alive connection, through each client stack.
//
//	impl=bare                     http.Client over http.Transport
//	impl=proxyless                the full stack, telemetry no-op
//	impl=failsafe+otel            otelhttp (no-op providers) over failsafehttp (retry + breaker)
//	impl=proxyless+trace          the full stack with an always-sample SDK tracer provider
//	impl=failsafe+otel+trace      the hand-composed stack with the same tracer provider
func BenchmarkLoopbackHTTP(b *testing.B) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		_, _ = io.WriteString(w, "ok")
	}))
	defer srv.Close()
	addr := strings.TrimPrefix(srv.URL, "http://")
	run := func(name string, wrap func(b *testing.B, base http.RoundTripper) (http.RoundTripper, string)) {
		b.Run("impl="+name, func(b *testing.B) {
			base := &http.Transport{}
			defer base.CloseIdleConnections()
			rt, url := wrap(b, base)
			doLoop(b, &http.Client{Transport: rt}, url)
		})
	}
	run("bare", func(_ *testing.B, base http.RoundTripper) (http.RoundTripper, string) { return base, srv.URL + "/" })
	run("proxyless", func(b *testing.B, base http.RoundTripper) (http.RoundTripper, string) {
		return proxyless(b, base, []string{addr}), "http://svc/"
	})
	run("failsafe+otel", func(_ *testing.B, base http.RoundTripper) (http.RoundTripper, string) {
		return otel(failsafeRT(base), noopTP), srv.URL + "/"
	})
	run("proxyless+trace", func(b *testing.B, base http.RoundTripper) (http.RoundTripper, string) {
		return proxyless(b, base, []string{addr}, middleware.WithTracerProvider(sampledTP(b))), "http://svc/"
	})
	run("failsafe+otel+trace", func(b *testing.B, base http.RoundTripper) (http.RoundTripper, string) {
		return otel(failsafeRT(base), sampledTP(b)), srv.URL + "/"
	})
}

type grpcServer struct {
	testgrpc.UnimplementedTestServiceServer
}

func (grpcServer) UnaryCall(context.Context, *testgrpc.SimpleRequest) (*testgrpc.SimpleResponse, error) {
	return &testgrpc.SimpleResponse{}, nil
}

// BenchmarkLoopbackGRPC is one unary call to a real gRPC server on loopback, in this process.
//
//	impl=bare                  grpc.NewClient straight to the address (pick_first)
//	impl=proxyless             middleware.NewGRPCClient with its defaults (proxyless:/// resolver,
//	                           P2C picker with per-endpoint breakers, retry/deadline
//	                           interceptors; telemetry on the global no-op providers, which
//	                           skips otelgrpc's stats handler)
//	impl=proxyless-nostats     the same without a stats handler at all
//	impl=failsafe+otel         failsafegrpc's interceptor (retry + breaker) and otelgrpc's
//	                           stats handler on the no-op providers
//	impl=proxyless+trace       proxyless with an always-sample SDK tracer provider
//	impl=failsafe+otel+trace   the hand-composed stack with the same tracer provider
func BenchmarkLoopbackGRPC(b *testing.B) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	srv := grpc.NewServer()
	testgrpc.RegisterTestServiceServer(srv, grpcServer{})
	go func() { _ = srv.Serve(lis) }()
	defer srv.Stop()
	addr := lis.Addr().String()
	static := discovery.MustNewStatic(map[string][]discovery.Endpoint{"svc": {{Addr: addr}}})
	creds := grpc.WithTransportCredentials(insecure.NewCredentials())
	run := func(name, target string, dopts ...grpc.DialOption) {
		b.Run("impl="+name, func(b *testing.B) {
			conn, err := grpc.NewClient(target, append(dopts, creds)...)
			if err != nil {
				b.Fatal(err)
			}
			defer conn.Close()
			client := testgrpc.NewTestServiceClient(conn)
			ctx := context.Background()
			req := &testgrpc.SimpleRequest{}
			if _, err := client.UnaryCall(ctx, req, grpc.WaitForReady(true)); err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				if _, err := client.UnaryCall(ctx, req); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
	mesh := func(opts ...middleware.GRPCClientOption) []grpc.DialOption {
		gc, err := middleware.NewGRPCClient(static, opts...)
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { _ = gc.Close() })
		return gc.DialOptions()
	}
	run("bare", addr)
	run("proxyless", "proxyless:///svc", mesh()...)
	run("proxyless-nostats", "proxyless:///svc", mesh(middleware.WithGRPCStatsHandler(nil))...)
	run("failsafe+otel", addr, failsafeGRPC(noopTP)...)
	run("proxyless+trace", "proxyless:///svc", mesh(middleware.WithTracerProvider(sampledTP(b)))...)
	run("failsafe+otel+trace", addr, failsafeGRPC(sampledTP(b))...)
}

// failsafeGRPC is the hand-composed gRPC stack: failsafegrpc's unary interceptor with a retry
// policy and a circuit breaker, and otelgrpc's client stats handler against tp and a no-op
// meter provider.
func failsafeGRPC(tp trace.TracerProvider) []grpc.DialOption {
	retry := failsafegrpc.NewRetryPolicyBuilder[any]().WithMaxRetries(2).Build()
	cb := circuitbreaker.NewBuilder[any]().WithFailureRateThreshold(0.5, 20, 10*time.Second).Build()
	return []grpc.DialOption{
		grpc.WithUnaryInterceptor(failsafegrpc.NewUnaryClientInterceptor[any](retry, cb)),
		grpc.WithStatsHandler(otelgrpc.NewClientHandler(otelgrpc.WithTracerProvider(tp),
			otelgrpc.WithMeterProvider(metricnoop.NewMeterProvider()))),
	}
}
