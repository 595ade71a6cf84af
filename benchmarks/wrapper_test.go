package benchmarks

import (
	"net/http"
	"testing"

	"github.com/proxyless/proxyless/middleware"
	"github.com/proxyless/proxyless/ratelimit"
)

var threeAddrs = []string{"127.0.0.1:1", "127.0.0.1:2", "127.0.0.1:3"}

// BenchmarkWrapper is what each client stack adds over a base transport that answers at
// once: the wrapper's own time and allocations. The baseline is a bare http.Client.
//
//	impl=bare               http.Client over the no-op transport
//	impl=proxyless          the full stack: discovery, P2C, per-endpoint breakers, retries
//	                        and budget armed, telemetry against the no-op providers
//	impl=proxyless+limit    the same plus an outbound rate limit (a local GCRA per service)
//	impl=failsafehttp       failsafe-go's RoundTripper with a retry policy and a breaker
//	impl=otelhttp           otelhttp's transport, no-op tracer and meter providers
//	impl=otelhttp+failsafe  the two composed: the hand-built equivalent of a mesh client
//	                        without discovery or balancing
func BenchmarkWrapper(b *testing.B) {
	b.Run("impl=bare", func(b *testing.B) {
		doLoop(b, &http.Client{Transport: noopTransport{}}, "http://127.0.0.1:1/")
	})
	b.Run("impl=proxyless", func(b *testing.B) {
		doLoop(b, &http.Client{Transport: proxyless(b, noopTransport{}, threeAddrs)}, "http://svc/")
	})
	b.Run("impl=proxyless+limit", func(b *testing.B) {
		tr := proxyless(b, noopTransport{}, threeAddrs, middleware.WithRateLimit(ratelimit.Quota{Rate: 1e9, Burst: 1e9}) /* finite: always admits, still does the work */)
		doLoop(b, &http.Client{Transport: tr}, "http://svc/")
	})
	b.Run("impl=failsafehttp", func(b *testing.B) {
		doLoop(b, &http.Client{Transport: failsafeRT(noopTransport{})}, "http://127.0.0.1:1/")
	})
	b.Run("impl=otelhttp", func(b *testing.B) {
		doLoop(b, &http.Client{Transport: otel(noopTransport{}, noopTP)}, "http://127.0.0.1:1/")
	})
	b.Run("impl=otelhttp+failsafe", func(b *testing.B) {
		doLoop(b, &http.Client{Transport: otel(failsafeRT(noopTransport{}), noopTP)}, "http://127.0.0.1:1/")
	})
}
