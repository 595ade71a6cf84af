package middleware

import (
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/proxyless/proxyless/auth"
	"github.com/proxyless/proxyless/internal/telemetry"
	"github.com/proxyless/proxyless/ratelimit"
	"github.com/proxyless/proxyless/ratelimit/overload"
	"github.com/proxyless/proxyless/route"
)

// Header names of the IETF draft "RateLimit header fields for HTTP"
// (draft-ietf-httpapi-ratelimit-headers, the revisions with one field per value), in the
// canonical form net/http uses.
const (
	RateLimitLimitHeader     = "Ratelimit-Limit"     // the key's quota at once: the burst
	RateLimitRemainingHeader = "Ratelimit-Remaining" // requests the key may still send now
	RateLimitResetHeader     = "Ratelimit-Reset"     // whole seconds until the quota is whole again
)

// retryAfterHeader is declared with the client's Retry-After parsing (retry.go).

// serverConfig holds what the servers' options set: NewHandler's and NewGRPCServer's.
type serverConfig struct {
	rateLimits    []serverRateLimit         // applied in the order given
	shed          overload.Limiter          // nil when load is not shed
	jwt           *auth.Guard               // nil when tokens are not checked: auth.go
	peers         *auth.PeerAuthorizer      // nil when mTLS peers are not checked: auth.go
	authz         Authorizer                // nil when no authorizer is set: authorizer.go
	faults        *route.Router             // nil when no faults are injected
	maxDeadline   time.Duration             // WithMaxServerDeadline; 0: no cap: deadline.go
	deadlineTrust func(*route.Request) bool // WithDeadlineTrust; nil: every caller
	tel           *telemetry.Telemetry      // built by NewHandler
	edge          edgeConfig                // NewHandler's edge stages: edge_headers.go
	consumers     *consumerStage            // nil without WithConsumers: consumers.go
	routeHost     string                    // NewGateway's service: gateway_routehost.go
}

type serverRateLimit struct {
	lim       ratelimit.Limiter
	key       KeyFunc
	afterAuth bool // runs after token validation: its key reads the verified claims
}

// limitsFor returns the limits of the phase: those before token validation, or after it.
func (c *serverConfig) limitsFor(afterAuth bool) []serverRateLimit {
	var ls []serverRateLimit
	for _, l := range c.rateLimits {
		if l.afterAuth == afterAuth {
			ls = append(ls, l)
		}
	}
	return ls
}

// WithServerRateLimit makes the servers limit requests per key: key maps each request (HTTP)
// or call (gRPC) to a key and l admits or refuses it (a ratelimit.Keyed for one instance, a
// ratelimit.Redis for a limit shared by every instance). The option may be given several
// times (per client IP and per API key, say): each limit must admit the request, and they are
// asked in order. Default: none.
//
// A limit runs before token validation (WithJWT), so that a flood of forged tokens is
// answered 429 without a signature check each: its key must be known from the request alone
// (KeyByClientIP, KeyByHeader, the mTLS peer identity of WithPeerAuthorization, which runs
// first). A limit keyed by KeyBySubject runs after token validation, since its key is the
// verified subject; so does any limit given with WithAuthenticatedRateLimit, for key functions
// of one's own that read the claims (auth.ClaimsFromContext).
//
//   - NewHandler answers a refused request 429 Too Many Requests with Retry-After (whole
//     seconds, rounded up; absent when no wait would help, as for a key whose quota is zero)
//     and the RateLimit-Limit, RateLimit-Remaining and RateLimit-Reset headers; an admitted
//     one carries the RateLimit-* headers too, describing the limit with the fewest requests
//     remaining.
//   - NewGRPCServer ends a refused call with RESOURCE_EXHAUSTED (an error matching
//     ratelimit.ErrLimited inside the server) and a grpc-retry-pushback-ms trailer saying
//     when to come back (absent when no wait would help); the handler does not run.
//
// Taken by NewHandler and NewGRPCServer.
func WithServerRateLimit(l ratelimit.Limiter, key KeyFunc) ServerOption {
	return serverOption(func(c *config) {
		switch {
		case l == nil:
			c.errs = append(c.errs, errors.New("middleware: WithServerRateLimit: limiter is nil"))
		case key == nil:
			c.errs = append(c.errs, errors.New("middleware: WithServerRateLimit: key function is nil"))
		default:
			c.server.rateLimits = append(c.server.rateLimits, serverRateLimit{lim: l, key: key, afterAuth: isSubjectKey(key)})
		}
	})
}

