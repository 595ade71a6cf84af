package main

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/proxyless/proxyless/internal/testenv"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// The example runs, bounded, against a real dev agent and Consul's built-in proxy, and shows
// what it claims: calls in both directions, a deny enforced by the proxyless server on the
// connection opened before it, the sidecar refusing new connections, and allows restoring both.
func TestExampleSmoke(t *testing.T) {
	bin, err := testenv.ConsulBinary()
	if err != nil {
		testenv.Unavailable(t, err)
		return
	}
	var out bytes.Buffer
	s, err := example(context.Background(), options{consulBin: bin, timeout: 90 * time.Second}, &out)
	t.Log("\n" + out.String())
	require.NoError(t, err)
	assert.Equal(t, 200, s.webToLegacy)
	assert.Equal(t, 200, s.shopToPayments)
	assert.True(t, strings.HasSuffix(s.shopIdentity, "/ns/default/dc/dc1/svc/shop"), s.shopIdentity)
	assert.True(t, s.deniedOnOpenConn, "the deny applied on the open connection")
	assert.Less(t, s.denyAfter, 5*time.Second)
	assert.Equal(t, 200, s.shopAgain)
	assert.True(t, s.webRefusedBySidecar)
	assert.Equal(t, 200, s.webAgain)
	// 400 requests a split: a standard deviation of 1.5 (90/10) and 2.5 (50/50) points.
	assert.InDelta(t, 0.10, s.v2Share[0], 0.07, "90/10")
	assert.InDelta(t, 0.50, s.v2Share[1], 0.10, "50/50")
	for _, want := range []string{"Connect-native", "consul connect proxy", "403 after", "refused by the sidecar", "splitter payments v1/v2 50/50"} {
		assert.Contains(t, out.String(), want)
	}
}

func TestFlagsAreValidated(t *testing.T) {
	for _, args := range [][]string{{"-timeout", "0s"}, {"-nope"}, {"extra"}} {
		var out bytes.Buffer
		assert.Error(t, run(args, &out), strings.Join(args, " "))
	}
}
