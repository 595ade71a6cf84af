package middleware_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/proxyless/proxyless/balancer"
	"github.com/proxyless/proxyless/internal/faultbackend"
	"github.com/proxyless/proxyless/middleware"
	"github.com/proxyless/proxyless/tracing"
)

// One logical request that fails on both endpoints, then succeeds: one request span, and one otelhttp client span
// per attempt beneath it, carrying the endpoint, attempt number and kind; the trace context
// reaches the backends; the request metrics are recorded.
func TestTelemetrySpansAndMetrics(t *testing.T) {
	spans := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(spans))
	reader := sdkmetric.NewManualReader()
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	defer func() { _ = tp.Shutdown(context.Background()); _ = mp.Shutdown(context.Background()) }()

	f := newFixture(t, 2, middleware.WithTracerProvider(tp), middleware.WithMeterProvider(mp),
		middleware.WithBalancer(balancer.Config{Policy: balancer.PolicyRoundRobin}))
	for _, b := range f.backends {
		b.FailNext(1, faultbackend.Status(503))
	}
	code, err := f.get(ctxFor(t, 10*time.Second))
	require.NoError(t, err)
	require.Equal(t, 200, code)

	ended := spans.Ended()
	var request sdktrace.ReadOnlySpan
	var attempts []sdktrace.ReadOnlySpan
	for _, s := range ended {
		switch s.SpanKind() {
		case trace.SpanKindInternal:
			request = s
		case trace.SpanKindClient:
			attempts = append(attempts, s)
		}
	}
	require.NotNil(t, request, "a request span")
	require.Len(t, attempts, 3, "one client span per attempt")
	for i, a := range attempts {
		assert.Equal(t, request.SpanContext().SpanID(), a.Parent().SpanID(), "attempt %d is a child of the request", i)
		attrs := map[string]string{}
		for _, kv := range a.Attributes() {
			attrs[string(kv.Key)] = kv.Value.Emit()
		}
		assert.NotEmpty(t, attrs["server.address"], "attempt %d names its endpoint", i)
		assert.NotEmpty(t, attrs["server.port"], "attempt %d names its endpoint", i)
		if attrs[string(tracing.KeyAttemptKind)] == "first" {
			assert.NotContains(t, attrs, string(tracing.KeyAttempt), "a first attempt's number is implied")
		} else {
			assert.Contains(t, []string{"1", "2"}, attrs[string(tracing.KeyAttempt)])
		}
	}
	// The trace context travelled: each backend saw a traceparent of this trace.
	var seen int
	for _, b := range f.backends {
		for _, r := range b.Requests() {
			tp := r.Header.Get("Traceparent")
			require.NotEmpty(t, tp)
			assert.Contains(t, tp, request.SpanContext().TraceID().String())
			seen++
		}
	}
	assert.Equal(t, 3, seen)

	var rm metricdata.ResourceMetrics
	require.NoError(t, reader.Collect(context.Background(), &rm))
	names := map[string]bool{}
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			names[m.Name] = true
		}
	}
	assert.True(t, names["proxyless.client.request.duration"], "metrics: %v", names)
	assert.True(t, names["proxyless.client.retries"], "metrics: %v", names)
}
