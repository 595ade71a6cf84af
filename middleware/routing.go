package middleware

import (
	"errors"
	"log/slog"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/proxyless/proxyless/internal/engine"
	"github.com/proxyless/proxyless/outcome"
	"github.com/proxyless/proxyless/route"
)

// WithRoutes routes requests by the rules of r: a matching route picks the destination
// (a service, optionally a subset of its endpoints, by weighted split or canary rule), may
// override the retry, hedge and timeout settings, rewrite the request and response, mirror a
// copy to a shadow destination, and inject faults. Requests that match no route are handled as
// without routes: by their host. The router may be reloaded while the transport runs
// (package route/reload); each request keeps the table it started with.
//
// Taken by NewTransport and NewGRPCClient. A gRPC client applies what a matching route does
// to the call itself (its fault, and its timeout, attempt timeout, retry and hedge
// overrides), and sends a call whose route chooses another destination (another service, or
// a subset, by destination, split arm or canary side) on a channel it dials for that
// destination with the options its NewClient was given (see NewGRPCClient); without them,
// and without WithTLS, such a call fails with FAILED_PRECONDITION rather than go where the
// route did not say. Shadowing, header and path rewrites and the HTTP-only retry settings are
// not carried out for gRPC calls.
//
// The route.Request looked up carries, for the router's trust predicate and sticky keys, what
// the outbound call's context knows of the caller on whose behalf it is sent: Identity is the
// SPIFFE ID of the mTLS peer that NewHandler or NewGRPCServer verified
// (WithPeerAuthorization), else the subject of the token it verified (WithJWT); Key is the
// key of WithRouteKey, else that subject, else that SPIFFE ID; RemoteAddr is the request's
// own when set, else the address of the caller being served (the gRPC peer, or the direct
// peer of the HTTP request NewHandler serves). These are the incoming request's only when
// the outbound call carries its context (r.Context(), or a context derived from it); a call
// made with a fresh context has none, so its caller-written steering (canary overrides,
// sticky headers and cookies, caller-matched faults) is trusted by no route.TrustIdentities
// or route.TrustPrefixes predicate.
//
// Services the routes name are checked when the transport or client is made: against a
// resolver that knows its services (a discovery.Knower, such as discovery.Static) a route to
// one it does not know is an error naming the route and field; with other resolvers (Consul,
// DNS) the transport looks them up in the background and logs (WithLogger) those it finds
// without endpoints. To check every reload too, build the router with
// route.WithServiceCheck(discovery.CheckKnown(static)).
func WithRoutes(r *route.Router) ClientOption {
	return clientOption(func(c *config) {
		if r == nil {
			c.errs = append(c.errs, errors.New("middleware: WithRoutes: router is nil"))
		}
		c.routes = r
	})
}

// WithShadowLimit caps the mirrored requests in flight across all routes; over it, copies are
// dropped (and counted), never queued. Default 64.
//
// Taken by NewTransport: gRPC clients do not mirror.
func WithShadowLimit(n int) TransportOption {
	return transportOption(func(c *config) {
		if n <= 0 {
			c.errs = append(c.errs, errors.New("middleware: WithShadowLimit must be positive, got "+strconv.Itoa(n)))
		}
		c.shadowLimit = n
	})
}

const defaultShadowLimit = 64

// policies are the settings one request runs under: the transport's, or a route's overrides
// merged into them. They are immutable.
type policies struct {
	retry     RetryPolicy
	hedge     HedgePolicy
	timeout   time.Duration
	attemptTO time.Duration
	idle      time.Duration // the HTTP stream idle timeout: stream.go
	eng       engine.Policy // the same, as the engine reads them
}

func newPolicies(retry RetryPolicy, hedge HedgePolicy, timeout, attemptTO time.Duration) policies {
	return policies{retry: retry, hedge: hedge, timeout: timeout, attemptTO: attemptTO, eng: engine.Policy{
		Retry: engine.Retry{
			Disable: retry.Disable, MaxRetries: retry.MaxRetries, BackoffBase: retry.BackoffBase,
			BackoffMax: retry.BackoffMax, MaxRetryAfter: retry.MaxRetryAfter,
		},
		Hedge:          engine.Hedge{Enabled: hedge.enabled, Delay: hedge.Delay, Quantile: hedge.Quantile, MaxHedges: hedge.MaxHedges},
		Timeout:        timeout,
		AttemptTimeout: attemptTO,
	}}
}

// routeOverrides gives the policies a request runs under when a route matched it: the
// route's overrides merged into the owner's policies, once per route and table version. The
// HTTP client and the gRPC client each have one; the zero value is ready to use.
type routeOverrides struct {
	cache atomic.Pointer[routePolicies]
}

// routePolicies caches the merged policies of each route of one table version.
type routePolicies struct {
	version uint64
	m       sync.Map // routeKey → *policies
}

// routeKey names one merge: a route's overrides over one set of owner's policies (the
// transport's, or a destination's of WithConfig).
type routeKey struct {
	rt  *route.Route
	own *policies
}

