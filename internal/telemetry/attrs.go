package telemetry

import (
	"go.opentelemetry.io/otel/attribute"

	"github.com/proxyless/proxyless/outcome"
	"github.com/proxyless/proxyless/tracing"
)

// numKinds is how many attempt kinds there are (tracing.AttemptKind).
const numKinds = tracing.AttemptHedge + 1

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
		a[k] = []attribute.KeyValue{tracing.KeyOutcome.String(k.String())}
	}
	return a
}()
