package middleware

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"slices"

	"go.opentelemetry.io/contrib/instrumentation/google.golang.org/grpc/otelgrpc"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/stats"
)

// grpcConfig holds what the gRPC-only options set; the zero value means every default.
type grpcConfig struct {
	retryCodes  []codes.Code  // nil: codes.Unavailable
	statsSet    bool          // WithGRPCStatsHandler was given
	stats       stats.Handler // the handler it gave; nil for none
	healthCheck *string       // service name for gRPC health checks; nil: none
	// tp and mp are the providers of WithTracerProvider and WithMeterProvider, for otelgrpc's
	// server stats handler (the client's is package tracing's); nil: the global ones.
	tp trace.TracerProvider
	mp metric.MeterProvider
}

// otelOptions configures otelgrpc's server stats handler with the providers of the options,
// and the propagator the HTTP side uses.
func (g *grpcConfig) otelOptions() []otelgrpc.Option {
	o := []otelgrpc.Option{otelgrpc.WithPropagators(meshPropagator{})}
	if g.tp != nil {
		o = append(o, otelgrpc.WithTracerProvider(g.tp))
	}
	if g.mp != nil {
		o = append(o, otelgrpc.WithMeterProvider(g.mp))
	}
	return o
}

// neverRetried are the codes that say the request itself is wrong: sending it again cannot
// help, whatever the configuration says.
var neverRetried = []codes.Code{codes.OK, codes.InvalidArgument, codes.PermissionDenied, codes.Unauthenticated}

// WithGRPCRetryCodes sets the status codes on which NewGRPCClient's interceptors retry a call.
// Default: codes.Unavailable alone (which also covers connection errors). DEADLINE_EXCEEDED
// is retried only when listed, and only a per-attempt timeout (WithAttemptTimeout) can cause
// one that leaves time for a retry. INVALID_ARGUMENT, PERMISSION_DENIED and UNAUTHENTICATED
// are never retried: listing them is an error. RESOURCE_EXHAUSTED, when listed, is retried
// after the server's grpc-retry-pushback-ms.
//
// Taken by NewGRPCClient (HTTP retries are on RetryPolicy.Statuses).
func WithGRPCRetryCodes(cs ...codes.Code) GRPCClientOption {
	return grpcClientOption(func(c *config) {
		if len(cs) == 0 {
			c.errs = append(c.errs, errors.New("middleware: WithGRPCRetryCodes: no codes (use WithRetry(RetryPolicy{Disable: true}) to turn retries off)"))
			return
		}
		for _, code := range cs {
			if slices.Contains(neverRetried, code) || code > codes.Unauthenticated {
				c.errs = append(c.errs, fmt.Errorf("middleware: WithGRPCRetryCodes: %v is never retried", code))
				return
			}
		}
		c.grpc.retryCodes = slices.Clone(cs)
	})
}

// WithGRPCStatsHandler sets the stats handler NewGRPCClient (or NewGRPCServer) installs, in
// place of otelgrpc's client handler, to whose spans proxyless adds the facts of each attempt
// (or otelgrpc's server handler). Those report to the providers of WithTracerProvider and
// WithMeterProvider, the global ones by default. nil installs none. Without proxyless's client
// handler, calls still get their request spans and proxyless.* metrics, but their attempts
// get no spans.
//
// Taken by NewGRPCClient and NewGRPCServer.
func WithGRPCStatsHandler(h stats.Handler) GRPCOption {
	return grpcOption(func(c *config) { c.grpc.statsSet, c.grpc.stats = true, h })
}

// WithGRPCHealthCheck turns on gRPC's client-side health checking with the standard health
// service (grpc.health.v1.Health/Watch) for service ("" for the server as a whole): an
// endpoint that does not report SERVING gets no calls until it does. Default: off.
//
// Taken by NewGRPCClient. (An HTTP client's health checks are balancer.Config.HealthCheck.)
func WithGRPCHealthCheck(service string) GRPCClientOption {
	return grpcClientOption(func(c *config) { c.grpc.healthCheck = &service })
}

// defaultPropagator is what package tracing uses while the application has set no
// propagator: W3C trace context and baggage. otelgrpc on its own would use the global
// propagator, which propagates nothing until one is set.
var defaultPropagator = propagation.NewCompositeTextMapPropagator(propagation.TraceContext{}, propagation.Baggage{})

// meshPropagator resolves the propagator at each use, as package tracing does: the global
// one once the application has set it, defaultPropagator until then.
type meshPropagator struct{}

func (meshPropagator) get() propagation.TextMapPropagator {
	g := otel.GetTextMapPropagator()
	t := reflect.TypeOf(g)
	if t != nil && t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if t == nil || t.PkgPath() == "go.opentelemetry.io/otel/internal/global" {
		return defaultPropagator
	}
	return g
}

func (p meshPropagator) Inject(ctx context.Context, c propagation.TextMapCarrier) {
	p.get().Inject(ctx, c)
}

func (p meshPropagator) Extract(ctx context.Context, c propagation.TextMapCarrier) context.Context {
	return p.get().Extract(ctx, c)
}

func (p meshPropagator) Fields() []string { return p.get().Fields() }
