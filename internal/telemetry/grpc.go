package telemetry

// This file is the gRPC adapter: the request span of a gRPC call or stream, and the client
// stats handler that runs otelgrpc's and adds each attempt's facts to otelgrpc's span.

import (
	"context"
	"strconv"
	"strings"
	"sync"
	"time"

	"go.opentelemetry.io/contrib/instrumentation/google.golang.org/grpc/otelgrpc"
	"go.opentelemetry.io/otel/attribute"
	otelcodes "go.opentelemetry.io/otel/codes"
	metricnoop "go.opentelemetry.io/otel/metric/noop"
	"go.opentelemetry.io/otel/trace"
	tracenoop "go.opentelemetry.io/otel/trace/noop"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/stats"
	"google.golang.org/grpc/status"

	"github.com/proxyless/proxyless/breaker"
	"github.com/proxyless/proxyless/outcome"
	"github.com/proxyless/proxyless/tracing"
)

// rpcKind says what a Request is for.
type rpcKind uint8

const (
	rpcHTTP   rpcKind = iota // an HTTP request: StartRequest
	rpcUnary                 // a unary gRPC call: StartCall
	rpcStream                // a gRPC stream: StartStream
)

// Attributes of the semantic conventions for RPC (v1.43, as otelgrpc v0.72 sets them).
const (
	keyRPCMethod     = attribute.Key("rpc.method")               // "package.Service/Method"
	keyRPCSystemName = attribute.Key("rpc.system.name")          // "grpc"
	keyRPCStatusCode = attribute.Key("rpc.response.status_code") // canonical code name: "UNAVAILABLE"
)

var rpcSystemGRPC = keyRPCSystemName.String("grpc")

// grpcStatusAttrs are rpc.response.status_code for each gRPC code, by code.
var grpcStatusAttrs = func() []attribute.KeyValue {
	names := []string{"OK", "CANCELLED", "UNKNOWN", "INVALID_ARGUMENT", "DEADLINE_EXCEEDED", "NOT_FOUND",
		"ALREADY_EXISTS", "PERMISSION_DENIED", "RESOURCE_EXHAUSTED", "FAILED_PRECONDITION", "ABORTED",
		"OUT_OF_RANGE", "UNIMPLEMENTED", "INTERNAL", "UNAVAILABLE", "DATA_LOSS", "UNAUTHENTICATED"}
	kv := make([]attribute.KeyValue, len(names))
	for i, n := range names {
		kv[i] = keyRPCStatusCode.String(n)
	}
	return kv
}()

// grpcStatusAttr returns rpc.response.status_code for c.
func grpcStatusAttr(c codes.Code) attribute.KeyValue {
	if int(c) < len(grpcStatusAttrs) {
		return grpcStatusAttrs[c]
	}
	return keyRPCStatusCode.String("CODE(" + strconv.FormatUint(uint64(c), 10) + ")")
}

// rpcStart is the name and start options of the request span of one method.
type rpcStart struct {
	name string
	opts []trace.SpanStartOption
}

// maxRPCMethods bounds how many methods a Destination keeps ready-made span options for.
const maxRPCMethods = 256

// rpcSpan returns the name and start options of the request span of fullMethod, building them
// on first use.
func (d *Destination) rpcSpan(fullMethod string) *rpcStart {
	if m := d.rpcs.Load(); m != nil {
		if rs := (*m)[fullMethod]; rs != nil {
			return rs
		}
	}
	name := strings.TrimPrefix(fullMethod, "/")
	rs := &rpcStart{name: name, opts: []trace.SpanStartOption{trace.WithSpanKind(trace.SpanKindInternal),
		trace.WithAttributes(tracing.KeyDestination.String(d.name), keyRPCMethod.String(name), rpcSystemGRPC)}}
	d.mu.Lock()
	defer d.mu.Unlock()
	var old map[string]*rpcStart
	if m := d.rpcs.Load(); m != nil {
		old = *m
	}
	if e := old[fullMethod]; e != nil {
		return e
	}
	if len(old) >= maxRPCMethods {
		return rs // an API this wide is unusual: build per call rather than grow
	}
	publishWith(&d.rpcs, old, fullMethod, rs)
	return rs
}

