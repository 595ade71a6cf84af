package tracing

import (
	"strconv"

	"go.opentelemetry.io/otel/attribute"
)

// ScopeName is the instrumentation scope of proxyless's tracer and meter: this package's
// import path.
const ScopeName = "github.com/proxyless/proxyless/tracing"

// Attribute keys proxyless sets on spans and metrics.
const (
	KeyDestination   = attribute.Key("proxyless.destination")       // the service a request went to
	KeyEndpoint      = attribute.Key("proxyless.endpoint")          // host:port of the endpoint picked
	KeyOutcome       = attribute.Key("proxyless.outcome")           // an outcome.Kind's String(): "gateway_failure"
	KeyAttempt       = attribute.Key("proxyless.attempt")           // attempt number, 0 for the first
	KeyAttemptKind   = attribute.Key("proxyless.attempt.kind")      // an AttemptKind
	KeyAttempts      = attribute.Key("proxyless.attempts")          // attempts a request made
	KeyWinner        = attribute.Key("proxyless.attempt.winner")    // this attempt's response was returned
	KeyDiscarded     = attribute.Key("proxyless.attempt.discarded") // this attempt's response was thrown away
	KeyBackoff       = attribute.Key("proxyless.retry.backoff")     // seconds waited before a retry
	KeyBreakerState  = attribute.Key("proxyless.breaker.state")     // breaker.State.String()
	KeyRoute         = attribute.Key("proxyless.route")             // the route rule matched
	KeySplit         = attribute.Key("proxyless.route.split")       // the weighted split or canary arm chosen
	KeyLimitPolicy   = attribute.Key("proxyless.ratelimit.policy")  // which limiter decided
	KeyLimitDecision = attribute.Key("proxyless.ratelimit.decision")
	KeyLimitWait     = attribute.Key("proxyless.ratelimit.wait") // seconds the limiter made the request wait
	KeyShadow        = attribute.Key("proxyless.shadow.destination")
	KeyLimit         = attribute.Key("proxyless.destination.limit") // a balancer.Limit's String(): "requests"
	KeyShadowResult  = attribute.Key("proxyless.shadow.result")     // matched, mismatched, shadow_failed, unpaired (route.ShadowResult)
)

// AttemptKind says why an attempt was made: the value of [KeyAttemptKind] is its String().
type AttemptKind uint8

const (
	// AttemptFirst is a request's first attempt.
	AttemptFirst AttemptKind = iota
	// AttemptRetry follows a failed attempt.
	AttemptRetry
	// AttemptHedge runs alongside a slow one.
	AttemptHedge
)

// numKinds is how many attempt kinds there are.
const numKinds = AttemptHedge + 1

var kindNames = [numKinds]string{"first", "retry", "hedge"}

func (k AttemptKind) String() string {
	if k < numKinds {
		return kindNames[k]
	}
	return "AttemptKind(" + strconv.Itoa(int(k)) + ")"
}

// Metric names, each recorded by the middleware (its test TestEveryDeclaredMetricIsEmitted
// fails on a name declared here that nothing records). Those of the semantic conventions
// (http.client.*, rpc.client.*, ...) come from otelhttp and otelgrpc.
const (
	MetricRequestDuration  = "proxyless.client.request.duration"
	MetricAttempts         = "proxyless.client.attempts"
	MetricRetries          = "proxyless.client.retries"
	MetricHedges           = "proxyless.client.hedges"
	MetricHedgeWins        = "proxyless.client.hedge.wins"
	MetricBudgetRefusals   = "proxyless.retry_budget.refusals"
	MetricBreakerRefusals  = "proxyless.breaker.refusals"
	MetricBreakerTrans     = "proxyless.breaker.transitions"
	MetricBreakerState     = "proxyless.breaker.state"
	MetricEjections        = "proxyless.outlier.ejections"
	MetricEjectionsActive  = "proxyless.outlier.ejections.active"
	MetricEndpointsKnown   = "proxyless.endpoints.known"
	MetricEndpointsHealthy = "proxyless.endpoints.healthy"
	MetricDiscoveryStale   = "proxyless.discovery.staleness"
	MetricLimitDecisions   = "proxyless.ratelimit.decisions"
	MetricLimitWait        = "proxyless.ratelimit.wait.duration"
	MetricConcurrencyLimit = "proxyless.concurrency.limit"
	MetricShadowMismatches = "proxyless.shadow.mismatches"
	MetricShadowResults    = "proxyless.shadow.results"
	MetricCanaryWeight     = "proxyless.canary.weight"
	MetricOverflows        = "proxyless.destination.overflows"
)