// get returns the policies for a request routed by rt of router's current table: own when the
// route overrides nothing. http says whether the HTTP-only retry settings (Statuses,
// RetryNonIdempotent) apply.
func (o *routeOverrides) get(router *route.Router, rt *route.Route, own *policies, http bool, logger *slog.Logger) *policies {
	if rt == nil || (rt.Retry() == nil && rt.Hedge() == nil && rt.Timeout() == 0 && rt.AttemptTimeout() == 0 &&
		!rt.AttemptTimeoutDisabled() && (!http || (rt.IdleTimeout() == 0 && !rt.IdleTimeoutDisabled()))) {
		return own
	}
	v := router.Version()
	cache := o.cache.Load()
	if cache == nil || cache.version != v {
		cache = &routePolicies{version: v}
		o.cache.Store(cache) // a racing request may build it again: harmless
	}
	key := routeKey{rt, own}
	if p, ok := cache.m.Load(key); ok {
		return p.(*policies)
	}
	p := mergeRoute(*own, rt, http, logger)
	idle := p.idle
	*p = newPolicies(p.retry, p.hedge, p.timeout, p.attemptTO)
	if http {
		p.forHTTP(idle)
	}
	cache.m.Store(key, p)
	return p
}

// mergeRoute applies a route's overrides to the policies p. The route package validated them
// when it compiled the table; anything the owner's own checks still refuse is logged and left
// at the owner's setting.
func mergeRoute(p policies, rt *route.Route, http bool, logger *slog.Logger) *policies {
	if rt.Timeout() > 0 {
		p.timeout = rt.Timeout()
	}
	if rt.AttemptTimeout() > 0 {
		p.attemptTO = rt.AttemptTimeout()
	}
	if rt.AttemptTimeoutDisabled() {
		p.attemptTO = 0
	}
	if http && rt.IdleTimeout() > 0 {
		p.idle = rt.IdleTimeout()
	}
	if http && rt.IdleTimeoutDisabled() {
		p.idle = 0
	}
	if o := rt.Retry(); o != nil {
		r := p.retry
		r.Disable = o.Disable
		if o.MaxRetries > 0 {
			r.MaxRetries = o.MaxRetries
		}
		if http && len(o.Statuses) > 0 {
			r.Statuses = append([]int(nil), o.Statuses...)
		}
		if http && o.RetryNonIdempotent {
			r.RetryNonIdempotent = true
		}
		if o.BackoffBase > 0 {
			r.BackoffBase = time.Duration(o.BackoffBase)
		}
		if o.BackoffMax > 0 {
			r.BackoffMax = time.Duration(o.BackoffMax)
		}
		if err := r.normalize(); err != nil {
			logger.Warn("middleware: route retry override ignored", "route", rt.Name(), "error", err)
		} else {
			p.retry = r
		}
	}
	if o := rt.Hedge(); o != nil {
		if o.Disable {
			p.hedge = HedgePolicy{}
		} else {
			// Keep what the override does not set, such as the transport's Quantile.
			h := p.hedge
			h.Delay, h.MaxHedges, h.enabled = time.Duration(o.Delay), o.MaxHedges, true
			if err := h.normalize(); err != nil {
				logger.Warn("middleware: route hedge override ignored", "route", rt.Name(), "error", err)
			} else {
				p.hedge = h
			}
		}
	}
	return &p
}

// routeState is what a routed request carries from its lookup to its end.
type routeState struct {
	dec      route.Decision
	pending  *route.Pending // the shadow copy, if one was sent
	start    time.Time
	fellBack atomic.Bool // attempts went to the route's fallback: fallback.go
}

// finish reports the primary's result to the shadow comparison and the canary analysis, and
// applies the route's response rewrites.
// The canary analysis counts the request as the outcome table says (outcome.Kind.CanaryFailed):
// not at all when it tells nothing of the version (the caller gave up, a local refusal, a
// throttled answer).
func (s *routeState) finish(resp *http.Response, err error, kind outcome.Kind) {
	if s.pending != nil {
		s.pending.Primary(resp, err)
	}
	if resp != nil {
		s.dec.Route.RewriteResponse(resp.Header)
	}
	if s.fellBack.Load() { // the side chosen could take none: its failure, whatever the fallback did
		s.dec.Done(route.Outcome{Latency: time.Since(s.start), Failed: true})
	} else if failed, counted := kind.CanaryFailed(); counted {
		s.dec.Done(route.Outcome{Latency: time.Since(s.start), Failed: failed})
	}
}

// lookup matches req against the route table, when the transport has one; nil when no route
// matches. A mirrored copy (marked in its context by the route.Shadower that sent it) is not
// routed again; a request that merely carries route.ShadowHeader, which any caller can send,
// is routed like any other. With a Config (snap not nil) the table is snap's.
func (t *Transport) lookup(req *http.Request, snap *configSnap) *routeState {
	if t.cfg.routes == nil || route.IsShadow(req.Context()) {
		return nil
	}
	rq := route.FromHTTP(req)
	fillCaller(req.Context(), &rq) // route_caller.go
	table := t.cfg.routes.Table()
	if snap != nil {
		table = snap.routes
	}
	dec, ok := table.Lookup(&rq)
	if !ok {
		return nil
	}
	return &routeState{dec: dec, start: time.Now()}
}

// abortResponse is the answer of an injected abort: a synthesized response, as a proxy
// would give, so the caller's code sees what a failing upstream looks like.
func abortResponse(req *http.Request, code int) *http.Response {
	return &http.Response{
		Status:     strconv.Itoa(code) + " " + http.StatusText(code),
		StatusCode: code,
		Proto:      "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1,
		Header:  http.Header{"X-Proxyless-Fault": {"abort"}},
		Body:    http.NoBody,
		Request: req,
	}
}