// StartCall starts the telemetry of a logical unary gRPC call to destination d. fullMethod is
// gRPC's "/package.Service/Method". The call gets an INTERNAL span named "package.Service/Method"
// (as otelgrpc names its spans), child of the span in ctx, with rpc.method, rpc.system.name and
// proxyless.destination. StartCall returns the context the attempts must descend from, and the
// Request to report to; [Request.EndGRPC] ends it. While telemetry is off it returns ctx itself
// and a nil Request, and costs two atomic loads.
//
// Each attempt, started with [Request.StartAttempt] (its AttemptInfo.Endpoint left empty), is
// the CLIENT span otelgrpc starts in the handler of [Telemetry.ClientHandler]. The handler adds
// the attempt's attributes to that span when it ends, and holds its end back until the call
// knows whether the attempt's answer is returned (proxyless.attempt.winner, when there were
// several attempts) or thrown away (proxyless.attempt.discarded): [Attempt.Discarded] or
// [Request.EndGRPC] release it, with the time at which otelgrpc ended it.
func (t *Telemetry) StartCall(ctx context.Context, d *Destination, fullMethod string) (context.Context, *Request) {
	return t.startRPC(ctx, d, fullMethod, rpcUnary)
}

// StartStream is [Telemetry.StartCall] for a gRPC stream. Its request span lasts as long as the
// stream. The span of each attempt ends when otelgrpc ends it, with the attempt's attributes;
// it is not marked winner or discarded, since a stream's attempt ends before its caller decides
// (the request span's proxyless.attempt names the attempt whose result was returned).
func (t *Telemetry) StartStream(ctx context.Context, d *Destination, fullMethod string) (context.Context, *Request) {
	return t.startRPC(ctx, d, fullMethod, rpcStream)
}

func (t *Telemetry) startRPC(ctx context.Context, d *Destination, fullMethod string, kind rpcKind) (context.Context, *Request) {
	if d == nil {
		return ctx, nil
	}
	s := t.load()
	if !s.on {
		return ctx, nil
	}
	r := &Request{s: s, d: d, start: time.Now(), rpc: kind}
	if s.tracing {
		rs := d.rpcSpan(fullMethod)
		ctx, r.span = s.tracer.Start(ctx, rs.name, rs.opts...)
	}
	return ctx, r
}

// grpcRequest is the gRPC-only state of a Request.
type grpcRequest struct {
	mu       sync.Mutex
	attempts *Attempt // the attempts started, newest first, linked by grpcAttempt.next; guarded by mu
}

// add links a, a new attempt, into the request's list.
func (g *grpcRequest) add(a *Attempt) {
	g.mu.Lock()
	a.g.next = g.attempts
	g.attempts = a
	g.mu.Unlock()
}

// verdict is what became of an attempt's answer.
type verdict uint8

const (
	verdictPending   verdict = iota // not decided yet
	verdictWinner                   // returned, the call having made several attempts
	verdictFinal                    // returned, the call's only attempt: no mark
	verdictDiscarded                // thrown away
)

var verdictAttrs = [...][]attribute.KeyValue{
	verdictWinner:    {tracing.KeyWinner.Bool(true)},
	verdictDiscarded: {tracing.KeyDiscarded.Bool(true)},
}

// grpcAttempt is the gRPC-only state of an Attempt. For a gRPC attempt, mu also guards the
// Attempt's ep and info.Endpoint and info.Breaker, which Picked sets.
type grpcAttempt struct {
	next *Attempt // the attempt started before this one; immutable once linked

	mu      sync.Mutex
	verdict verdict      // guarded by mu
	ended   bool         // guarded by mu: End has given the attempt's outcome
	kind    outcome.Kind // guarded by mu: that outcome
	held    *heldSpan    // guarded by mu: otelgrpc's span, its end held until it can be annotated
	spans   int          // guarded by mu: otelgrpc's spans seen (a transparent retry makes more)
	buf     heldSpan     // the first held span, to save an allocation
}