// WithAuthenticatedRateLimit is WithServerRateLimit for a limit that runs after token
// validation (WithJWT), whatever its key: for key functions that read the verified claims.
// A request refused by the token check never reaches it, so it does not protect the check
// itself: pair it with a limit keyed before authentication (KeyByClientIP).
//
// Taken by NewHandler and NewGRPCServer.
func WithAuthenticatedRateLimit(l ratelimit.Limiter, key KeyFunc) ServerOption {
	return serverOption(func(c *config) {
		switch {
		case l == nil:
			c.errs = append(c.errs, errors.New("middleware: WithAuthenticatedRateLimit: limiter is nil"))
		case key == nil:
			c.errs = append(c.errs, errors.New("middleware: WithAuthenticatedRateLimit: key function is nil"))
		default:
			c.server.rateLimits = append(c.server.rateLimits, serverRateLimit{lim: l, key: key, afterAuth: true})
		}
	})
}

// WithServerFaults makes NewHandler and NewGRPCServer inject the faults (delays and aborts)
// of r's routes into the requests and calls they serve: each request is matched against the
// router's current table (HTTP: host, path, method, headers, query; gRPC: the full method name
// and metadata, with method "POST") and the fault of the route it matches, if any, is applied
// after authentication and the rate limits, before load shedding and the handler. An aborted
// HTTP request is answered with the abort's status (a gRPC-over-HTTP request with its gRPC
// code); an aborted gRPC call ends with the abort's code, as an error matching
// route.ErrAborted. A delayed request whose client goes away is dropped without an answer.
// Only the routes' Fault settings matter here: destinations, splits and the rest are client
// settings. A fault matched on input the caller writes is injected only for callers the
// router's trust predicate admits: its route.Request has the caller's RemoteAddr (the TCP or
// gRPC peer) and Identity (the SPIFFE ID WithPeerAuthorization verified, else the subject of
// the token WithJWT verified), for route.TrustPrefixes and route.TrustIdentities. The router
// may be reloaded while the server runs. Default: no faults.
//
// Taken by NewHandler and NewGRPCServer.
func WithServerFaults(r *route.Router) ServerOption {
	return serverOption(func(c *config) {
		if r == nil {
			c.errs = append(c.errs, errors.New("middleware: WithServerFaults: router is nil"))
			return
		}
		c.server.faults = r
	})
}

// WithLoadShedding makes the servers refuse work they cannot take on: l admits each request
// or call (after the rate limits and faults) for as long as the handler runs. An
// overload.Bulkhead caps the requests in flight; an overload.Adaptive caps them at what keeps
// latency at its baseline. NewHandler answers a refused request 503 Service Unavailable,
// without Retry-After, so that a mesh client retries it at once on another instance;
// NewGRPCServer ends a refused call with RESOURCE_EXHAUSTED, which a proxyless client does
// not retry but steers away from. The handler's outcome is a success when it returns, dropped
// when the client went away (or, over HTTP, the handler panicked). Default: no shedding.
//
// Taken by NewHandler and NewGRPCServer.
func WithLoadShedding(l overload.Limiter) ServerOption {
	return serverOption(func(c *config) {
		if l == nil {
			c.errs = append(c.errs, errors.New("middleware: WithLoadShedding: limiter is nil"))
			return
		}
		c.server.shed = l
	})
}

// stage is one step of the server path. build returns next wrapped in the step, or nil when
// the options do not configure it.
type stage struct {
	name  string
	build func(c *config, next http.Handler) http.Handler
}

