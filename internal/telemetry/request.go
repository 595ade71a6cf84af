package telemetry

import (
	"context"
	"io"
	"maps"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/trace"

	"github.com/proxyless/proxyless/breaker"
	"github.com/proxyless/proxyless/outcome"
	"github.com/proxyless/proxyless/tracing"
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
	// optsReq and optsKind are metric options for requests without an endpoint and for
	// per-kind counts, as ready-made variadic slices: recording allocates none.
	optsReq  [numOutcomes][]metric.RecordOption
	optsKind [numKinds][]metric.AddOption
	optsDest []metric.AddOption // {destination}

	mu       sync.Mutex                           // serialises writers of eps and rpcs
	retained int                                  // how many endpoints the last Retain named; guarded by mu
	eps      atomic.Pointer[map[string]*endpoint] // copy-on-write
	rpcs     atomic.Pointer[map[string]*rpcStart] // copy-on-write, nil until a gRPC call: grpc.go
}

var commonMethods = [...]string{http.MethodGet, http.MethodPost, http.MethodPut, http.MethodDelete, http.MethodPatch, http.MethodHead}

// endpoint holds the attribute sets of one endpoint of a destination, and the ready-made
// attribute slices and metric options of its common cases. Immutable.
type endpoint struct {
	addr    string
	attr    attribute.KeyValue
	set     attribute.Set // {destination, endpoint}
	optsSet []metric.AddOption
	optsReq [numOutcomes][]metric.RecordOption        // {destination, endpoint, outcome}
	optsAtt [numKinds][numOutcomes][]metric.AddOption // {destination, endpoint, kind, outcome}
	// okGET is what the span of a GET request gets when its one attempt, to this endpoint,
	// answered 200, and grpcOK what a gRPC call's gets when it answered OK.
	okGET, grpcOK []attribute.KeyValue
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
	dk := tracing.KeyDestination.String(name)
	d.attrs = []attribute.KeyValue{dk}
	d.set = attribute.NewSet(dk)
	for o := range numOutcomes {
		d.outcomes[o] = attribute.NewSet(dk, outcomeAttrs[o][0])
	}
	for k := range numKinds {
		d.kinds[k] = attribute.NewSet(dk, tracing.KeyAttemptKind.String(k.String()))
	}
	for i, m := range commonMethods {
		d.names[i] = m + " " + name
	}
	for o := range numOutcomes {
		d.optsReq[o] = []metric.RecordOption{metric.WithAttributeSet(d.outcomes[o])}
	}
	for k := range numKinds {
		d.optsKind[k] = []metric.AddOption{metric.WithAttributeSet(d.kinds[k])}
	}
	d.optsDest = []metric.AddOption{metric.WithAttributeSet(d.set)}
	m := map[string]*endpoint{}
	d.eps.Store(&m)
	publishWith(&t.dests, old, name, d)
	return d
}

// Name returns the destination's service name.
func (d *Destination) Name() string {
	if d == nil {
		return ""
	}
	return d.name
}

// requestStart is the start options of every request span: its kind. Its attributes are
// set when it ends, in one call: each call that adds attributes to a span costs the SDK an
// allocation, and one more for options that carry them. A sampler sees the span's name,
// "METHOD destination", and its parent.
var requestStart = []trace.SpanStartOption{trace.WithSpanKind(trace.SpanKindInternal)}

// spanName returns the name of the request span of method.
func (d *Destination) spanName(method string) string {
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
	dk, ek := tracing.KeyDestination.String(d.name), tracing.KeyEndpoint.String(addr)
	e := &endpoint{addr: addr, attr: ek, set: attribute.NewSet(dk, ek)}
	e.optsSet = []metric.AddOption{metric.WithAttributeSet(e.set)}
	for o := range numOutcomes {
		ok := outcomeAttrs[o][0]
		e.optsReq[o] = []metric.RecordOption{metric.WithAttributeSet(attribute.NewSet(dk, ek, ok))}
		for k := range numKinds {
			set := attribute.NewSet(dk, ek, tracing.KeyAttemptKind.String(k.String()), ok)
			e.optsAtt[k][o] = []metric.AddOption{metric.WithAttributeSet(set)}
		}
	}
	e.okGET = []attribute.KeyValue{dk, attribute.String("http.request.method", http.MethodGet),
		outcomeAttrs[outcome.Success][0], tracing.KeyAttempts.Int(1), ek, tracing.KeyAttempt.Int(0),
		attribute.Int("http.response.status_code", http.StatusOK)}
	e.grpcOK = []attribute.KeyValue{outcomeAttrs[outcome.Success][0], tracing.KeyAttempts.Int(1), ek,
		tracing.KeyAttempt.Int(0), grpcStatusAttr(0)} // 0: OK
	if len(old) >= max(minEndpointLimit, 2*d.retained) {
		// Nobody has said which endpoints still exist (gRPC calls do not), or far more have
		// come than Retain last kept: forget them all rather than grow without bound. The ones
		// still in use are built again on their next request.
		old = nil
	}
	publishWith(&d.eps, old, addr, e)
	return e
}

