package middleware_test

import (
	"context"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/proxyless/proxyless/breaker"
	"github.com/proxyless/proxyless/discovery"
	"github.com/proxyless/proxyless/internal/faultbackend"
	"github.com/proxyless/proxyless/middleware"
	"github.com/proxyless/proxyless/route"
)

// canaryRig is a routed client over real loopback servers: the service "shop" has two
// stable endpoints (version v1) and one canary endpoint (v2).
type canaryRig struct {
	s1, s2, canary *faultbackend.Backend
	tr             *middleware.Transport
	client         *http.Client
}

func newCanaryRig(t *testing.T, table string, opts ...route.Option) *canaryRig {
	t.Helper()
	r := &canaryRig{s1: faultbackend.New(t), s2: faultbackend.New(t), canary: faultbackend.New(t)}
	static := discovery.MustNewStatic(map[string][]discovery.Endpoint{"shop": {
		{Addr: r.s1.Addr(), Meta: map[string]string{"version": "v1"}},
		{Addr: r.s2.Addr(), Meta: map[string]string{"version": "v1"}},
		{Addr: r.canary.Addr(), Meta: map[string]string{"version": "v2"}},
	}})
	cfg, err := route.ParseConfig([]byte(table))
	require.NoError(t, err)
	router, err := route.NewRouter(cfg, opts...)
	require.NoError(t, err)
	base := &http.Transport{MaxIdleConnsPerHost: 8}
	r.tr, err = middleware.NewTransport(base, middleware.WithResolver(static), middleware.WithRoutes(router),
		// The canary's breaker opens after 5 calls, half of them failed; it stays open for the
		// whole test.
		middleware.WithBreaker(breaker.Config{MinimumVolume: 5, OpenDelay: time.Hour}))
	require.NoError(t, err)
	r.client = &http.Client{Transport: r.tr}
	t.Cleanup(func() {
		require.NoError(t, r.tr.Close())
		base.CloseIdleConnections()
	})
	return r
}

// run sends n GETs, bounded in time, and returns how many were answered 200.
func (r *canaryRig) run(t *testing.T, n int) (ok int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for range n {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://shop/", nil)
		require.NoError(t, err)
		resp, err := r.client.Do(req)
		if err != nil {
			continue
		}
		resp.Body.Close()
		if resp.StatusCode == http.StatusOK {
			ok++
		}
	}
	return ok
}

const brokenCanaryRoutes = `
routes:
  - name: shop
    match: {hosts: [shop]}
    canary:
      stable: {service: shop, subset: {meta: {version: v1}}}
      canary: {service: shop, subset: {meta: {version: v2}}}
      weight: 30
`

// A one-endpoint canary that answers 503 (or resets): its breaker opens, and the canary's
// share of requests goes to the stable version instead of failing with "circuit open"; before
// it opens, a failed request's retry goes to the stable version rather than back to the one
// canary endpoint.
func TestBrokenCanaryFallsBackToStable(t *testing.T) {
	for _, fault := range []struct {
		name string
		b    faultbackend.Behavior
	}{{"503", faultbackend.Status(http.StatusServiceUnavailable)}, {"reset", faultbackend.ResetBeforeHeaders()}} {
		t.Run(fault.name, func(t *testing.T) {
			r := newCanaryRig(t, brokenCanaryRoutes)
			r.canary.Set(fault.b)
			const n = 1000
			ok := r.run(t, n)
			st := r.tr.Stats()
			t.Logf("ok %d/%d; canary saw %d, stable %d+%d; %+v", ok, n, r.canary.Attempts(), r.s1.Attempts(), r.s2.Attempts(), st)
			assert.GreaterOrEqual(t, ok, n*99/100, "at least 99 %% succeed")
			assert.Positive(t, st.Fallbacks, "requests fell back")
			assert.Greater(t, st.Fallbacks, int64(n*30/100/2), "most of the canary's 30 %% fell back")
			assert.LessOrEqual(t, r.canary.Attempts(), int64(20), "the open breaker keeps requests off the canary")
			// Server-side counts match: every 200 came from a stable server, every request
			// counted once.
			assert.Equal(t, int64(ok), r.s1.Attempts()+r.s2.Attempts())
			assert.Equal(t, int64(n), st.Requests, "a fallen-back request is one request")
			assert.Equal(t, r.canary.Attempts()+r.s1.Attempts()+r.s2.Attempts(), st.Attempts, "attempts = what the servers saw")
			// A request falls back when the canary's breaker refuses it (one refusal each), or
			// when its retry has no canary endpoint left that it did not use (before the breaker
			// opened): the retry goes to the stable version.
			assert.GreaterOrEqual(t, st.Fallbacks, st.BreakerRefusals)
			assert.LessOrEqual(t, st.Fallbacks, st.BreakerRefusals+st.Retries)
		})
	}
}

