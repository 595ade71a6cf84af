package tracing

// This file is the gRPC adapter: the request span of a gRPC call or stream, outcomes read from
// gRPC status codes, and the client stats handler that runs otelgrpc's and adds each attempt's
// facts to otelgrpc's span.

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
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

// outcomeAttrs are proxyless.outcome for each outcome, as ready-made variadic slices.
var outcomeAttrs = func() (a [numOutcomes][]attribute.KeyValue) {
	for o := range numOutcomes {
		a[o] = []attribute.KeyValue{KeyOutcome.String(o.String())}
	}
	return a
}()

// grpcOutcome returns the outcome of a gRPC result that came back from the transport (the
// attempt was sent). ctxDone says the attempt's context had ended.
//
//   - no error: success;
//   - CANCELLED, a context error, or DEADLINE_EXCEEDED once the context ended (the caller's
//     deadline, the overall or the attempt timeout): canceled;
//   - UNAVAILABLE (connection errors included), RESOURCE_EXHAUSTED and DEADLINE_EXCEEDED from
//     the server: gateway_failure, the counterpart of HTTP's 502, 503 and 504;
//   - INTERNAL, UNKNOWN, DATA_LOSS, and errors without a status: failure, the counterpart of
//     HTTP's other 5xx;
//   - an open breaker (breaker.ErrOpen): refused;
//   - any other code (NOT_FOUND, INVALID_ARGUMENT, ...): success, since the server answered,
//     as an HTTP 4xx is.
func grpcOutcome(err error, ctxDone bool) Outcome {
	if err == nil {
		return OutcomeSuccess
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return OutcomeCanceled
	}
	if errors.Is(err, breaker.ErrOpen) {
		return OutcomeRefused
	}
	s, ok := status.FromError(err)
	if !ok {
		return OutcomeFailure
	}
	switch s.Code() {
	case codes.OK:
		return OutcomeSuccess
	case codes.Canceled:
		return OutcomeCanceled
	case codes.DeadlineExceeded:
		if ctxDone {
			return OutcomeCanceled
		}
		return OutcomeGatewayFailure
	case codes.Unavailable, codes.ResourceExhausted:
		return OutcomeGatewayFailure
	case codes.Internal, codes.Unknown, codes.DataLoss:
		return OutcomeFailure
	}
	return OutcomeSuccess
}

// unsentOutcome is the outcome of a call or attempt that failed before anything was sent: a
// cancellation (or passed deadline), or a local refusal.
func unsentOutcome(err error, ctxDone bool) Outcome {
	if ctxDone || errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return OutcomeCanceled
	}
	switch status.Code(err) {
	case codes.Canceled, codes.DeadlineExceeded:
		return OutcomeCanceled
	}
	return OutcomeRefused
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
		trace.WithAttributes(KeyDestination.String(d.name), keyRPCMethod.String(name), rpcSystemGRPC)}}
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
	verdictWinner:    {KeyWinner.Bool(true)},
	verdictDiscarded: {KeyDiscarded.Bool(true)},
}

// grpcAttempt is the gRPC-only state of an Attempt. For a gRPC attempt, mu also guards the
// Attempt's ep and info.Endpoint and info.Breaker, which Picked sets.
type grpcAttempt struct {
	next *Attempt // the attempt started before this one; immutable once linked

	mu      sync.Mutex
	verdict verdict   // guarded by mu
	ended   bool      // guarded by mu: EndGRPC has recorded the attempt
	held    *heldSpan // guarded by mu: otelgrpc's span, its end held for the verdict
	spans   int       // guarded by mu: otelgrpc's spans seen (a transparent retry makes more)
	buf     heldSpan  // the first held span, to save an allocation
}

// heldSpan is what otelgrpc is handed as the span of an attempt of a unary call when the
// attempt ends: otelgrpc's own span, whose End is held until the attempt's verdict is known.
type heldSpan struct {
	trace.Span
	a  *Attempt
	at time.Time // when otelgrpc ended the span; zero until then; guarded by a.g.mu
}

// End records when otelgrpc ended the span, and ends it once the verdict is known.
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
	v := g.verdict
	switch {
	case g.held != h:
		v = verdictDiscarded // superseded by a transparent retry of gRPC's
	case v == verdictPending:
		g.mu.Unlock()
		return // settle ends it
	default:
		g.held = nil
	}
	g.mu.Unlock()
	h.release(v)
}

// release marks the span with v and ends it when otelgrpc did. Its caller owns h: it has
// detached it from its attempt.
func (h *heldSpan) release(v verdict) {
	if kv := verdictAttrs[v]; kv != nil {
		h.Span.SetAttributes(kv...)
	}
	h.Span.End(trace.WithTimestamp(h.at))
}

