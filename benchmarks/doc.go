// Package benchmarks puts proxyless side by side with its baselines: Go benchmarks (wrapper
// cost over a no-op transport, loopback HTTP and gRPC round trips, pick and update cost at
// scale, memory per endpoint and per rate-limit key, hot-path pieces) in its _test.go files,
// and a sidecar comparison (bare client, proxyless client, bare client through HAProxy) in
// cmd/loadgen. run.sh runs both; cmd/plot draws the SVGs under plots/.
//
// It is a module of its own so that its baselines (sony/gobreaker, failsafe-go's failsafehttp,
// otelhttp, the OpenTelemetry SDK) stay out of the library's go.mod.
//
// Every benchmark names its contender in an impl= key, so that
//
//	benchstat -col /impl out/bench.txt
//
// prints each contender next to the first one (the baseline) in one table.
package benchmarks