// handlerStages is the server path, outermost first. Telemetry comes first so that every
// answer, refusals included, is in the server span. The mTLS peer check is cheap (the
// handshake verified the certificate) and comes next, so that limits can key by the peer;
// the limits whose key is known without a token come before token validation, so that a
// flood of forged tokens costs a map lookup each, not a signature check; the per-subject
// limits come after it. The client's deadline is set once the caller is known (its peer
// identity and token subject are what a deadline trust predicate reads), before the work that
// it should bound: an injected delay, waiting for a shedding permit, the handler. Faults come
// after the limits, so that an injected abort does not hide a 429; shedding comes last so
// that its permits cover only work the server actually does.
var handlerStages = []stage{
	{"telemetry", buildTelemetry},
	{"cors", buildCORS}, // before authentication: preflights carry no credentials
	{"peer", buildPeer},
	{"authorizer", buildAuthorizer},
	{"ratelimit", buildRateLimit},
	{"jwt", buildJWT},
	{"consumers", buildConsumers}, // API keys or verified subjects, plans' routes and quotas
	{"ratelimit-subject", buildSubjectRateLimit},
	{"deadline", buildDeadline},
	{"edge", buildEdge}, // body limit and header transforms, on requests the limits admitted
	{"fault", buildFault},
	{"shed", buildShed},
}

// serverOperation is the operation NewHandler gives otelhttp; the span itself is named by the
// HTTP semantic conventions ("GET", "POST /route").
const serverOperation = "proxyless.server"

// NewHandler returns next wrapped in the server side of the mesh, configured by opts, in this
// order:
//
//  1. telemetry: a SERVER span (otelhttp) that continues the trace of the incoming W3C
//     traceparent (a malformed one is ignored and a new trace begins), reported to the
//     providers of WithTracerProvider and WithMeterProvider or the global ones as they are
//     when NewHandler runs, and costing almost nothing while they record nothing;
//     then CORS (WithCORS): preflights answered (204, or 403), CORS headers on answers;
//  2. mTLS peer authorization (WithPeerAuthorization): 403 without an allowed, verified
//     client certificate; then the Authorizer of WithAuthorizer (Consul intentions): 403;
//  3. the rate limits whose key is known before authentication (WithServerRateLimit with
//     KeyByClientIP, KeyByHeader, the peer identity...): 429;
//  4. token validation (WithJWT): 401 or 403, the verified claims in the request context;
//     then the consumers (WithConsumers): 401 or 403, the plan's routes (403) and quotas (429);
//  5. the rate limits keyed by the claims (KeyBySubject, WithAuthenticatedRateLimit): 429;
//  6. the deadline: the request's context gets the client's deadline, the time left that a
//     proxyless Transport sends in TimeoutHeader (a malformed value is ignored), capped by
//     WithMaxServerDeadline and believed only from the callers WithDeadlineTrust admits, so
//     that the Transport calls the handler makes with r.Context() carry what is left of it;
//  7. the body limit (WithMaxRequestBody, a route's edge.maxBodyBytes): 413, and the route's
//     request and response header transforms (WithEdgeRoutes);
//  8. fault injection (WithServerFaults);
//  9. load shedding (WithLoadShedding): 503.
//
// With no options at all it wraps next in the deadline stage alone (no telemetry: give
// WithTracerProvider or any option to have it). It validates every option and returns an error naming the bad ones. It takes the options of
// type HandlerOption: ServerOption (shared with NewGRPCServer) and Option; a client option
// does not compile here. TLS itself is the http.Server's: see auth.ServerTLS.
//
// The handler is safe for concurrent use, starts no goroutines and needs no cleanup.
func NewHandler(next http.Handler, opts ...HandlerOption) (http.Handler, error) {
	if next == nil {
		return nil, errors.New("middleware: NewHandler: next handler is nil")
	}
	cfg, err := newConfig(opts, HandlerOption.applyHandler)
	if err != nil {
		return nil, err
	}
	if len(opts) == 0 {
		// Nothing configured but the default every server gets: the client's deadline.
		return buildDeadline(cfg, next), nil
	}
	if cfg.server.tel, err = telemetry.New(cfg.tel...); err != nil {
		return nil, fmt.Errorf("middleware: telemetry: %w", err)
	}
	h := next
	for i := len(handlerStages) - 1; i >= 0; i-- {
		if wrapped := handlerStages[i].build(cfg, h); wrapped != nil {
			h = wrapped
		}
	}
	return h, nil
}

func buildTelemetry(c *config, next http.Handler) http.Handler {
	return c.server.tel.Handler(next, serverOperation)
}

