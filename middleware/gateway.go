package middleware

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httputil"
	"slices"
	"strings"

	"github.com/proxyless/proxyless/auth"
	"github.com/proxyless/proxyless/balancer"
	"github.com/proxyless/proxyless/breaker"
	"github.com/proxyless/proxyless/discovery"
	"github.com/proxyless/proxyless/ratelimit"
	"github.com/proxyless/proxyless/route"
)

// GatewayConfig configures [NewReverseProxy] and [NewGateway]. Service is required; every
// other field's zero value is its default.
type GatewayConfig struct {
	// Service is the mesh service (the host name the transport's resolver knows, "web" or
	// "web:8080") that a request goes to unless a route of the transport (WithRoutes) sends
	// it elsewhere. The Host a caller sends never names the service, nor chooses the route:
	// the request is sent, and routed, as a request to Service (its Host is Service; the
	// caller's Host is in X-Forwarded-Host, see Trust), so that a caller cannot reach an
	// internal service, or another service's route, by choosing its Host. Required.
	Service string
	// RouteByHost trusts every caller's Host to choose the route: the request keeps the Host
	// the caller sent, the transport's routes match it (a route table with a route per host,
	// or Consul discovery-chain routes, which match each service's name as the Host, then
	// let any caller reach any of those services by naming it), and the service sees it.
	// The edge route stage (WithEdgeRoutes) and the consumers' route check (WithConsumers)
	// of NewGateway match it too. Set it only for a gateway whose routes are meant to be
	// chosen by virtual host. Default false: routes are matched with Host Service.
	RouteByHost bool
	// Scheme is the scheme of the requests sent to the service: "http" or "https". Default
	// "http".
	Scheme string
	// Trust says which callers are proxies whose forwarding headers are believed: such a
	// caller's X-Forwarded-For gets the caller's address appended, and its X-Forwarded-Host
	// and X-Forwarded-Proto are kept. Any other caller's X-Forwarded-* headers (all of them:
	// -Port, -Prefix... too), X-Real-Ip, X-Client-Ip and True-Client-Ip are removed, and
	// the gateway sets what it saw: X-Forwarded-For is the caller's address alone,
	// X-Forwarded-Host the Host it sent, X-Forwarded-Proto "http" or "https". Forwarded (RFC 7239) is removed from every
	// request: the gateway speaks X-Forwarded-*. The predicate sees the caller's address
	// (route.Request.RemoteAddr) and, with WithPeerAuthorization, its verified SPIFFE ID
	// (Identity); route.TrustPrefixes and route.TrustIdentities build one. KeyByClientIP
	// keeps its own list (ratelimit.ClientIPConfig.TrustedProxies): give both the same
	// proxies. Default nil: no caller is trusted.
	Trust func(*route.Request) bool
	// Logger receives what the proxy has to say (upstream errors, a body copy cut short).
	// Default: discard.
	Logger *slog.Logger
}

// NewReverseProxy returns an httputil.ReverseProxy that sends every request through transport
// (a mesh Transport, so that routes, splits, canaries, retries and ejection apply to the
// internal services) to cfg.Service, with the glue an edge proxy needs:
//
//   - hop-by-hop headers (Connection and the headers it names, Keep-Alive, Proxy-*, TE,
//     Trailer, Transfer-Encoding, Upgrade) are removed, except the Upgrade of a protocol
//     switch;
//   - X-Forwarded-For, -Host and -Proto are set by the proxy, and a caller's own are
//     replaced unless cfg.Trust admits it (see [GatewayConfig]);
//   - the request's Host is cfg.Service, so that the transport's routes match it as a
//     request to the service whatever Host the caller sent (the caller's is in
//     X-Forwarded-Host); with cfg.RouteByHost it keeps the Host the caller sent;
//   - streamed answers (text/event-stream, or of unknown length) are flushed as they come;
//     a protocol switch (WebSocket) is carried through when the transport returns the
//     upgraded connection as a writable body, as http.Transport does;
//   - a transport error becomes 413 for a request body over a limit of this package, 504
//     for a deadline, 503 for a local refusal (no endpoints, circuit open, rate limited, an
//     unknown service) and 502 otherwise.
//
// The proxy may be changed (ModifyResponse, say) before it serves. Errors name the bad field.
func NewReverseProxy(transport http.RoundTripper, cfg GatewayConfig) (*httputil.ReverseProxy, error) {
	return newReverseProxy(transport, cfg, false)
}

