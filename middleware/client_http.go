package middleware

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"sync"
	"time"

	"github.com/proxyless/proxyless/balancer"
	"github.com/proxyless/proxyless/breaker"
	"github.com/proxyless/proxyless/internal/engine"
	"github.com/proxyless/proxyless/internal/latency"
	"github.com/proxyless/proxyless/internal/telemetry"
	"github.com/proxyless/proxyless/outcome"
)

// httpCall is the HTTP adapter of the attempt engine: it sends one attempt of a request to
// the endpoint the engine admits, classifies what came back, and discards what lost.
type httpCall struct {
	t          *Transport
	d          *destination
	pol        *policies
	tr         *telemetry.Request // nil while telemetry is off
	req        *http.Request      // the caller's, never modified
	body       replayBody
	host       string  // the Host header to send: the service name the caller used
	idempotent bool    // the request may be sent again in full
	replayable bool    // its body can be sent again
	url        url.URL // the first attempt's URL, in the call's allocation
	key        uint64  // the request's hash key; 0: none

	call engine.Call[*http.Response]
}

var _ engine.Sender[*http.Response] = (*httpCall)(nil)

// send runs req's attempts through the engine under pol and returns the winning response,
// whose body, once closed, releases the attempt's and the call's contexts. When its route
// (rs, when routed) has a fallback, attempts d cannot take go there: fallback.go. key is the
// request's hash key (0: none).
func (t *Transport) send(ctx context.Context, req *http.Request, d *destination, pol *policies, tr *telemetry.Request, rs *routeState, key uint64) (*http.Response, *telemetry.Attempt, outcome.Kind, error) {
	c := &httpCall{t: t, d: d, pol: pol, tr: tr, req: req, host: req.Host, key: key}
	if c.host == "" {
		c.host = req.URL.Host
	}
	if err := c.body.init(req, t.cfg.maxBufferBody); err != nil {
		return nil, nil, outcome.LocalRefusal, err
	}
	c.replayable = !pol.retry.Disable && c.body.replayable()
	c.idempotent = c.replayable && pol.retry.idempotent(req)
	c.prepare()
	if rs != nil {
		t.withFallback(&c.call, req, rs) // fallback.go
	}
	res := engine.Run(ctx, &c.call)
	ta, _ := attemptTelemetry(res.Attempt)
	if res.Err != nil {
		res.Release()
		c.body.close()
		return nil, ta, res.Outcome.Kind, res.Err
	}
	switch {
	case res.Value.StatusCode == http.StatusSwitchingProtocols:
		// The handshake is done and the connection is the caller's: no timeout of ours
		// applies to it any more (stream.go).
		res.Release()
	case res.NeedsRelease():
		res.Value.Body = streamBody(res.Value, pol.idle, res.Release) // stream.go
	}
	return res.Value, ta, res.Outcome.Kind, nil
}

// prepare fills the engine call for c's destination.
func (c *httpCall) prepare() {
	cl := &c.call // set field by field: see engine.Run
	cl.Policy, cl.Budget, cl.Stats, cl.Sender, cl.Dest = &c.pol.eng, c.t.bud, &c.t.stats, c, &c.d.eng
	if c.d.shadow { // a mirrored copy: counted apart, and paying its retries from a budget of its own
		cl.Budget, cl.Stats = c.t.shadow.bud, &c.t.shadow.stats
	}
	// An upgrade is never hedged: two handshakes would open two connections.
	cl.Hedgeable, cl.Latency, cl.CallerGone = c.idempotent && !isUpgrade(c.req), c.d.latencyFor(c.pol), requestCancelled(c.req)
	cl.HashKey = c.key
	if c.tr != nil {
		cl.OnBudgetRefused = c.tr.BudgetRefused
	}
}

// requestCancelled returns a function that reports whether the caller cancelled req through
// Request.Cancel, which net/http's Client uses for its Timeout with RoundTrippers it does not
// know; nil when req has no Cancel channel.
func requestCancelled(req *http.Request) func() bool {
	ch := req.Cancel //nolint:staticcheck // net/http's Client still cancels through it
	if ch == nil {
		return nil
	}
	return func() bool {
		select {
		case <-ch:
			return true
		default:
			return false
		}
	}
}

