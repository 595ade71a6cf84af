package grpcbalancer_test

import (
	"context"
	"fmt"
	"net"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/proxyless/proxyless/balancer"
	"github.com/proxyless/proxyless/balancer/grpcbalancer"
	"github.com/proxyless/proxyless/discovery"
	"github.com/proxyless/proxyless/discovery/grpcresolver"
)

// startHealthServers starts n gRPC servers with the standard health service on loopback
// ports, as the endpoints of one service; stop them with the returned function.
func startHealthServers(n int) ([]discovery.Endpoint, func()) {
	var eps []discovery.Endpoint
	var stops []func()
	for range n {
		lis, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			panic(err)
		}
		srv := grpc.NewServer()
		healthpb.RegisterHealthServer(srv, health.NewServer())
		go func() { _ = srv.Serve(lis) }()
		eps = append(eps, discovery.Endpoint{Addr: lis.Addr().String()})
		stops = append(stops, srv.Stop)
	}
	return eps, func() {
		for _, stop := range stops {
			stop()
		}
	}
}

// dial opens a channel to the service "inventory" (eps) whose balancing policy is the
// proxyless round robin and reports to m.
func dial(eps []discovery.Endpoint, m *grpcbalancer.Monitor) *grpc.ClientConn {
	r := discovery.MustNewStatic(map[string][]discovery.Endpoint{"inventory": eps})
	sc := fmt.Sprintf(`{"loadBalancingConfig": [{%q: {}}]}`, grpcbalancer.PolicyName(balancer.PolicyRoundRobin))
	conn, err := grpc.NewClient("proxyless:///inventory",
		grpc.WithResolvers(grpcresolver.NewBuilder(r, grpcresolver.WithAttributes(grpcbalancer.WithMonitor(nil, m)))),
		grpc.WithDefaultServiceConfig(sc),
		grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		panic(err)
	}
	conn.Connect()
	return conn
}

// waitReady waits (at most 10 s) until the channel the monitor watches holds n endpoints
// whose connections are ready.
func waitReady(m *grpcbalancer.Monitor, n int) bool {
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if ch := m.Channels(); len(ch) == 1 && len(ch[0].Endpoints) == n {
			return true
		}
		time.Sleep(10 * time.Millisecond)
	}
	return false
}

// The attempts of one call (a retry, a hedge) go to endpoints the call has not tried yet.
// The interceptors of package middleware do this for every call; here it is done by hand.
func ExampleNewCall() {
	eps, stop := startHealthServers(3)
	defer stop()
	m := grpcbalancer.NewMonitor()
	conn := dial(eps, m)
	defer conn.Close()
	fmt.Println("ready:", waitReady(m, 3))

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	client := healthpb.NewHealthClient(conn)
	call := grpcbalancer.NewCall(false) // a unary call
	seen := map[string]bool{}
	for range 3 {
		att := call.NewAttempt()
		if _, err := client.Check(grpcbalancer.NewContext(ctx, att), &healthpb.HealthCheckRequest{}); err != nil {
			panic(err)
		}
		seen[att.Endpoint()] = true // what the picker chose for this attempt
	}
	fmt.Println("endpoints tried:", call.Tried(), "distinct:", len(seen))
	// Output:
	// ready: true
	// endpoints tried: 3 distinct: 3
}

func ExampleNewContext() {
	att := grpcbalancer.NewCall(false).NewAttempt()
	ctx := grpcbalancer.NewContext(context.Background(), att)
	fmt.Println(grpcbalancer.FromContext(ctx) == att, grpcbalancer.FromContext(context.Background()) == nil)
	// Output: true true
}

// A monitor describes the endpoints and breakers of the channels attached to it, for a
// status page.
func ExampleNewMonitor() {
	eps, stop := startHealthServers(2)
	defer stop()
	m := grpcbalancer.NewMonitor()
	conn := dial(eps, m)
	defer conn.Close()
	fmt.Println("ready:", waitReady(m, 2))

	ch := m.Channels()[0]
	fmt.Println(ch.Service, len(ch.Endpoints), ch.Endpoints[0].HasBreaker, ch.Endpoints[0].Breaker)
	fmt.Println("breaker openings:", m.BreakerOpens(), "ejections:", m.Ejections())
	// Output:
	// ready: true
	// inventory 2 true closed
	// breaker openings: 0 ejections: 0
}
