package middleware

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	_ "google.golang.org/grpc/health" // registers the client-side health check for WithGRPCHealthCheck
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/proxyless/proxyless/balancer"
	"github.com/proxyless/proxyless/balancer/grpcbalancer"
	"github.com/proxyless/proxyless/discovery"
	"github.com/proxyless/proxyless/discovery/grpcresolver"
	"github.com/proxyless/proxyless/internal/backoff"
	"github.com/proxyless/proxyless/internal/engine"
	"github.com/proxyless/proxyless/internal/latency"
	"github.com/proxyless/proxyless/internal/telemetry"
	"github.com/proxyless/proxyless/outcome"
	"github.com/proxyless/proxyless/ratelimit"
	"github.com/proxyless/proxyless/route"
	"github.com/proxyless/proxyless/tracing"
)

// GRPCClient makes gRPC channels mesh clients: see [NewGRPCClient]. Its channels share its
// retry budget, its outbound limits and its counters. It is safe for concurrent use.
type GRPCClient struct {
	c     *grpcClient
	dopts []grpc.DialOption     // immutable
	mon   *grpcbalancer.Monitor // hears from the policies of the channels
	once  sync.Once
	err   error // Close's
}

// NewGRPCClient returns a gRPC client of the services r knows, configured by opts. Its
// DialOptions make a channel a mesh client; NewClient makes one:
//
//	gc, err := middleware.NewGRPCClient(r, opts...)
//	...
//	defer gc.Close()
//	conn, err := gc.NewClient("payments", grpc.WithTransportCredentials(creds))
//
// It takes the options of type GRPCClientOption: ClientOption (shared with NewTransport),
// GRPCOption and Option; a server option does not compile here. It validates every option
// and returns an error naming the bad ones; it also refuses the HTTP-only settings of shared
// configurations (balancer.Config.HealthCheck, RetryPolicy.Statuses and RetryNonIdempotent),
// which a gRPC client could not honour.
//
// The dial options install, in this order:
//
//   - a resolver for the scheme "proxyless" (package grpcresolver) that follows the service
//     through r, failing static;
//   - a default service config selecting the "proxyless" balancer (package grpcbalancer),
//     configured by WithBalancer and WithBreaker (or WithoutBreaker): the balancer cores and
//     per-endpoint breakers of the HTTP transport, in the picker; WithGRPCHealthCheck adds
//     gRPC health checking;
//   - grpc.WithDisableRetry, and unary and stream interceptors that apply, per call: the
//     outbound limits (WithConcurrencyLimit, then WithRateLimit or WithRateLimiter, keyed by
//     the target's service name), the overall timeout (WithTimeout), retries (WithRetry,
//     WithGRPCRetryCodes) within the retry budget, each to another endpoint, hedging of unary
//     calls (WithHedge), and per-attempt timeouts (WithAttemptTimeout);
//   - a client stats handler that runs otelgrpc's (see WithGRPCStatsHandler) with the
//     providers of WithTracerProvider and WithMeterProvider.
//
// With WithRoutes, each call is looked up in the route table by its full method name
// ("/package.Service/Method", which Match.GRPC matches), its outgoing metadata (which
// Match.Headers matches, under lower-case keys) and, as its host, the service the channel's
// target names. A matching route applies, before the call is sent, its fault (a delay that
// ends early when the call's context does, then an abort: the configured gRPC code, and a
// *route.AbortError for errors.As, without an attempt), and its overrides of the timeout,
// the attempt timeout, retries (Disable, MaxRetries, BackoffBase, BackoffMax) and hedging
// (Disable, Delay, MaxHedges). A route whose destination (Destination, a Split arm or a
// Canary side) is another service or a subset sends the call (or stream) on a channel the
// client dials itself for that destination, with the resolver, balancer, breakers and
// telemetry of its own channels and the dial options the first NewClient was given (its
// transport credentials), or WithTLS's; without either, such a call fails with
// FAILED_PRECONDITION. Unary calls are reported to the route's canary analysis. Shadowing,
// header and path rewrites and the HTTP-only retry settings (Statuses, RetryNonIdempotent)
// are not carried out. Close closes the channels the client dialled.
//
// Transport credentials are the caller's to add (or WithTLS's). NewGRPCClient starts nothing:
// each channel's resolver and balancer stop with ClientConn.Close.
//
// # Telemetry
//
// As for HTTP (see NewTransport), each logical call and each stream gets an INTERNAL span,
// named after the method ("package.Service/Method"), with the outcome, the number of attempts
// and the endpoint that answered, and each attempt (first, retry or hedge) is otelgrpc's
// CLIENT span, a child of it, to which proxyless adds the endpoint picked, the attempt number
// and kind, the breaker state and, for unary calls made in several attempts, which attempt won
// and which were discarded. otelgrpc injects the W3C trace context. The metrics are those of
// the HTTP transport: proxyless.client.request.duration, proxyless.client.attempts, retries,
// hedges, hedge wins, retry budget and breaker refusals. While the providers are no-ops,
// none of this runs.
//
// # Retries
//
// Only the interceptors retry. gRPC's own retries (a retryPolicy in the service config) are
// turned off with grpc.WithDisableRetry, so that a service config pushed by a resolver cannot
// multiply our attempts by its own. What remains of gRPC's is its transparent retry of an RPC
// that never left the client or that the server never processed (a GOAWAY race), once; that
// cannot add load on a server. A call is retried when its status code is one of the retry
// codes (UNAVAILABLE by default), no response headers or messages arrived, its context is
// live, the retry budget has room and the server's grpc-retry-pushback-ms, if any, allows it
// (a negative or malformed value forbids the retry, a wait longer than
// RetryPolicy.MaxRetryAfter ends the call); otherwise after exponential backoff with full
// jitter. Local refusals (every breaker open, no endpoints, an outbound limit) are not
// retried. RetryPolicy.RetryNonIdempotent and Statuses are HTTP settings: gRPC calls are
// retried whatever their method, since the retry codes say the server did not do the work.
//
// # Errors
//
// Errors made locally carry a gRPC status and match their sentinel with errors.Is: an open
// breaker on every endpoint is Unavailable and matches breaker.ErrOpen; no endpoints is
// Unavailable and matches balancer.ErrNoEndpoints; an outbound limit is ResourceExhausted and
// matches ratelimit.ErrLimited; a call whose context is already done is refused without an
// attempt with DeadlineExceeded or Canceled, matching the context's error.
func NewGRPCClient(r discovery.Resolver, opts ...GRPCClientOption) (*GRPCClient, error) {
	c, err := newGRPCClient(opts)
	if err != nil {
		return nil, err
	}
	if r == nil && c.cfg.mesh != nil { // WithMesh: mesh.go
		r = c.cfg.resolver
	}
	if r == nil {
		return nil, errors.New("middleware: NewGRPCClient: resolver is nil")
	}
	if err := checkRoutedServices(c.cfg.routes, r); err != nil { // servicecheck.go
		return nil, err
	}
	mon := grpcbalancer.NewMonitor()
	dopts := []grpc.DialOption{
		grpc.WithResolvers(grpcresolver.NewBuilder(r, grpcresolver.WithAttributes(grpcbalancer.WithMonitor(nil, mon)))),
		grpc.WithDefaultServiceConfig(c.serviceConfig),
		grpc.WithDisableRetry(),
		grpc.WithChainUnaryInterceptor(c.unary),
		grpc.WithChainStreamInterceptor(c.stream),
	}
	if o := c.statsOption(); o != nil {
		dopts = append(dopts, o)
	}
	dopts = append(dopts, c.cfg.creds.dialOptions()...) // WithCredentials, WithTLS: auth.go
	// Routed channels (grpc_routed.go) get the same, but the interceptors and the resolver.
	base := []grpc.DialOption{grpc.WithDefaultServiceConfig(c.serviceConfig), grpc.WithDisableRetry()}
	if o := c.statsOption(); o != nil {
		base = append(base, o)
	}
	c.routed = &routedChannels{r: r, mon: mon, base: append(base, c.cfg.creds.dialOptions()...)}
	return &GRPCClient{c: c, dopts: dopts, mon: mon}, nil
}

