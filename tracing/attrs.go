package tracing

import (
	"strconv"

	"go.opentelemetry.io/otel/attribute"

	"github.com/proxyless/proxyless/outcome"
)

// Attribute keys proxyless sets on spans and metrics.
const (
	KeyDestination   = attribute.Key("proxyless.destination")       // the service a request went to
	KeyEndpoint      = attribute.Key("proxyless.endpoint")          // host:port of the endpoint picked
	KeyOutcome       = attribute.Key("proxyless.outcome")           // an outcome.Kind: Kind.String()
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
)

// numOutcomes is how many kinds the outcome vocabulary (package outcome) has.
const numOutcomes = outcome.TLSFailure + 1

// outcomeIndex returns k, or GatewayFailure for a kind this package does not know, as the
// vocabulary's own table reads unknown kinds.
func outcomeIndex(k outcome.Kind) outcome.Kind {
	if k < numOutcomes {
		return k
	}
	return outcome.GatewayFailure
}

// outcomeAttrs are proxyless.outcome for each outcome, as ready-made variadic slices.
var outcomeAttrs = func() (a [numOutcomes][]attribute.KeyValue) {
	for k := range numOutcomes {
		a[k] = []attribute.KeyValue{KeyOutcome.String(k.String())}
	}
	return a
}()

// AttemptKind says why an attempt was made.
type AttemptKind uint8

const (
	// AttemptFirst is a request's first attempt.
	AttemptFirst AttemptKind = iota
	// AttemptRetry follows a failed attempt.
	AttemptRetry
	// AttemptHedge runs alongside a slow one.
	AttemptHedge
	numKinds
)

var kindNames = [numKinds]string{"first", "retry", "hedge"}

func (k AttemptKind) String() string {
	if k < numKinds {
		return kindNames[k]
	}
	return "AttemptKind(" + strconv.Itoa(int(k)) + ")"
}
