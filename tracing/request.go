package tracing

import (
	"context"
	"io"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/trace"

	"github.com/proxyless/proxyless/breaker"
)

// Destination holds what a Telemetry precomputes for one destination service: its attribute
// sets and those of its endpoints. Get it once per destination with [Telemetry.Destination]
// and keep it. A nil *Destination is valid and records nothing. Safe for concurrent use.
type Destination struct {
	tel  *Telemetry // immutable
	name string     // immutable

	attrs    []attribute.KeyValue       // {destination}; immutable
	set      attribute.Set              // {destination}
	outcomes [numOutcomes]attribute.Set // {destination, outcome}, for requests without an endpoint
	kinds    [numKinds]attribute.Set    // {destination, attempt kind}
	names    [len(commonMethods)]string // span names: "GET payments"

	mu  sync.Mutex                           // serialises writers of eps
	eps atomic.Pointer[map[string]*endpoint] // copy-on-write
}

var commonMethods = [...]string{http.MethodGet, http.MethodPost, http.MethodPut, http.MethodDelete, http.MethodPatch, http.MethodHead}

// endpoint holds the attribute sets of one endpoint of a destination. Immutable.
type endpoint struct {
	addr     string
	attr     attribute.KeyValue
	set      attribute.Set                        // {destination, endpoint}
	outcomes [numOutcomes]attribute.Set           // {destination, endpoint, outcome}
	attempts [numKinds][numOutcomes]attribute.Set // {destination, endpoint, kind, outcome}
}

