package middleware

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/proxyless/proxyless/balancer"
	"github.com/proxyless/proxyless/breaker"
	"github.com/proxyless/proxyless/discovery"
	"github.com/proxyless/proxyless/internal/engine"
	"github.com/proxyless/proxyless/internal/latency"
	"github.com/proxyless/proxyless/internal/telemetry"
	"github.com/proxyless/proxyless/outcome"
	"github.com/proxyless/proxyless/route"
)

// TimeoutHeader carries, on every attempt whose request has a deadline (the caller's
// context's, or the overall timeout's: WithTimeout, a route's timeout), the whole
// milliseconds left before it (1 to 8 decimal digits), so that the server can give up when
// the client will have: NewHandler makes it the request context's deadline. The attempt
// timeout is not in it, since it bounds only the wait for the response headers. A request
// without a deadline is sent without the header, even if its caller set one.
const TimeoutHeader = "X-Proxyless-Timeout-Ms"

// Transport is an http.RoundTripper that makes an http.Client a mesh client: the host of a
// request URL names a service, each attempt goes to an endpoint the balancer picks and its
// breaker admits, failed attempts are retried within a budget, and outcomes feed back into
// the balancer and the breakers.
//
// Which hosts are services: a host that is a single DNS label with no port (http://payments/)
// is looked up through the resolver; hosts with dots, ports or IP addresses, and names the
// resolver refuses with discovery.ErrUnknownService (as discovery.Static does for names it
// does not know), pass through to the base transport unchanged. A Consul resolver knows no
// such refusal: there, every single-label host is treated as a service (an unknown one has
// no endpoints), so address other hosts by a dotted name or with a port.
//
// Create it with [NewTransport]; the zero value is not usable. A Transport is safe for
// concurrent use and meant to be built once and shared. It follows each service it has seen
// in a goroutine: Close stops them.
type Transport struct {
	base  http.RoundTripper // the caller's, wrapped by telemetry (otelhttp's span per attempt)
	cfg   *config           // immutable
	cache *discovery.Cache
	bud   *engine.Budget

	mu     sync.Mutex                              // serialises writers of dests
	dests  atomic.Pointer[map[string]*destination] // copy-on-write; read without mu
	closed atomic.Bool                             // set once, under mu, by Close
	wg     sync.WaitGroup
	stop   chan struct{}

	stats        engine.Stats
	breakerOpens atomic.Int64
	overflows    atomic.Int64   // refusals of the destinations' limits (WithLimits)
	fallbacks    atomic.Int64   // requests sent to their route's fallback: fallback.go
	shadow       shadowCounters // the mirrored copies', apart: shadow.go
	epoch        atomic.Int64   // the destination sweep's current epoch: destinations.go

	tel      *telemetry.Telemetry // spans and metrics; cheap no-ops while the providers are
	pol      policies             // the transport's own policies; immutable
	routePol routeOverrides       // merged per-route policies, when routed
	dyn      dynamicPolicies      // merged per-destination policies of WithConfig: dynamic_transport.go
	shadower *route.Shadower      // nil unless routed
	counted  *http.Transport      // the clone of base that counts connections (WithLimits, WithConfig); nil when none
	// releaseBase ends the registration with WithConfig's Config of a base that cannot count
	// connections: dynamic_limits.go.
	releaseBase func()
}

var _ http.RoundTripper = (*Transport)(nil)

// Stats is a snapshot of the counters of a Transport or a GRPCClient.
type Stats struct {
	Requests        int64 // requests to services (pass-through requests are not counted); gRPC: calls and streams
	Attempts        int64 // attempts sent, first tries, retries and hedges together
	Retries         int64 // attempts that were retries
	Hedges          int64 // attempts that were hedges
	HedgeWins       int64 // requests answered by a hedge rather than the first attempt
	BudgetRefusals  int64 // retries or hedges the budget refused
	BreakerRefusals int64 // attempts refused because every endpoint's breaker was open
	BreakerOpens    int64 // breaker transitions to open
	Ejections       int64 // outlier ejections, over every destination
	Overflows       int64 // requests, retries and connections a destination's limits refused (WithLimits)
	// Fallbacks counts requests (gRPC: calls and streams) sent to their route's stable
	// destination because the split arm or canary side chosen could take them no more: every
	// endpoint refused them, or a retry had no endpoint left there that the request had not
	// used (route.RouteConfig.Fallback).
	Fallbacks int64
	// Shadow counts the copies routes mirrored, apart from the counts above, which are the
	// transport's own requests only. Zero for a gRPC client and a transport without routes.
	Shadow ShadowStats
}