// settle records the attempt's verdict (the first one given counts) and ends its held span,
// if otelgrpc has ended it.
func (a *Attempt) settle(v verdict) {
	g := &a.g
	g.mu.Lock()
	if g.verdict != verdictPending {
		g.mu.Unlock()
		return
	}
	g.verdict = v
	h := g.held
	if h == nil || h.at.IsZero() {
		g.mu.Unlock()
		return // nothing held, or otelgrpc has yet to end it: End will
	}
	g.held = nil
	g.mu.Unlock()
	h.release(v)
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

// outcomeLocked returns the outcome of a gRPC attempt that ended with err. Called with a.g.mu
// held.
func (a *Attempt) outcomeLocked(err error) Outcome {
	if err == nil {
		return OutcomeSuccess
	}
	done := a.Context.Err() != nil
	if a.ep == nil { // no endpoint picked: nothing was sent
		return unsentOutcome(err, done)
	}
	return grpcOutcome(err, done)
}

// EndGRPC records the end of a gRPC attempt: err is what the attempt's invoker (or stream)
// returned, nil for an OK status. Attempts that were sent count in proxyless.client.attempts by
// endpoint, kind and outcome; one that the picker refused (no endpoint, every breaker open)
// counts nowhere but in proxyless.breaker.refusals. Call it once the attempt is over; later
// calls do nothing. The attempt's span gets its attributes from the stats handler, not here.
func (a *Attempt) EndGRPC(err error) {
	if a == nil {
		return
	}
	a.g.mu.Lock()
	if a.g.ended {
		a.g.mu.Unlock()
		return
	}
	a.g.ended = true
	ep, kind := a.ep, a.info.Kind
	o := a.outcomeLocked(err)
	a.g.mu.Unlock()
	if ep == nil || !a.r.s.metrics {
		return
	}
	if o == OutcomeRefused {
		o = OutcomeGatewayFailure // it was sent: whatever failed, failed remotely
	}
	a.r.s.ins.attempts.Add(context.Background(), 1, ep.optsAtt[kind][o]...)
}

// ending is called as otelgrpc is about to end the span of the attempt (stats.End). It adds
// the attempt's attributes to the span, and returns the context to hand otelgrpc: for an
// attempt of a unary call whose verdict is pending, one whose span holds its end until then.
func (a *Attempt) ending(ctx context.Context, end *stats.End) context.Context {
	span := trace.SpanFromContext(ctx)
	if !span.IsRecording() {
		return ctx
	}
	g := &a.g
	g.mu.Lock()
	ep, info := a.ep, a.info
	o := a.outcomeLocked(end.Error)
	v := g.verdict
	var h, superseded *heldSpan
	switch {
	case a.r.rpc != rpcUnary || v != verdictPending:
		// A stream's attempt ends unmarked; a verdict already given is marked at once.
	case a.r.ended.Load():
		// The call returned without waiting for this attempt (a hedge that lost).
		v = verdictDiscarded
	default:
		h = &g.buf
		if g.spans > 0 {
			h = new(heldSpan)
		}
		*h = heldSpan{Span: span, a: a}
		if old := g.held; old != nil && !old.at.IsZero() {
			superseded = old // a transparent retry of gRPC's followed it; else its End releases it
		}
		g.held = h
	}
	g.spans++
	g.mu.Unlock()
	if superseded != nil {
		superseded.release(verdictDiscarded)
	}
	a.annotateGRPC(span, ep, &info, o)
	if h == nil {
		if kv := verdictAttrs[v]; kv != nil {
			span.SetAttributes(kv...)
		}
		return ctx
	}
	return trace.ContextWithSpan(ctx, h)
}

// annotateGRPC adds the attributes of a gRPC attempt to otelgrpc's span, as annotate does for
// otelhttp's: its kind, its number after the first, the breaker's state (when an endpoint was
// picked), a retry's backoff, an outcome other than success. The endpoint is the span's
// server.address and server.port (otelgrpc's, the peer the attempt went to), the destination
// is the parent's. A first attempt that succeeded gets two attributes beside otelgrpc's five.
func (a *Attempt) annotateGRPC(span trace.Span, ep *endpoint, info *AttemptInfo, o Outcome) {
	if ep != nil && info.N == 0 && info.Kind == AttemptFirst && (info.NoBreaker || info.Breaker == breaker.StateClosed) {
		if info.NoBreaker {
			span.SetAttributes(firstAttemptNoBreaker...)
		} else {
			span.SetAttributes(firstAttempt...)
		}
		if o != OutcomeSuccess {
			span.SetAttributes(outcomeAttrs[o]...)
		}
		return
	}
	kv := make([]attribute.KeyValue, 0, 5)
	kv = append(kv, KeyAttemptKind.String(info.Kind.String()))
	if info.N > 0 {
		kv = append(kv, KeyAttempt.Int(info.N))
	}
	if ep != nil && !info.NoBreaker {
		kv = append(kv, KeyBreakerState.String(info.Breaker.String()))
	}
	if info.Kind == AttemptRetry {
		kv = append(kv, KeyBackoff.Float64(info.Backoff.Seconds()))
	}
	if o != OutcomeSuccess {
		kv = append(kv, outcomeAttrs[o]...)
	}
	span.SetAttributes(kv...)
}

// EndGRPC ends a logical gRPC call or stream. winner is the attempt whose result is returned
// (nil when none was started: a refusal before any attempt), and err what the call returns
// (nil for OK; for a stream, nil once it ended with OK). It records the request duration and
// outcome, counts a hedge win, gives every attempt of a unary call its verdict (the winner
// marked when there were several, the others discarded) and ends the span, with the status
// code and, on an error, status Error. Call it once, with the final result; later calls do
// nothing.
func (r *Request) EndGRPC(winner *Attempt, err error) {
	if r == nil || !r.ended.CompareAndSwap(false, true) {
		return
	}
	var ep *endpoint
	n := 0
	o := OutcomeSuccess
	if winner != nil {
		winner.g.mu.Lock()
		ep, n = winner.ep, winner.info.N
		o = winner.outcomeLocked(err)
		winner.g.mu.Unlock()
	} else if err != nil {
		o = unsentOutcome(err, false)
	}
	attempts := r.attempts.Load()
	if r.s.metrics {
		opts := r.d.optsReq[o]
		if ep != nil {
			opts = ep.optsReq[o]
		}
		r.s.ins.reqDuration.Record(context.Background(), time.Since(r.start).Seconds(), opts...)
		if winner != nil && winner.info.Kind == AttemptHedge && err == nil {
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
	if ep != nil && n == 0 && attempts == 1 && err == nil && r.route == "" && r.split == "" {
		r.span.SetAttributes(ep.grpcOK...) // the common case, ready-made
	} else {
		kv := make([]attribute.KeyValue, 0, 7)
		kv = append(kv, KeyOutcome.String(o.String()), KeyAttempts.Int(int(attempts)))
		if ep != nil {
			kv = append(kv, ep.attr, KeyAttempt.Int(n))
		}
		kv = append(kv, grpcStatusAttr(code))
		if r.route != "" {
			kv = append(kv, KeyRoute.String(r.route))
		}
		if r.split != "" {
			kv = append(kv, KeySplit.String(r.split))
		}
		r.span.SetAttributes(kv...)
	}
	if err != nil {
		r.span.SetStatus(otelcodes.Error, status.Convert(err).Message())
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
	return &clientHandler{t: t}
}

type clientHandler struct {
	t    *Telemetry
	otel atomic.Pointer[otelClientHandler] // built for the current state
}

// otelClientHandler is otelgrpc's handler for one state. The RPCs it tagged carry it in their
// context, so that each RPC is handled to its end by the handler that began it.
type otelClientHandler struct {
	s *state
	h stats.Handler
}

type handlerKey struct{}

func (h *clientHandler) TagRPC(ctx context.Context, info *stats.RPCTagInfo) context.Context {
	s := h.t.load()
	if !s.on {
		return ctx
	}
	o := h.otel.Load()
	if o == nil || o.s != s {
		o = &otelClientHandler{s: s, h: otelgrpc.NewClientHandler(h.t.otelGRPCOptions(s)...)}
		h.otel.Store(o)
	}
	return context.WithValue(o.h.TagRPC(ctx, info), handlerKey{}, o)
}

func (h *clientHandler) HandleRPC(ctx context.Context, rs stats.RPCStats) {
	o, _ := ctx.Value(handlerKey{}).(*otelClientHandler)
	if o == nil {
		return // tagged while telemetry was off
	}
	if end, ok := rs.(*stats.End); ok {
		if a := attemptFrom(ctx); a != nil && a.r.rpc != rpcHTTP {
			ctx = a.ending(ctx, end)
		}
	}
	o.h.HandleRPC(ctx, rs)
}

func (h *clientHandler) TagConn(ctx context.Context, _ *stats.ConnTagInfo) context.Context {
	return ctx
}

func (h *clientHandler) HandleConn(context.Context, stats.ConnStats) {}

// otelGRPCOptions configures otelgrpc with the state's providers, a no-op for the one that is
// off.
func (t *Telemetry) otelGRPCOptions(s *state) []otelgrpc.Option {
	opts := []otelgrpc.Option{otelgrpc.WithPropagators(propagator{t})}
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
