package middleware

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/proxyless/proxyless/balancer"
	"github.com/proxyless/proxyless/breaker"
	"github.com/proxyless/proxyless/discovery"
	"github.com/proxyless/proxyless/internal/backoff"
	"github.com/proxyless/proxyless/internal/latency"
	"github.com/proxyless/proxyless/route"
	"github.com/proxyless/proxyless/tracing"
)

// TimeoutHeader carries, on every attempt that has a deadline, the milliseconds left before
// it, so that the server can give up when the client will have.
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
	base   http.RoundTripper // direct, wrapped by telemetry
	direct http.RoundTripper // for attempts of requests that started while telemetry was off
	cfg    *config           // immutable
	cache  *discovery.Cache
	bud    *budget

	mu     sync.Mutex                              // serialises writers of dests
	dests  atomic.Pointer[map[string]*destination] // copy-on-write; read without mu
	closed atomic.Bool                             // set once, under mu, by Close
	wg     sync.WaitGroup
	stop   chan struct{}

	stats transportStats
	clock clock // the request path's time

	tel      *tracing.Telemetry // spans and metrics; cheap no-ops while the providers are
	pol      policies           // the transport's own policies; immutable
	routePol routeOverrides     // merged per-route policies, when routed
	shadower *route.Shadower    // nil unless routed
}

var _ http.RoundTripper = (*Transport)(nil)

// transportStats counts what the transport did, for the demo, tests and (later) metrics.
//
// The request path writes none of them on success: requests are the budget's deposit count,
// and attempts are derived (every request and every retry or hedge launched makes one
// attempt, less those that sent nothing: see unsent). They are written rarely, so they
// share a cache line.
type transportStats struct {
	retries, hedges, hedgeWins, budgetRefusals, breakerRefusals, breakerOpens atomic.Int64
	// unsent counts requests and attempts counted in Requests, Retries or Hedges that sent no
	// attempt: a body that could not be read, or no endpoint admitted (none, or breakers open).
	unsent atomic.Int64
}

// Stats is a snapshot of the counters of a Transport or a GRPCClient.
type Stats struct {
	Requests        int64 // requests to services (pass-through requests are not counted); gRPC: calls and streams
	Attempts        int64 // attempts sent, first tries, retries and hedges together
	Retries         int64 // attempts that were retries
	Hedges          int64 // attempts that were hedges
	HedgeWins       int64 // requests answered by a hedge rather than the first attempt
	BudgetRefusals  int64 // retries or hedges the budget refused
	BreakerRefusals int64 // HTTP: endpoints skipped because their breaker was open; gRPC: attempts a breaker refused
	BreakerOpens    int64 // breaker transitions to open
	Ejections       int64 // outlier ejections, over every destination
}

// Stats returns the transport's counters.
func (t *Transport) Stats() Stats {
	s := &t.stats
	// Read the counters that attempts are derived from so that a request in flight makes the
	// sum no smaller than the attempts it has sent: unsent first, requests last.
	unsent := s.unsent.Load()
	retries, hedges := s.retries.Load(), s.hedges.Load()
	requests := t.bud.requests()
	return Stats{
		Requests: requests, Attempts: max(requests+retries+hedges-unsent, 0), Retries: retries,
		Hedges: hedges, HedgeWins: s.hedgeWins.Load(),
		BudgetRefusals: s.budgetRefusals.Load(), BreakerRefusals: s.breakerRefusals.Load(),
		BreakerOpens: s.breakerOpens.Load(), Ejections: t.ejections(),
	}
}

