// Package grpcbalancer is the gRPC adapter of package balancer: gRPC load-balancing policies
// that run the same cores as the HTTP transport (the pickers, zone-aware routing, passive
// outlier ejection, slow start, Retry-After steering) with a circuit breaker per endpoint in
// the picker, so that a gRPC channel and an http.Client of one process balance alike.
//
// The policies are registered with gRPC under [Name] ("proxyless", whose config names the
// policy) and under one name per policy ("proxyless_round_robin", ...; see [PolicyName]), and
// are selected through the service config:
//
//	{"loadBalancingConfig": [{"proxyless": {"balancer": {"policy": "peak_ewma"}}}]}
//
// Each endpoint is a pick_first child of gRPC's endpointsharding policy; the core picks among
// the endpoints whose connection is READY. An RPC that fails with UNAVAILABLE,
// DEADLINE_EXCEEDED from the server, or a connection error counts against its endpoint (an
// Envoy gateway failure); INTERNAL, UNKNOWN and DATA_LOSS are plain failures; other codes are
// answers. RESOURCE_EXHAUSTED counts for nothing but steers picks away from the endpoint for
// the server's grpc-retry-pushback-ms, or [DefaultSteer] without one. A pick that every
// endpoint's breaker refuses fails with status Unavailable and an error matching
// breaker.ErrOpen; [BreakerOutcome] classifies gRPC results for a breaker used on its own.
//
// With a consistent-hashing policy (maglev, ring_hash), the picker hashes each RPC on the
// config's Balancer.HashPolicy ([HashKey]: outgoing metadata as gRFC A60's request hash
// header, the source IP of the call being served, or balancer.WithHashKey's context key),
// unless the call's interceptor set a key on its [Call] ([Call.SetHashKey], for a route's own
// hash policies):
//
//	{"loadBalancingConfig": [{"proxyless": {"balancer": {"policy": "ring_hash", "hashPolicy": [{"metadata": "x-user"}]}}}]}
//
// The interceptors of package middleware talk to the picker through an [Attempt] in the RPC's
// context: the picker avoids the endpoints earlier attempts of the same call used, and records
// the endpoint it picked, a refusal it made (and whether a breaker refused it), and the
// server's pushback; an [Observer] set on the Attempt (telemetry) hears of each pick and each
// breaker refusal as it happens. A [Monitor] attached to a channel's resolver state
// ([WithMonitor]) describes the channel's endpoints and breakers and counts breaker openings
// and ejections, for a client's status page.
//
// Importing the package also registers the "grpc" kind of balancer.HealthCheck
// ([NewHealthProber]): active health checks by grpc.health.v1, for the balancers of any
// client, an HTTP Transport's included.
package grpcbalancer
