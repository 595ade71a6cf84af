package middleware

import (
	"errors"
	"net/http"

	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc"

	"github.com/proxyless/proxyless/internal/telemetry"
)

// Test-only exports for the external tests (server_test.go).

// OutboundTransport returns base wrapped as NewTransport wraps its base transport with the
// outbound credentials of opts.
func OutboundTransport(base http.RoundTripper, opts ...TransportOption) (http.RoundTripper, error) {
	cfg, err := newConfig(opts, TransportOption.applyTransport)
	if err != nil {
		return nil, err
	}
	return cfg.creds.wrap(base)
}

// OutboundDialOptions returns the dial options that NewGRPCClient adds for the outbound
// credentials of opts.
func OutboundDialOptions(opts ...GRPCClientOption) ([]grpc.DialOption, error) {
	cfg, err := newConfig(opts, GRPCClientOption.applyGRPCClient)
	if err != nil {
		return nil, err
	}
	if len(cfg.creds.dialOptions()) == 0 {
		return nil, errors.New("no outbound credentials")
	}
	return cfg.creds.dialOptions(), nil
}

// WithGRPCTracerProvider sets the tracer provider of otelgrpc's server stats handler, as
// WithTracerProvider does.
func WithGRPCTracerProvider(tp trace.TracerProvider) GRPCServerOption {
	return grpcServerOption(func(c *config) { c.tel = append(c.tel, telemetry.WithTracerProvider(tp)) })
}