// heldSpan is what otelgrpc is handed as the span of an attempt when the attempt ends before
// what its span must say is known: its outcome, which the adapter classifies once the
// attempt has returned (End), and, for an attempt of a unary call, whether its answer is
// returned or thrown away (its verdict). Its End is held until then.
type heldSpan struct {
	trace.Span
	a     *Attempt
	at    time.Time // when otelgrpc ended the span; zero until then; guarded by a.g.mu
	unary bool      // immutable: an attempt of a unary call, whose span is marked with its verdict
}

// spanEnd is what the release of a held span needs, read under the attempt's lock.
type spanEnd struct {
	ep   *endpoint
	info AttemptInfo
	kind outcome.Kind
	v    verdict
	at   time.Time
}

// End records when otelgrpc ended the span, and ends it once it can be annotated.
func (h *heldSpan) End(opts ...trace.SpanEndOption) {
	var at time.Time
	if len(opts) > 0 {
		cfg := trace.NewSpanEndConfig(opts...)
		at = cfg.Timestamp()
	}
	if at.IsZero() {
		at = time.Now()
	}
	g := &h.a.g
	g.mu.Lock()
	h.at = at
	if g.held != h {
		g.mu.Unlock()
		h.supersede() // a transparent retry of gRPC's followed it
		return
	}
	ready, e := h.a.takeLocked()
	g.mu.Unlock()
	if ready != nil {
		ready.release(e)
	}
}

// takeLocked detaches the attempt's held span when it can be released (otelgrpc has ended
// it, the outcome is known, and the verdict when the span waits for one) and returns it with
// what its release needs; otherwise it returns nil. Called with a.g.mu held.
func (a *Attempt) takeLocked() (*heldSpan, spanEnd) {
	g := &a.g
	h := g.held
	if h == nil || h.at.IsZero() || !g.ended || (h.unary && g.verdict == verdictPending) {
		return nil, spanEnd{}
	}
	g.held = nil
	v := g.verdict
	if !h.unary {
		v = verdictPending // a stream's attempt ends unmarked
	}
	return h, spanEnd{ep: a.ep, info: a.info, kind: g.kind, v: v, at: h.at}
}

// release annotates the span and ends it when otelgrpc did. Its caller owns h: it has
// detached it from its attempt.
func (h *heldSpan) release(e spanEnd) {
	annotateGRPC(h.Span, e.ep, &e.info, e.kind, true)
	if kv := verdictAttrs[e.v]; kv != nil {
		h.Span.SetAttributes(kv...)
	}
	h.Span.End(trace.WithTimestamp(e.at))
}

// supersede ends a span that a transparent retry of gRPC's replaced: discarded, without an
// outcome, which is the retry's. Its caller owns h.
func (h *heldSpan) supersede() {
	a := h.a
	a.g.mu.Lock()
	ep, info, at := a.ep, a.info, h.at
	a.g.mu.Unlock()
	annotateGRPC(h.Span, ep, &info, outcome.Success, false)
	h.Span.SetAttributes(verdictAttrs[verdictDiscarded]...)
	h.Span.End(trace.WithTimestamp(at))
}

// settle records the attempt's verdict (the first one given counts) and ends its held span,
// if it can now be.
func (a *Attempt) settle(v verdict) {
	g := &a.g
	g.mu.Lock()
	if g.verdict != verdictPending {
		g.mu.Unlock()
		return
	}
	g.verdict = v
	h, e := a.takeLocked()
	g.mu.Unlock()
	if h != nil {
		h.release(e)
	}
}