// Stats returns the transport's counters.
func (t *Transport) Stats() Stats {
	st := statsOf(&t.stats, t.bud)
	st.BreakerOpens, st.Ejections, st.Fallbacks = t.breakerOpens.Load(), t.ejections(false), t.fallbacks.Load()
	st.Shadow = t.shadowStats() // shadow.go
	st.Overflows = t.overflows.Load()
	return st
}

// statsOf is what a client's engine counted (its breaker and ejection counts are the
// caller's to add).
func statsOf(s *engine.Stats, bud *engine.Budget) Stats {
	return Stats{
		Requests: bud.Calls(), Attempts: s.Attempts.Load(), Retries: s.Retries.Load(),
		Hedges: s.Hedges.Load(), HedgeWins: s.HedgeWins.Load(),
		BudgetRefusals: s.BudgetRefusals.Load(), BreakerRefusals: s.BreakerRefusals.Load(),
	}
}

// ejections sums the outlier ejections of the transport's own destinations, or (shadow) of
// the destinations of mirrored copies.
func (t *Transport) ejections(shadow bool) (n int64) {
	for _, d := range *t.dests.Load() {
		if d.shadow == shadow {
			n += int64(d.bal.Ejections())
		}
	}
	return n
}

// Endpoints returns the balancer's view of each endpoint of service (latency average,
// requests in flight, ejection, health), or nil when the transport has not seen the service.
// It is meant for status pages and tests, not the request path.
func (t *Transport) Endpoints(service string) []balancer.EndpointStats {
	if d := (*t.dests.Load())[service]; d != nil {
		return d.bal.Endpoints()
	}
	return nil
}

// NewTransport returns a Transport over base (http.DefaultTransport when nil). It takes the
// options of type TransportOption: ClientOption (shared with NewGRPCClient) and Option; a
// server option does not compile here. It validates every option and returns an error naming
// the bad ones. It does not touch the network.
func NewTransport(base http.RoundTripper, opts ...TransportOption) (*Transport, error) {
	cfg, err := newConfig(opts, TransportOption.applyTransport)
	if err != nil {
		return nil, err
	}
	// Validate the per-destination configs now rather than on the first request.
	if b, err := balancer.New(cfg.balancer); err != nil {
		return nil, fmt.Errorf("middleware: WithBalancer: %w", err)
	} else {
		_ = b.Close()
	}
	if !cfg.breakerOff {
		if _, err := breaker.NewSet(cfg.breaker); err != nil {
			return nil, fmt.Errorf("middleware: WithBreaker: %w", err)
		}
	}
	base, counted, releaseBase, err := transportBase(base, cfg) // WithLimits, WithConfig: dynamic_limits.go
	if err != nil {
		return nil, err
	}
	defer func() { releaseBase() }() // unless the Transport is made
	if cfg.mesh != nil {             // WithMesh: mesh.go
		if base, err = meshBase(cfg.mesh, base); err != nil {
			return nil, err
		}
	}
	if base == nil {
		base = http.DefaultTransport
	}
	if base, err = cfg.creds.wrap(base); err != nil { // WithCredentials: auth.go
		return nil, err
	}
	t := &Transport{base: base, cfg: cfg, bud: engine.NewBudget(cfg.retry.BudgetRatio, cfg.retry.MinRetriesPerSecond), stop: make(chan struct{}), counted: counted, releaseBase: releaseBase}
	t.pol = newPolicies(cfg.retry, cfg.hedge, cfg.timeout, cfg.attemptTO)
	t.pol.forHTTP(cfg.streamIdle) // stream.go
	if cfg.routes != nil {
		limit := cfg.shadowLimit
		if limit == 0 {
			limit = defaultShadowLimit
		}
		// Mirrored copies go through this transport, so the shadow destination is resolved,
		// balanced and protected like any other; the marker header keeps them from being
		// routed (and mirrored) again.
		t.shadower = route.NewShadower(t, limit)
		t.shadower.OnMismatch(t.shadowMismatch) // telemetry.go
		t.shadower.OnResult(t.shadowResult)     // shadow.go
		t.shadow.bud = engine.NewBudget(cfg.retry.BudgetRatio, cfg.retry.MinRetriesPerSecond)
	}
	if cfg.resolver != nil {
		if err := checkRoutedServices(cfg.routes, cfg.resolver); err != nil { // servicecheck.go
			return nil, err
		}
		if t.cache, err = discovery.NewCache(cfg.resolver, discovery.WithLogger(cfg.logger)); err != nil {
			return nil, err
		}
		if cfg.maxDests == 0 {
			cfg.maxDests = defaultMaxDestinations
		}
		if cfg.destIdle == 0 {
			cfg.destIdle = defaultDestinationIdle
		}
	}
	m := map[string]*destination{}
	t.dests.Store(&m)
	telOpts := append(cfg.tel, telemetry.WithState(t.state)) // status.go
	if t.tel, err = telemetry.New(telOpts...); err != nil {
		return nil, fmt.Errorf("middleware: telemetry: %w", err)
	}
	t.base = t.tel.Transport(base) // every attempt's (and pass-through's) span is otelhttp's
	if t.cache != nil {
		t.wg.Add(1)
		go t.sweeper(cfg.destIdle / 2) // destinations.go
		t.warnUnservedRoutes()         // servicecheck.go
	}
	releaseBase = func() {} // the Transport's Close calls it
	return t, nil
}

