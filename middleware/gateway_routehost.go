package middleware

import (
	"net/http"

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