// attemptTelemetry returns the telemetry of attempt a, when it has any.
func attemptTelemetry(a *engine.Attempt) (*telemetry.Attempt, bool) {
	if a == nil {
		return nil, false
	}
	ta, ok := a.Value.(*telemetry.Attempt)
	return ta, ok
}

// Send admits the attempt to an endpoint and sends the request there, within the
// destination's limits (WithLimits): the attempt holds its request (and retry) slot until its
// response body is closed.
func (c *httpCall) Send(a *engine.Attempt) (*http.Response, error) {
	lim := c.d.bal.Limiter()
	if lim == nil {
		return c.sendAttempt(a, nil)
	}
	release, err := acquireAttempt(lim, a.Kind, c.overflows()) // limits.go
	if err != nil {
		return nil, err
	}
	resp, err := c.sendAttempt(a, lim)
	if resp == nil {
		release()
		return nil, err
	}
	resp.Body = releaseBody(resp, sync.OnceFunc(release))
	return resp, err
}

// sendAttempt admits the attempt to an endpoint and sends the request there; lim, when not
// nil, is the destination's limiter, which counts the connections it dials.
func (c *httpCall) sendAttempt(a *engine.Attempt, lim *balancer.Limiter) (*http.Response, error) {
	var refused func(string)
	if c.tr != nil {
		refused = c.tr.BreakerRefused
	}
	if err := a.Admit(refused); err != nil {
		if errors.Is(err, breaker.ErrOpen) {
			c.tr.AttemptRefused() // once, as Stats.BreakerRefusals
		}
		return nil, err
	}
	ctx := a.Context()
	var ta *telemetry.Attempt
	if c.tr != nil {
		state := breaker.StateClosed
		if a.Probe() {
			state = breaker.StateHalfOpen
		}
		ctx, ta = c.tr.StartAttempt(ctx, telemetry.AttemptInfo{
			N: a.N, Kind: a.Kind, Endpoint: a.Endpoint(), Backoff: a.Waited,
			Breaker: state, NoBreaker: c.d.breakers == nil,
		})
		a.Value = ta
	}
	if lim.Limits().MaxConnections > 0 {
		ctx = withDialTicket(ctx, lim, c.overflows()) // limits.go
	}
	out := c.req.WithContext(ctx) // the caller's request is never modified
	u := &c.url                   // the first attempt's; concurrent attempts (hedges) get their own
	if a.N > 0 {
		u = new(url.URL)
	}
	*u = *c.req.URL
	u.Host = a.Endpoint()
	out.URL, out.Host = u, c.host
	if deadline, ok := ctx.Deadline(); ok {
		out.Header = c.req.Header.Clone()
		if out.Header == nil {
			out.Header = http.Header{}
		}
		out.Header[TimeoutHeader] = []string{formatTimeout(time.Until(deadline))} // deadline.go
	} else if _, ok := c.req.Header[TimeoutHeader]; ok {
		// Not ours (a header copied from an incoming request, say): the deadline is the
		// context's, and this request has none.
		out.Header = c.req.Header.Clone()
		delete(out.Header, TimeoutHeader)
	}
	body, err := c.body.forAttempt(a.N)
	if err != nil {
		return nil, &unsentError{fmt.Errorf("middleware: replaying the request body: %w", err)}
	}
	if out.Body = body; body == nil {
		out.GetBody = nil
	}
	return c.t.base.RoundTrip(out)
}

// overflows is where the destination's limits record refusals.
func (c *httpCall) overflows() overflows { return overflows{tel: c.d.tel, n: &c.t.overflows} }

// localKind is the outcome of a request answered or refused before any attempt: a route's
// injected abort is the status it answers with; a context that ended, Canceled; any other
// refusal (an outbound limit, a route's fault), LocalRefusal.
func localKind(resp *http.Response, err error) outcome.Kind {
	switch {
	case err == nil:
		return outcome.FromHTTP(resp, nil, outcome.CauseNone, time.Time{}).Kind
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return outcome.Canceled
	}
	return outcome.LocalRefusal
}

// unsentError is an attempt that could not be sent for a local reason.
type unsentError struct{ err error }

func (e *unsentError) Error() string { return e.err.Error() }
func (e *unsentError) Unwrap() error { return e.err }