func buildPeer(c *config, next http.Handler) http.Handler {
	if c.server.peers == nil {
		return nil
	}
	return c.server.peers.Handler(next)
}

func buildJWT(c *config, next http.Handler) http.Handler {
	if c.server.jwt == nil {
		return nil
	}
	return c.server.jwt.Handler(next)
}

func buildFault(c *config, next http.Handler) http.Handler {
	if c.server.faults == nil {
		return nil
	}
	r := c.server.faults
	return route.FaultHandler(next, func(req *http.Request) *route.Injector {
		rq := route.FromHTTP(req)
		fillCaller(req.Context(), &rq) // the verified identity, for TrustIdentities: route_caller.go
		if rt := r.Table().Match(&rq); rt != nil {
			return rt.Fault()
		}
		return nil
	})
}

func buildRateLimit(c *config, next http.Handler) http.Handler {
	return newRateLimitHandler(next, c.server.limitsFor(false))
}

func buildSubjectRateLimit(c *config, next http.Handler) http.Handler {
	return newRateLimitHandler(next, c.server.limitsFor(true))
}

func newRateLimitHandler(next http.Handler, limits []serverRateLimit) http.Handler {
	if len(limits) == 0 {
		return nil
	}
	return &rateLimitHandler{next: next, limits: limits}
}

// rateLimitHandler applies per-key rate limits.
type rateLimitHandler struct {
	next   http.Handler      // immutable
	limits []serverRateLimit // immutable
}

func (h *rateLimitHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	var shown ratelimit.Decision
	for i := range h.limits {
		l := &h.limits[i]
		d, err := l.lim.Take(r.Context(), l.key(httpIncoming(r)))
		if err != nil {
			// The request's context is done: the client has gone (or the server is
			// shutting down). Nobody reads the answer.
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		if !d.Allowed {
			hd := w.Header()
			setRateLimitHeaders(hd, d)
			if d.RetryAfter > 0 {
				hd[retryAfterHeader] = []string{strconv.FormatInt(ceilSeconds(d.RetryAfter), 10)}
			}
			http.Error(w, http.StatusText(http.StatusTooManyRequests), http.StatusTooManyRequests)
			return
		}
		if d.Limit > 0 && (shown.Limit == 0 || d.Remaining < shown.Remaining) {
			shown = d
		}
	}
	if shown.Limit > 0 { // Limit 0 when admitted: an unlimited key, nothing to show
		setRateLimitHeaders(w.Header(), shown)
	}
	h.next.ServeHTTP(w, r)
}

// setRateLimitHeaders writes d as RateLimit-Limit, RateLimit-Remaining and RateLimit-Reset.
func setRateLimitHeaders(h http.Header, d ratelimit.Decision) {
	v := make([]string, 3) // one allocation for the three values
	v[0] = strconv.Itoa(d.Limit)
	v[1] = strconv.Itoa(max(d.Remaining, 0))
	v[2] = strconv.FormatInt(ceilSeconds(d.Reset), 10)
	h[RateLimitLimitHeader] = v[0:1:1]
	h[RateLimitRemainingHeader] = v[1:2:2]
	h[RateLimitResetHeader] = v[2:3:3]
}

// ceilSeconds returns d in whole seconds, rounded up, never negative.
func ceilSeconds(d time.Duration) int64 {
	if d <= 0 {
		return 0
	}
	return int64((d + time.Second - 1) / time.Second)
}

func buildShed(c *config, next http.Handler) http.Handler {
	if c.server.shed == nil {
		return nil
	}
	return &shedHandler{next: next, lim: c.server.shed}
}

// shedHandler refuses requests its overload.Limiter does not admit.
type shedHandler struct {
	next http.Handler     // immutable
	lim  overload.Limiter // immutable
}

func (h *shedHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	release, err := h.lim.Acquire(r.Context())
	if err != nil {
		// A refusal, or a client that has already gone.
		http.Error(w, http.StatusText(http.StatusServiceUnavailable), http.StatusServiceUnavailable)
		return
	}
	completed := false
	defer func() {
		o := overload.Success
		if !completed || r.Context().Err() != nil {
			o = overload.Dropped
		}
		release(o)
	}()
	h.next.ServeHTTP(w, r)
	completed = true
}