// destination is the state kept for one service: its balancer and its endpoints' breakers.
type destination struct {
	service  string
	subset   *route.Subset // nil: every endpoint of the service
	shadow   bool          // it takes mirrored copies only: shadow.go
	bal      *balancer.Balancer
	breakers *breaker.Set           // nil when breakers are off
	latency  latency.Histogram      // attempt latencies, kept only for quantile hedging
	tel      *telemetry.Destination // always set; StartRequest gives a nil Request while telemetry is off
	eng      engine.Dest            // what the engine admits attempts from
	stop     chan struct{}          // closed when the destination is released
	build    *destBuild             // the WithConfig settings it was made from; nil: the transport's
	epoch    atomic.Int64           // the transport's sweep epoch when a request last used it
}

// destination returns the destination of req, or nil when req passes through. A route's
// destination (rd, when not nil) takes precedence over the request's host.
func (t *Transport) destination(req *http.Request, rd *route.Destination) (*destination, error) {
	if t.cache == nil || req.URL == nil {
		if rd != nil && rd.Service != "" {
			return nil, fmt.Errorf("middleware: a route sends to service %q but the transport has no resolver (WithResolver)", rd.Service)
		}
		return nil, nil
	}
	service, key, subset := req.URL.Host, req.URL.Host, (*route.Subset)(nil)
	if rd != nil {
		service, key = rd.Service, rd.Key()
		if !rd.Subset.IsZero() {
			subset = &rd.Subset
		}
	}
	shadow := route.IsShadow(req.Context())
	if shadow { // mirrored copies have destinations of their own: shadow.go
		key = shadowKeyPrefix + key
	}
	if d := (*t.dests.Load())[key]; d != nil {
		t.touch(d)
		return d, nil
	}
	if rd == nil && !isServiceName(service) {
		return nil, nil
	}
	snap, err := t.firstSet(req.Context(), service)
	if err != nil {
		if rd == nil && errors.Is(err, discovery.ErrUnknownService) {
			return nil, nil
		}
		return nil, err
	}
	return t.addDestination(key, service, subset, shadow, snap)
}

// firstSet returns service's endpoints, waiting for the first set no longer than the
// request's own deadline, the discovery wait (WithDiscoveryWait) or the transport's overall
// timeout (WithTimeout): a resolver that cannot
// answer (no Consul agent reachable, say) fails the request instead of holding it for ever.
func (t *Transport) firstSet(ctx context.Context, service string) (*discovery.Snapshot, error) {
	if snap := t.cache.Load(service); snap != nil {
		return snap, nil
	}
	wait := cmp.Or(t.cfg.discoveryWait, defaultDiscoveryWait)
	if to := t.pol.timeout; to > 0 && to < wait { // WithTimeout bounds the whole request
		wait = to
	}
	ctx, cancel := context.WithTimeout(ctx, wait)
	defer cancel()
	snap, err := t.cache.Get(ctx, service)
	if err != nil && ctx.Err() != nil && errors.Is(err, context.DeadlineExceeded) {
		return nil, fmt.Errorf("middleware: no endpoints of %q within %v: %w", service, wait, err)
	}
	return snap, err
}