// minEndpointLimit is how many endpoints' sets a destination keeps at least before it forgets
// them all; see endpoint. A variable for tests.
var minEndpointLimit = 4096

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
	d.retained = len(addrs)
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
		tracing.KeyDestination.String(d.name), tracing.KeyEndpoint.String(addr), tracing.KeyBreakerState.String(to.String())))
}

// Overflow records that the destination's limit (a balancer.Limit's String()) refused a
// request, a retry or a connection.
func (d *Destination) Overflow(limit string) {
	if d == nil {
		return
	}
	s := d.tel.load()
	if !s.metrics {
		return
	}
	s.ins.overflows.Add(context.Background(), 1, metric.WithAttributes(
		tracing.KeyDestination.String(d.name), tracing.KeyLimit.String(limit)))
}

// Request is the telemetry of one logical request: its span and the facts its metrics need.
// It is made by [Telemetry.StartRequest]. A nil *Request is valid: every method is a no-op,
// which is what StartRequest returns while telemetry is off. Safe for concurrent use by the
// attempts of one request.
//
// A Request holds its first Attempt and the wrapper that ends its span with the response
// body, so that a request with one attempt costs one allocation of its own beyond the span.
type Request struct {
	s     *state       // immutable
	d     *Destination // immutable
	span  trace.Span   // nil when tracing is off
	start time.Time    // immutable

	method       string // the HTTP method; "" for gRPC
	route, split string // set by Route before the first attempt

	attempts atomic.Int32 // attempts started
	ended    atomic.Bool

	first Attempt // the first attempt started
	body  endBody // wraps the response body when the span ends with it

	rpc rpcKind     // immutable: an HTTP request, or a gRPC call or stream (grpc.go)
	g   grpcRequest // the gRPC-only state (grpc.go)
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
	r := &Request{s: s, d: d, start: time.Now(), method: http.MethodGet}
	if req != nil && req.Method != "" {
		r.method = req.Method
	}
	if s.tracing {
		ctx, r.span = s.tracer.Start(ctx, d.spanName(r.method), requestStart...)
	}
	return ctx, r
}

// Recording reports whether the request's span records: callers may skip computing
// attributes when it does not.
func (r *Request) Recording() bool { return r != nil && r.span != nil && r.span.IsRecording() }

// Route records the route rule that matched and the split arm (or canary) chosen; they
// become attributes of the request span when it ends. Either may be empty. Call it before
// the first attempt.
func (r *Request) Route(route, split string) {
	if r == nil || r.span == nil {
		return
	}
	r.route, r.split = route, split
}

// BreakerRefused records that the breaker of endpoint addr refused an attempt, so that
// another endpoint was tried (or the attempt refused): a span event. It counts nothing: an
// attempt every breaker refused is counted once, by AttemptRefused.
func (r *Request) BreakerRefused(addr string) {
	if r == nil || r.span == nil {
		return
	}
	r.span.AddEvent("proxyless.breaker.refused", trace.WithAttributes(tracing.KeyEndpoint.String(addr)))
}

// AttemptRefused counts an attempt that was not sent because every endpoint's breaker
// refused it, once however many endpoints were skipped: proxyless.breaker.refusals, by
// destination, as the client's Stats.BreakerRefusals counts.
func (r *Request) AttemptRefused() {
	if r == nil || !r.s.metrics {
		return
	}
	r.s.ins.breakerRefusals.Add(context.Background(), 1, r.d.optsDest...)
}

// BudgetRefused records that the retry budget refused a retry or a hedge.
func (r *Request) BudgetRefused(kind tracing.AttemptKind) {
	if r == nil || kind >= numKinds {
		return
	}
	if r.span != nil {
		r.span.AddEvent("proxyless.retry_budget.refused", trace.WithAttributes(tracing.KeyAttemptKind.String(kind.String())))
	}
	if r.s.metrics {
		r.s.ins.budgetRefusals.Add(context.Background(), 1, r.d.optsKind[kind]...)
	}
}

