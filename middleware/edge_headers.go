package middleware

import (
	"errors"
	"net/http"

	"github.com/proxyless/proxyless/route"
)

// edgeConfig holds what the edge options of NewHandler set (WithCORS, WithMaxRequestBody,
// WithEdgeRoutes).
type edgeConfig struct {
	cors    *corsPolicy   // nil when CORS is not answered: edge_cors.go
	maxBody int64         // 0 when bodies are not limited: edge_body.go
	routes  *route.Router // nil when no route has edge settings
}

// WithEdgeRoutes makes NewHandler carry out the edge settings (route.Edge: a body limit,
// request and response header transforms) of the route of r's current table that each
// request matches, usually the router the gateway's Transport routes by (WithRoutes). The
// route is matched as the transport matches it, on the request as it arrives: what a caller
// can choose of it (headers, query) chooses the route, as it chooses the destination. Behind
// NewGateway the Host is the gateway's service (GatewayConfig.Service), as on the request
// the gateway sends, unless GatewayConfig.RouteByHost.
// Request headers are transformed before the handler runs (after authentication and the rate
// limits, which see them as sent); response headers when the handler writes its status (a
// protocol switch, 101, keeps the headers the handler gave it). The router may be reloaded
// while the server runs. Default: no per-route edge settings.
//
// Taken by NewHandler.
func WithEdgeRoutes(r *route.Router) HandlerOption {
	return handlerOption(func(c *config) {
		if r == nil {
			c.errs = append(c.errs, errors.New("middleware: WithEdgeRoutes: router is nil"))
			return
		}
		c.server.edge.routes = r
	})
}

func buildEdge(c *config, next http.Handler) http.Handler {
	e := c.server.edge
	if e.maxBody == 0 && e.routes == nil {
		return nil
	}
	return &edgeHandler{next: next, maxBody: e.maxBody, routes: e.routes, routeHost: c.server.routeHost}
}

// edgeHandler applies the body limit and the route's header transforms.
type edgeHandler struct {
	next    http.Handler  // immutable
	maxBody int64         // immutable
	routes  *route.Router // immutable; nil when none
	// routeHost is the Host routes are matched with (NewGateway's service); "": r.Host.
	routeHost string // immutable
}

func (h *edgeHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	limit, pol := h.maxBody, (*route.EdgePolicy)(nil)
	if h.routes != nil {
		rq := routeRequest(r, h.routeHost) // gateway_routehost.go
		if rt := h.routes.Table().Match(&rq); rt != nil {
			pol = rt.Edge()
		}
		if pol != nil && pol.MaxBodyBytes() > 0 {
			limit = pol.MaxBodyBytes()
		}
	}
	var guard *bodyGuard
	if limit > 0 {
		if r.ContentLength > limit {
			refuseTooLarge(w, r)
			abandonBody(w, r)
			return
		}
		// A known length within the limit is enforced by net/http's own reader.
		if r.ContentLength < 0 && r.Body != nil && r.Body != http.NoBody {
			body := &limitedBody{rc: r.Body, left: limit, limit: limit}
			r.Body = body
			guard = &bodyGuard{ResponseWriter: w, r: r, body: body}
			w = guard
		}
	}
	var rw *headerRewriter
	if pol != nil {
		if pol.RewritesRequest() {
			pol.RewriteRequest(r.Header)
		}
		if pol.RewritesResponse() {
			rw = &headerRewriter{ResponseWriter: w, pol: pol}
			w = rw
		}
	}
	h.next.ServeHTTP(w, r)
	if rw != nil && !rw.done {
		// The handler wrote nothing: net/http sends 200 with these headers by itself.
		rw.done = true
		pol.RewriteResponse(rw.ResponseWriter.Header())
	}
	if guard != nil && guard.finish() {
		abandonBody(guard.ResponseWriter, r)
	}
}

// headerRewriter applies a route's response header transforms when the status is written.
type headerRewriter struct {
	http.ResponseWriter
	pol  *route.EdgePolicy
	done bool
}

func (h *headerRewriter) WriteHeader(code int) {
	if !h.done && (code >= 200 || code == http.StatusSwitchingProtocols) {
		h.done = true
		h.pol.RewriteResponse(h.ResponseWriter.Header())
	}
	h.ResponseWriter.WriteHeader(code)
}

func (h *headerRewriter) Write(p []byte) (int, error) {
	if !h.done {
		h.WriteHeader(http.StatusOK)
	}
	return h.ResponseWriter.Write(p)
}

// FlushError flushes what the handler wrote (for http.ResponseController).
func (h *headerRewriter) FlushError() error {
	if !h.done {
		h.WriteHeader(http.StatusOK)
	}
	return http.NewResponseController(h.ResponseWriter).Flush()
}

// Flush is FlushError for handlers that ask for an http.Flusher.
func (h *headerRewriter) Flush() { _ = h.FlushError() }

// Unwrap returns the ResponseWriter underneath (for http.ResponseController).
func (h *headerRewriter) Unwrap() http.ResponseWriter { return h.ResponseWriter }
