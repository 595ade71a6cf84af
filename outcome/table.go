package outcome

import (
	"github.com/proxyless/proxyless/balancer"
	"github.com/proxyless/proxyless/breaker"
	"github.com/proxyless/proxyless/ratelimit/overload"
)

// What each consumer makes of a Kind, in one table:
//
//	Kind            balancer (outlier)       breaker  overload  canary   span
//	Success         success                  success  success   success  ok
//	Failure         failure                  failure  failure   failure  error
//	GatewayFailure  gateway failure          failure  failure   failure  error
//	LocalTimeout    gateway failure          failure  failure   failure  error
//	Throttled       ignore (steers away)     ignore   failure   ignore   ok
//	LocalRefusal    ignore                   ignore   dropped   ignore   error
//	Canceled        ignore                   ignore   dropped   ignore   error
//	TLSFailure      gateway failure          ignore   dropped   failure  error
//
// A local timeout is the endpoint's failure, as in Envoy, and its latency is the time the
// attempt waited: an endpoint that hangs becomes the slowest, not the one never measured.
// A TLS failure ejects the endpoint but never opens its breaker, so that the caller keeps
// getting the certificate error rather than "circuit open". A throttled answer is the
// endpoint doing its job, but a sign of overload to the overload limiters. A call's span is an
// error when the call failed, not when the endpoint answered 4xx (429 included).
var table = [numKinds]struct {
	bal     balancer.Outcome
	brk     breaker.Outcome
	ovl     overload.Outcome
	canary  int8 // 1 failed, 0 succeeded, -1 not counted
	spanErr bool
}{
	Success:        {balancer.OutcomeSuccess, breaker.Success, overload.Success, 0, false},
	Failure:        {balancer.OutcomeFailure, breaker.Failure, overload.Failure, 1, true},
	GatewayFailure: {balancer.OutcomeGatewayFailure, breaker.Failure, overload.Failure, 1, true},
	LocalTimeout:   {balancer.OutcomeGatewayFailure, breaker.Failure, overload.Failure, 1, true},
	Throttled:      {balancer.OutcomeIgnore, breaker.Ignore, overload.Failure, -1, false},
	LocalRefusal:   {balancer.OutcomeIgnore, breaker.Ignore, overload.Dropped, -1, true},
	Canceled:       {balancer.OutcomeIgnore, breaker.Ignore, overload.Dropped, -1, true},
	TLSFailure:     {balancer.OutcomeGatewayFailure, breaker.Ignore, overload.Dropped, 1, true},
}

func (k Kind) row() int {
	if k >= numKinds {
		return int(GatewayFailure) // unknown kinds are read as the most cautious one
	}
	return int(k)
}

// Balancer returns what the balancer and its outlier detection count for k.
func (k Kind) Balancer() balancer.Outcome { return table[k.row()].bal }

// Breaker returns what an endpoint's circuit breaker counts for k.
func (k Kind) Breaker() breaker.Outcome { return table[k.row()].brk }

// Overload returns what an overload limiter (bulkhead, adaptive concurrency, adaptive
// throttling) counts for k.
func (k Kind) Overload() overload.Outcome { return table[k.row()].ovl }

// CanaryFailed reports whether canary analysis counts k as a failed request (failed true) and
// whether it counts it at all (counted false for results that say nothing of the version).
func (k Kind) CanaryFailed() (failed, counted bool) {
	c := table[k.row()].canary
	return c == 1, c >= 0
}

// SpanError reports whether a span that ends with k has status Error.
func (k Kind) SpanError() bool { return table[k.row()].spanErr }
