// Package tracing will hold proxyless's OpenTelemetry instrumentation: spans, propagation and
// metrics for every decision the library takes (endpoint picked, attempt, breaker state,
// limiter wait, route and split chosen), at near-zero cost while the global providers are
// no-ops. It is not written yet; see the project's open issues.
package tracing
