package telemetry_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"testing"

	metricnoop "go.opentelemetry.io/otel/metric/noop"
	tracenoop "go.opentelemetry.io/otel/trace/noop"

	"github.com/proxyless/proxyless/internal/telemetry"
)

// BenchmarkTelemetryOff is the "telemetry compiled out" baseline of the middleware's
// BenchmarkTelemetryCost, in one run: what the Transport's request path calls while the
// providers are no-ops (StartRequest, which returns a nil Request, after which the Transport
// skips every other telemetry call and uses its base transport directly) against not
// calling it at all. Run:
//
//	go test -run '^$' -bench BenchmarkTelemetryOff -benchmem -count 10 ./internal/telemetry/
func BenchmarkTelemetryOff(b *testing.B) {
	req := httptest.NewRequest(http.MethodGet, "http://svc/x", nil)
	ctx := context.Background()
	var base http.RoundTripper = staticTransport{}
	b.Run("none", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			resp, _ := base.RoundTrip(req)
			_ = resp.Body.Close()
		}
	})
	off := func(b *testing.B, tel *telemetry.Telemetry) {
		if tel.Enabled() {
			b.Skip("an SDK is installed globally")
		}
		d := tel.Destination("svc")
		b.ReportAllocs()
		for b.Loop() {
			_, r := tel.StartRequest(ctx, d, req)
			if r != nil {
				b.Fatal("telemetry is on")
			}
			resp, _ := base.RoundTrip(req)
			_ = resp.Body.Close()
		}
	}
	b.Run("off/global-noop", func(b *testing.B) {
		tel, err := telemetry.New()
		if err != nil {
			b.Fatal(err)
		}
		defer tel.Close()
		off(b, tel)
	})
	b.Run("off/explicit-noop", func(b *testing.B) {
		tel, err := telemetry.New(telemetry.WithTracerProvider(tracenoop.NewTracerProvider()),
			telemetry.WithMeterProvider(metricnoop.NewMeterProvider()))
		if err != nil {
			b.Fatal(err)
		}
		defer tel.Close()
		off(b, tel)
	})
}
