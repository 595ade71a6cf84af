package telemetry

import (
	"strings"
	"testing"

	"github.com/proxyless/proxyless/outcome"
)

// The outcome attributes cover the whole vocabulary: a kind added to package outcome must be
// added here (numOutcomes), or it would be reported as gateway_failure.
func TestOutcomeAttrsCoverTheVocabulary(t *testing.T) {
	if name := numOutcomes.String(); !strings.HasPrefix(name, "Kind(") {
		t.Fatalf("outcome has a kind %q past numOutcomes", name)
	}
	for k := range numOutcomes {
		if got := outcomeAttrs[k][0].Value.AsString(); got != k.String() || strings.HasPrefix(got, "Kind(") {
			t.Errorf("outcome %d reported as %q", k, got)
		}
	}
	if got := outcomeIndex(numOutcomes); got != outcome.GatewayFailure {
		t.Errorf("an unknown kind is read as %v, want gateway_failure", got)
	}
}
