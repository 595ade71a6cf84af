package grpcbalancer_test

import (
	"context"
	"net"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/proxyless/proxyless/balancer"
	_ "github.com/proxyless/proxyless/balancer/grpcbalancer" // registers the "grpc" kind
	"github.com/proxyless/proxyless/discovery"
)

// healthServer is a real gRPC server on loopback with the standard health service.
func healthServer(t *testing.T) (string, *health.Server) {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	srv := grpc.NewServer()
	hs := health.NewServer()
	healthpb.RegisterHealthServer(srv, hs)
	go func() { _ = srv.Serve(lis) }()
	t.Cleanup(srv.Stop)
	return lis.Addr().String(), hs
}

func healthyOf(b *balancer.Balancer, addr string) bool {
	for _, e := range b.Endpoints() {
		if e.Addr == addr {
			return e.Healthy
		}
	}
	return false
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for !cond() {
		select {
		case <-ctx.Done():
			t.Fatalf("timed out waiting for %s", what)
		case <-time.After(5 * time.Millisecond):
		}
	}
}

// A gRPC health check marks an endpoint down when its health service answers NOT_SERVING
// for the configured service, and up again on SERVING; an endpoint whose port refuses
// connections is down too.
func TestGRPCHealthCheck(t *testing.T) {
	addr, hs := healthServer(t)
	hs.SetServingStatus("pay", healthpb.HealthCheckResponse_SERVING)
	dead, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	deadAddr := dead.Addr().String()
	require.NoError(t, dead.Close())

	bal, err := balancer.New(balancer.Config{HealthCheck: &balancer.HealthCheck{
		Kind: "grpc", GRPCService: "pay", Interval: 200 * time.Millisecond, Timeout: 150 * time.Millisecond,
		HealthyThreshold: 1, UnhealthyThreshold: 2,
	}})
	require.NoError(t, err)
	defer bal.Close()
	bal.Update([]discovery.Endpoint{{Addr: addr}, {Addr: deadAddr}})
	waitFor(t, "refused endpoint down", func() bool { return !healthyOf(bal, deadAddr) })
	assert.True(t, healthyOf(bal, addr))

	hs.SetServingStatus("pay", healthpb.HealthCheckResponse_NOT_SERVING)
	waitFor(t, "NOT_SERVING endpoint down", func() bool { return !healthyOf(bal, addr) })
	hs.SetServingStatus("pay", healthpb.HealthCheckResponse_SERVING)
	waitFor(t, "SERVING endpoint up", func() bool { return healthyOf(bal, addr) })
	require.NoError(t, bal.Close())
}

// An unknown service is NOT_FOUND: a failed check.
func TestGRPCHealthCheckUnknownService(t *testing.T) {
	addr, _ := healthServer(t)
	bal, err := balancer.New(balancer.Config{HealthCheck: &balancer.HealthCheck{
		Kind: "grpc", GRPCService: "nope", Interval: 200 * time.Millisecond, Timeout: 150 * time.Millisecond,
		UnhealthyThreshold: 1,
	}})
	require.NoError(t, err)
	defer bal.Close()
	bal.Update([]discovery.Endpoint{{Addr: addr}})
	waitFor(t, "down", func() bool { return !healthyOf(bal, addr) })
}
