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
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// The example runs, bounded, and shows what it claims: only the prod workload with a valid,
// scoped token gets through; the others are refused with the right status, or in the handshake.
func TestExampleSmoke(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	results, err := example(ctx, t.TempDir())
	require.NoError(t, err)
	require.Len(t, results, 5)
	want := []string{
		"401 Unauthorized",
		"403 Forbidden",
		"200 hello checkout via " + checkoutID,
		"403 Forbidden",
		"refused in the TLS handshake",
	}
	for i, w := range want {
		assert.True(t, strings.HasPrefix(results[i].result, w), "call %d (%s, token %s): got %q, want %q",
			i, results[i].caller, results[i].token, results[i].result, w)
	}
}

func TestRunPrintsATable(t *testing.T) {
	var out bytes.Buffer
	require.NoError(t, run([]string{"-timeout", "30s"}, &out))
	t.Log("\n" + out.String())
	for _, s := range []string{"caller", "checkout", "intruder", "no certificate", "200 hello checkout", "403 Forbidden", "refused in the TLS handshake"} {
		assert.Contains(t, out.String(), s)
	}
}

func TestFlagsAreValidated(t *testing.T) {
	for _, args := range [][]string{{"-timeout", "0s"}, {"-nope"}, {"extra"}} {
		var out bytes.Buffer
		assert.Error(t, run(args, &out), strings.Join(args, " "))
	}
}