// Picked records the endpoint at addr as the one a gRPC attempt was sent to, and whether its
// breaker admitted the attempt as a half-open probe. It makes *Attempt a
// grpcbalancer.Observer: set it as the attempt's Observer, and the picker calls it.
func (a *Attempt) Picked(addr string, probe bool) {
	if a == nil {
		return
	}
	ep := a.r.d.endpoint(addr)
	state := breaker.StateClosed
	if probe {
		state = breaker.StateHalfOpen
	}
	a.g.mu.Lock()
	a.ep, a.info.Endpoint, a.info.Breaker = ep, addr, state
	a.g.mu.Unlock()
}

// BreakerRefused records that the breaker of the endpoint at addr refused the attempt, as
// [Request.BreakerRefused] does. The picker calls it, as the attempt's grpcbalancer.Observer.
func (a *Attempt) BreakerRefused(addr string) {
	if a == nil {
		return
	}
	a.r.BreakerRefused(addr)
}

// AttemptRefused counts the attempt, which every breaker refused, once: see
// [Request.AttemptRefused].
func (a *Attempt) AttemptRefused() {
	if a == nil {
		return
	}
	a.r.AttemptRefused()
}

// endGRPC is End for an attempt of a gRPC call or stream. Attempts that were sent count in
// proxyless.client.attempts by endpoint, kind and outcome; one that the picker refused (no
// endpoint, every breaker open: outcome.LocalRefusal) counts nowhere but in
// proxyless.breaker.refusals. The attempt's span gets its attributes from the stats handler,
// or here when the handler holds it for the outcome.
func (a *Attempt) endGRPC(kind outcome.Kind) {
	g := &a.g
	g.mu.Lock()
	if g.ended {
		g.mu.Unlock()
		return
	}
	g.ended, g.kind = true, kind
	ep, k := a.ep, a.info.Kind
	h, e := a.takeLocked()
	g.mu.Unlock()
	if h != nil {
		h.release(e)
	}
	if ep == nil || kind == outcome.LocalRefusal || !a.r.s.metrics {
		return
	}
	a.r.s.ins.attempts.Add(context.Background(), 1, ep.optsAtt[k][outcomeIndex(kind)]...)
}

// ending is called as otelgrpc is about to end the span of the attempt (stats.End). When the
// span can be annotated now (the attempt's outcome is known, and its verdict if it needs
// one) it is, and ctx is returned; otherwise it returns a context whose span holds its end
// until then.
func (a *Attempt) ending(ctx context.Context) context.Context {
	span := trace.SpanFromContext(ctx)
	if !span.IsRecording() {
		return ctx
	}
	g := &a.g
	g.mu.Lock()
	unary := a.r.rpc == rpcUnary
	if unary && g.verdict == verdictPending && a.r.ended.Load() {
		g.verdict = verdictDiscarded // the call returned without waiting for it (a hedge that lost)
	}
	if g.ended && !(unary && g.verdict == verdictPending) {
		ep, info, kind, v := a.ep, a.info, g.kind, g.verdict
		g.spans++
		g.mu.Unlock()
		if !unary {
			v = verdictPending
		}
		annotateGRPC(span, ep, &info, kind, true)
		if kv := verdictAttrs[v]; kv != nil {
			span.SetAttributes(kv...)
		}
		return ctx
	}
	h := &g.buf
	if g.spans > 0 {
		h = new(heldSpan)
	}
	*h = heldSpan{Span: span, a: a, unary: unary}
	var superseded *heldSpan
	if old := g.held; old != nil && !old.at.IsZero() {
		superseded = old // a transparent retry of gRPC's followed it; else its End supersedes it
	}
	g.held = h
	g.spans++
	g.mu.Unlock()
	if superseded != nil {
		superseded.supersede()
	}
	return trace.ContextWithSpan(ctx, h)
}

