package tracing

import (
	"context"
	"errors"
	"net/http"
	"strconv"

	"go.opentelemetry.io/otel/attribute"

	"github.com/proxyless/proxyless/breaker"
)

// Attribute keys proxyless sets on spans and metrics.
const (
	KeyDestination   = attribute.Key("proxyless.destination")       // the service a request went to
	KeyEndpoint      = attribute.Key("proxyless.endpoint")          // host:port of the endpoint picked
	KeyOutcome       = attribute.Key("proxyless.outcome")           // an Outcome
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

// Outcome is how a request or attempt ended.
type Outcome uint8

const (
	// OutcomeSuccess is a response with a status below 500.
	OutcomeSuccess Outcome = iota
	// OutcomeFailure is a 5xx response other than 502, 503 and 504.
	OutcomeFailure
	// OutcomeGatewayFailure is a 502, 503 or 504 response or a transport error.
	OutcomeGatewayFailure
	// OutcomeCanceled is a request or attempt whose context ended: the caller gave up, a
	// timeout passed, or a hedge lost.
	OutcomeCanceled
	// OutcomeRefused is a request refused locally before any attempt was answered: no
	// endpoint, every breaker open, a rate or concurrency limit.
	OutcomeRefused
	numOutcomes
)

var outcomeNames = [numOutcomes]string{"success", "failure", "gateway_failure", "canceled", "refused"}

func (o Outcome) String() string {
	if o < numOutcomes {
		return outcomeNames[o]
	}
	return "Outcome(" + strconv.Itoa(int(o)) + ")"
}

// classify returns the outcome of a response or error.
func classify(resp *http.Response, err error) Outcome {
	switch {
	case err == nil && resp != nil:
		switch c := resp.StatusCode; {
		case c == http.StatusBadGateway || c == http.StatusServiceUnavailable || c == http.StatusGatewayTimeout:
			return OutcomeGatewayFailure
		case c >= 500:
			return OutcomeFailure
		}
		return OutcomeSuccess
	case errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded):
		return OutcomeCanceled
	case errors.Is(err, breaker.ErrOpen):
		return OutcomeRefused
	}
	return OutcomeGatewayFailure
}

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
