package middleware_test

import (
	"context"
	"fmt"
	"net"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"

	"github.com/proxyless/proxyless/discovery"
	"github.com/proxyless/proxyless/middleware"
	"github.com/proxyless/proxyless/ratelimit"
)

// serveHealth starts a gRPC server on a loopback port with the standard health service and
// the given options; stop it with the returned function.
func serveHealth(opts ...grpc.ServerOption) (addr string, stop func()) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	srv := grpc.NewServer(opts...)
	healthpb.RegisterHealthServer(srv, health.NewServer()) // answers SERVING
	go func() { _ = srv.Serve(lis) }()
	return lis.Addr().String(), srv.Stop
}

// A gRPC client of the service "inventory", whose two instances discovery knows: calls are
// balanced over them, retried elsewhere on UNAVAILABLE, and guarded by breakers.
func ExampleNewGRPCClient() {
	addr1, stop1 := serveHealth()
	defer stop1()
	addr2, stop2 := serveHealth()
	defer stop2()
	resolver := discovery.MustNewStatic(map[string][]discovery.Endpoint{
		"inventory": {{Addr: addr1}, {Addr: addr2}},
	})

	gc, err := middleware.NewGRPCClient(resolver, middleware.WithAttemptTimeout(2*time.Second))
	if err != nil {
		panic(err)
	}
	defer gc.Close()
	conn, err := gc.NewClient("inventory", grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		panic(err)
	}
	defer conn.Close()

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	client := healthpb.NewHealthClient(conn)
	for range 4 {
		resp, err := client.Check(ctx, &healthpb.HealthCheckRequest{})
		if err != nil {
			panic(err)
		}
		fmt.Println(resp.GetStatus())
	}
	fmt.Println("calls", gc.Stats().Requests)
	// Output:
	// SERVING
	// SERVING
	// SERVING
	// SERVING
	// calls 4
}

// A gRPC server that admits two calls per client address at once and then one per hour:
// the third is refused with RESOURCE_EXHAUSTED before the handler runs.
func ExampleNewGRPCServer() {
	lim, err := ratelimit.NewKeyed(ratelimit.KeyedConfig{Default: ratelimit.Quota{Rate: 1.0 / 3600, Burst: 2}})
	if err != nil {
		panic(err)
	}
	perClient, err := middleware.KeyByClientIP(ratelimit.ClientIPConfig{})
	if err != nil {
		panic(err)
	}
	gs, err := middleware.NewGRPCServer(middleware.WithServerRateLimit(lim, perClient))
	if err != nil {
		panic(err)
	}
	addr, stop := serveHealth(gs.ServerOptions()...) // add grpc.Creds(...) for TLS
	defer stop()

	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		panic(err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for range 3 {
		_, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{})
		fmt.Println(status.Code(err))
	}
	// Output:
	// OK
	// OK
	// ResourceExhausted
}
