package middleware

import (
	"net/http"

	"github.com/proxyless/proxyless/internal/engine"
)

// withFallback gives the call of a routed request its route's fallback (the stable
// destination, route.Decision.Fallback), when it has one that resolves: the engine sends
// there the attempts the chosen destination cannot take (every breaker open, no endpoint, or
// a retry with no endpoint left that the request did not use). When that happens,
// the request is marked, so that the canary analysis counts it against the side first
// chosen, and counted in Stats.Fallbacks.
func (t *Transport) withFallback(cl *engine.Call[*http.Response], req *http.Request, rs *routeState) {
	fb := rs.dec.Fallback
	if fb == nil {
		return
	}
	d, err := t.destination(req, fb)
	if err != nil || d == nil {
		t.cfg.logger.Warn("middleware: route fallback unavailable", "route", rs.dec.Route.Name(), "fallback", fb.Key(), "error", err)
		return
	}
	cl.Fallback = &d.eng
	cl.OnFallback = func() {
		rs.fellBack.Store(true)
		t.fallbacks.Add(1)
	}
}