// With fallback: false, the same requests fail with the breaker's refusal.
func TestCanaryFallbackOff(t *testing.T) {
	r := newCanaryRig(t, `
routes:
  - name: shop
    match: {hosts: [shop]}
    fallback: false
    canary:
      stable: {service: shop, subset: {meta: {version: v1}}}
      canary: {service: shop, subset: {meta: {version: v2}}}
      weight: 30
`)
	r.canary.Set(faultbackend.Status(http.StatusServiceUnavailable))
	const n = 300
	ok := r.run(t, n)
	assert.Less(t, ok, n*90/100, "without fallback the canary's share fails")
	assert.Zero(t, r.tr.Stats().Fallbacks)
	assert.Positive(t, r.tr.Stats().BreakerRefusals)
}

// The canary analysis counts a fallen-back request against the canary: it rolls a broken
// canary back although nearly every request succeeded for its caller.
func TestFallbackCountsAgainstCanary(t *testing.T) {
	var mu sync.Mutex
	var events []route.Event
	r := newCanaryRig(t, `
routes:
  - name: shop
    match: {hosts: [shop]}
    canary:
      stable: {service: shop, subset: {meta: {version: v1}}}
      canary: {service: shop, subset: {meta: {version: v2}}}
      weight: 30
      analysis: {interval: 1h, minRequests: 40, maxErrorRateIncrease: 50}
`, route.WithEvents(func(e route.Event) {
		mu.Lock()
		events = append(events, e)
		mu.Unlock()
	}))
	r.canary.Set(faultbackend.Status(http.StatusServiceUnavailable))
	const n = 600
	ok := r.run(t, n)
	failedForCaller := n - ok
	mu.Lock()
	defer mu.Unlock()
	require.NotEmpty(t, events, "the analysis judged the canary")
	ev := events[0]
	t.Logf("ok %d/%d, fallbacks %d, event %+v", ok, n, r.tr.Stats().Fallbacks, ev)
	assert.Equal(t, route.EventRollback, ev.Kind)
	assert.Greater(t, ev.Canary.Failures, int64(failedForCaller), "the fallbacks counted as canary failures")
	assert.GreaterOrEqual(t, ev.Canary.Failures, int64(20), "over half of 40 canary requests failed")
	assert.Zero(t, ev.Stable.Failures, "a fallback is not the stable side's")
}

// A canary subset with no endpoint at all: its share goes to the stable version.
func TestCanaryWithoutEndpointsFallsBack(t *testing.T) {
	r := newCanaryRig(t, `
routes:
  - name: shop
    match: {hosts: [shop]}
    canary:
      stable: {service: shop, subset: {meta: {version: v1}}}
      canary: {service: shop, subset: {meta: {version: v3}}}
      weight: 50
`)
	const n = 200
	ok := r.run(t, n)
	st := r.tr.Stats()
	assert.Equal(t, n, ok, "every request answered by stable")
	assert.Greater(t, st.Fallbacks, int64(n/4), "about half fell back")
	assert.Zero(t, st.BreakerRefusals, "no breaker refused: there was no endpoint")
	assert.Zero(t, r.canary.Attempts())
	assert.EqualValues(t, n, r.s1.Attempts()+r.s2.Attempts())
	assert.EqualValues(t, n, st.Requests)
}
