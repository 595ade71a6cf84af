package tracing_test

import (
	"testing"

	"github.com/proxyless/proxyless/tracing"
)

// The values of proxyless.attempt.kind, which dashboards and alerts match on.
func TestAttemptKindNames(t *testing.T) {
	for k, want := range map[tracing.AttemptKind]string{
		tracing.AttemptFirst:     "first",
		tracing.AttemptRetry:     "retry",
		tracing.AttemptHedge:     "hedge",
		tracing.AttemptHedge + 1: "AttemptKind(3)",
	} {
		if got := k.String(); got != want {
			t.Errorf("AttemptKind(%d).String() = %q, want %q", uint8(k), got, want)
		}
	}
}