// Ejected records that the outcome of an attempt ejected endpoint addr as an outlier.
func (r *Request) Ejected(addr string) {
	if r == nil || r.span == nil {
		return
	}
	r.span.AddEvent("proxyless.endpoint.ejected", trace.WithAttributes(tracing.KeyEndpoint.String(addr)))
}

// AttemptInfo describes an attempt about to be sent.
type AttemptInfo struct {
	N        int                 // attempt number, 0 for the first
	Kind     tracing.AttemptKind // first, retry or hedge
	Endpoint string              // host:port of the endpoint picked; for gRPC, "" (see Attempt.Picked)
	Backoff  time.Duration       // for a retry, how long the transport waited before it
	// Breaker is the state of the endpoint's breaker when it admitted the attempt:
	// breaker.StateClosed, or breaker.StateHalfOpen for a probe. Ignored when NoBreaker.
	Breaker   breaker.State
	NoBreaker bool // breakers are off
}

// Attempt is the telemetry of one attempt. Its span is otelhttp's client span, started by the
// RoundTripper of [Telemetry.Transport]. A nil *Attempt is valid and records nothing.
//
// An Attempt is also the context the attempt is sent with (see [Request.StartAttempt]): it
// carries itself under a private key and delegates everything else to its parent, which saves
// the allocation of a context.WithValue per attempt. (This is why it holds a context, which
// structs otherwise should not: it does not keep one, it is one.)
type Attempt struct {
	context.Context // the parent: the request's context, or the attempt's deadline

	r *Request // immutable
	// ep and info are immutable, but for a gRPC attempt, whose endpoint the picker reports
	// (Picked): then g.mu guards ep, info.Endpoint and info.Breaker.
	ep   *endpoint
	info AttemptInfo
	// span is otelhttp's span, set by the RoundTripper before the base transport is called,
	// on the goroutine that then calls End; nil until then. Unused by gRPC attempts.
	span trace.Span

	g grpcAttempt // the gRPC-only state (grpc.go)
}

type attemptKey struct{}

// Value returns the Attempt itself for its key, and asks the parent context otherwise.
func (a *Attempt) Value(key any) any {
	if key == (attemptKey{}) {
		return a
	}
	return a.Context.Value(key)
}

// StartAttempt records the start of an attempt and returns the context to send it with: the
// RoundTripper of [Telemetry.Transport] (or, for a gRPC call, the handler of
// [Telemetry.ClientHandler]) finds the Attempt there and adds its attributes to the attempt's
// span. The context is the Attempt itself, over ctx. On a nil Request it returns ctx
// itself and a nil Attempt.
func (r *Request) StartAttempt(ctx context.Context, info AttemptInfo) (context.Context, *Attempt) {
	if r == nil || info.Kind >= numKinds {
		return ctx, nil
	}
	var a *Attempt
	if r.attempts.Add(1) == 1 {
		a = &r.first
	} else {
		a = new(Attempt)
	}
	*a = Attempt{Context: ctx, r: r, info: info}
	if r.rpc == rpcHTTP || info.Endpoint != "" {
		a.ep = r.d.endpoint(info.Endpoint)
	}
	if r.rpc != rpcHTTP {
		r.g.add(a) // a gRPC attempt learns its endpoint from the picker: Picked
	}
	if r.span != nil {
		switch info.Kind {
		case tracing.AttemptRetry:
			r.span.AddEvent("proxyless.retry", trace.WithAttributes(tracing.KeyAttempt.Int(info.N),
				tracing.KeyBackoff.Float64(info.Backoff.Seconds())))
		case tracing.AttemptHedge:
			r.span.AddEvent("proxyless.hedge", trace.WithAttributes(tracing.KeyAttempt.Int(info.N)))
		}
	}
	if r.s.metrics {
		switch info.Kind {
		case tracing.AttemptRetry:
			r.s.ins.retries.Add(ctx, 1, r.d.optsDest...)
		case tracing.AttemptHedge:
			r.s.ins.hedges.Add(ctx, 1, r.d.optsDest...)
		}
	}
	return a, a
}

// attemptFrom returns the attempt a context carries.
func attemptFrom(ctx context.Context) *Attempt {
	a, _ := ctx.Value(attemptKey{}).(*Attempt)
	return a
}

// The attributes of a first attempt's span (otelhttp's or otelgrpc's), with and without a
// breaker: ready-made.
var (
	firstAttempt          = []attribute.KeyValue{tracing.KeyAttemptKind.String(tracing.AttemptFirst.String()), tracing.KeyBreakerState.String(breaker.StateClosed.String())}
	firstAttemptNoBreaker = []attribute.KeyValue{tracing.KeyAttemptKind.String(tracing.AttemptFirst.String())}
)

