package benchmarks

import (
	"io"
	"net/http"
	"runtime"
	"strconv"
	"testing"
	"time"

	"github.com/failsafe-go/failsafe-go/circuitbreaker"
	"github.com/failsafe-go/failsafe-go/failsafehttp"
	"go.opentelemetry.io/contrib/instrumentation/net/http/otelhttp"
	metricnoop "go.opentelemetry.io/otel/metric/noop"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
	tracenoop "go.opentelemetry.io/otel/trace/noop"

	"github.com/proxyless/proxyless/discovery"
	"github.com/proxyless/proxyless/middleware"
)

// noopTransport answers every request at once with an empty 200, so that a benchmark over it
// measures only the wrapper around it.
type noopTransport struct{}

func (noopTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	return &http.Response{StatusCode: 200, Body: http.NoBody, Request: req, Header: http.Header{}}, nil
}

// doLoop sends req through client b.N times, draining and closing every body.
func doLoop(b *testing.B, client *http.Client, url string) {
	b.Helper()
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		b.Fatal(err)
	}
	// One request outside the timer: connections, the destination's first discovery.
	send(b, client, req)
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		send(b, client, req)
	}
}

func send(b *testing.B, client *http.Client, req *http.Request) {
	resp, err := client.Do(req)
	if err != nil {
		b.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b.Fatalf("status %d", resp.StatusCode)
	}
}

// endpoints returns n distinct endpoint addresses, spread over three zones with weights 1–3.
func endpoints(n int) []discovery.Endpoint {
	eps := make([]discovery.Endpoint, n)
	for i := range eps {
		eps[i] = discovery.Endpoint{
			Addr:   "10." + strconv.Itoa(i/62500) + "." + strconv.Itoa(i/250%250) + "." + strconv.Itoa(i%250+1) + ":8080",
			Weight: uint32(1 + i%3),
			Zone:   "z" + strconv.Itoa(i%3),
		}
	}
	return eps
}

// proxyless builds the full client stack with its defaults: static discovery of "svc", P2C
// peak-EWMA, a breaker per endpoint, retries and their budget armed, telemetry against the
// global providers (no-op unless opts say otherwise).
func proxyless(b *testing.B, base http.RoundTripper, addrs []string, opts ...middleware.TransportOption) *middleware.Transport {
	b.Helper()
	eps := make([]discovery.Endpoint, len(addrs))
	for i, a := range addrs {
		eps[i] = discovery.Endpoint{Addr: a}
	}
	opts = append([]middleware.TransportOption{middleware.WithResolver(discovery.MustNewStatic(map[string][]discovery.Endpoint{"svc": eps}))}, opts...)
	tr, err := middleware.NewTransport(base, opts...)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = tr.Close() })
	return tr
}

// failsafeRT is the hand-composed resilience stack: failsafehttp with a retry policy (2 retries,
// backoff) and a circuit breaker over 5xx and errors, as in failsafe-go's documentation.
func failsafeRT(base http.RoundTripper) http.RoundTripper {
	retry := failsafehttp.NewRetryPolicyBuilder().WithMaxRetries(2).WithBackoff(25*time.Millisecond, 250*time.Millisecond).Build()
	cb := circuitbreaker.NewBuilder[*http.Response]().
		HandleIf(func(r *http.Response, err error) bool { return err != nil || r.StatusCode >= 500 }).
		WithFailureRateThreshold(0.5, 20, 10*time.Second).Build()
	return failsafehttp.NewRoundTripper(base, retry, cb)
}

// otel wraps base in otelhttp's client transport against tp and a no-op meter provider.
func otel(base http.RoundTripper, tp trace.TracerProvider) http.RoundTripper {
	return otelhttp.NewTransport(base, otelhttp.WithTracerProvider(tp), otelhttp.WithMeterProvider(metricnoop.NewMeterProvider()))
}

var noopTP = tracenoop.NewTracerProvider()

// sampledTP records every span and hands it to an exporter that drops it: the cost of
// always-sample tracing without the cost of shipping spans.
func sampledTP(b *testing.B) *sdktrace.TracerProvider {
	tp := sdktrace.NewTracerProvider(sdktrace.WithSampler(sdktrace.AlwaysSample()), sdktrace.WithSyncer(tracetest.NewNoopExporter()))
	b.Cleanup(func() { _ = tp.Shutdown(b.Context()) })
	return tp
}

// heapBytes is the live heap after a full collection.
func heapBytes() uint64 {
	runtime.GC()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapAlloc
}
