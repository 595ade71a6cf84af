package telemetry

import (
	"context"
	"net/http"

	"go.opentelemetry.io/contrib/instrumentation/net/http/otelhttp"
	"go.opentelemetry.io/otel/attribute"
	metricnoop "go.opentelemetry.io/otel/metric/noop"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
	tracenoop "go.opentelemetry.io/otel/trace/noop"
)

// Transport returns an http.RoundTripper over base (http.DefaultTransport when nil) that,
// while telemetry is on, sends each request through otelhttp: a CLIENT span per request
// (child of the attempt's context), W3C trace context injected into the headers, and the
// semantic conventions' http.client.* metrics. When the request's context carries an
// [Attempt], that span gets the attempt's attributes (its kind, its number after the first,
// the breaker's state; the endpoint is the span's server.address and server.port, and the
// destination is on the parent request span) and http.client.request.duration gets
// proxyless.destination.
// While telemetry is off it calls base directly. CloseIdleConnections is forwarded.
func (t *Telemetry) Transport(base http.RoundTripper) http.RoundTripper {
	if base == nil {
		base = http.DefaultTransport
	}
	rt := &roundTripper{t: t, base: base}
	if s := t.load(); s.on {
		rt.otel = otelhttp.NewTransport(annotator{base}, t.otelOptions(s)...)
	}
	return rt
}

type roundTripper struct {
	t    *Telemetry
	base http.RoundTripper
	otel http.RoundTripper // otelhttp's, over base; nil while telemetry is off
}

func (rt *roundTripper) RoundTrip(req *http.Request) (*http.Response, error) {
	if rt.otel == nil || !rt.t.load().on {
		return rt.base.RoundTrip(req)
	}
	return rt.otel.RoundTrip(req)
}

func (rt *roundTripper) CloseIdleConnections() {
	if c, ok := rt.base.(interface{ CloseIdleConnections() }); ok {
		c.CloseIdleConnections()
	}
}

// annotator sits between otelhttp and the base transport: otelhttp's span is in the
// request's context there, and so is the Attempt.
type annotator struct{ base http.RoundTripper }

func (a annotator) RoundTrip(req *http.Request) (*http.Response, error) {
	if at := attemptFrom(req.Context()); at != nil {
		at.annotate(trace.SpanFromContext(req.Context()))
	}
	return a.base.RoundTrip(req)
}

func (a annotator) CloseIdleConnections() {
	if c, ok := a.base.(interface{ CloseIdleConnections() }); ok {
		c.CloseIdleConnections()
	}
}

// otelOptions configures otelhttp with the state's providers, a no-op for the one that is off.
func (t *Telemetry) otelOptions(s *state) []otelhttp.Option {
	opts := []otelhttp.Option{otelhttp.WithPropagators(t.prop)}
	if s.tracing {
		opts = append(opts, otelhttp.WithTracerProvider(s.tp))
	} else {
		opts = append(opts, otelhttp.WithTracerProvider(tracenoop.NewTracerProvider()))
	}
	if s.metrics {
		opts = append(opts, otelhttp.WithMeterProvider(s.mp), otelhttp.WithMetricAttributesFn(metricAttributes))
	} else {
		opts = append(opts, otelhttp.WithMeterProvider(metricnoop.NewMeterProvider()))
	}
	return opts
}

// metricAttributes adds the destination to otelhttp's metrics of an attempt.
func metricAttributes(req *http.Request) []attribute.KeyValue {
	if a := attemptFrom(req.Context()); a != nil {
		return a.r.d.attrs
	}
	return nil
}

// Handler returns an http.Handler that, while telemetry is on, serves through otelhttp: the
// incoming trace context is extracted (a malformed traceparent is ignored and a new trace
// begins), a SERVER span wraps next, and the semantic conventions' http.server.* metrics are
// recorded. otelhttp names the span after the semantic conventions, not after operation: the
// method ("GET"), or the method and the route pattern ("GET /users/{id}") once an
// http.ServeMux has matched one. otelhttp's default naming ignores operation, which only a
// custom span-name formatter would see. While telemetry is off it calls next directly.
func (t *Telemetry) Handler(next http.Handler, operation string) http.Handler {
	h := &handler{t: t, next: next}
	if s := t.load(); s.on {
		h.otel = otelhttp.NewHandler(next, operation, t.otelOptions(s)...)
	}
	return h
}

type handler struct {
	t    *Telemetry
	next http.Handler
	otel http.Handler // otelhttp's, over next; nil while telemetry is off
}

func (h *handler) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	if h.otel == nil || !h.t.load().on {
		h.next.ServeHTTP(w, req)
		return
	}
	h.otel.ServeHTTP(w, req)
}

// Extract returns ctx with the trace context and baggage carried by header, for servers that
// do not use [Telemetry.Handler]. A missing or malformed traceparent leaves ctx as it was.
// While telemetry is off it returns ctx itself.
func (t *Telemetry) Extract(ctx context.Context, header http.Header) context.Context {
	if !t.load().on {
		return ctx
	}
	return t.prop.Extract(ctx, propagation.HeaderCarrier(header))
}

// Inject writes the trace context of ctx into header, for requests that do not go through
// [Telemetry.Transport]. While telemetry is off it does nothing.
func (t *Telemetry) Inject(ctx context.Context, header http.Header) {
	if !t.load().on {
		return
	}
	t.prop.Inject(ctx, propagation.HeaderCarrier(header))
}
