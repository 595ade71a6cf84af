package grpcresolver_test

import (
	"context"
	"fmt"
	"net"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/proxyless/proxyless/discovery"
	"github.com/proxyless/proxyless/discovery/grpcresolver"
)

// A plain gRPC channel that follows the service "inventory" through a discovery.Resolver
// (here a Static one; Consul's or DNS's work the same way). middleware.NewGRPCClient sets
// this up, with the proxyless balancer and interceptors, for you.
func ExampleNewBuilder() {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	srv := grpc.NewServer()
	healthpb.RegisterHealthServer(srv, health.NewServer())
	go func() { _ = srv.Serve(lis) }()
	defer srv.Stop()

	eps := []discovery.Endpoint{{Addr: lis.Addr().String(), Zone: "dc1/a"}}
	r := discovery.MustNewStatic(map[string][]discovery.Endpoint{"inventory": eps})
	conn, err := grpc.NewClient(grpcresolver.Scheme+":///inventory",
		grpc.WithResolvers(grpcresolver.NewBuilder(r)),
		grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		panic(err)
	}
	defer conn.Close()

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	resp, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{}, grpc.WaitForReady(true))
	fmt.Println(resp.GetStatus(), err)

	// Each endpoint reaches the balancer with its zone, weight, tags and metadata.
	st := grpcresolver.State(eps)
	ep, ok := grpcresolver.FromEndpoint(st.Endpoints[0])
	fmt.Println(ep.Zone, ok)
	// Output:
	// SERVING <nil>
	// dc1/a true
}
