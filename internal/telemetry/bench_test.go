package telemetry_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"testing"

	"go.opentelemetry.io/contrib/instrumentation/net/http/otelhttp"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/proxyless/proxyless/internal/telemetry"
	"github.com/proxyless/proxyless/outcome"
)

// benchRequest is what the middleware calls for one request with one attempt, over a base
// transport that allocates nothing.
func benchRequest(b *testing.B, tel *telemetry.Telemetry, base http.RoundTripper) {
	d := tel.Destination("svc")
	rt := tel.Transport(base)
	req := httptest.NewRequest(http.MethodGet, "http://svc/x", nil)
	ctx := context.Background()
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		c, r := tel.StartRequest(ctx, d, req)
		c, a := r.StartAttempt(c, telemetry.AttemptInfo{Endpoint: "127.0.0.1:1"})
		out := req
		if a != nil {
			out = req.WithContext(c)
		}
		resp, err := rt.RoundTrip(out)
		a.End(outcome.Success)
		r.End(a, outcome.Success, resp, err)
		_ = resp.Body.Close()
	}
}

// staticTransport returns one shared response: the benchmarks measure telemetry, not it.
// (The wrappers that otelhttp and End put around its body are dropped with each response.)
type staticTransport struct{}

var staticResp = &http.Response{StatusCode: 200, Body: http.NoBody, Header: http.Header{}}

func (staticTransport) RoundTrip(*http.Request) (*http.Response, error) { return staticResp, nil }

// copyTransport returns a copy of the shared response, for the benchmarks whose wrappers
// replace the body: one allocation, the same in each pair compared.
type copyTransport struct{}

func (copyTransport) RoundTrip(*http.Request) (*http.Response, error) {
	r := *staticResp
	return &r, nil
}

// BenchmarkDisabled: the global providers are the no-op defaults (no SDK installed).
func BenchmarkDisabled(b *testing.B) {
	tel, err := telemetry.New()
	if err != nil {
		b.Fatal(err)
	}
	defer tel.Close()
	if tel.Enabled() {
		b.Skip("an SDK is installed globally")
	}
	benchRequest(b, tel, staticTransport{})
}

// BenchmarkDisabledCheck is the cost of StartRequest alone while off: the no-op check.
func BenchmarkDisabledCheck(b *testing.B) {
	tel, _ := telemetry.New()
	defer tel.Close()
	d := tel.Destination("svc")
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		_, r := tel.StartRequest(ctx, d, nil)
		r.End(nil, outcome.Success, nil, nil)
	}
}

// BenchmarkOtelhttpNoop is otelhttp alone over the same base, with the no-op providers: what
// skipping it saves.
func BenchmarkOtelhttpNoop(b *testing.B) {
	rt := otelhttp.NewTransport(copyTransport{})
	req := httptest.NewRequest(http.MethodGet, "http://svc/x", nil)
	b.ReportAllocs()
	for b.Loop() {
		resp, _ := rt.RoundTrip(req)
		_ = resp.Body.Close()
	}
}

func benchSDK(b *testing.B) (*sdktrace.TracerProvider, *sdkmetric.MeterProvider) {
	tp := sdktrace.NewTracerProvider(sdktrace.WithSampler(sdktrace.AlwaysSample()),
		sdktrace.WithSyncer(tracetest.NewNoopExporter()))
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(sdkmetric.NewManualReader()))
	b.Cleanup(func() {
		_ = tp.Shutdown(context.Background())
		_ = mp.Shutdown(context.Background())
	})
	return tp, mp
}

// BenchmarkEnabled: the SDK with always-sample; one request span plus otelhttp's attempt span.
func BenchmarkEnabled(b *testing.B) {
	tp, mp := benchSDK(b)
	tel, err := telemetry.New(telemetry.WithTracerProvider(tp), telemetry.WithMeterProvider(mp))
	if err != nil {
		b.Fatal(err)
	}
	defer tel.Close()
	benchRequest(b, tel, copyTransport{})
}

// BenchmarkOtelhttpSDK is otelhttp alone with the same SDK, the baseline of BenchmarkEnabled.
func BenchmarkOtelhttpSDK(b *testing.B) {
	tp, mp := benchSDK(b)
	rt := otelhttp.NewTransport(copyTransport{}, otelhttp.WithTracerProvider(tp), otelhttp.WithMeterProvider(mp))
	req := httptest.NewRequest(http.MethodGet, "http://svc/x", nil)
	b.ReportAllocs()
	for b.Loop() {
		resp, _ := rt.RoundTrip(req)
		_ = resp.Body.Close()
	}
}
