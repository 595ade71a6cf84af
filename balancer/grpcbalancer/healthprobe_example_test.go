package grpcbalancer_test

import (
	"context"
	"fmt"
	"net"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/proxyless/proxyless/balancer"
	"github.com/proxyless/proxyless/balancer/grpcbalancer"
)

func ExampleNewHealthProber() {
	// A gRPC server with the standard health service on loopback.
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	srv := grpc.NewServer()
	hs := health.NewServer()
	healthpb.RegisterHealthServer(srv, hs)
	go func() { _ = srv.Serve(lis) }()
	defer srv.Stop()

	// Importing grpcbalancer registers this prober as the "grpc" kind of
	// balancer.HealthCheck; it can also be used on its own.
	p, err := grpcbalancer.NewHealthProber(balancer.HealthCheck{Kind: balancer.HealthCheckGRPC})
	if err != nil {
		panic(err)
	}
	defer p.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	fmt.Println("serving:", p.Probe(ctx, lis.Addr().String()) == nil)
	hs.SetServingStatus("", healthpb.HealthCheckResponse_NOT_SERVING)
	fmt.Println("not serving:", p.Probe(ctx, lis.Addr().String()) == nil)
	// Output:
	// serving: true
	// not serving: false
}
