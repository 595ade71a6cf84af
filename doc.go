// Package proxyless is a service mesh's client- and server-side features as a Go import: no
// sidecar, no extra hop.
//
// A mesh gives services discovery, load balancing, health checks, retries, timeouts, circuit
// breaking, rate limiting, TLS and mTLS, JWT validation, request routing, traffic splitting,
// canary releases, shadowing, fault injection, metrics and tracing by running a proxy beside
// every service. proxyless does the same work inside the process, as packages that a service
// wraps around its own calls:
//
//   - discovery: endpoints of a service by name, from a static set, a Consul catalog
//     (discovery/consul, with blocking queries and registration) or DNS SRV (discovery/dns);
//     watchers fail static, keeping the last good set when their source fails. Consul's
//     discovery chains (routers, splitters, resolvers) become routes and destination
//     policies (consul.WatchChains); discovery/consul/connect joins Consul's service mesh
//     without a sidecar.
//   - balancer: picks an endpoint per attempt (P2C over peak-EWMA latency by default; round
//     robin, weighted, random, least-request, Maglev and ring-hash consistent hashing keyed by
//     hash policies: a header or gRPC metadata, a cookie, a query parameter, the source IP or
//     a context key), zone-aware, with passive outlier ejection, slow start and optional
//     active health checks.
//   - breaker: circuit breakers per endpoint and per destination, on failsafe-go's permit API.
//   - outcome: the one vocabulary of an attempt's result (success, failure, gateway failure,
//     local timeout, throttled, local refusal, canceled, TLS failure), computed once from
//     the HTTP response or the gRPC status, and what the balancer, the breakers, the
//     overload limiters, canary analysis and telemetry each make of it, in one table.
//   - ratelimit: local token buckets, per-key limiters with bounded memory, adaptive
//     concurrency limits (ratelimit/overload), a global limiter on Redis (ratelimit/redis).
//   - tracing: the names of the OpenTelemetry spans and metrics the middleware reports for
//     every decision the library takes (scope, attribute keys, metric names).
//   - route: request matching, weighted splits, canaries, shadowing and fault injection, with
//     configuration reloaded from a file or Consul KV (route/reload).
//   - auth: JWT validation with rotating keys, TLS origination and termination, mTLS
//     peer authorization.
//   - middleware: composes all of the above into an http.RoundTripper (NewTransport), an
//     http.Handler (NewHandler), and gRPC dial and server options.
//
// # The order of composition
//
// On the client, middleware.NewTransport's RoundTrip does, for each request, in this order
// (the order of the code in middleware/transport.go and internal/engine):
//
//  1. route: match the request to a route and its destination (service and subset, a split
//     by weight or a canary);
//  2. discovery: the destination's endpoints (the first request to a service waits for its
//     first set);
//  3. tracing: the request span and metrics;
//  4. route: inject the route's fault, rewrite the request, mirror a copy to a shadow;
//  5. ratelimit: the outbound rate and concurrency limits;
//  6. the attempt engine: the overall timeout, then per attempt: the destination's limits
//     (requests and retries in flight; connections through the dialer) → balancer pick (another
//     endpoint than earlier attempts when there is one) → breaker admit → send (an attempt
//     span) → the result classified once into the outcome vocabulary → feedback to the
//     balancer, the outlier detector and the breaker; a retryable failure is retried after
//     its backoff or Retry-After within the budget and the deadline, and with hedging a
//     further attempt starts each time the hedge delay passes;
//  7. route: canary analysis, the shadow's comparison and response rewrites see the result.
//
// A request names a service by host (http://payments/v1/charges); a host the resolver does not
// know passes through unchanged. gRPC clients get the same cores through
// middleware.NewGRPCClient, whose dial options install a proxyless:/// resolver, balancers with
// the breakers in the picker, and interceptors for retries, hedging, deadlines, limits and
// routes.
//
// On the server, middleware.NewHandler applies, in order: tracing (the incoming trace context
// is continued), mTLS peer authorization, JWT validation (claims go into the context, where
// rate-limit keys and routes can read them), per-key rate limits (429 with Retry-After and
// RateLimit-* headers), the client's deadline (the time left that a proxyless Transport sends,
// capped and trusted as configured) as the request context's, server-side fault injection and
// load shedding. middleware.NewGRPCServer
// does the same for gRPC, and first refuses work whose deadline has already passed.
//
// The core packages (discovery, balancer, breaker, ratelimit, ratelimit/overload, route) do not
// depend on gRPC, Redis, Consul or fsnotify: the adapters that do are packages of their own
// (balancer/grpcbalancer, discovery/grpcresolver, discovery/consul, ratelimit/redis,
// route/reload) or the gRPC interceptors of auth, tracing and middleware, so a program that
// imports a core package alone does not build them (deps_test.go checks it).
//
// The options are typed by the constructors that honour them (TransportOption, GRPCClientOption,
// ClientOption for both clients, HandlerOption, GRPCServerOption, ServerOption for both
// servers, Option for all): an option given to a constructor it does not apply to does not
// compile, and every constructor validates its options and returns an error naming a bad one.
//
// Everything that starts goroutines has an idempotent Close that stops them and waits; the
// request hot path allocates nothing in the pick, the breaker admit and the limiter check, and
// takes no lock in the pick, the admit of a closed breaker and a ratelimit.Local check (a
// ratelimit.Keyed check, which WithRateLimit uses, locks one shard of its keys briefly).
package proxyless
