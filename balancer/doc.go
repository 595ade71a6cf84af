// Package balancer picks which endpoint of a service each request attempt goes to, and
// learns from how the attempts went.
//
// A [Balancer] holds one destination service's endpoints as an immutable snapshot, replaced
// atomically by [Balancer.Update] when discovery changes, while per-endpoint state (latency
// average, in-flight count, ejection, slow start) carries over by address. [Balancer.Pick] is
// lock-free and allocates nothing; the [Pick] it returns carries the endpoint and a
// [Pick.Done] method that feeds latency and outcome back.
//
// Policies: power of two choices over peak-EWMA latency (the default, as in Finagle and
// Linkerd), round robin, smooth weighted round robin, random, least request, and two
// consistent-hashing policies keyed by [PickInfo].Key for sticky routing: Maglev and ring hash
// (Envoy's ring_hash, [RingHashConfig]). [HashPolicy] says which part of a request makes its
// key (a header or gRPC metadata, a cookie, a query parameter, the source IP, or a key the
// application puts in the context with [WithHashKey]); the HTTP and gRPC clients of package
// middleware evaluate it per destination ([Config].HashPolicy) or per route. A hashed pick
// whose endpoint is ejected, unhealthy, tried already by the request or steered away from
// walks on to the next candidate of the table or ring, so that the key sticks to one
// alternative; a request without a key is balanced at random.
//
// Ring hash sizing follows Envoy: the ring keeps about MinimumRingSize points whatever the
// number of endpoints, so when an endpoint joins each other endpoint gives up some points too
// and more keys move than the ideal 1/n (measured: about 35 % of keys when a fourth endpoint
// joins three, against Maglev's 25 %). Prefer Maglev unless ring hash's weights-as-points or
// compatibility with Envoy matter.
//
// Around the policy:
//   - Zone awareness: endpoints of the local zone take the traffic while enough of them are
//     healthy; the rest fails over to other zones by priority ([ZoneConfig]).
//   - Passive outlier ejection with Envoy's semantics ([OutlierConfig]): consecutive gateway
//     failures eject an endpoint for a growing time, at most a share of the endpoints at once;
//     ejected endpoints return by themselves, checked lazily against the request's time, with
//     no timer goroutine. Success-rate and failure-percentage detection ([SuccessRateEjection],
//     [FailurePercentageEjection], as in Envoy and gRPC's A50) judge each endpoint on the
//     requests of the last [OutlierConfig].Interval, in a goroutine stopped by [Balancer.Close].
//   - Panic threshold: when too few endpoints are healthy, spread over all of them.
//   - Slow start ([SlowStartConfig]): an endpoint that joins or returns from ejection ramps
//     its share up over a window.
//   - Retry-After steering: an endpoint that answered 429 or Retry-After is avoided for that
//     long ([DoneInfo].RetryAfter); [PickInfo].Tried makes a retry go to a different endpoint.
//   - Optional active health checks ([HealthCheck]) by HTTP, TCP connect or gRPC (the "grpc"
//     kind, registered by package balancer/grpcbalancer; any kind by [RegisterProber]),
//     stopped by [Balancer.Close].
//   - Per-destination limits ([Limits]) of connections, pending requests, requests and
//     retries, as Envoy's circuit-breaker thresholds, counted by the balancer's [Limiter] for
//     the client that sends the requests.
//
// Time is an input: the caller reads the clock once per request and passes it in
// [PickInfo].Now and [DoneInfo].Now, so ejection and slow start are tested without sleeping.
//
// The package knows nothing of net/http or gRPC except the HTTP and TCP health-check probers
// in healthcheck_http.go; the gRPC balancer adapter and the HTTP transport live elsewhere.
package balancer
