package middleware

import (
	"errors"

	"google.golang.org/grpc"

	"github.com/proxyless/proxyless/balancer"
	"github.com/proxyless/proxyless/balancer/grpcbalancer"
	"github.com/proxyless/proxyless/breaker"
	"github.com/proxyless/proxyless/internal/engine"
)

// fallbackConn returns the channel a unary call goes to when the picker of the destination
// its route chose refused every attempt (every breaker open, no endpoint): the channel of the
// route's fallback (route.Decision.Fallback), own when that is the call's own channel's
// service; nil when the call was not so refused or there is no fallback. It marks rt, so that
// the canary analysis counts the call against the side first chosen, and counts the fallback
// in Stats.Fallbacks.
func (c *grpcClient) fallbackConn(rt *grpcRoute, own *grpc.ClientConn, res engine.Result[*grpcAttempt]) *grpc.ClientConn {
	fb := rt.dec.Fallback
	if !rt.matched || fb == nil || res.Err == nil || res.Value == nil {
		return nil
	}
	if pe := res.Value.pickErr; pe == nil || !(errors.Is(pe, breaker.ErrOpen) || errors.Is(pe, balancer.ErrNoEndpoints)) {
		return nil
	}
	conn := own
	if fb.Service != serviceOf(own.Target()) || !fb.Subset.IsZero() {
		var err error
		if conn, err = c.routed.conn(rt.dec.Route.Name(), fb, c.cfg.creds.tls != nil); err != nil {
			c.cfg.logger.Warn("middleware: route fallback unavailable", "route", rt.dec.Route.Name(), "fallback", fb.Key(), "error", err)
			return nil
		}
	}
	rt.fellBack = true
	c.fallbacks.Add(1)
	return conn
}

// to returns a copy of the unary call u, not yet run, that goes to the channel cc (the
// caller's invoker when cc is own, the caller's channel), as the continuation of u: the
// budget does not count it again.
func (u *grpcUnary) to(cc, own *grpc.ClientConn, ownInvoker grpc.UnaryInvoker) *grpcUnary {
	n := &grpcUnary{
		c: u.c, pol: u.pol, tr: u.tr, call: grpcbalancer.NewCall(false), method: u.method, req: u.req,
		reply: u.reply, replyType: u.replyType, hedged: u.hedged, cc: cc, invoker: invokeOn, opts: u.opts,
	}
	if cc == own {
		n.invoker = ownInvoker
	}
	n.run = engine.Call[*grpcAttempt]{
		Policy: u.run.Policy, Budget: u.run.Budget, Stats: u.run.Stats, Sender: n, Hedgeable: n.hedged,
		Latency: u.c.latencyFor(cc, u.pol), OnBudgetRefused: u.run.OnBudgetRefused, Continued: true,
	}
	return n
}
