package middleware

import (
	"context"
	"errors"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/proxyless/proxyless/balancer"
	"github.com/proxyless/proxyless/balancer/grpcbalancer"
	"github.com/proxyless/proxyless/breaker"
	"github.com/proxyless/proxyless/internal/telemetry"
	"github.com/proxyless/proxyless/outcome"
	"github.com/proxyless/proxyless/route"
	"github.com/proxyless/proxyless/tracing"
)

// grpcSide is where the attempts of a call or stream go: a channel, how to send on it, and
// the call state its picker reads (the endpoints tried on it).
type grpcSide struct {
	cc       *grpc.ClientConn
	invoker  grpc.UnaryInvoker // a unary call's
	streamer grpc.Streamer     // a stream's
	call     *grpcbalancer.Call
}

// grpcFallback is the route's fallback (route.Decision.Fallback) of one call or stream: the
// side its attempts go to once the side its route chose can take them no more (every breaker
// open, no endpoint READY, or a retry with no endpoint left that the call did not use), as
// an HTTP request's do (engine.Call.Fallback).
type grpcFallback struct {
	c        *grpcClient
	to       grpcSide
	fellBack atomic.Bool // an attempt went to it: the canary analysis counts the call a failure
}

// fallbackFor returns the fallback of a call or stream whose route decided rt, own being the
// call's own channel and ownInvoker or ownStreamer how to send on it; nil when the route has
// none or the client cannot dial it.
func (c *grpcClient) fallbackFor(ctx context.Context, rt *grpcRoute, own *grpc.ClientConn, ownInvoker grpc.UnaryInvoker, ownStreamer grpc.Streamer, stream bool) *grpcFallback {
	fb := rt.dec.Fallback
	if !rt.matched || fb == nil {
		return nil
	}
	f := &grpcFallback{c: c, to: grpcSide{cc: own, invoker: ownInvoker, streamer: ownStreamer, call: grpcbalancer.NewCall(stream)}}
	if fb.Service != serviceOf(own.Target()) || !fb.Subset.IsZero() {
		conn, err := c.routed.conn(rt.dec.Route.Name(), fb, c.cfg.creds.tls != nil)
		if err != nil {
			c.cfg.logger.Warn("middleware: route fallback unavailable", "route", rt.dec.Route.Name(), "fallback", fb.Key(), "error", err)
			return nil
		}
		f.to.cc, f.to.invoker, f.to.streamer = conn, invokeOn, streamOn
	}
	c.routeHashKey(ctx, rt.dec.Route, f.to.call) // hashing.go
	return f
}

// take moves side from from to the fallback, once, counting it in Stats.Fallbacks, and
// returns where the attempt refused on from goes now: the fallback (also when another
// attempt of the call moved side first); nil when from is the fallback itself.
func (f *grpcFallback) take(side *atomic.Pointer[grpcSide], from *grpcSide) *grpcSide {
	if from == &f.to {
		return nil
	}
	if side.CompareAndSwap(from, &f.to) {
		f.fellBack.Store(true)
		f.c.fallbacks.Add(1)
	}
	return side.Load()
}

// sideRefused reports whether attempt a, which failed with err, never reached an endpoint
// because its channel could take none: its picker refused it (every breaker open, no
// endpoint, or only endpoints the call already tried, see grpcbalancer.Attempt.OnlyNew), or
// gRPC failed it Unavailable before any pick (no endpoint of the channel is READY).
func sideRefused(a *grpcbalancer.Attempt, err error) bool {
	if err == nil {
		return false
	}
	if pe := a.PickError(); pe != nil {
		return errors.Is(pe, breaker.ErrOpen) || errors.Is(pe, balancer.ErrNoEndpoints) || errors.Is(pe, grpcbalancer.ErrOnlyTried)
	}
	return a.Endpoint() == "" && status.Code(err) == codes.Unavailable
}

// start starts attempt n of the stream on its side, after waiting waited (for telemetry).
// When that side can take it no more (see sideRefused), the attempt, and every later one of
// the stream, goes to the route's fallback instead; a retry asks for an endpoint the stream
// did not use (grpcbalancer.Attempt.OnlyNew) while there is a fallback to go to. Call it
// from open only, which the stream's sends and retries order.
func (s *retryStream) start(n int, kind tracing.AttemptKind, waited time.Duration) (grpc.ClientStream, context.CancelFunc, *grpcbalancer.Attempt, *telemetry.Attempt, error) {
	for {
		actx, cancel, a, ta := s.attempt(n, kind, waited)
		onFirst := s.fb != nil && !s.fb.fellBack.Load()
		a.OnlyNew = onFirst && kind == tracing.AttemptRetry
		cs, err := s.streamer(actx, s.desc, s.cc, s.method, s.opts...)
		if s.c.attemptDone(a) {
			ta.AttemptRefused()
		}
		if !onFirst || !sideRefused(a, err) {
			return cs, cancel, a, ta, err
		}
		cancel()
		ta.End(outcome.LocalRefusal)
		ta.Discarded()
		s.cc, s.streamer, s.call = s.fb.to.cc, s.fb.to.streamer, s.fb.to.call
		s.fb.fellBack.Store(true)
		s.c.fallbacks.Add(1)
	}
}

// analyse reports the stream's outcome, kind, to its route's canary analysis, once, as the
// outcome table says (outcome.Kind.CanaryFailed), with the time its first attempt took to
// start as its latency (a stream lasts as long as its peers want); a stream that went to the
// route's fallback counts as a failure of the side first chosen, whatever the fallback did.
func (s *retryStream) analyse(kind outcome.Kind) {
	if !s.rt.matched {
		return
	}
	lat := s.opened
	if lat == 0 {
		lat = time.Since(s.rt.start)
	}
	if s.fb != nil && s.fb.fellBack.Load() {
		s.rt.dec.Done(route.Outcome{Latency: lat, Failed: true})
	} else if failed, counted := kind.CanaryFailed(); counted {
		s.rt.dec.Done(route.Outcome{Latency: lat, Failed: failed})
	}
}
