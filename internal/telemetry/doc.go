// Package telemetry is proxyless's OpenTelemetry instrumentation, the plumbing package
// middleware uses: spans, W3C trace-context propagation and metrics for every decision the
// library takes (endpoint picked, attempt number, retry or hedge and who won, breaker state,
// limiter wait, route and split chosen, ejections), at near-zero cost while the
// OpenTelemetry providers record nothing. What users name (the scope, the attribute keys and
// their values, the metric names) is public in package tracing.
//
// A [Telemetry] is made once per middleware component with [New]. Each logical request gets
// an INTERNAL span from [Telemetry.StartRequest]; each attempt (first try, retry or hedge) is
// the CLIENT span that otelhttp starts in the RoundTripper returned by [Telemetry.Transport],
// which also injects the trace context. proxyless does not start rival transport spans: it
// adds its attributes to otelhttp's span, found through the attempt's context. On the server
// side [Telemetry.Handler] and [Telemetry.Extract] take the incoming context; a malformed
// traceparent is ignored and a new trace begins.
//
// gRPC calls get the same: [Telemetry.StartCall] and [Telemetry.StartStream] start the
// request span of a unary call or a stream, and each attempt is the CLIENT span of otelgrpc's
// stats handler, which [Telemetry.ClientHandler] wraps to add proxyless's attributes. The
// endpoint of a gRPC attempt is known only once the balancer has picked it: the picker
// reports it through [Attempt.Picked].
//
// # Providers, and the cost when disabled
//
// [New] takes its providers once: those of its options, else the global ones as they are
// when it runs (otel.GetTracerProvider, otel.GetMeterProvider, otel.GetTextMapPropagator), as
// otelhttp does. An SDK installed globally afterwards is not seen by that Telemetry: install
// it first, or pass its providers. New decides then, through the API's public behaviour
// only, whether each provider records: those of the trace/noop and metric/noop packages do
// not, nor do the global ones while no SDK is installed. When neither records, every method
// returns at once (one atomic load), [Telemetry.StartRequest] returns a nil *[Request] whose
// methods do nothing, and the RoundTripper and Handler call straight through, allocating
// nothing: otelhttp alone would still cost microseconds and a dozen allocations per request.
// Instruments are resolved once; measurements use attribute sets built once per destination
// and endpoint.
//
// # Outcomes
//
// What a request or an attempt says of its outcome (proxyless.outcome, the request span's
// status) is the outcome vocabulary of package outcome, as the middleware's adapters
// classified the attempt: [Attempt.End] and [Request.End] take an outcome.Kind, reported as
// Kind.String() ("success", "gateway_failure", "local_timeout", ...). A request span's status
// is Error when the call returned an error or Kind.SpanError() says so.
//
// # Names
//
// Metrics follow the OpenTelemetry semantic conventions where one exists: the per-attempt
// http.client.request.duration comes from otelhttp (with proxyless.destination added). The
// rest are named proxyless.*; tracing's Metric* constants list them, and each is recorded
// (middleware's TestEveryDeclaredMetricIsEmitted checks it). The instrumentation scope name
// is tracing.ScopeName, package tracing's import path.
package telemetry
