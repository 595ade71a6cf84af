// Package tracing names what proxyless's OpenTelemetry instrumentation reports, so that
// dashboards, alerts and tests can refer to it: the instrumentation scope ([ScopeName]), the
// attribute keys (Key*) and their values, and the metric names (Metric*). The
// instrumentation itself runs inside package middleware, configured with its
// WithTracerProvider and WithMeterProvider options.
//
// # Spans
//
// Each logical request a client sends gets an INTERNAL span named "METHOD destination" (for
// gRPC, "package.Service/Method"), with [KeyDestination], [KeyOutcome], [KeyAttempts], the
// endpoint that answered ([KeyEndpoint], [KeyAttempt]) and the route and split chosen
// ([KeyRoute], [KeySplit]); retries, hedges, budget and breaker refusals and ejections are
// its events. Each attempt (first try, retry or hedge) is the CLIENT span otelhttp or
// otelgrpc starts beneath it, to which proxyless adds [KeyAttemptKind] (an [AttemptKind]),
// [KeyAttempt] after the first, [KeyBreakerState], a retry's [KeyBackoff], an outcome other
// than success, and [KeyWinner] or [KeyDiscarded] when the request made several. The
// endpoint is the attempt span's server.address and server.port. Servers get otelhttp's and
// otelgrpc's SERVER spans, continuing the incoming W3C trace context (a malformed traceparent
// is ignored and a new trace begins).
//
// # Outcomes
//
// [KeyOutcome] is the outcome vocabulary of package outcome, as the client classified the
// attempt: outcome.Kind's String(), one of "success", "failure", "gateway_failure",
// "local_timeout", "throttled", "local_refusal", "canceled" and "tls_failure". A request span's
// status is Error when the call returned an error or Kind.SpanError() says so.
//
// # Providers, and the cost when disabled
//
// Each middleware constructor takes its providers once, when it runs: those of its options,
// else the global ones as they are then (otel.GetTracerProvider, otel.GetMeterProvider,
// otel.GetTextMapPropagator), as otelhttp does. An SDK installed globally afterwards is not
// seen by what was built before: install it first, or pass its providers. Providers that
// record nothing (those of the trace/noop and metric/noop packages, or the global ones while
// no SDK is installed) turn telemetry off: a request then costs a few nanoseconds more and no
// allocation, where otelhttp alone would cost microseconds and a dozen allocations.
//
// # Metrics
//
// Metrics follow the OpenTelemetry semantic conventions where one exists: the per-attempt
// http.client.request.duration comes from otelhttp (with proxyless.destination added). The
// rest are named proxyless.*; the Metric* constants list them, and each is recorded.
package tracing
