package middleware

import (
	"errors"
	"net/http"

	"github.com/proxyless/proxyless/balancer"
	"github.com/proxyless/proxyless/breaker"
	"github.com/proxyless/proxyless/outcome"
)

// fallback returns the destination a routed request goes to when every endpoint of the one
// its route chose refused it (kind and err are the engine's refusal): the route's stable
// destination (route.Decision.Fallback), or nil when there is none, the refusal was of
// another kind (a limit, the caller), or the fallback cannot be resolved. It marks rs, so
// that the canary analysis counts the request against the side first chosen, and counts the
// fallback in Stats.Fallbacks.
func (t *Transport) fallback(req *http.Request, rs *routeState, kind outcome.Kind, err error) *destination {
	fb := rs.dec.Fallback
	if fb == nil || kind != outcome.LocalRefusal || req.Context().Err() != nil ||
		!(errors.Is(err, breaker.ErrOpen) || errors.Is(err, balancer.ErrNoEndpoints)) {
		return nil
	}
	d, derr := t.destination(req, fb)
	if derr != nil || d == nil {
		t.cfg.logger.Warn("middleware: route fallback unavailable", "route", rs.dec.Route.Name(), "fallback", fb.Key(), "error", derr)
		return nil
	}
	rs.fellBack = true
	t.fallbacks.Add(1)
	return d
}