// DialOptions returns the options that make a channel a mesh client, for grpc.NewClient
// with a "proxyless:///service" target. Each call returns a new slice; add to it the
// channel's own options (transport credentials, unless WithTLS set them).
func (g *GRPCClient) DialOptions() []grpc.DialOption { return slices.Clone(g.dopts) }

// NewClient returns grpc.NewClient(target, DialOptions() + extra...). A target without a
// scheme names a service: "payments" is "proxyless:///payments". The caller closes the
// ClientConn.
func (g *GRPCClient) NewClient(target string, extra ...grpc.DialOption) (*grpc.ClientConn, error) {
	if !strings.Contains(target, "://") {
		target = grpcresolver.Scheme + ":///" + target
	}
	g.c.routed.remember(extra) // routed channels are dialled with the same credentials
	return grpc.NewClient(target, append(g.DialOptions(), extra...)...)
}

// Close releases what the client holds: its telemetry's registrations. Close the channels
// first: calls made afterwards still run, with telemetry that no longer reports the client's
// state. It is idempotent.
func (g *GRPCClient) Close() error {
	g.once.Do(func() { g.err = errors.Join(g.c.routed.close(), g.c.tel.Close()) })
	return g.err
}

// grpcClient is the state a GRPCClient's channels share. It is immutable but for the budget,
// the counters and the cache of route policies.
type grpcClient struct {
	cfg           *config
	pol           policies // the client's own; routes override them per call
	bud           *engine.Budget
	stats         engine.Stats
	retryCodes    [codes.Unauthenticated + 1]bool
	serviceConfig string
	routed        *routedChannels      // channels to the destinations routes choose: grpc_routed.go
	routePol      routeOverrides       // merged per-route policies, when routed
	fallbacks     atomic.Int64         // calls sent to their route's fallback: grpc_fallback.go
	tel           *telemetry.Telemetry // spans and metrics; nil after an invalid option
	dest          atomic.Pointer[grpcDestination]
	latency       sync.Map     // channel target → *latency.Histogram, for quantile hedging
	limits        grpcLimits   // WithLimits: grpc_limits.go
	overflows     atomic.Int64 // refusals of the destinations' limits
}