// isServiceName reports whether host can name a service: a single DNS label with no port.
// Hosts with dots, ports or IP addresses pass through.
func isServiceName(host string) bool {
	if host == "" || len(host) > 63 {
		return false
	}
	for i := 0; i < len(host); i++ {
		c := host[i]
		if !(c == '-' || c == '_' || ('a' <= c && c <= 'z') || ('A' <= c && c <= 'Z') || ('0' <= c && c <= '9')) {
			return false
		}
	}
	return true
}

func (t *Transport) addDestination(key, service string, subset *route.Subset, shadow bool, snap *discovery.Snapshot) (*destination, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed.Load() {
		return nil, ErrClosed
	}
	old := *t.dests.Load()
	if d := old[key]; d != nil {
		return d, nil
	}
	if len(old) >= t.cfg.maxDests {
		t.mu.Unlock()
		// Make room: the destinations no request used in this epoch.
		cur := t.epoch.Load()
		freed := t.release(func(d *destination) bool { return d.epoch.Load() < cur })
		t.mu.Lock()
		if t.closed.Load() {
			return nil, ErrClosed
		}
		if old = *t.dests.Load(); freed == 0 || len(old) >= t.cfg.maxDests {
			return nil, ErrTooManyDestinations
		}
		if d := old[key]; d != nil {
			return d, nil
		}
	}
	d := &destination{service: service, subset: subset, shadow: shadow, tel: t.tel.Destination(key), stop: make(chan struct{}), build: t.buildOf(service)}
	d.epoch.Store(t.epoch.Load())
	onChange := breaker.OnStateChange(func(c breaker.StateChange) {
		if c.To == breaker.StateOpen && shadow { // a mirrored copy's breakers: counted apart
			t.shadow.breakerOpens.Add(1)
		} else if c.To == breaker.StateOpen {
			t.breakerOpens.Add(1)
		}
		d.tel.BreakerTransition(c.Key, c.From, c.To)
	})
	bal, set, err := t.newBalancer(d.build, onChange) // dynamic_transport.go
	if err != nil {
		return nil, err
	}
	d.bal, d.breakers = bal, set
	d.eng = engine.Dest{Balancer: bal, Breakers: d.breakers}
	d.apply(snap)
	t.wg.Add(1)
	go t.follow(d, snap)
	next := make(map[string]*destination, len(old)+1)
	maps.Copy(next, old)
	next[key] = d
	t.dests.Store(&next)
	return d, nil
}

func (d *destination) apply(snap *discovery.Snapshot) {
	eps := snap.Endpoints
	if d.subset != nil {
		eps = d.subset.Filter(eps)
	}
	d.bal.Update(eps)
	keys := make([]string, len(eps))
	for i, e := range eps {
		keys[i] = e.Addr
	}
	if d.breakers != nil {
		d.breakers.Sync(keys...) // one map copy per update, not one per new endpoint
	}
	d.tel.Retain(keys...)
}

// follow applies each new snapshot of the destination's service until the transport closes.
func (t *Transport) follow(d *destination, snap *discovery.Snapshot) {
	defer t.wg.Done()
	for {
		select {
		case <-t.stop:
			return
		case <-d.stop:
			return
		case <-snap.Changed():
		}
		next := t.cache.Load(d.service)
		if next == nil {
			// The cache forgot the service: a sweep released another destination of it while
			// this one was being made from the set it had then. Follow the service afresh,
			// unless the transport or this destination is done (or the cache closed).
			var err error
			if next, err = t.refollow(d); err != nil {
				return
			}
		}
		if next == snap {
			return
		}
		snap = next
		d.apply(snap)
	}
}

// refollow starts following d's service again and returns its first set; it gives up when the
// transport closes or d is released.
func (t *Transport) refollow(d *destination) (*discovery.Snapshot, error) {
	select {
	case <-t.stop:
		return nil, ErrClosed
	case <-d.stop:
		return nil, ErrClosed
	default:
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		select {
		case <-t.stop:
		case <-d.stop:
		case <-ctx.Done():
		}
		cancel()
	}()
	return t.cache.Get(ctx, d.service)
}

// ErrClosed is returned for requests to services after the Transport is closed.
var ErrClosed = errors.New("middleware: transport closed")