func (t *Transport) ejections() (n int64) {
	for _, d := range *t.dests.Load() {
		n += int64(d.bal.Ejections())
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
	if base == nil {
		base = http.DefaultTransport
	}
	if base, err = cfg.creds.wrap(base); err != nil { // WithCredentials: auth.go
		return nil, err
	}
	t := &Transport{base: base, cfg: cfg, bud: newBudget(cfg.retry), stop: make(chan struct{})}
	t.pol = policies{retry: cfg.retry, hedge: cfg.hedge, timeout: cfg.timeout, attemptTO: cfg.attemptTO}
	if cfg.routes != nil {
		limit := cfg.shadowLimit
		if limit == 0 {
			limit = defaultShadowLimit
		}
		// Mirrored copies go through this transport, so the shadow destination is resolved,
		// balanced and protected like any other; the marker header keeps them from being
		// routed (and mirrored) again.
		t.shadower = route.NewShadower(t, limit)
	}
	if cfg.resolver != nil {
		if t.cache, err = discovery.NewCache(cfg.resolver, discovery.WithLogger(cfg.logger)); err != nil {
			return nil, err
		}
	}
	m := map[string]*destination{}
	t.dests.Store(&m)
	telOpts := append(cfg.tel, tracing.WithState(t.state)) // status.go
	if t.tel, err = tracing.New(telOpts...); err != nil {
		return nil, fmt.Errorf("middleware: telemetry: %w", err)
	}
	t.direct = base
	t.base = t.tel.Transport(base) // every attempt's (and pass-through's) span is otelhttp's
	return t, nil
}

// destination is the state kept for one service: its balancer and its endpoints' breakers.
type destination struct {
	service  string
	subset   *route.Subset // nil: every endpoint of the service
	bal      *balancer.Balancer
	breakers *breaker.Set         // nil when breakers are off
	latency  latency.Histogram    // attempt latencies, kept only for quantile hedging
	tel      *tracing.Destination // always set; StartRequest gives a nil Request while telemetry is off
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
	if d := (*t.dests.Load())[key]; d != nil {
		return d, nil
	}
	if rd == nil && !isServiceName(service) {
		return nil, nil
	}
	snap, err := t.cache.Get(req.Context(), service)
	if err != nil {
		if rd == nil && errors.Is(err, discovery.ErrUnknownService) {
			return nil, nil
		}
		return nil, err
	}
	return t.addDestination(key, service, subset, snap)
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

func (t *Transport) addDestination(key, service string, subset *route.Subset, snap *discovery.Snapshot) (*destination, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed.Load() {
		return nil, ErrClosed
	}
	old := *t.dests.Load()
	if d := old[key]; d != nil {
		return d, nil
	}
	bal, err := balancer.New(t.cfg.balancer)
	if err != nil {
		return nil, err
	}
	d := &destination{service: service, subset: subset, bal: bal, tel: t.tel.Destination(key)}
	if !t.cfg.breakerOff {
		onChange := breaker.OnStateChange(func(c breaker.StateChange) {
			if c.To == breaker.StateOpen {
				t.stats.breakerOpens.Add(1)
			}
			d.tel.BreakerTransition(c.Key, c.From, c.To)
		})
		if d.breakers, err = breaker.NewSet(t.cfg.breaker, onChange); err != nil {
			_ = bal.Close()
			return nil, err
		}
	}
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
		case <-snap.Changed():
		}
		next := t.cache.Load(d.service)
		if next == nil || next == snap {
			return // the cache closed
		}
		snap = next
		d.apply(snap)
	}
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
// open, an error matching ratelimit.ErrLimited when an outbound limit refuses the request, or
// the context's error.
func (t *Transport) RoundTrip(req *http.Request) (resp *http.Response, err error) {
	var rs *routeState
	var rd *route.Destination
	if t.cfg.routes != nil && req.Header.Get(route.ShadowHeader) == "" {
		rq := route.FromHTTP(req)
		if dec, ok := t.cfg.routes.Lookup(&rq); ok {
			rs = &routeState{dec: dec, start: t.clock.now()} // one monotonic read, not time.Now's two
			rd = dec.Destination
		}
	}
	d, err := t.destination(req, rd)
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
	// request span, which the attempts descend from. The caller's request is not copied to
	// carry it: each attempt makes its own copy anyway.
	rctx := req.Context()
	var tr *tracing.Request
	var winner *tracing.Attempt // set once the attempts are done
	if d != nil {
		rctx, tr = t.tel.StartRequest(rctx, d.tel, req)
		if tr != nil {
			defer func() { tr.End(winner, resp, err) }()
		}
	}
	if rs != nil {
		if tr != nil {
			split := ""
			if rs.dec.Destination != nil {
				split = rs.dec.Destination.Key()
			}
			tr.Route(rs.dec.Route.Name(), split)
		}
		if resp, err, done := t.routeBefore(&req, rctx, rs); done {
			return resp, err
		}
		defer func() { rs.finish(resp, err, req.Context().Err() != nil) }()
		if d == nil { // a route that only rewrites, mirrors or injects faults
			return t.base.RoundTrip(req)
		}
	}
	if t.cfg.outbound != nil { // outbound rate and concurrency limits: ratelimit.go
		p, lerr := t.cfg.outbound.admit(req, d.service)
		recordOutbound(rctx, t.tel, lerr)
		if lerr != nil {
			return nil, lerr
		}
		defer func() { p.done(req, resp, err) }()
	}
	t.bud.deposit() // counts the request too (Stats.Requests)

	pol := &t.pol
	if rs != nil {
		pol = t.routePol.get(t.cfg.routes, rs.dec.Route, &t.pol, true, t.cfg.logger)
	}
	ctx := rctx
	var cancel context.CancelFunc = func() {}
	if pol.timeout > 0 {
		ctx, cancel = context.WithTimeout(ctx, pol.timeout)
	}
	var res attemptResult
	if pol.hedge.enabled {
		// Hedged attempts run on goroutines that share the request state: it lives on the heap.
		h := &hedgedRequest{request: request{t: t, d: d, pol: pol, req: req, ctx: ctx, tr: tr, reqCtx: pol.timeout == 0 && tr == nil}}
		h.request.conc = &h.conc
		res = h.request.runHedged()
	} else {
		// Attempts run one after another on this goroutine: the state stays on its stack.
		r := request{t: t, d: d, pol: pol, req: req, ctx: ctx, tr: tr, reqCtx: pol.timeout == 0 && tr == nil}
		res = r.runSequential()
	}
	winner = res.tattempt
	if res.err != nil {
		cancel()
		return nil, res.err
	}
	if pol.timeout > 0 {
		res.resp.Body = &cancelBody{ReadCloser: res.resp.Body, cancel: cancel}
	} else {
		cancel() // a no-op: there is no overall timeout to release
	}
	return res.resp, nil
}

// prepare readies the request body for its attempts and decides what may be retried.
func (r *request) prepare() error {
	req, pol := r.req, r.pol
	if err := r.body.init(req, r.t.cfg.maxBufferBody); err != nil {
		r.t.stats.unsent.Add(1)
		return err
	}
	r.host = req.Host
	if r.host == "" {
		r.host = req.URL.Host
	}
	replayable := !pol.retry.Disable && r.body.replayable()
	r.retryable = replayable && pol.retry.idempotent(req)
	r.dialRetryable = replayable // a refused dial never reached the server
	return nil
}

// runSequential sends the request's attempts one after another, on the caller's goroutine.
// It never hands r to another goroutine, so that r can live on the caller's stack.
func (r *request) runSequential() attemptResult {
	if err := r.prepare(); err != nil {
		return attemptResult{err: err}
	}
	res := r.sequential()
	if res.err != nil {
		r.body.close()
	}
	return res
}

// runHedged sends the request's attempts with hedging when the request may be retried, one
// after another otherwise.
func (r *request) runHedged() attemptResult {
	if err := r.prepare(); err != nil {
		return attemptResult{err: err}
	}
	var res attemptResult
	if r.retryable {
		res = r.hedged()
	} else {
		res = r.sequential()
	}
	if res.err != nil {
		r.body.close()
	}
	return res
}

// routeBefore applies what a matched route does before the request is sent: fault injection,
// request rewrites (on a clone, never the caller's request) and mirroring. When done is true
// the request is answered (an injected abort) or refused, and resp and err are the result.
//
// rctx is the request's context (see RoundTrip): a mirrored copy descends from it, so that
// its spans are children of the request span.
func (t *Transport) routeBefore(reqp **http.Request, rctx context.Context, rs *routeState) (resp *http.Response, err error, done bool) {
	req := *reqp
	rt := rs.dec.Route
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
	if rs.dec.Mirror && t.shadower != nil {
		mreq := req
		if rctx != req.Context() {
			mreq = req.WithContext(rctx)
		}
		rs.pending = t.shadower.Mirror(mreq, rt.Shadow())
	}
	return nil, nil, false
}

// request is the state of one RoundTrip to a service.
type request struct {
	t             *Transport
	d             *destination
	pol           *policies        // the transport's, or its route's; immutable
	tr            *tracing.Request // nil while telemetry is off
	req           *http.Request
	ctx           context.Context // the caller's, bounded by the overall timeout
	body          replayBody
	host          string // the Host header to send: the service name the caller used
	retryable     bool
	dialRetryable bool
	reqCtx        bool // ctx is req.Context(): no overall timeout, no request span

	tried balancer.Tried // endpoints already used; guarded by conc.mu when conc is set
	// conc is set when attempts may run concurrently (hedging). Sequential requests have
	// none: a mutex of their own would move them from the stack to the heap.
	conc *concurrentState
}

// concurrentState is what the concurrent attempts of a hedged request share.
type concurrentState struct {
	mu      sync.Mutex           // guards the request's tried, and cancels
	cancels []context.CancelFunc // every attempt's cancel, to stop the losers
}

// hedgedRequest is a request whose attempts may run concurrently, in one allocation.
type hedgedRequest struct {
	request
	conc concurrentState
}

// attemptResult is what one attempt produced.
type attemptResult struct {
	resp       *http.Response
	err        error
	retry      bool          // the failure may be retried
	dialFailed bool          // the connection was never made
	retryAfter time.Duration // the server's Retry-After, if any
	cancel     context.CancelFunc
	tattempt   *tracing.Attempt // the attempt's telemetry; nil while off
}

// sequential runs attempts one after another.
func (r *request) sequential() attemptResult {
	pol := &r.pol.retry
	kind, delay := tracing.AttemptFirst, time.Duration(0)
	for n := 0; ; n++ {
		res := r.attempt(n, kind, delay)
		if !r.shouldRetry(res, n) {
			return res.settle()
		}
		kind, delay = tracing.AttemptRetry, res.retryAfter
		if delay == 0 {
			delay = backoff.FullJitter(pol.BackoffBase, pol.BackoffMax, n+1)
		}
		if !r.t.bud.withdraw(time.Time{}) {
			r.t.stats.budgetRefusals.Add(1)
			r.tr.BudgetRefused(tracing.AttemptRetry)
			return res.settle()
		}
		res.discard()
		if !backoff.Sleep(r.ctx, delay) {
			return attemptResult{err: r.ctx.Err()}
		}
		r.t.stats.retries.Add(1)
	}
}

// shouldRetry reports whether the outcome of attempt n may be followed by another.
func (r *request) shouldRetry(res attemptResult, n int) bool {
	pol := &r.pol.retry
	if !res.retry || n >= pol.MaxRetries || r.ctx.Err() != nil {
		return false
	}
	if !r.retryable && !(res.dialFailed && r.dialRetryable) {
		return false
	}
	return res.retryAfter <= pol.MaxRetryAfter
}

// settle returns the result to hand to the caller, cancelling the attempt's context unless a
// response body still needs it.
func (res attemptResult) settle() attemptResult {
	if res.resp != nil && res.cancel != nil {
		res.resp.Body = &cancelBody{ReadCloser: res.resp.Body, cancel: res.cancel}
	} else if res.cancel != nil {
		res.cancel()
	}
	res.cancel = nil
	return res
}

// discard throws away an attempt's response, draining a bounded amount of its body so that
// the connection can be reused.
func (res attemptResult) discard() {
	res.tattempt.Discarded()
	if res.resp != nil {
		drain(res.resp.Body)
	}
	if res.cancel != nil {
		res.cancel()
	}
}

func drain(rc io.ReadCloser) {
	_, _ = io.CopyN(io.Discard, rc, maxDrainBody)
	_ = rc.Close()
}

// attempt sends attempt n (0 for the first) to an endpoint that no earlier attempt of the
// request used, when one is available. kind and backoff describe it for telemetry.
//
// It reads the monotonic clock twice: before the pick (the pick's time, the start of the
// latency; see clock) and after the base transport returns (the latency, from which the end
// time the balancer and the histogram get is derived).
func (r *request) attempt(n int, kind tracing.AttemptKind, backoff time.Duration) attemptResult {
	t := r.t
	now := t.clock.now()
	pick, permit, err := r.admit(now)
	if err != nil {
		t.stats.unsent.Add(1)
		return attemptResult{err: err}
	}

	actx, cancel := r.ctx, context.CancelFunc(nil)
	if r.pol.attemptTO > 0 {
		actx, cancel = context.WithTimeout(r.ctx, r.pol.attemptTO)
	} else if r.pol.hedge.enabled {
		actx, cancel = context.WithCancel(r.ctx) // so that a losing hedge can be cancelled
	}
	if c := r.conc; c != nil && n < len(c.cancels) {
		c.mu.Lock()
		c.cancels[n] = cancel
		c.mu.Unlock()
	}
	base := t.direct // telemetry off: not even the check of its wrapper
	var ta *tracing.Attempt
	if r.tr != nil {
		base = t.base
		state := breaker.StateClosed
		if permit.Probe() {
			state = breaker.StateHalfOpen
		}
		actx, ta = r.tr.StartAttempt(actx, tracing.AttemptInfo{
			N: n, Kind: kind, Endpoint: pick.Endpoint.Addr, Backoff: backoff,
			Breaker: state, NoBreaker: r.d.breakers == nil,
		})
	}
	// A shallow copy with its own URL: the caller's request is never modified, and the
	// headers are copied only when one is added. When the attempt runs in the request's own
	// context, the copy and its URL are one allocation.
	var out *http.Request
	if r.reqCtx && cancel == nil && ta == nil {
		o := &outRequest{req: *r.req, url: *r.req.URL} // actx is r.req.Context()
		o.req.URL = &o.url
		out = &o.req
	} else {
		out = r.req.WithContext(actx)
		u := *r.req.URL
		out.URL = &u
	}
	out.URL.Host = pick.Endpoint.Addr
	out.Host = r.host
	if deadline, ok := actx.Deadline(); ok {
		// From the pick's time, not a clock read of its own: a few hundred nanoseconds early,
		// so no more than the attempt timeout when that is what set the deadline.
		left := deadline.Sub(now)
		if r.pol.attemptTO > 0 {
			left = min(left, r.pol.attemptTO)
		}
		out.Header = r.req.Header.Clone()
		if out.Header == nil {
			out.Header = http.Header{}
		}
		out.Header.Set(TimeoutHeader, strconv.FormatInt(max(left.Milliseconds(), 0), 10))
	}
	if out.Body, err = r.body.forAttempt(n); err != nil {
		pick.Done(balancer.DoneInfo{Outcome: balancer.OutcomeIgnore})
		permit.Done(breaker.Ignore)
		if cancel != nil {
			cancel()
		}
		err = fmt.Errorf("middleware: replaying the request body: %w", err)
		ta.End(nil, err)
		return attemptResult{err: err, tattempt: ta}
	}
	if out.Body == nil {
		out.GetBody = nil
	}

	resp, err := base.RoundTrip(out)
	ta.End(resp, err)
	res := attemptResult{resp: resp, err: err, cancel: cancel, tattempt: ta}
	lat := time.Since(now) // one monotonic clock read
	done := balancer.DoneInfo{Now: now.Add(lat), Latency: lat}
	switch {
	case err != nil && r.ctx.Err() != nil:
		// The caller gave up (or the overall timeout passed): nothing learnt about the endpoint.
		done.Outcome = balancer.OutcomeIgnore
		res.err = r.ctx.Err()
	case err != nil && errors.Is(err, context.Canceled):
		// Cancelled by us, not the caller: a hedge that lost. Nothing learnt either.
		done.Outcome = balancer.OutcomeIgnore
	case err != nil:
		done.Outcome = balancer.OutcomeGatewayFailure
		res.retry = true
		var op *net.OpError
		res.dialFailed = errors.As(err, &op) && op.Op == "dial"
	default:
		code := resp.StatusCode
		switch {
		case isGatewayFailure(code):
			done.Outcome = balancer.OutcomeGatewayFailure
		case code >= 500:
			done.Outcome = balancer.OutcomeFailure
		}
		if code == http.StatusTooManyRequests || code == http.StatusServiceUnavailable {
			if d, ok := parseRetryAfter(resp.Header.Get(retryAfterHeader), done.Now); ok {
				done.RetryAfter = d
				res.retryAfter = d
			}
		}
		res.retry = r.pol.retry.retryableStatus(code)
	}
	if ta != nil {
		before := r.d.bal.Ejections()
		pick.Done(done)
		if r.d.bal.Ejections() != before {
			r.tr.Ejected(pick.Endpoint.Addr) // near enough: another request may have ejected
		}
	} else {
		pick.Done(done)
	}
	if r.pol.hedge.Quantile > 0 && done.Outcome == balancer.OutcomeSuccess {
		r.d.latency.Record(done.Now, lat)
	}
	if r.d.breakers != nil {
		permit.Done(t.cfg.classifier.Classify(r.ctx, resp, err))
	}
	return res
}

// clockRebase is how often clock renews its base from time.Now: how long its wall time may
// lag a step of the wall clock.
const clockRebase = time.Second

// clock tells the time on the request path with one clock read where time.Now takes two (the
// wall clock and the monotonic clock, each a vDSO call of some 25-50 ns on a kvm-clock VM): it
// adds the monotonic time elapsed since a base, which it renews from time.Now every
// clockRebase. Its readings carry a monotonic reading, like time.Now's, so that latencies
// taken with time.Since are exact; only their wall time may lag a step of the wall clock, by
// less than clockRebase. The zero value is ready to use.
type clock struct{ base atomic.Pointer[time.Time] }

func (c *clock) now() time.Time {
	if b := c.base.Load(); b != nil {
		// A base from another clock (a testing/synctest bubble's, or the real one seen from
		// a bubble) gives an elapsed time out of range, and a rebase.
		if d := time.Since(*b); d >= 0 && d < clockRebase {
			return b.Add(d)
		}
	}
	n := time.Now()
	c.base.Store(&n) // racing rebases are harmless: any of them is a right base
	return n
}

// outRequest is an attempt's copy of the caller's request with its own URL, in one allocation.
type outRequest struct {
	req http.Request
	url url.URL
}

// admit picks an endpoint not yet tried whose breaker admits the attempt. Endpoints whose
// breaker is open are skipped; when every endpoint refuses, it returns the breaker's error.
func (r *request) admit(now time.Time) (balancer.Pick, breaker.Permit, error) {
	if r.conc == nil {
		return r.admitLocked(now)
	}
	r.conc.mu.Lock()
	defer r.conc.mu.Unlock()
	return r.admitLocked(now)
}

// admitLocked is admit; when attempts run concurrently it requires r.conc.mu.
func (r *request) admitLocked(now time.Time) (balancer.Pick, breaker.Permit, error) {
	var lastOpen error
	for range balancer.MaxTried + 1 {
		pick, err := r.d.bal.Pick(balancer.PickInfo{Now: now, Tried: r.tried})
		if err != nil {
			return balancer.Pick{}, breaker.Permit{}, err
		}
		r.tried.Add(pick)
		if r.d.breakers == nil {
			return pick, breaker.Permit{}, nil
		}
		permit, err := r.d.breakers.Allow(pick.Endpoint.Addr)
		if err == nil {
			return pick, permit, nil
		}
		pick.Done(balancer.DoneInfo{Now: now, Outcome: balancer.OutcomeIgnore})
		r.t.stats.breakerRefusals.Add(1)
		r.tr.BreakerRefused(pick.Endpoint.Addr)
		lastOpen = err
	}
	return balancer.Pick{}, breaker.Permit{}, lastOpen
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

// cancelBody cancels a context once the response body is closed.
type cancelBody struct {
	io.ReadCloser
	cancel context.CancelFunc
}

func (b *cancelBody) Close() error {
	err := b.ReadCloser.Close()
	b.cancel()
	return err
}

// isGatewayFailure reports whether code is a gateway failure (502, 503, 504): what outlier
// ejection counts, and what an overload limiter treats as the callee failing.
func isGatewayFailure(code int) bool {
	return code == http.StatusBadGateway || code == http.StatusServiceUnavailable || code == http.StatusGatewayTimeout
}