// NewGateway returns an edge gateway in one call: NewHandler's stages configured by opts
// (WithCORS, WithMaxRequestBody, WithEdgeRoutes, WithJWT, WithServerRateLimit,
// WithLoadShedding...) in front of NewReverseProxy(transport, cfg). When WithCORS is given,
// the CORS headers of upstream answers are removed, so that the gateway's policy is the only
// one a browser sees. The edge route stage (WithEdgeRoutes) and the consumers' route check
// (WithConsumers) match routes as the transport will match the proxied request: with Host
// cfg.Service, unless cfg.RouteByHost; and a consumer's plan routes are checked again on the
// request the proxy sends (403 when the route it takes is not the plan's: a header the
// proxy replaced, say). The handler is safe for concurrent use; the
// transport's Close is the caller's. Errors name the bad option or field.
func NewGateway(transport http.RoundTripper, cfg GatewayConfig, opts ...HandlerOption) (http.Handler, error) {
	hc, err := newConfig(opts, HandlerOption.applyHandler)
	if err != nil {
		return nil, err
	}
	if cs := hc.server.consumers; cs != nil && cs.pol.Router != nil && transport != nil {
		transport = planGuard{next: transport, router: cs.pol.Router} // gateway_routehost.go
	}
	rp, err := newReverseProxy(transport, cfg, hc.server.edge.cors != nil)
	if err != nil {
		return nil, err
	}
	if len(opts) > 0 && !cfg.RouteByHost { // without options, no stage matches routes
		opts = append(slices.Clip(opts), gatewayRouteHost(cfg.Service)) // gateway_routehost.go
	}
	return NewHandler(rp, opts...)
}

func newReverseProxy(transport http.RoundTripper, cfg GatewayConfig, stripCORS bool) (*httputil.ReverseProxy, error) {
	if transport == nil {
		return nil, errors.New("middleware: NewReverseProxy: transport is nil")
	}
	switch {
	case cfg.Service == "" || strings.ContainsAny(cfg.Service, "/?#@ \t\r\n"):
		return nil, fmt.Errorf("middleware: GatewayConfig.Service %q is not a service name", truncateString(cfg.Service, 64))
	case cfg.Scheme != "" && cfg.Scheme != "http" && cfg.Scheme != "https":
		return nil, fmt.Errorf(`middleware: GatewayConfig.Scheme must be "http" or "https", got %q`, truncateString(cfg.Scheme, 16))
	}
	g := &gatewayGlue{service: cfg.Service, scheme: cmp.Or(cfg.Scheme, "http"), trust: cfg.Trust, logger: cfg.Logger, routeByHost: cfg.RouteByHost}
	if g.logger == nil {
		g.logger = slog.New(slog.DiscardHandler)
	}
	rp := &httputil.ReverseProxy{
		Rewrite:      g.rewrite,
		Transport:    transport,
		ErrorHandler: g.error,
		ErrorLog:     slog.NewLogLogger(g.logger.Handler(), slog.LevelWarn),
	}
	if stripCORS {
		rp.ModifyResponse = stripCORSHeaders
	}
	return rp, nil
}

// gatewayGlue is the edge proxy's part of a ReverseProxy. Immutable.
type gatewayGlue struct {
	service, scheme string
	trust           func(*route.Request) bool
	logger          *slog.Logger
	routeByHost     bool // keep the caller's Host
}

// The forwarding headers, canonical.
const (
	hdrXFF   = "X-Forwarded-For"
	hdrXFH   = "X-Forwarded-Host"
	hdrXFP   = "X-Forwarded-Proto"
	hdrXReal = "X-Real-Ip"
)