// annotateGRPC adds the attributes of a gRPC attempt to otelgrpc's span, as annotate does for
// otelhttp's: its kind, its number after the first, the breaker's state (when an endpoint was
// picked), a retry's backoff, an outcome other than success (when known). The endpoint is the
// span's server.address and server.port (otelgrpc's, the peer the attempt went to), the
// destination is the parent's. A first attempt that succeeded gets two attributes beside
// otelgrpc's five.
func annotateGRPC(span trace.Span, ep *endpoint, info *AttemptInfo, kind outcome.Kind, known bool) {
	withOutcome := known && kind != outcome.Success
	if ep != nil && info.N == 0 && info.Kind == tracing.AttemptFirst && (info.NoBreaker || info.Breaker == breaker.StateClosed) {
		if info.NoBreaker {
			span.SetAttributes(firstAttemptNoBreaker...)
		} else {
			span.SetAttributes(firstAttempt...)
		}
		if withOutcome {
			span.SetAttributes(outcomeAttrs[outcomeIndex(kind)]...)
		}
		return
	}
	kv := make([]attribute.KeyValue, 0, 5)
	kv = append(kv, tracing.KeyAttemptKind.String(info.Kind.String()))
	if info.N > 0 {
		kv = append(kv, tracing.KeyAttempt.Int(info.N))
	}
	if ep != nil && !info.NoBreaker {
		kv = append(kv, tracing.KeyBreakerState.String(info.Breaker.String()))
	}
	if info.Kind == tracing.AttemptRetry {
		kv = append(kv, tracing.KeyBackoff.Float64(info.Backoff.Seconds()))
	}
	if withOutcome {
		kv = append(kv, outcomeAttrs[outcomeIndex(kind)]...)
	}
	span.SetAttributes(kv...)
}

// EndGRPC ends a logical gRPC call or stream. winner is the attempt whose result is returned
// (nil when none was started: a refusal before any attempt), kind the call's outcome (the
// winning attempt's, as the adapter classified it, or the refusal's), and err what the call
// returns (nil for OK; for a stream, nil once it ended with OK). It records the request
// duration and outcome, counts a hedge win, gives every attempt of a unary call its verdict
// (the winner marked when there were several, the others discarded) and ends the span, with
// the status code and status Error when the call returned an error or kind.SpanError() says
// so. Call it once, with the final result; later calls do nothing.
func (r *Request) EndGRPC(winner *Attempt, kind outcome.Kind, err error) {
	if r == nil || !r.ended.CompareAndSwap(false, true) {
		return
	}
	var ep *endpoint
	n := 0
	if winner != nil {
		winner.g.mu.Lock()
		ep, n = winner.ep, winner.info.N
		winner.g.mu.Unlock()
	}
	o := outcomeIndex(kind)
	attempts := r.attempts.Load()
	if r.s.metrics {
		opts := r.d.optsReq[o]
		if ep != nil {
			opts = ep.optsReq[o]
		}
		r.s.ins.reqDuration.Record(context.Background(), time.Since(r.start).Seconds(), opts...)
		if winner != nil && winner.info.Kind == tracing.AttemptHedge && err == nil {
			r.s.ins.hedgeWins.Add(context.Background(), 1, r.d.optsDest...)
		}
	}
	r.g.mu.Lock()
	list := r.g.attempts
	r.g.mu.Unlock()
	for a := list; a != nil; a = a.g.next {
		v := verdictDiscarded
		if a == winner {
			v = verdictFinal
			if attempts > 1 {
				v = verdictWinner
			}
		}
		a.settle(v)
	}
	if r.span == nil {
		return
	}
	code := status.Code(err)
	if ep != nil && n == 0 && attempts == 1 && err == nil && o == outcome.Success && r.route == "" && r.split == "" {
		r.span.SetAttributes(ep.grpcOK...) // the common case, ready-made
	} else {
		kv := make([]attribute.KeyValue, 0, 7)
		kv = append(kv, outcomeAttrs[o][0], tracing.KeyAttempts.Int(int(attempts)))
		if ep != nil {
			kv = append(kv, ep.attr, tracing.KeyAttempt.Int(n))
		}
		kv = append(kv, grpcStatusAttr(code))
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
		r.span.SetStatus(otelcodes.Error, status.Convert(err).Message())
	case o.SpanError():
		r.span.SetStatus(otelcodes.Error, o.String())
	}
	r.span.End()
}

