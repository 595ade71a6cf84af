package main

import (
	"bytes"
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// The example runs, bounded, and each row of its table shows what it claims, read from the
// program's structured result rather than from its printout.
func TestExampleSmoke(t *testing.T) {
	var out bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	start := time.Now()
	r, err := gateway(ctx, options{canaryRequests: 1000, timeout: 50 * time.Second}, &out)
	t.Logf("ran in %v\n%s", time.Since(start), out.String())
	require.NoError(t, err)

	// Normal traffic: routed to orders, the consumer named to the service, the route's edge
	// response header set.
	assert.Equal(t, http.StatusOK, r.normal.status)
	assert.Equal(t, "orders", r.normal.header.Get(versionHeader))
	assert.Equal(t, "alice", consumerSeen(r.normal.body))
	assert.Equal(t, "no-store", r.normal.header.Get("Cache-Control"))
	assert.Equal(t, http.StatusUnauthorized, r.noKey.status)
	assert.Contains(t, r.noKey.header.Get("Www-Authenticate"), "APIKey")

	// Over quota: the free plan's burst of 5 admitted (a sixth if half a second passed), then
	// 429 naming the plan in the body and in RateLimit-Policy.
	assert.Equal(t, 10, r.quotaSent)
	assert.GreaterOrEqual(t, r.quotaOK, 5)
	assert.LessOrEqual(t, r.quotaOK, 6)
	assert.Equal(t, http.StatusTooManyRequests, r.overQuota.status)
	assert.Equal(t, "free", r.quotaPlan)
	assert.Equal(t, `"free";q=2;w=1`, r.overQuota.header.Get("Ratelimit-Policy"))
	assert.NotEmpty(t, r.overQuota.header.Get("Retry-After"))
	assert.Equal(t, http.StatusForbidden, r.planRoute.status, "the free plan does not list the orders route")

	// The revoked key: served before the edit, refused after exactly one reload.
	assert.Equal(t, http.StatusOK, r.revokedOK.status)
	assert.Equal(t, http.StatusUnauthorized, r.revoked.status)
	assert.Equal(t, uint64(1), r.reloads)

	// CORS: the allowed origin's preflight answered with its origin, the other refused bare.
	assert.Equal(t, http.StatusNoContent, r.preflightOK.status)
	assert.Equal(t, allowedOrigin, r.preflightOK.header.Get("Access-Control-Allow-Origin"))
	assert.Contains(t, r.preflightOK.header.Get("Access-Control-Allow-Methods"), "PUT")
	assert.Contains(t, r.preflightOK.header.Get("Access-Control-Allow-Headers"), "x-api-key")
	assert.Empty(t, r.preflightOK.header.Get(versionHeader), "a preflight reached a service")
	assert.Equal(t, http.StatusForbidden, r.preflightBad.status)
	assert.Empty(t, r.preflightBad.header.Get("Access-Control-Allow-Origin"))

	// The forged X-Forwarded-For was replaced by the caller's address, not appended to.
	assert.Equal(t, http.StatusOK, r.forgedXFF.status)
	assert.Equal(t, "127.0.0.1", r.forgedXFF.header.Get(sawXFFHeader))

	// The oversized body: 413 from the gateway, the service never answered.
	assert.Equal(t, http.StatusRequestEntityTooLarge, r.oversized.status)
	assert.Empty(t, r.oversized.header.Get(versionHeader))

	// The canary at 10 %: with 1000 requests one standard deviation is 0.95 points; ±4 is
	// more than 4 of them.
	assert.Equal(t, 1000, r.canarySent)
	assert.Zero(t, r.canaryFailed)
	assert.Equal(t, 1000, r.canaryServed["catalog-v1"]+r.canaryServed["catalog-v2"])
	assert.InDelta(t, 10, r.canaryShare(), 4)

	for _, want := range []string{"SCENARIO", "over quota", "revoked key", "CORS preflight", "oversized body", "canary at 10 %"} {
		assert.Contains(t, out.String(), want)
	}
}

// The program's own entry point, with its flags, runs to the end.
func TestRun(t *testing.T) {
	var out bytes.Buffer
	require.NoError(t, run([]string{"-canary-requests", "200"}, &out))
	assert.Contains(t, out.String(), "canary at 10 %")
}

func TestFlagsAreValidated(t *testing.T) {
	for _, args := range [][]string{
		{"-canary-requests", "99"}, {"-canary-requests", "100001"}, {"-timeout", "0s"}, {"-nope"}, {"extra"},
	} {
		err := run(args, &bytes.Buffer{})
		assert.Error(t, err, strings.Join(args, " "))
	}
}
