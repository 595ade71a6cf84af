package middleware

import (
	"errors"
	"fmt"
	"slices"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/stats"
)

// grpcConfig holds what the gRPC-only options set; the zero value means every default.
type grpcConfig struct {
	retryCodes  []codes.Code  // nil: codes.Unavailable
	statsSet    bool          // WithGRPCStatsHandler was given
	stats       stats.Handler // the handler it gave; nil for none
	healthCheck *string       // service name for gRPC health checks; nil: none
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
// WithMeterProvider, by default the global ones as they are when the constructor runs, and
// are not installed while both record nothing. nil installs none. Without proxyless's client
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