// annotate adds the attempt's attributes to span, otelhttp's client span: its kind, its
// number when it is not the first, the breaker's state, a retry's backoff. The endpoint is
// already there, as otelhttp's server.address and server.port (the URL the attempt was sent
// to), and the destination is on the parent, the request span. Keeping a first attempt's span
// to two attributes more than otelhttp's six matters: the SDK deduplicates a span's
// attributes through a map when it ends, and past eight attributes that map costs several
// allocations more.
func (a *Attempt) annotate(span trace.Span) {
	a.span = span
	if !span.IsRecording() {
		return
	}
	if a.info.N == 0 && a.info.Kind == tracing.AttemptFirst && (a.info.NoBreaker || a.info.Breaker == breaker.StateClosed) {
		if a.info.NoBreaker {
			span.SetAttributes(firstAttemptNoBreaker...)
		} else {
			span.SetAttributes(firstAttempt...)
		}
		return
	}
	kv := make([]attribute.KeyValue, 0, 4)
	kv = append(kv, tracing.KeyAttemptKind.String(a.info.Kind.String()))
	if a.info.N > 0 {
		kv = append(kv, tracing.KeyAttempt.Int(a.info.N))
	}
	if !a.info.NoBreaker {
		kv = append(kv, tracing.KeyBreakerState.String(a.info.Breaker.String()))
	}
	if a.info.Kind == tracing.AttemptRetry {
		kv = append(kv, tracing.KeyBackoff.Float64(a.info.Backoff.Seconds()))
	}
	span.SetAttributes(kv...)
}

// End records the attempt's outcome, as the adapter classified what the attempt returned:
// the outcome attribute of its span when it is not a success, and a count in
// proxyless.client.attempts by endpoint, kind and outcome, unless nothing was sent
// (outcome.LocalRefusal). Call it once, as soon as the outcome is known and before the
// response is handed on or discarded. (otelhttp ends the span of an attempt that failed with
// an error itself, with its status, before End can add to it.)
func (a *Attempt) End(kind outcome.Kind) {
	if a == nil {
		return
	}
	if a.r.rpc != rpcHTTP {
		a.endGRPC(kind) // grpc.go
		return
	}
	o := outcomeIndex(kind)
	if o != outcome.Success && a.span != nil && a.span.IsRecording() {
		a.span.SetAttributes(outcomeAttrs[o]...)
	}
	if a.r.s.metrics && o != outcome.LocalRefusal {
		a.r.s.ins.attempts.Add(context.Background(), 1, a.ep.optsAtt[a.info.Kind][o]...)
	}
}

// Discarded records that the attempt's response is being thrown away (a retry follows, or a
// hedge lost): call it before draining and closing the body, which ends the span. For an
// attempt of a gRPC call, call it once the attempt has ended (see [Attempt.EndGRPC]).
func (a *Attempt) Discarded() {
	if a != nil && a.r.rpc != rpcHTTP {
		a.settle(verdictDiscarded) // grpc.go
		return
	}
	if a == nil || a.span == nil {
		return
	}
	a.span.SetAttributes(tracing.KeyDiscarded.Bool(true))
}