// grpcDestination is the telemetry handle of the service a channel's target names, kept for
// the channel that used it last (typically the only one).
type grpcDestination struct {
	target string
	d      *telemetry.Destination
}

// destination returns the telemetry handle of the service cc's target names.
func (c *grpcClient) destination(cc *grpc.ClientConn) *telemetry.Destination {
	target := cc.Target()
	if d := c.dest.Load(); d != nil && d.target == target {
		return d.d
	}
	d := &grpcDestination{target: target, d: c.tel.Destination(serviceOf(target))}
	c.dest.Store(d)
	return d.d
}

var _ grpcbalancer.Observer = (*telemetry.Attempt)(nil)

func newGRPCClient(opts []GRPCClientOption) (*grpcClient, error) {
	cfg, err := newConfig(opts, GRPCClientOption.applyGRPCClient)
	if err != nil {
		return nil, err
	}
	var errs []error
	if cfg.balancer.HealthCheck != nil {
		errs = append(errs, errors.New("middleware: WithBalancer: HealthCheck runs in an HTTP Transport's balancers, not a gRPC client's; use WithGRPCHealthCheck"))
	}
	for _, f := range cfg.retryHTTP {
		errs = append(errs, fmt.Errorf("middleware: WithRetry: RetryPolicy.%s is an HTTP setting; a gRPC call is retried on the codes of WithGRPCRetryCodes", f))
	}
	if err := checkGRPCLimits(cfg.balancer.Limits); err != nil {
		errs = append(errs, err)
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	c := &grpcClient{cfg: cfg, bud: engine.NewBudget(cfg.retry.BudgetRatio, cfg.retry.MinRetriesPerSecond)}
	c.limits.lim = cfg.balancer.Limits
	c.pol = newPolicies(cfg.retry, cfg.hedge, cfg.timeout, cfg.attemptTO)
	codesList := cfg.grpc.retryCodes
	if codesList == nil {
		codesList = []codes.Code{codes.Unavailable}
	}
	for _, code := range codesList {
		c.retryCodes[code] = true
	}
	if c.serviceConfig, err = grpcServiceConfig(cfg); err != nil {
		return nil, err
	}
	telOpts := cfg.tel
	if st := limitState(cfg); st != nil { // telemetry.go
		telOpts = append(telOpts[:len(telOpts):len(telOpts)], st)
	}
	if c.tel, err = telemetry.New(telOpts...); err != nil {
		return nil, fmt.Errorf("middleware: telemetry: %w", err)
	}
	return c, nil
}

// attemptDone counts attempt a once it is over: as sent when the picker gave it an endpoint,
// and as one breaker refusal when a breaker refused it, however many did; refused says so.
func (c *grpcClient) attemptDone(a *grpcbalancer.Attempt) (refused bool) {
	if a.Endpoint() != "" {
		c.stats.Attempts.Add(1)
	}
	if a.BreakerRefused() {
		c.stats.BreakerRefusals.Add(1)
		return true
	}
	return false
}

// budgetRefused counts a retry or hedge the budget refused, in the stats and telemetry.
func (c *grpcClient) budgetRefused(tr *telemetry.Request, kind tracing.AttemptKind) {
	c.stats.BudgetRefusals.Add(1)
	tr.BudgetRefused(kind)
}

// grpcServiceConfig returns the default service config for cfg.
func grpcServiceConfig(cfg *config) (string, error) {
	lb := grpcbalancer.Config{Balancer: cfg.balancer, Breaker: cfg.breaker, DisableBreaker: cfg.breakerOff}
	// HTTP health checks cannot probe a gRPC server; WithGRPCHealthCheck is the gRPC way.
	lb.Balancer.HealthCheck = nil
	lb.Balancer.Limits = balancer.Limits{} // the client's interceptors enforce them: grpc_limits.go
	if err := lb.Validate(); err != nil {
		return "", fmt.Errorf("middleware: WithBalancer or WithBreaker: %w", err)
	}
	sc := map[string]any{"loadBalancingConfig": []map[string]grpcbalancer.Config{{grpcbalancer.Name: lb}}}
	if hc := cfg.grpc.healthCheck; hc != nil {
		sc["healthCheckConfig"] = map[string]string{"serviceName": *hc}
	}
	b, err := json.Marshal(sc)
	if err != nil {
		return "", fmt.Errorf("middleware: service config: %w", err)
	}
	return string(b), nil
}

func (c *grpcClient) statsOption() grpc.DialOption {
	if c.cfg.grpc.statsSet {
		if c.cfg.grpc.stats == nil {
			return nil
		}
		return grpc.WithStatsHandler(c.cfg.grpc.stats)
	}
	if !c.tel.Enabled() {
		return nil // nothing to record: no handler on the RPC path
	}
	return grpc.WithStatsHandler(c.tel.ClientHandler())
}

// contextError is a call refused because its context was already done: it matches the
// context's error with errors.Is and carries the matching status.
type contextError struct{ err error }

func (e *contextError) Error() string { return "middleware: call not sent: " + e.err.Error() }
func (e *contextError) Unwrap() error { return e.err }
func (e *contextError) GRPCStatus() *status.Status {
	return status.New(status.FromContextError(e.err).Code(), e.Error())
}

// abortError is a route's injected abort on a gRPC path: status GRPCCode, unwrapping to the
// *route.AbortError (which matches route.ErrAborted).
type abortError struct{ err *route.AbortError }

func (e *abortError) Error() string { return e.err.Error() }
func (e *abortError) Unwrap() error { return e.err }
func (e *abortError) GRPCStatus() *status.Status {
	return status.New(codes.Code(e.err.GRPCCode), "route: injected abort")
}

// limitError is a call refused by an outbound or inbound limit: ResourceExhausted, matching
// ratelimit.ErrLimited.
type limitError struct{ err error }

func (e *limitError) Error() string { return e.err.Error() }
func (e *limitError) Unwrap() error { return e.err }
func (e *limitError) GRPCStatus() *status.Status {
	return status.New(codes.ResourceExhausted, e.err.Error())
}

// expired returns a contextError when ctx is done or its deadline has passed.
func expired(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return &contextError{err: err}
	}
	if d, ok := ctx.Deadline(); ok && !time.Now().Before(d) {
		return &contextError{err: context.DeadlineExceeded}
	}
	return nil
}