// rewrite builds the outgoing request. ReverseProxy has already removed the hop-by-hop
// headers and the caller's Forwarded and X-Forwarded-* from pr.Out.
func (g *gatewayGlue) rewrite(pr *httputil.ProxyRequest) {
	in, out := pr.In, pr.Out
	out.URL.Scheme, out.URL.Host = g.scheme, g.service
	if !g.routeByHost {
		// The transport matches routes on the Host: the request is one to the service.
		// SetXForwarded below reads the caller's Host from in.
		out.Host = g.service
	}
	trusted := g.trusted(in)
	stripUnderscoreAliases(out.Header)
	if trusted {
		if v := in.Header[hdrXFF]; len(v) > 0 {
			out.Header[hdrXFF] = slices.Clone(v) // SetXForwarded appends the caller
		}
	} else {
		stripClientAddressHeaders(out.Header)
	}
	pr.SetXForwarded()
	if trusted {
		for _, k := range []string{hdrXFH, hdrXFP} {
			if v := in.Header[k]; len(v) > 0 {
				out.Header[k] = slices.Clone(v)
			}
		}
	}
}

// stripClientAddressHeaders removes the headers an untrusted caller could use to pass itself
// off as another client: every X-Forwarded-* (-Port, -Prefix, -Ssl... beside the three the
// gateway sets), X-Real-Ip, X-Client-Ip and True-Client-Ip.
func stripClientAddressHeaders(h http.Header) {
	for k := range h {
		if strings.HasPrefix(k, "X-Forwarded-") {
			delete(h, k)
		}
	}
	delete(h, hdrXReal)
	delete(h, "X-Client-Ip")
	delete(h, "True-Client-Ip")
}

// stripUnderscoreAliases removes the client address headers spelled with '_' for '-'
// (X_Forwarded_For, X_Real_Ip): CGI, WSGI, Rack and PHP services read them as the headers
// the gateway sets (HTTP_X_FORWARDED_FOR), and no proxy sends them, trusted or not.
func stripUnderscoreAliases(h http.Header) {
	for k := range h {
		if !strings.Contains(k, "_") {
			continue
		}
		n := strings.ReplaceAll(strings.ToLower(k), "_", "-")
		if strings.HasPrefix(n, "x-forwarded-") || n == "forwarded" || n == "x-real-ip" || n == "x-client-ip" || n == "true-client-ip" {
			delete(h, k)
		}
	}
}

// trusted asks cfg.Trust about the caller of in.
func (g *gatewayGlue) trusted(in *http.Request) bool {
	if g.trust == nil {
		return false
	}
	rq := route.FromHTTP(in)
	if p, ok := auth.PeerFromContext(in.Context()); ok {
		rq.Identity = p.SPIFFEID
	}
	return g.trust(&rq)
}

// error answers a request the transport could not complete.
func (g *gatewayGlue) error(w http.ResponseWriter, r *http.Request, err error) {
	var tooLarge *http.MaxBytesError
	switch {
	case errors.As(err, &tooLarge) || bodyOverLimit(r):
		refuseTooLarge(w, r)
		return
	case errors.Is(err, errPlanRoute): // gateway_routehost.go
		writeJSONError(w, http.StatusForbidden, `{"error":"forbidden"}`)
		return
	case r.Context().Err() != nil:
		// The caller has gone: nobody reads the answer, but telemetry and logs see it.
		w.WriteHeader(http.StatusBadGateway)
		return
	}
	code := http.StatusBadGateway
	switch {
	case errors.Is(err, context.DeadlineExceeded):
		code = http.StatusGatewayTimeout
	case errors.Is(err, balancer.ErrNoEndpoints), errors.Is(err, breaker.ErrOpen),
		errors.Is(err, ratelimit.ErrLimited), errors.Is(err, discovery.ErrUnknownService):
		code = http.StatusServiceUnavailable
	}
	g.logger.Warn("middleware: gateway: upstream request failed", "service", g.service, "status", code, "error", err)
	http.Error(w, http.StatusText(code), code)
}

// corsResponseHeaders are the CORS headers an upstream may answer with, which an edge with
// its own CORS policy removes.
var corsResponseHeaders = []string{hdrAllowOrigin, hdrAllowCreds, hdrAllowMethods, hdrAllowHeaders, hdrExposeHeaders, hdrMaxAge}

func stripCORSHeaders(resp *http.Response) error {
	for _, k := range corsResponseHeaders {
		delete(resp.Header, k)
	}
	return nil
}