// Destination returns the handle of the destination service name, creating it on first use.
// It is meant to be called once per destination, not per request. On a nil Telemetry it
// returns nil.
func (t *Telemetry) Destination(name string) *Destination {
	if t == nil {
		return nil
	}
	if d := (*t.dests.Load())[name]; d != nil {
		return d
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	old := *t.dests.Load()
	if d := old[name]; d != nil {
		return d
	}
	d := &Destination{tel: t, name: name}
	dk := KeyDestination.String(name)
	d.attrs = []attribute.KeyValue{dk}
	d.set = attribute.NewSet(dk)
	for o := range numOutcomes {
		d.outcomes[o] = attribute.NewSet(dk, KeyOutcome.String(o.String()))
	}
	for k := range numKinds {
		d.kinds[k] = attribute.NewSet(dk, KeyAttemptKind.String(k.String()))
	}
	for i, m := range commonMethods {
		d.names[i] = m + " " + name
	}
	m := map[string]*endpoint{}
	d.eps.Store(&m)
	next := make(map[string]*Destination, len(old)+1)
	for k, v := range old {
		next[k] = v
	}
	next[name] = d
	t.dests.Store(&next)
	return d
}

// Name returns the destination's service name.
func (d *Destination) Name() string {
	if d == nil {
		return ""
	}
	return d.name
}

func (d *Destination) spanName(method string) string {
	if method == "" {
		method = http.MethodGet
	}
	for i, m := range commonMethods {
		if m == method {
			return d.names[i]
		}
	}
	return method + " " + d.name
}

// endpoint returns the sets of addr, building them on first use.
func (d *Destination) endpoint(addr string) *endpoint {
	if e := (*d.eps.Load())[addr]; e != nil {
		return e
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	old := *d.eps.Load()
	if e := old[addr]; e != nil {
		return e
	}
	dk, ek := KeyDestination.String(d.name), KeyEndpoint.String(addr)
	e := &endpoint{addr: addr, attr: ek, set: attribute.NewSet(dk, ek)}
	for o := range numOutcomes {
		ok := KeyOutcome.String(o.String())
		e.outcomes[o] = attribute.NewSet(dk, ek, ok)
		for k := range numKinds {
			e.attempts[k][o] = attribute.NewSet(dk, ek, KeyAttemptKind.String(k.String()), ok)
		}
	}
	next := make(map[string]*endpoint, len(old)+1)
	for k, v := range old {
		next[k] = v
	}
	next[addr] = e
	d.eps.Store(&next)
	return e
}

// Retain forgets the precomputed sets of every endpoint not in addrs, so that a destination
// whose endpoints churn does not grow without bound. Call it when discovery delivers a set.
func (d *Destination) Retain(addrs ...string) {
	if d == nil {
		return
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	old := *d.eps.Load()
	next := make(map[string]*endpoint, len(addrs))
	for _, a := range addrs {
		if e := old[a]; e != nil {
			next[a] = e
		}
	}
	d.eps.Store(&next)
}

// BreakerTransition records that the breaker of endpoint addr went from one state to another.
// Call it from the breaker's OnStateChange callback.
func (d *Destination) BreakerTransition(addr string, from, to breaker.State) {
	if d == nil {
		return
	}
	s := d.tel.load()
	if !s.metrics {
		return
	}
	s.ins.breakerTrans.Add(context.Background(), 1, metric.WithAttributes(
		KeyDestination.String(d.name), KeyEndpoint.String(addr), KeyBreakerState.String(to.String())))
}

// Request is the telemetry of one logical request: its span and the facts its metrics need.
// It is made by [Telemetry.StartRequest]. A nil *Request is valid: every method is a no-op,
// which is what StartRequest returns while telemetry is off. Safe for concurrent use by the
// attempts of one request.
type Request struct {
	s     *state       // immutable
	d     *Destination // immutable
	span  trace.Span   // nil when tracing is off
	start time.Time    // immutable

	attempts atomic.Int32 // attempts started
	ended    atomic.Bool
}

// StartRequest starts the telemetry of a logical request to destination d: an INTERNAL span
// named "METHOD destination", child of the span in ctx. It returns the context the attempts
// must descend from, and the Request to report to. While telemetry is off it returns ctx
// itself and a nil Request, and costs two atomic loads.
func (t *Telemetry) StartRequest(ctx context.Context, d *Destination, req *http.Request) (context.Context, *Request) {
	if d == nil {
		return ctx, nil
	}
	s := t.load()
	if !s.on {
		return ctx, nil
	}
	r := &Request{s: s, d: d, start: time.Now()}
	if s.tracing {
		method := ""
		if req != nil {
			method = req.Method
		}
		ctx, r.span = s.tracer.Start(ctx, d.spanName(method), trace.WithSpanKind(trace.SpanKindInternal),
			trace.WithAttributes(KeyDestination.String(d.name), attribute.String("http.request.method", orGet(method))))
	}
	return ctx, r
}

func orGet(m string) string {
	if m == "" {
		return http.MethodGet
	}
	return m
}

// Recording reports whether the request's span records: callers may skip computing
// attributes when it does not.
func (r *Request) Recording() bool { return r != nil && r.span != nil && r.span.IsRecording() }

// Route records the route rule that matched and the split arm (or canary) chosen, as span
// attributes. Either may be empty.
func (r *Request) Route(route, split string) {
	if r == nil || r.span == nil {
		return
	}
	kv := make([]attribute.KeyValue, 0, 2)
	if route != "" {
		kv = append(kv, KeyRoute.String(route))
	}
	if split != "" {
		kv = append(kv, KeySplit.String(split))
	}
	r.span.SetAttributes(kv...)
}

// BreakerRefused records that the breaker of endpoint addr refused an attempt, so that
// another endpoint was tried (or the request failed): a span event and a count.
func (r *Request) BreakerRefused(addr string) {
	if r == nil {
		return
	}
	if r.span != nil {
		r.span.AddEvent("proxyless.breaker.refused", trace.WithAttributes(KeyEndpoint.String(addr)))
	}
	if r.s.metrics {
		r.s.ins.breakerRefusals.Add(context.Background(), 1, metric.WithAttributeSet(r.d.endpoint(addr).set))
	}
}

// BudgetRefused records that the retry budget refused a retry or a hedge.
func (r *Request) BudgetRefused(kind AttemptKind) {
	if r == nil || kind >= numKinds {
		return
	}
	if r.span != nil {
		r.span.AddEvent("proxyless.retry_budget.refused", trace.WithAttributes(KeyAttemptKind.String(kind.String())))
	}
	if r.s.metrics {
		r.s.ins.budgetRefusals.Add(context.Background(), 1, metric.WithAttributeSet(r.d.kinds[kind]))
	}
}

// Ejected records that the outcome of an attempt ejected endpoint addr as an outlier.
func (r *Request) Ejected(addr string) {
	if r == nil || r.span == nil {
		return
	}
	r.span.AddEvent("proxyless.endpoint.ejected", trace.WithAttributes(KeyEndpoint.String(addr)))
}

// AttemptInfo describes an attempt about to be sent.
type AttemptInfo struct {
	N        int           // attempt number, 0 for the first
	Kind     AttemptKind   // first, retry or hedge
	Endpoint string        // host:port of the endpoint picked
	Backoff  time.Duration // for a retry, how long the transport waited before it
	// Breaker is the state of the endpoint's breaker when it admitted the attempt:
	// breaker.StateClosed, or breaker.StateHalfOpen for a probe. Ignored when NoBreaker.
	Breaker   breaker.State
	NoBreaker bool // breakers are off
}

// Attempt is the telemetry of one attempt. Its span is otelhttp's client span, started by the
// RoundTripper of [Telemetry.Transport]. A nil *Attempt is valid and records nothing.
type Attempt struct {
	r    *Request  // immutable
	ep   *endpoint // immutable
	info AttemptInfo
	// span is otelhttp's span, set by the RoundTripper before the base transport is called,
	// on the goroutine that then calls End; nil until then.
	span trace.Span
}

type attemptKey struct{}

// StartAttempt records the start of an attempt and returns the context to send it with: the
// RoundTripper of [Telemetry.Transport] finds the Attempt there and adds its attributes to the
// attempt's span. On a nil Request it returns ctx itself and a nil Attempt.
func (r *Request) StartAttempt(ctx context.Context, info AttemptInfo) (context.Context, *Attempt) {
	if r == nil || info.Kind >= numKinds {
		return ctx, nil
	}
	r.attempts.Add(1)
	a := &Attempt{r: r, ep: r.d.endpoint(info.Endpoint), info: info}
	if r.span != nil {
		switch info.Kind {
		case AttemptRetry:
			r.span.AddEvent("proxyless.retry", trace.WithAttributes(KeyAttempt.Int(info.N),
				KeyBackoff.Float64(info.Backoff.Seconds())))
		case AttemptHedge:
			r.span.AddEvent("proxyless.hedge", trace.WithAttributes(KeyAttempt.Int(info.N)))
		}
	}
	if r.s.metrics {
		switch info.Kind {
		case AttemptRetry:
			r.s.ins.retries.Add(ctx, 1, metric.WithAttributeSet(r.d.set))
		case AttemptHedge:
			r.s.ins.hedges.Add(ctx, 1, metric.WithAttributeSet(r.d.set))
		}
	}
	return context.WithValue(ctx, attemptKey{}, a), a
}

// attemptFrom returns the attempt a context carries.
func attemptFrom(ctx context.Context) *Attempt {
	a, _ := ctx.Value(attemptKey{}).(*Attempt)
	return a
}

// annotate adds the attempt's attributes to span, otelhttp's client span.
func (a *Attempt) annotate(span trace.Span) {
	a.span = span
	if !span.IsRecording() {
		return
	}
	kv := []attribute.KeyValue{
		KeyDestination.String(a.r.d.name),
		a.ep.attr,
		KeyAttempt.Int(a.info.N),
		KeyAttemptKind.String(a.info.Kind.String()),
	}
	if !a.info.NoBreaker {
		kv = append(kv, KeyBreakerState.String(a.info.Breaker.String()))
	}
	if a.info.Kind == AttemptRetry {
		kv = append(kv, KeyBackoff.Float64(a.info.Backoff.Seconds()))
	}
	span.SetAttributes(kv...)
}

// End records the attempt's outcome: the response (an upstream 5xx is a response) or the
// error of the base transport. Call it once the transport has the result, before handing
// the response on or discarding it.
func (a *Attempt) End(resp *http.Response, err error) {
	if a == nil {
		return
	}
	o := classify(resp, err)
	if o == OutcomeRefused {
		o = OutcomeGatewayFailure // an attempt was sent: whatever failed, failed remotely
	}
	if a.span != nil && a.span.IsRecording() {
		a.span.SetAttributes(KeyOutcome.String(o.String()))
	}
	if a.r.s.metrics {
		a.r.s.ins.attempts.Add(context.Background(), 1, metric.WithAttributeSet(a.ep.attempts[a.info.Kind][o]))
	}
}

// Discarded records that the attempt's response is being thrown away (a retry follows, or a
// hedge lost): call it before draining and closing the body, which ends the span.
func (a *Attempt) Discarded() {
	if a == nil || a.span == nil {
		return
	}
	a.span.SetAttributes(KeyDiscarded.Bool(true))
}

// End ends the logical request. winner is the attempt whose response or error is returned
// (nil when none was sent: a local refusal); resp and err are what the transport returns.
// It records the request duration and outcome, marks the winning attempt (and counts a hedge
// win), and ends the span: at once on an error, or when the response body is closed or read
// to its end, for which it wraps resp.Body. Call it once, with the final result; later calls
// do nothing.
func (r *Request) End(winner *Attempt, resp *http.Response, err error) {
	if r == nil || !r.ended.CompareAndSwap(false, true) {
		return
	}
	o := classify(resp, err)
	if err != nil && winner == nil && o != OutcomeCanceled {
		o = OutcomeRefused
	}
	if r.s.metrics {
		set := r.d.outcomes[o]
		if winner != nil {
			set = winner.ep.outcomes[o]
		}
		r.s.ins.reqDuration.Record(context.Background(), time.Since(r.start).Seconds(), metric.WithAttributeSet(set))
		if winner != nil && winner.info.Kind == AttemptHedge && err == nil {
			r.s.ins.hedgeWins.Add(context.Background(), 1, metric.WithAttributeSet(r.d.set))
		}
	}
	if winner != nil && winner.span != nil && err == nil {
		winner.span.SetAttributes(KeyWinner.Bool(true))
	}
	if r.span == nil {
		return
	}
	kv := []attribute.KeyValue{KeyOutcome.String(o.String()), KeyAttempts.Int(int(r.attempts.Load()))}
	if winner != nil {
		kv = append(kv, winner.ep.attr, KeyAttempt.Int(winner.info.N))
	}
	if resp != nil {
		kv = append(kv, attribute.Int("http.response.status_code", resp.StatusCode))
	}
	r.span.SetAttributes(kv...)
	switch {
	case err != nil:
		r.span.RecordError(err)
		r.span.SetStatus(codes.Error, err.Error())
	case o == OutcomeFailure || o == OutcomeGatewayFailure:
		r.span.SetStatus(codes.Error, http.StatusText(resp.StatusCode))
	}
	if err != nil || resp == nil || resp.Body == nil || resp.Body == http.NoBody {
		r.span.End()
		return
	}
	resp.Body = wrapBody(resp.Body, r.span)
}

// endBody ends a span once the body is closed or read to its end.
type endBody struct {
	io.ReadCloser
	span trace.Span
	once sync.Once
}

func (b *endBody) end() { b.once.Do(func() { b.span.End() }) }

func (b *endBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	if err != nil {
		if err != io.EOF {
			b.span.RecordError(err)
		}
		b.end()
	}
	return n, err
}

func (b *endBody) Close() error {
	err := b.ReadCloser.Close()
	b.end()
	return err
}

// writeBody keeps the io.Writer of a 101 Switching Protocols body, which net/http requires.
type writeBody struct {
	*endBody
	w io.Writer
}

func (b writeBody) Write(p []byte) (int, error) { return b.w.Write(p) }

func wrapBody(rc io.ReadCloser, span trace.Span) io.ReadCloser {
	b := &endBody{ReadCloser: rc, span: span}
	if w, ok := rc.(io.Writer); ok {
		return writeBody{b, w}
	}
	return b
}

// RateLimited records a limiter's decision: a count by policy and decision, the wait, and,
// on the span in ctx (a request's, or a server's), the wait as an attribute and a refusal as
// an event. policy names the limiter ("outbound", "per-client", ...).
func (t *Telemetry) RateLimited(ctx context.Context, policy string, wait time.Duration, admitted bool) {
	s := t.load()
	if !s.on {
		return
	}
	if s.tracing {
		if span := trace.SpanFromContext(ctx); span.IsRecording() {
			if admitted {
				span.SetAttributes(KeyLimitPolicy.String(policy), KeyLimitWait.Float64(wait.Seconds()))
			} else {
				span.AddEvent("proxyless.ratelimit.refused", trace.WithAttributes(KeyLimitPolicy.String(policy)))
			}
		}
	}
	if s.metrics {
		ls := t.limitSets(policy)
		set := ls.refused
		if admitted {
			set = ls.admitted
			s.ins.limitWait.Record(ctx, wait.Seconds(), metric.WithAttributeSet(ls.policy))
		}
		s.ins.limitDecisions.Add(ctx, 1, metric.WithAttributeSet(set))
	}
}

var limitCache sync.Map // policy -> *limitSets; policies are few and fixed by configuration

func (t *Telemetry) limitSets(policy string) *limitSets {
	if v, ok := limitCache.Load(policy); ok {
		return v.(*limitSets)
	}
	pk := KeyLimitPolicy.String(policy)
	ls := &limitSets{
		admitted: attribute.NewSet(pk, KeyLimitDecision.String("admitted")),
		refused:  attribute.NewSet(pk, KeyLimitDecision.String("refused")),
		policy:   attribute.NewSet(pk),
	}
	v, _ := limitCache.LoadOrStore(policy, ls)
	return v.(*limitSets)
}

// ShadowMismatch records that the response of a request mirrored to shadow differed from the
// primary's, for the route that mirrored it.
func (t *Telemetry) ShadowMismatch(ctx context.Context, route, shadow string) {
	s := t.load()
	if !s.on {
		return
	}
	if s.tracing {
		if span := trace.SpanFromContext(ctx); span.IsRecording() {
			span.AddEvent("proxyless.shadow.mismatch", trace.WithAttributes(KeyRoute.String(route), KeyShadow.String(shadow)))
		}
	}
	if s.metrics {
		s.ins.shadowMismatch.Add(ctx, 1, metric.WithAttributes(KeyRoute.String(route), KeyShadow.String(shadow)))
	}
}