// ClientHandler returns a gRPC client stats.Handler that, while telemetry is on, is otelgrpc's
// client handler: a CLIENT span per attempt (child of the attempt's context), W3C trace
// context injected into the outgoing metadata, and the semantic conventions' rpc.client.*
// metrics, with proxyless.destination added when the attempt's context carries an [Attempt].
// That span gets the attempt's attributes (its kind, its number after the first, the breaker
// state, a retry's backoff, and an outcome other than success; the endpoint is otelgrpc's
// server.address and server.port, and the destination is on the parent request span) as it
// ends; see [Telemetry.StartCall] for how its end waits for the attempt's verdict. While telemetry is off it does nothing.
func (t *Telemetry) ClientHandler() stats.Handler {
	h := &clientHandler{t: t}
	if s := t.load(); s.on {
		h.otel = otelgrpc.NewClientHandler(t.otelGRPCOptions(s)...)
	}
	return h
}

type clientHandler struct {
	t    *Telemetry
	otel stats.Handler // otelgrpc's; nil while telemetry is off
}

// tagged marks the context of an RPC that otelgrpc's handler tagged, so that an RPC begun
// before Close is handled to its end.
type tagged struct{}

func (h *clientHandler) TagRPC(ctx context.Context, info *stats.RPCTagInfo) context.Context {
	if h.otel == nil || !h.t.load().on {
		return ctx
	}
	return context.WithValue(h.otel.TagRPC(ctx, info), tagged{}, true)
}

func (h *clientHandler) HandleRPC(ctx context.Context, rs stats.RPCStats) {
	if ctx.Value(tagged{}) == nil {
		return // not tagged: telemetry is off
	}
	if _, ok := rs.(*stats.End); ok {
		if a := attemptFrom(ctx); a != nil && a.r.rpc != rpcHTTP {
			ctx = a.ending(ctx)
		}
	}
	h.otel.HandleRPC(ctx, rs)
}

// ServerHandler returns otelgrpc's server stats handler, reporting to the Telemetry's
// providers and extracting trace context with its propagator: a SERVER span per call and the
// semantic conventions' rpc.server.* metrics. While telemetry is off it returns nil: install
// no handler.
func (t *Telemetry) ServerHandler() stats.Handler {
	s := t.load()
	if !s.on {
		return nil
	}
	return otelgrpc.NewServerHandler(t.otelGRPCOptions(s)...)
}

func (h *clientHandler) TagConn(ctx context.Context, _ *stats.ConnTagInfo) context.Context {
	return ctx
}

func (h *clientHandler) HandleConn(context.Context, stats.ConnStats) {}

// otelGRPCOptions configures otelgrpc with the state's providers, a no-op for the one that is
// off.
func (t *Telemetry) otelGRPCOptions(s *state) []otelgrpc.Option {
	opts := []otelgrpc.Option{otelgrpc.WithPropagators(t.prop)}
	if s.tracing {
		opts = append(opts, otelgrpc.WithTracerProvider(s.tp))
	} else {
		opts = append(opts, otelgrpc.WithTracerProvider(tracenoop.NewTracerProvider()))
	}
	if s.metrics {
		opts = append(opts, otelgrpc.WithMeterProvider(s.mp), otelgrpc.WithMetricAttributesFn(grpcMetricAttributes))
	} else {
		opts = append(opts, otelgrpc.WithMeterProvider(metricnoop.NewMeterProvider()))
	}
	return opts
}

// grpcMetricAttributes adds the destination to otelgrpc's metrics of an attempt.
func grpcMetricAttributes(ctx context.Context) []attribute.KeyValue {
	if a := attemptFrom(ctx); a != nil {
		return a.r.d.attrs
	}
	return nil
}
