package middleware

import (
	"errors"
	"net/http"
	"slices"

	"github.com/proxyless/proxyless/auth"
	"github.com/proxyless/proxyless/route"
)

// gatewayRouteHost is the option NewGateway adds to the handler's: the edge route stage
// (WithEdgeRoutes) and the consumer stage's route check (WithConsumers) match routes with
// host as the request's Host, as the Transport will match the request the gateway sends to
// the service. "" (GatewayConfig.RouteByHost, or NewHandler alone): the Host as it arrived.
type gatewayRouteHost string

func (h gatewayRouteHost) applyHandler(c *config) { c.server.routeHost = string(h) }

// routeRequest returns r as a route table matches it; host, when not "", replaces its Host.
func routeRequest(r *http.Request, host string) route.Request {
	rq := route.FromHTTP(r)
	if host != "" {
		rq.Host = host
	}
	return rq
}

// errPlanRoute is planGuard's refusal: the proxy answers it 403 (gatewayGlue.error).
var errPlanRoute = errors.New("middleware: gateway: the consumer's plan does not allow the route of the request sent")

// planGuard is the transport of a NewGateway with consumers: it checks the consumer's plan
// routes (WithConsumers) again, on the request the proxy sends, matched as the Transport
// matches it, so that no change the proxy or the handler's stages make to the request
// between the consumer stage and the transport (forwarding headers replaced, hop-by-hop
// headers removed, an edge route's header transforms) leads it to a route the plan does not
// list.
type planGuard struct {
	next   http.RoundTripper // immutable
	router *route.Router     // immutable; ConsumerPolicy.Router
}

func (g planGuard) RoundTrip(req *http.Request) (*http.Response, error) {
	if c, ok := auth.ConsumerFromContext(req.Context()); ok && len(c.Limits.Routes) > 0 {
		rq := route.FromHTTP(req)
		fillCaller(req.Context(), &rq) // route_caller.go, as Transport.lookup
		if rt := g.router.Table().Match(&rq); rt == nil || !slices.Contains(c.Limits.Routes, rt.Name()) {
			if req.Body != nil {
				_ = req.Body.Close()
			}
			return nil, errPlanRoute
		}
	}
	return g.next.RoundTrip(req)
}