// Close stops the goroutines the transport started (discovery watches, health checks) and
// waits for them. It is idempotent. Requests after Close to services fail; pass-through
// requests still work.
func (t *Transport) Close() error {
	t.mu.Lock()
	if t.closed.Load() {
		t.mu.Unlock()
		return nil
	}
	t.closed.Store(true)
	t.mu.Unlock()
	close(t.stop)
	var errs []error
	if t.shadower != nil {
		errs = append(errs, t.shadower.Close())
	}
	if t.cache != nil {
		errs = append(errs, t.cache.Close())
	}
	t.wg.Wait()
	for _, d := range *t.dests.Load() {
		errs = append(errs, d.bal.Close())
	}
	errs = append(errs, t.tel.Close())
	if t.counted != nil {
		t.counted.CloseIdleConnections()
	}
	t.releaseBase()
	return errors.Join(errs...)
}

// CloseIdleConnections forwards to the base transport.
func (t *Transport) CloseIdleConnections() {
	if c, ok := t.base.(interface{ CloseIdleConnections() }); ok {
		c.CloseIdleConnections()
	}
}

// RoundTrip sends req to an endpoint of the service its host names, retrying and hedging as
// configured. Hosts that are not services pass through to the base transport unchanged. An
// upstream 5xx is a response; local refusals are errors with a nil response:
// balancer.ErrNoEndpoints, an error matching breaker.ErrOpen when every endpoint's breaker is
// open, an error matching ratelimit.ErrLimited when an outbound limit refuses the request, one
// matching balancer.ErrOverflow when a destination's limit does (WithLimits), or the context's
// error.
func (t *Transport) RoundTrip(req *http.Request) (resp *http.Response, err error) {
	snap := t.snapshot()      // WithConfig's routes and destination policies, read once: dynamic_transport.go
	rs := t.lookup(req, snap) // routing.go; nil when no route matches
	var rd *route.Destination
	if rs != nil {
		rd = rs.dec.Destination
	} else if sd := route.ShadowDestination(req.Context()); sd != nil && sd.Service != "" {
		rd = sd // a mirrored copy goes to its shadow's destination, subset included
	}
	d, err := t.destination(req, rd)
	if err == nil && d != nil {
		d, err = t.current(req, rd, d) // WithConfig: dynamic_transport.go
	}
	if err != nil {
		closeBody(req)
		return nil, err
	}
	if d == nil && rs == nil {
		return t.base.RoundTrip(req)
	}
	if t.closed.Load() {
		closeBody(req)
		return nil, ErrClosed
	}
	// rctx is the request's context: the caller's, or with telemetry on, one that carries the
	// request span, which the attempts descend from.
	rctx := req.Context()
	var tr *telemetry.Request
	var winner *telemetry.Attempt // set once the attempts are done
	var kind outcome.Kind         // the outcome of the winning attempt, or of the refusal
	if d != nil {
		rctx, tr = t.tel.StartRequest(rctx, d.tel, req)
		if tr != nil {
			defer func() { tr.End(winner, kind, resp, err) }()
		}
	}
	if rs != nil {
		if resp, err, done := t.routeBefore(&req, rctx, rs, tr); done {
			kind = localKind(resp, err) // client_http.go
			return resp, err
		}
		defer func() { rs.finish(resp, err, kind) }()
		if d == nil { // a route that only rewrites, mirrors or injects faults
			resp, err = t.base.RoundTrip(req)
			kind = outcome.FromHTTP(resp, err, callerCause(req), time.Time{}).Kind
			return resp, err
		}
	}
	if t.cfg.outbound != nil { // outbound rate and concurrency limits: ratelimit.go
		p, lerr := t.cfg.outbound.admit(req, d.service)
		recordOutbound(rctx, t.tel, lerr)
		if lerr != nil {
			kind = localKind(nil, lerr)
			return nil, lerr
		}
		defer func() { p.done(kind) }()
	}
	if dl := t.destLimits(snap, d.service); dl != nil { // WithConfig's limits: dynamic_transport.go
		p, lerr := dl.admit(req, d.service)
		recordOutbound(rctx, t.tel, lerr)
		if lerr != nil {
			kind = localKind(nil, lerr)
			return nil, lerr
		}
		defer func() { p.done(kind) }()
	}
	pol, rt := t.ownPolicies(snap, d.service), (*route.Route)(nil)
	if rs != nil {
		rt = rs.dec.Route
		pol = t.routePol.get(t.cfg.routes, rt, pol, true, t.cfg.logger)
	}
	key := httpHashKey(req, hashPolicies(d.balancerConfig(&t.cfg.balancer), rt)) // hashing.go
	sctx := withConnectTimeout(rctx, snap, d.service)                            // connect_timeout.go
	resp, winner, kind, err = t.send(sctx, req, d, pol, tr, rs, key)             // client_http.go
	return resp, err
}