// serviceOf returns the service a channel's target names: "payments" for
// "proxyless:///payments", else the target itself.
func serviceOf(target string) string {
	if i := strings.Index(target, ":///"); i >= 0 {
		return target[i+4:]
	}
	return target
}

// admit applies the outbound limits to a call. On success the caller must call the returned
// function (when not nil) with the outcome of the call.
func (c *grpcClient) admit(ctx context.Context, target string) (func(outcome.Kind), error) {
	o := c.cfg.outbound
	if o == nil {
		return nil, nil
	}
	service := serviceOf(target)
	release, kind, err := o.acquire(ctx, service)
	if err != nil {
		return nil, grpcRefusal(kind, service, err)
	}
	if release == nil {
		return nil, nil
	}
	return func(k outcome.Kind) { release(k.Overload()) }, nil
}

func grpcRefusal(kind, service string, err error) error {
	if !errors.Is(err, ratelimit.ErrLimited) {
		return &contextError{err: err}
	}
	return &limitError{err: fmt.Errorf("middleware: outbound %s limit for %s: %w", kind, service, err)}
}

// grpcRoute is what a call's route decided.
type grpcRoute struct {
	pol      *policies        // the client's, or the route's overrides merged into them
	cc       *grpc.ClientConn // the routed channel when the route sends the call elsewhere; nil: the call's own
	dec      route.Decision   // for canary analysis
	matched  bool
	fellBack bool // sent to the route's fallback: grpc_fallback.go
	start    time.Time
}