// End ends the logical request. winner is the attempt whose response or error is returned
// (nil when none was sent: a local refusal); kind is the request's outcome (the winning
// attempt's, as the adapter classified it, or the refusal's); resp and err are what the
// transport returns. It records the request duration and outcome, marks the winning attempt
// when there were several (and counts a hedge win), and ends the span, with status Error when
// err is not nil or kind.SpanError() says so: at once on an error, or when the response body
// is closed or read to its end, for which it wraps resp.Body. Call it once, with the final
// result; later calls do nothing.
func (r *Request) End(winner *Attempt, kind outcome.Kind, resp *http.Response, err error) {
	if r == nil || !r.ended.CompareAndSwap(false, true) {
		return
	}
	o := outcomeIndex(kind)
	attempts := r.attempts.Load()
	if r.s.metrics {
		opts := r.d.optsReq[o]
		if winner != nil {
			opts = winner.ep.optsReq[o]
		}
		r.s.ins.reqDuration.Record(context.Background(), time.Since(r.start).Seconds(), opts...)
		if winner != nil && winner.info.Kind == tracing.AttemptHedge && err == nil {
			r.s.ins.hedgeWins.Add(context.Background(), 1, r.d.optsDest...)
		}
	}
	if winner != nil && winner.span != nil && err == nil && attempts > 1 {
		winner.span.SetAttributes(tracing.KeyWinner.Bool(true))
	}
	if r.span == nil {
		return
	}
	if winner != nil && winner.info.N == 0 && attempts == 1 && o == outcome.Success && err == nil && resp != nil &&
		resp.StatusCode == http.StatusOK && r.method == http.MethodGet && r.route == "" && r.split == "" {
		r.span.SetAttributes(winner.ep.okGET...) // the common case, ready-made
	} else {
		kv := make([]attribute.KeyValue, 0, 9)
		kv = append(kv, r.d.attrs[0], attribute.String("http.request.method", r.method),
			outcomeAttrs[o][0], tracing.KeyAttempts.Int(int(attempts)))
		if winner != nil {
			kv = append(kv, winner.ep.attr, tracing.KeyAttempt.Int(winner.info.N))
		}
		if resp != nil {
			kv = append(kv, attribute.Int("http.response.status_code", resp.StatusCode))
		}
		if r.route != "" {
			kv = append(kv, tracing.KeyRoute.String(r.route))
		}
		if r.split != "" {
			kv = append(kv, tracing.KeySplit.String(r.split))
		}
		r.span.SetAttributes(kv...)
	}
	switch {
	case err != nil:
		r.span.RecordError(err)
		r.span.SetStatus(codes.Error, err.Error())
	case o.SpanError():
		desc := o.String()
		if resp != nil {
			desc = http.StatusText(resp.StatusCode)
		}
		r.span.SetStatus(codes.Error, desc)
	}
	if err != nil || resp == nil || resp.Body == nil || resp.Body == http.NoBody {
		r.span.End()
		return
	}
	resp.Body = r.body.wrap(resp.Body, r.span)
}

// endBody ends a span once the body is closed or read to its end.
type endBody struct {
	io.ReadCloser
	span  trace.Span
	ended atomic.Bool
}

func (b *endBody) end() {
	if b.ended.CompareAndSwap(false, true) {
		b.span.End()
	}
}

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

// wrap makes b the wrapper of rc that ends span, and returns it.
func (b *endBody) wrap(rc io.ReadCloser, span trace.Span) io.ReadCloser {
	b.ReadCloser, b.span = rc, span
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
				span.SetAttributes(tracing.KeyLimitPolicy.String(policy), tracing.KeyLimitWait.Float64(wait.Seconds()))
			} else {
				span.AddEvent("proxyless.ratelimit.refused", trace.WithAttributes(tracing.KeyLimitPolicy.String(policy)))
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
	pk := tracing.KeyLimitPolicy.String(policy)
	ls := &limitSets{
		admitted: attribute.NewSet(pk, tracing.KeyLimitDecision.String("admitted")),
		refused:  attribute.NewSet(pk, tracing.KeyLimitDecision.String("refused")),
		policy:   attribute.NewSet(pk),
	}
	v, _ := limitCache.LoadOrStore(policy, ls)
	return v.(*limitSets)
}

// ShadowMismatch counts a response of a request mirrored to shadow that differed from the
// primary's, for the route that mirrored it. It comes once the comparison is made, after the
// request's span has ended: it is a count, not an event on the span.
func (t *Telemetry) ShadowMismatch(route, shadow string) {
	s := t.load()
	if !s.metrics {
		return
	}
	s.ins.shadowMismatch.Add(context.Background(), 1, metric.WithAttributes(tracing.KeyRoute.String(route), tracing.KeyShadow.String(shadow)))
}

// ShadowResult counts the result of comparing a shadow's answer with the primary's (one of
// route.ShadowResult's names: matched, mismatched, shadow_failed, unpaired), for the route
// that mirrored the request and the shadow destination. Like ShadowMismatch it is a count.
func (t *Telemetry) ShadowResult(route, shadow, result string) {
	s := t.load()
	if !s.metrics {
		return
	}
	s.ins.shadowResults.Add(context.Background(), 1, metric.WithAttributes(tracing.KeyRoute.String(route),
		tracing.KeyShadow.String(shadow), tracing.KeyShadowResult.String(result)))
}

// publishWith stores in p a copy of old, p's current map, with k set to v: the copy-on-write
// update of the maps that requests read without a lock. Writers must be serialised.
func publishWith[K comparable, V any](p *atomic.Pointer[map[K]V], old map[K]V, k K, v V) {
	next := make(map[K]V, len(old)+1)
	maps.Copy(next, old)
	next[k] = v
	p.Store(&next)
}
