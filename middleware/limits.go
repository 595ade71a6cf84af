package middleware

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptrace"
	"sync"
	"sync/atomic"

	"github.com/proxyless/proxyless/balancer"
	"github.com/proxyless/proxyless/internal/telemetry"
	"github.com/proxyless/proxyless/tracing"
)

// WithLimits sets the limits of every destination: its connections, pending requests,
// requests and retries at once, in the manner of Envoy's circuit-breaker thresholds (see
// balancer.Limits, which it sets in the balancer configuration, whatever WithBalancer says).
// Each refusal is an error matching the limit's balancer.ErrMax* and balancer.ErrOverflow,
// classified as a local refusal, and counts once in the proxyless.destination.overflows
// metric. A retry or hedge MaxRetries refuses is not sent: the caller gets the result of the
// attempt it would have replaced.
//
// The Transport counts connections through the dialer of its base, which must then be an
// *http.Transport (or nil): the Transport uses a clone of it whose DialContext (and TLS
// dialer, DialTLSContext or DialTLS, when set) counts the connections each destination
// opens, and closes the clone's idle connections on Close. A gRPC client counts requests
// (calls and streams) and retries per channel target, and refuses MaxConnections and
// MaxPendingRequests, which it cannot enforce.
//
// Taken by NewTransport and NewGRPCClient.
func WithLimits(l balancer.Limits) ClientOption {
	return clientOption(func(c *config) { c.limits = &l })
}

// overflows records the refusals of a destination's limits: in its telemetry and in the
// client's count (Stats.Overflows).
type overflows struct {
	tel *telemetry.Destination
	n   *atomic.Int64
}

func (o overflows) record(l balancer.Limit) {
	o.n.Add(1)
	o.tel.Overflow(l.String())
}

// acquireAttempt takes the request slot (and, for a retry or a hedge, the retry slot) of an
// attempt from lim, recording a refusal in rec. The returned function gives them back.
func acquireAttempt(lim *balancer.Limiter, kind tracing.AttemptKind, rec overflows) (func(), error) {
	retry := kind != tracing.AttemptFirst
	if retry {
		if err := lim.AcquireRetry(); err != nil {
			rec.record(balancer.LimitRetries)
			return nil, err
		}
	}
	if err := lim.AcquireRequest(); err != nil {
		if retry {
			lim.ReleaseRetry()
		}
		rec.record(balancer.LimitRequests)
		return nil, err
	}
	return func() {
		lim.ReleaseRequest()
		if retry {
			lim.ReleaseRetry()
		}
	}, nil
}

// limitedBase returns the transport to send through when connections are limited: a clone
// of base whose dialers count each destination's connections (see limitedDial), or base
// itself (and nil) when they are not.
func limitedBase(base http.RoundTripper, l balancer.Limits) (http.RoundTripper, *http.Transport, error) {
	if l.MaxConnections == 0 {
		return base, nil, nil
	}
	if base == nil {
		base = http.DefaultTransport
	}
	ht, ok := base.(*http.Transport)
	if !ok {
		return nil, nil, fmt.Errorf("middleware: WithLimits: MaxConnections needs the base transport to be an *http.Transport (or nil), got %T", base)
	}
	ht = countingClone(ht)
	return ht, ht, nil
}

// countingClone returns a clone of ht whose dialers count each destination's connections (see
// limitedDial).
func countingClone(ht *http.Transport) *http.Transport {
	ht = ht.Clone()
	dial := ht.DialContext
	if dial == nil {
		if old := ht.Dial; old != nil { //nolint:staticcheck // honour the deprecated Dial when it is all there is
			dial = func(_ context.Context, network, addr string) (net.Conn, error) { return old(network, addr) }
		} else {
			dial = (&net.Dialer{}).DialContext
		}
	}
	// timedDial (connect_timeout.go) applies a destination's connect timeout.
	ht.DialContext, ht.Dial = limitedDial(timedDial(dial)), nil
	switch old := ht.DialTLS; { //nolint:staticcheck // honour the deprecated DialTLS as Dial above
	case ht.DialTLSContext != nil:
		ht.DialTLSContext = limitedDial(timedDial(ht.DialTLSContext))
	case old != nil:
		ht.DialTLSContext = limitedDial(func(_ context.Context, network, addr string) (net.Conn, error) { return old(network, addr) })
		ht.DialTLS = nil //nolint:staticcheck // replaced by the counting DialTLSContext
	}
	return ht
}

// dialKey is the context key of an attempt's dialTicket.
type dialKey struct{}

// dialTicket tells the dialer which destination an attempt's new connection is for, and when
// the attempt stops waiting for one.
type dialTicket struct {
	lim  *balancer.Limiter
	rec  overflows
	req  context.Context // the attempt's
	got  chan struct{}   // closed once the attempt has a connection
	once sync.Once
}

// withDialTicket returns the attempt's context carrying its dialTicket, and a client trace
// that closes the ticket's got once net/http gives the attempt a connection, dialed or idle.
func withDialTicket(ctx context.Context, lim *balancer.Limiter, rec overflows) context.Context {
	tk := &dialTicket{lim: lim, rec: rec, req: ctx, got: make(chan struct{})}
	ctx = httptrace.WithClientTrace(ctx, &httptrace.ClientTrace{
		GotConn: func(httptrace.GotConnInfo) { tk.once.Do(func() { close(tk.got) }) },
	})
	return context.WithValue(ctx, dialKey{}, tk)
}

// limitedDial wraps dial so that a connection for a destination with MaxConnections takes
// one of its slots until it is closed, waiting as a pending request while there are none. A
// dial without a ticket (a request that passes through) is not counted. net/http dials in a
// context detached from the request's cancellation; the wait also ends when the request's
// context does or when the request gets another connection.
func limitedDial(dial func(ctx context.Context, network, addr string) (net.Conn, error)) func(ctx context.Context, network, addr string) (net.Conn, error) {
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		tk, _ := ctx.Value(dialKey{}).(*dialTicket)
		if tk == nil {
			return dial(ctx, network, addr)
		}
		wctx, cancel := context.WithCancel(ctx)
		stop := context.AfterFunc(tk.req, cancel)
		err := tk.lim.AcquireConn(wctx, tk.got)
		stop()
		cancel()
		if err != nil {
			var oe *balancer.OverflowError
			if errors.As(err, &oe) {
				tk.rec.record(oe.Limit)
			}
			return nil, err
		}
		conn, err := dial(ctx, network, addr)
		if err != nil {
			tk.lim.ReleaseConn()
			return nil, err
		}
		return &limitedConn{Conn: conn, lim: tk.lim}, nil
	}
}

// limitedConn gives its connection slot back when it is closed, once.
type limitedConn struct {
	net.Conn
	lim  *balancer.Limiter
	once sync.Once
}

func (c *limitedConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(c.lim.ReleaseConn)
	return err
}