// done reports a unary call's outcome to the canary analysis of its route, as the outcome
// table says (outcome.Kind.CanaryFailed).
func (r *grpcRoute) done(k outcome.Kind) {
	if !r.matched {
		return
	}
	if r.fellBack { // the side chosen refused the call: its failure, whatever the fallback did
		r.dec.Done(route.Outcome{Latency: time.Since(r.start), Failed: true})
	} else if failed, counted := k.CanaryFailed(); counted {
		r.dec.Done(route.Outcome{Latency: time.Since(r.start), Failed: failed})
	}
}

// route looks a call up in the route table and applies what a matching route does before the
// call is sent: it chooses the destination (a service, a subset, a split arm or a canary
// side), sending the call on a channel the client dials for it when that is not the call's
// own channel's service; then it applies the route's fault, a delay that ends early when ctx
// does (a contextError), then an abort (an abortError, with the configured code). The route
// matched becomes an attribute of the call's span (tr, nil without telemetry).
func (c *grpcClient) route(ctx context.Context, method string, cc *grpc.ClientConn, tr *telemetry.Request) (grpcRoute, error) {
	md, _ := metadata.FromOutgoingContext(ctx)
	rq := route.Request{
		Host:       serviceOf(cc.Target()),
		Method:     http.MethodPost,
		Path:       method,
		GRPCMethod: method,
		Metadata:   md,
	}
	fillCaller(ctx, &rq) // route_caller.go
	dec, ok := c.cfg.routes.Lookup(&rq)
	if !ok {
		return grpcRoute{pol: &c.pol}, nil
	}
	rt := dec.Route
	r := grpcRoute{dec: dec, matched: true, start: time.Now()}
	split := ""
	if d := dec.Destination; d != nil {
		split = d.Key()
		if d.Service != rq.Host || !d.Subset.IsZero() {
			conn, err := c.routed.conn(rt.Name(), d, c.cfg.creds.tls != nil || c.cfg.creds.mesh != nil)
			if err != nil {
				return grpcRoute{}, err
			}
			r.cc = conn
		}
	}
	tr.Route(rt.Name(), split)
	if f := rt.Fault(); f != nil {
		delay, abort := f.Sample()
		if delay > 0 && !backoff.Sleep(ctx, delay) {
			return grpcRoute{}, &contextError{err: ctx.Err()}
		}
		if abort != nil {
			return grpcRoute{}, &abortError{err: abort}
		}
	}
	r.pol = c.routePol.get(c.cfg.routes, rt, &c.pol, false, c.cfg.logger)
	return r, nil
}

