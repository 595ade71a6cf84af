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

	"github.com/proxyless/proxyless/route"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// The example runs, bounded, and shows what it claims: the file edits move the canary's
// observed share from about 1 % to about 50 % to all; the failing canary is rolled back by
// the analysis, after which v2 serves nothing although the file still says 100 %; and the
// shadow of v3 counted mismatches.
func TestExampleSmoke(t *testing.T) {
	var out bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	res, err := canary(ctx, options{requests: 1000, workers: 4, timeout: 50 * time.Second}, &out)
	t.Log("\n" + out.String())
	require.NoError(t, err)
	require.Len(t, res.phases, 5)
	ph := res.phases

	// 1 %: with 1000 requests, 10 expected; 5 % would be 13 standard deviations off.
	assert.Less(t, ph[0].share("v2"), 5.0, "at 1 %")
	assert.Positive(t, ph[0].share("v1"), "at 1 %")
	// 50 %: one standard deviation is 1.6 points; ±10 is 6 of them.
	assert.InDelta(t, 50, ph[1].share("v2"), 10, "at 50 %")
	assert.Equal(t, 100.0, ph[2].share("v2"), "at 100 %")
	for i, w := range []float64{1, 50, 100} {
		assert.Equal(t, w, ph[i].weight, "phase %d: the file's weight is in force", i)
		assert.Equal(t, route.AnalysisRunning, ph[i].state, "phase %d", i)
		assert.Zero(t, ph[i].failed, "phase %d", i)
	}

	// The failing canary: rolled back by the analysis, from 100 % to 0 %.
	require.NotNil(t, res.rollback, "the analysis never rolled the failing canary back")
	assert.Equal(t, route.EventRollback, res.rollback.Kind)
	assert.Equal(t, 100.0, res.rollback.From)
	assert.Zero(t, res.rollback.To)
	assert.Positive(t, res.rollback.Canary.Failures)
	assert.Positive(t, ph[3].failed, "v2 never failed")
	assert.Less(t, ph[3].requests, 1000, "the failing phase did not stop at the rollback")

	// After it: every request on v1 and answered, the file unchanged but the weight 0.
	assert.Equal(t, 1000, ph[4].requests)
	assert.Zero(t, ph[4].served["v2"], "v2 served requests after the rollback")
	assert.Equal(t, 100.0, ph[4].share("v1"))
	assert.Zero(t, ph[4].failed)
	assert.Equal(t, 100.0, ph[4].fileWeight)
	assert.Zero(t, ph[4].weight)
	assert.Equal(t, route.AnalysisRolledBack, ph[4].state)

	// The shadow: v3 misprices every fifth item, and a quarter of the requests are mirrored.
	assert.Positive(t, res.mismatches, "the shadow counted no mismatch")
	assert.Positive(t, ph[0].mismatches, "no mismatch in the first phase")
	for i := 1; i < len(ph); i++ {
		assert.GreaterOrEqual(t, ph[i].mismatches, ph[i-1].mismatches, "the count went down in phase %d", i)
	}
	assert.GreaterOrEqual(t, res.mismatches, ph[len(ph)-1].mismatches)

	for _, want := range []string{"file says 1 %", "file says 50 %", "file says 100 %", "v2 starts answering 500", "analysis: rollback 100 % -> 0 %", "shadow v3:"} {
		assert.Contains(t, out.String(), want)
	}
}

// The program's own entry point, with its flags, runs to the end.
func TestRun(t *testing.T) {
	var out bytes.Buffer
	require.NoError(t, run([]string{"-requests", "200", "-workers", "2"}, &out))
	assert.Contains(t, out.String(), "analysis: rollback")
}

func TestFlagsAreValidated(t *testing.T) {
	for _, args := range [][]string{
		{"-requests", "99"}, {"-workers", "0"}, {"-workers", "65"}, {"-timeout", "0s"}, {"-nope"}, {"extra"},
	} {
		err := run(args, &bytes.Buffer{})
		assert.Error(t, err, strings.Join(args, " "))
	}
}
