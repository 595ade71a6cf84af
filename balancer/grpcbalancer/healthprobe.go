package grpcbalancer

import (
	"context"
	"crypto/tls"
	"fmt"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/proxyless/proxyless/balancer"
)

// Importing this package makes "grpc" (balancer.HealthCheckGRPC) a balancer.HealthCheck
// kind: see NewHealthProber.
func init() { balancer.RegisterProber(balancer.HealthCheckGRPC, NewHealthProber) }

// maxHealthResponse bounds the size of a health check's answer (a status: a few bytes).
const maxHealthResponse = 1 << 10

// NewHealthProber returns the prober of gRPC health checks, registered as the "grpc" kind of
// balancer.HealthCheck: each probe connects to the endpoint (TLS with the system's roots when
// hc.Scheme is "https", else plaintext), calls grpc.health.v1.Health/Check for
// hc.GRPCService, and passes when the answer is SERVING. Each probe has a connection of its
// own, closed when the probe ends.
func NewHealthProber(hc balancer.HealthCheck) (balancer.Prober, error) {
	p := &healthProber{service: hc.GRPCService, creds: insecure.NewCredentials()}
	if hc.Scheme == "https" {
		p.creds = credentials.NewTLS(&tls.Config{MinVersion: tls.VersionTLS12})
	}
	return p, nil
}

type healthProber struct {
	service string                           // immutable
	creds   credentials.TransportCredentials // immutable
}

func (p *healthProber) Probe(ctx context.Context, addr string) error {
	cc, err := grpc.NewClient("passthrough:///"+addr,
		grpc.WithTransportCredentials(p.creds),
		grpc.WithUserAgent("proxyless-healthcheck"),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(maxHealthResponse)))
	if err != nil {
		return err
	}
	defer cc.Close()
	resp, err := healthpb.NewHealthClient(cc).Check(ctx, &healthpb.HealthCheckRequest{Service: p.service})
	if err != nil {
		return err
	}
	if s := resp.GetStatus(); s != healthpb.HealthCheckResponse_SERVING {
		return fmt.Errorf("grpcbalancer: health check of %s: %s", addr, s)
	}
	return nil
}

func (p *healthProber) Close() error { return nil }