// latencyFor returns the latency history of the service cc's target names when pol hedges
// after a quantile of it, else nil.
func (c *grpcClient) latencyFor(cc *grpc.ClientConn, pol *policies) *latency.Histogram {
	if !pol.hedge.enabled || pol.hedge.Quantile == 0 {
		return nil
	}
	target := cc.Target()
	if h, ok := c.latency.Load(target); ok {
		return h.(*latency.Histogram)
	}
	h, _ := c.latency.LoadOrStore(target, new(latency.Histogram))
	return h.(*latency.Histogram)
}

var (
	_ StatusSource = (*GRPCClient)(nil)
	_ RouteSource  = (*GRPCClient)(nil)
)

// Stats returns the client's counters, over all its channels: Requests counts calls and
// streams sent (not those refused before their first attempt: an outbound limit, a route's
// fault); Attempts those the picker sent to an endpoint; BreakerRefusals the attempts that a
// breaker refused (however many endpoints' breakers did); BreakerOpens and Ejections come
// from the channels' balancers.
func (g *GRPCClient) Stats() Stats {
	st := statsOf(&g.c.stats, g.c.bud)
	st.BreakerOpens, st.Ejections = g.mon.BreakerOpens(), int64(g.mon.Ejections())
	st.Overflows = g.c.overflows.Load()
	st.Fallbacks = g.c.fallbacks.Load()
	return st
}

// Destinations describes each open channel built with the client's options, by the service
// its target names: the endpoints its balancer holds (those whose connection is READY) with
// their balancer and breaker state, and its ejections. Two channels to one service are two
// entries. It is meant for status pages and tests, not the request path.
func (g *GRPCClient) Destinations() []DestinationStatus {
	chans := g.mon.Channels()
	out := make([]DestinationStatus, 0, len(chans))
	for _, ch := range chans {
		ds := DestinationStatus{Service: ch.Service, Ejections: ch.Ejections}
		for _, e := range ch.Endpoints {
			ds.Endpoints = append(ds.Endpoints, EndpointStatus{EndpointStats: e.EndpointStats, HasBreaker: e.HasBreaker, Breaker: e.Breaker})
		}
		out = append(out, ds)
	}
	return out
}

// Router returns the router given to [WithRoutes], or nil when calls are not routed.
// [StatusHandler] shows its table.
func (g *GRPCClient) Router() *route.Router { return g.c.cfg.routes }