// Classify maps what the base transport returned to the outcome vocabulary, and says
// whether the request may be sent again after it: an idempotent request after a gateway
// failure, a timeout of its attempt or a status of the retry policy; any request whose body
// can be replayed after a refused dial, which the server never saw. The attempt's telemetry
// records that outcome.
func (c *httpCall) Classify(a *engine.Attempt, resp *http.Response, err error, cause outcome.Cause) (outcome.Outcome, bool) {
	o, retry := c.classify(a, resp, err, cause)
	if ta, ok := attemptTelemetry(a); ok {
		ta.End(o.Kind)
	}
	return o, retry
}

func (c *httpCall) classify(a *engine.Attempt, resp *http.Response, err error, cause outcome.Cause) (outcome.Outcome, bool) {
	if err != nil {
		var unsent *unsentError
		if a.Endpoint() == "" || errors.As(err, &unsent) {
			return outcome.Outcome{Kind: outcome.LocalRefusal}, false
		}
	}
	o := outcome.FromHTTP(resp, err, cause, time.Time{})
	switch {
	case err == nil:
		// A switch of protocols has happened: never sent again.
		return o, c.idempotent && resp.StatusCode != http.StatusSwitchingProtocols && c.pol.retry.retryableStatus(resp.StatusCode)
	case o.Kind == outcome.GatewayFailure:
		var op *net.OpError
		return o, c.idempotent || (c.replayable && errors.As(err, &op) && op.Op == "dial")
	case o.Kind == outcome.LocalTimeout && cause == outcome.CauseAttemptTimeout:
		return o, c.idempotent
	}
	return o, false
}

// Discard drains (a bounded amount) and closes a response that will not reach the caller.
func (c *httpCall) Discard(a *engine.Attempt, resp *http.Response, _ error) {
	ta, _ := attemptTelemetry(a)
	ta.Discarded()
	switch {
	case resp == nil:
	case resp.StatusCode == http.StatusSwitchingProtocols:
		_ = resp.Body.Close() // an upgraded connection: reading it would wait on its peer
	default:
		drain(resp.Body)
	}
}

// Detach reads a failed response's body into memory (up to maxDrainBody) and closes it, so
// that its connection is free for the retry while the response is kept in case the retry is
// refused. A larger body cannot be kept: it is discarded.
func (c *httpCall) Detach(a *engine.Attempt, resp *http.Response) (*http.Response, bool) {
	if resp == nil {
		return resp, true
	}
	// A retry follows: the attempt's span says its response is discarded, before the body's
	// close ends the span. (Should every endpoint refuse the retry, this response is what the
	// caller gets after all; the span keeps the mark.)
	ta, _ := attemptTelemetry(a)
	ta.Discarded()
	buf, err := io.ReadAll(io.LimitReader(resp.Body, maxDrainBody+1))
	_ = resp.Body.Close()
	if err != nil || len(buf) > maxDrainBody {
		return nil, false
	}
	cp := *resp
	cp.Body = io.NopCloser(bytes.NewReader(buf))
	return &cp, true
}

func drain(rc io.ReadCloser) {
	_, _ = io.CopyN(io.Discard, rc, maxDrainBody)
	_ = rc.Close()
}

// releaseBody wraps resp's body so that closing it calls release. The body of a 101
// Switching Protocols answer stays an io.ReadWriteCloser, as net/http promises.
func releaseBody(resp *http.Response, release func()) io.ReadCloser {
	if rwc, ok := resp.Body.(io.ReadWriteCloser); ok && resp.StatusCode == http.StatusSwitchingProtocols {
		return &releaseRWC{ReadWriteCloser: rwc, release: release}
	}
	return &releaseReader{ReadCloser: resp.Body, release: release}
}

type releaseReader struct {
	io.ReadCloser
	release func()
}

func (b *releaseReader) Close() error {
	err := b.ReadCloser.Close()
	b.release()
	return err
}

type releaseRWC struct {
	io.ReadWriteCloser
	release func()
}

func (b *releaseRWC) Close() error {
	err := b.ReadWriteCloser.Close()
	b.release()
	return err
}

// latencyFor returns the destination's latency history when pol hedges after a quantile of
// it, else nil: nothing is recorded that nothing reads.
func (d *destination) latencyFor(pol *policies) *latency.Histogram {
	if pol.hedge.enabled && pol.hedge.Quantile > 0 {
		return &d.latency
	}
	return nil
}