// callerCause is CauseCaller once the caller has given up on req, else CauseNone.
func callerCause(req *http.Request) outcome.Cause {
	if req.Context().Err() != nil {
		return outcome.CauseCaller
	}
	return outcome.CauseNone
}

// routeBefore applies what a matched route does before the request is sent: fault injection,
// request rewrites (on a clone, never the caller's request) and mirroring. When done is true
// the request is answered (an injected abort) or refused, and resp and err are the result.
//
// rctx is the request's context (see RoundTrip): a mirrored copy descends from it, so that
// its spans are children of the request span.
func (t *Transport) routeBefore(reqp **http.Request, rctx context.Context, rs *routeState, tr *telemetry.Request) (resp *http.Response, err error, done bool) {
	req := *reqp
	rt := rs.dec.Route
	if tr != nil {
		split := ""
		if rs.dec.Destination != nil {
			split = rs.dec.Destination.Key()
		}
		tr.Route(rt.Name(), split)
	}
	if f := rt.Fault(); f != nil {
		if ferr := f.Inject(req.Context()); ferr != nil {
			closeBody(req)
			var abort *route.AbortError
			if errors.As(ferr, &abort) && abort.HTTPStatus > 0 {
				return abortResponse(req, abort.HTTPStatus), nil, true
			}
			return nil, ferr, true
		}
	}
	if rt.RewritesRequest() {
		req = req.Clone(req.Context())
		rt.RewriteRequest(req)
		*reqp = req
	}
	if rs.dec.Mirror && t.shadower != nil && !isUpgrade(req) { // a mirrored handshake would open a connection
		mreq := req
		if rctx != req.Context() {
			mreq = req.WithContext(rctx)
		}
		rs.pending = t.shadower.Mirror(mreq, rt.Shadow())
	}
	return nil, nil, false
}

// replayBody makes a request body sendable more than once: through GetBody when the request
// has it, else by buffering it up to a cap. A larger body is sent once and never retried.
type replayBody struct {
	first   io.ReadCloser // the body for the first attempt
	getBody func() (io.ReadCloser, error)
	buf     []byte // the buffered body, when buffered
	once    bool   // the body can be sent only once
	used    atomic.Bool
}

func (b *replayBody) init(req *http.Request, limit int64) error {
	switch {
	case req.Body == nil || req.Body == http.NoBody:
		return nil
	case req.GetBody != nil:
		b.first, b.getBody = req.Body, req.GetBody
		return nil
	}
	buf, err := io.ReadAll(io.LimitReader(req.Body, limit+1))
	if err != nil {
		_ = req.Body.Close()
		return fmt.Errorf("middleware: reading the request body: %w", err)
	}
	if int64(len(buf)) <= limit {
		_ = req.Body.Close()
		b.buf = buf
		return nil
	}
	// Too large to keep: stream it once, what was read first.
	b.first = struct {
		io.Reader
		io.Closer
	}{io.MultiReader(bytes.NewReader(buf), req.Body), req.Body}
	b.once = true
	return nil
}

func (b *replayBody) replayable() bool { return !b.once }

// forAttempt returns the body for attempt n, or nil for a request without one.
func (b *replayBody) forAttempt(n int) (io.ReadCloser, error) {
	switch {
	case b.buf != nil:
		return io.NopCloser(bytes.NewReader(b.buf)), nil
	case b.first != nil && n == 0 && b.used.CompareAndSwap(false, true):
		return b.first, nil
	case b.getBody != nil:
		return b.getBody()
	case b.first != nil:
		return nil, errors.New("body already sent")
	}
	return nil, nil
}

// close closes the original body if no attempt took it.
func (b *replayBody) close() {
	if b.first != nil && b.used.CompareAndSwap(false, true) {
		_ = b.first.Close()
	}
}

func closeBody(req *http.Request) {
	if req.Body != nil {
		_ = req.Body.Close()
	}
}

// isGatewayFailure reports whether code is a gateway failure (502, 503, 504): what outlier
// ejection counts, and what an overload limiter treats as the callee failing.
func isGatewayFailure(code int) bool {
	return code == http.StatusBadGateway || code == http.StatusServiceUnavailable || code == http.StatusGatewayTimeout
}
