package middleware

import (
	"context"
	"net"
	"time"
)

// A destination's connect timeout (DestinationPolicy.ConnectTimeout) travels to the dialer
// in the request's context: the Transport puts it there for requests to that destination,
// and the dialers of its counting clone of the base (see countingClone) bound each new
// connection's dial by it. Connections already open are reused without it.

// connectTimeoutKey is the context key of a destination's connect timeout.
type connectTimeoutKey struct{}

// withConnectTimeout returns ctx carrying the connect timeout of service in snap's
// destination policies; ctx itself when there is none.
func withConnectTimeout(ctx context.Context, snap *configSnap, service string) context.Context {
	if snap == nil {
		return ctx
	}
	if e := snap.dests.m[service]; e != nil && e.spec.ConnectTimeout > 0 {
		return context.WithValue(ctx, connectTimeoutKey{}, e.spec.ConnectTimeout)
	}
	return ctx
}

// timedDial wraps dial so that a dial whose context carries a connect timeout fails once it
// has taken that long (a net.Error whose Timeout is true for net.Dialer).
func timedDial(dial func(ctx context.Context, network, addr string) (net.Conn, error)) func(ctx context.Context, network, addr string) (net.Conn, error) {
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		if d, ok := ctx.Value(connectTimeoutKey{}).(time.Duration); ok && d > 0 {
			var cancel context.CancelFunc
			ctx, cancel = context.WithTimeout(ctx, d)
			defer cancel()
		}
		return dial(ctx, network, addr)
	}
}
