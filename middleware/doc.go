// Package middleware composes proxyless's packages into what a service plugs in: an
// http.RoundTripper for clients (NewTransport), an http.Handler for servers (NewHandler), gRPC
// dial options for clients (NewGRPCClient) and server options for servers (NewGRPCServer), and
// an admin page over the clients (StatusHandler). It is the only package that composes the
// others; see the root package's documentation for the order in which it applies them.
//
// # Options
//
// As grpc-go splits DialOption from ServerOption, the options are typed by the constructors
// that honour them, so that an option given to a constructor that would ignore it does not
// compile:
//
//	TransportOption   NewTransport                 WithResolver, WithShadowLimit, WithMaxDestinations, WithDestinationIdleTimeout,
//	                                               WithStreamIdleTimeout, WithConfig
//	GRPCClientOption  NewGRPCClient                WithTLS, WithGRPCRetryCodes, WithGRPCHealthCheck
//	ClientOption      both clients                 WithBalancer, WithBreaker, WithoutBreaker,
//	                                               WithRetry, WithTimeout, WithAttemptTimeout,
//	                                               WithHedge, WithLogger, WithRateLimit,
//	                                               WithRateLimiter, WithConcurrencyLimit,
//	                                               WithCredentials, WithRoutes
//	HandlerOption     NewHandler, NewGateway       WithMaxServerDeadline, WithDeadlineTrust, WithCORS, WithMaxRequestBody,
//	                                               WithEdgeRoutes, WithConsumers
//	GRPCServerOption  NewGRPCServer                (only the shared types below)
//	ServerOption      both servers                 WithJWT, WithPeerAuthorization,
//	                                               WithServerRateLimit, WithServerFaults,
//	                                               WithLoadShedding
//	GRPCOption        NewGRPCClient, NewGRPCServer WithGRPCStatsHandler
//	Option            every constructor            WithTracerProvider, WithMeterProvider, WithMesh
//
// A ClientOption is a TransportOption and a GRPCClientOption; a ServerOption a HandlerOption
// and a GRPCServerOption; an Option all four. Each constructor validates its options and
// returns an error naming a bad one; options never panic.
//
// WithConfig takes a Config: a Document of routes and of each destination's policies
// (balancer, breaker, retry, hedge, timeouts, limits), which route/reload keeps in step with a
// file or a Consul key; the Transport applies each new one to new requests.
//
// NewGateway (and NewReverseProxy) put NewHandler's stages, the edge ones included, in front
// of an httputil.ReverseProxy over a Transport: an edge gateway whose upstreams are the mesh's
// services.
//
// One WithServerRateLimit serves both servers: its KeyFunc reads an HTTP request and a gRPC
// call alike through Incoming (KeyByClientIP, KeyByHeader, KeyBySubject).
//
// # Consistent hashing
//
// A client whose balancer hashes (WithBalancer with balancer.PolicyMaglev or
// balancer.PolicyRingHash) makes each request's hash key from the hash policies of the route
// that matched it (route.RouteConfig.HashPolicy), when it has any, else from those of its
// balancer.Config.HashPolicy: a header (a gRPC call's metadata), a cookie or query parameter
// (HTTP only; NewGRPCClient refuses them in its balancer config), the source IP, or a key the
// application put in the context with balancer.WithHashKey. The key picks an endpoint within
// the destination, sticking a key to one endpoint while the endpoint set stays; an ejected,
// unhealthy or breaker-open endpoint is passed over for the next one of the table or ring. A
// request without a key is balanced at random. The source IP of an outbound HTTP request is
// its RemoteAddr when set (a server request forwarded as it came) or else the peer of the
// gRPC call being served in its context; a request made with a fresh context while serving an
// HTTP request has none (put the address in the context with balancer.WithHashKey). The key
// steers nothing else: not the route, split, canary side, fault or limit; but a caller who
// sets the hashed header, cookie or parameter can send all its requests to one endpoint, so
// hash on values the caller cannot choose freely where that matters (see balancer.HashPolicy).
//
// # Telemetry
//
// Every constructor takes its OpenTelemetry providers once, when it runs: those of
// WithTracerProvider and WithMeterProvider, else the global ones as they are then. An SDK
// installed globally afterwards is not seen: install it first, or pass its providers. Providers
// that record nothing (the trace/noop and metric/noop packages', or the global ones before an
// SDK is installed) turn telemetry off at almost no cost. Spans and metrics report each
// attempt's outcome in the vocabulary of package outcome.
package middleware
