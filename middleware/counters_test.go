package middleware_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/otel/attribute"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"

	"github.com/proxyless/proxyless/balancer"
	"github.com/proxyless/proxyless/breaker"
	"github.com/proxyless/proxyless/discovery"
	"github.com/proxyless/proxyless/internal/faultbackend"
	"github.com/proxyless/proxyless/middleware"
	"github.com/proxyless/proxyless/route"
	"github.com/proxyless/proxyless/tracing"
)

// counterSum sums the int64 data points of metric name whose attributes include every one of
// want.
func counterSum(t *testing.T, reader *sdkmetric.ManualReader, name string, want ...attribute.KeyValue) int64 {
	t.Helper()
	var rm metricdata.ResourceMetrics
	require.NoError(t, reader.Collect(context.Background(), &rm))
	var n int64
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			if m.Name != name {
				continue
			}
			sum, ok := m.Data.(metricdata.Sum[int64])
			require.True(t, ok, "%s is %T", name, m.Data)
		points:
			for _, dp := range sum.DataPoints {
				for _, kv := range want {
					if v, ok := dp.Attributes.Value(kv.Key); !ok || v != kv.Value {
						continue points
					}
				}
				n += dp.Value
			}
		}
	}
	return n
}

func getStatus(t *testing.T, c *http.Client, url string) (int, error) {
	t.Helper()
	req, err := http.NewRequestWithContext(ctxFor(t, 10*time.Second), http.MethodGet, url, nil)
	require.NoError(t, err)
	resp, err := c.Do(req)
	if err != nil {
		return 0, err
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode, nil
}

// A refused request counts one breaker refusal, in Stats and in proxyless.breaker.refusals,
// however many endpoints' breakers refused it.
func TestBreakerRefusalsCountedOncePerRequest(t *testing.T) {
	backends := []*faultbackend.Backend{faultbackend.New(t), faultbackend.New(t), faultbackend.New(t), faultbackend.New(t), faultbackend.New(t)}
	var eps []discovery.Endpoint
	for _, b := range backends {
		b.Set(faultbackend.Status(http.StatusInternalServerError))
		eps = append(eps, discovery.Endpoint{Addr: b.Addr()})
	}
	reader := sdkmetric.NewManualReader()
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	defer func() { require.NoError(t, mp.Shutdown(context.Background())) }()
	app := newMetricsApp(t, discovery.MustNewStatic(map[string][]discovery.Endpoint{"svc": eps}),
		middleware.WithMeterProvider(mp), middleware.WithRetry(middleware.RetryPolicy{Disable: true}),
		middleware.WithBalancer(balancer.Config{Policy: balancer.PolicyRoundRobin, Outlier: balancer.OutlierConfig{Disabled: true}}),
		middleware.WithBreaker(breaker.Config{MinimumVolume: 2, OpenDelay: time.Hour}))
	// Open every breaker: 500s, two per endpoint.
	for range 2 * len(backends) {
		code, err := app.get(t, "http://svc/")
		require.NoError(t, err)
		require.Equal(t, http.StatusInternalServerError, code)
	}
	before := app.tr.Stats()
	require.EqualValues(t, len(backends), before.BreakerOpens)
	const refused = 7
	for range refused {
		_, err := app.get(t, "http://svc/")
		require.ErrorIs(t, err, breaker.ErrOpen)
	}
	st := app.tr.Stats()
	assert.EqualValues(t, refused, st.BreakerRefusals-before.BreakerRefusals, "one per refused request")
	assert.EqualValues(t, refused, counterSum(t, reader, tracing.MetricBreakerRefusals, tracing.KeyDestination.String("svc")), "the metric counts the same")
	assert.Equal(t, before.Attempts, st.Attempts, "nothing sent")
	var served int64
	for _, b := range backends {
		served += b.Attempts()
	}
	assert.Equal(t, served, st.Attempts, "attempts = what the servers saw")
	assert.EqualValues(t, 2*len(backends)+refused, st.Requests)
}

// Mirrored copies are counted apart from the transport's own requests, go to a destination
// of their own (a failing shadow opens no breaker of the transport's), and the comparison of
// each shadow answer with the primary's shows in Stats, the metrics and the status page.
func TestShadowCountedApart(t *testing.T) {
	p1, p2, mirror := faultbackend.New(t), faultbackend.New(t), faultbackend.New(t)
	static := discovery.MustNewStatic(map[string][]discovery.Endpoint{
		"svc":    {{Addr: p1.Addr()}, {Addr: p2.Addr()}},
		"mirror": {{Addr: mirror.Addr()}},
	})
	cfg, err := route.ParseConfig([]byte(`
routes:
  - name: mirrored
    match: {hosts: [svc]}
    shadow: {destination: {service: mirror}, maxConcurrency: 1000}
`))
	require.NoError(t, err)
	router, err := route.NewRouter(cfg)
	require.NoError(t, err)
	reader := sdkmetric.NewManualReader()
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	defer func() { require.NoError(t, mp.Shutdown(context.Background())) }()
	app := newMetricsApp(t, static, middleware.WithRoutes(router), middleware.WithMeterProvider(mp), middleware.WithShadowLimit(1000),
		middleware.WithBreaker(breaker.Config{MinimumVolume: 5, OpenDelay: time.Hour}))

	settled := func(want int64) middleware.ShadowStats { return shadowSettled(app.tr, want) }
	// Phase 1: the shadow answers as the primary does.
	const n1, n2 = 30, 40
	for range n1 {
		code, err := app.get(t, "http://svc/")
		require.NoError(t, err)
		require.Equal(t, http.StatusOK, code)
	}
	sh := settled(n1)
	assert.EqualValues(t, n1, sh.Matched)
	// Phase 2: the shadow breaks (503): its answers differ, its breaker opens, and the copies
	// its breaker refuses fail. The primary is untouched.
	mirror.Set(faultbackend.Status(http.StatusServiceUnavailable))
	for range n2 {
		code, err := app.get(t, "http://svc/")
		require.NoError(t, err)
		require.Equal(t, http.StatusOK, code)
	}
	sh = settled(n1 + n2)
	st := app.tr.Stats()
	t.Logf("%+v", st)

	// The transport's own counts are its requests only, and equal what its servers saw.
	assert.EqualValues(t, n1+n2, st.Requests)
	assert.Equal(t, p1.Attempts()+p2.Attempts(), st.Attempts)
	assert.EqualValues(t, n1+n2, st.Attempts)
	assert.Zero(t, st.BreakerOpens, "the shadow's breaker is not the transport's")
	assert.Zero(t, st.BreakerRefusals)
	assert.Zero(t, st.Retries)

	// The copies, counted apart.
	assert.EqualValues(t, n1+n2, sh.Mirrored)
	assert.Zero(t, sh.Dropped)
	assert.EqualValues(t, n1+n2, sh.Requests)
	assert.Equal(t, mirror.Attempts(), sh.Attempts, "shadow attempts = what the shadow server saw")
	assert.EqualValues(t, 1, sh.BreakerOpens)
	assert.Positive(t, sh.BreakerRefusals)
	assert.EqualValues(t, n1, sh.Matched)
	assert.Positive(t, sh.Mismatched, "503s before the breaker opened")
	// Each copy the shadow's breaker refused failed; a copy whose retry it refused keeps the
	// 503 it had (a mismatch): at most one refusal per copy.
	assert.GreaterOrEqual(t, sh.BreakerRefusals, sh.Failed)
	assert.LessOrEqual(t, sh.BreakerRefusals, sh.Failed+sh.Mismatched)
	assert.EqualValues(t, n2, sh.Mismatched+sh.Failed)
	assert.Zero(t, sh.Unpaired)

	// The metrics say the same.
	for result, want := range map[string]int64{"matched": sh.Matched, "mismatched": sh.Mismatched, "shadow_failed": sh.Failed} {
		assert.Equal(t, want, counterSum(t, reader, tracing.MetricShadowResults, tracing.KeyShadowResult.String(result),
			tracing.KeyRoute.String("mirrored"), tracing.KeyShadow.String("mirror")), result)
	}
	assert.Zero(t, counterSum(t, reader, tracing.MetricBreakerRefusals, tracing.KeyDestination.String("svc")))
	assert.Equal(t, sh.BreakerRefusals, counterSum(t, reader, tracing.MetricBreakerRefusals, tracing.KeyDestination.String("shadow:mirror")))

	checkShadowOnStatusPage(t, app.tr, sh, n1+n2)
}

// shadowSettled polls tr's shadow counts, for up to 10 s, until want comparisons are made
// and no copy is in flight (its result counted everywhere).
func shadowSettled(tr *middleware.Transport, want int64) middleware.ShadowStats {
	deadline := time.Now().Add(10 * time.Second)
	for {
		sh := tr.Stats().Shadow
		if (sh.InFlight == 0 && sh.Matched+sh.Mismatched+sh.Failed+sh.Unpaired >= want) || time.Now().After(deadline) {
			return sh
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// checkShadowOnStatusPage checks the status page of tr: the shadow comparison sh, the
// transport's own requests, and the shadow's destination of its own.
func checkShadowOnStatusPage(t *testing.T, tr *middleware.Transport, sh middleware.ShadowStats, requests int64) {
	t.Helper()
	// The status page: the comparison, and the shadow's destination of its own.
	srv := httptest.NewServer(middleware.StatusHandler(tr))
	defer srv.Close()
	resp, err := srv.Client().Get(srv.URL + "/?format=json")
	require.NoError(t, err)
	defer resp.Body.Close()
	var page struct {
		Transports []struct {
			Stats struct {
				Requests     int64 `json:"requests"`
				BreakerOpens int64 `json:"breakerOpens"`
				Shadow       *struct {
					Mirrored     int64 `json:"mirrored"`
					Matched      int64 `json:"matched"`
					Mismatched   int64 `json:"mismatched"`
					Failed       int64 `json:"failed"`
					BreakerOpens int64 `json:"breakerOpens"`
				} `json:"shadow"`
			} `json:"stats"`
			Destinations []struct {
				Service string `json:"service"`
				Shadow  bool   `json:"shadow"`
			} `json:"destinations"`
		} `json:"transports"`
	}
	require.NoError(t, json.NewDecoder(resp.Body).Decode(&page))
	require.Len(t, page.Transports, 1)
	ps := page.Transports[0].Stats
	require.NotNil(t, ps.Shadow)
	assert.Equal(t, requests, ps.Requests)
	assert.Zero(t, ps.BreakerOpens)
	assert.Equal(t, sh.Mirrored, ps.Shadow.Mirrored)
	assert.Equal(t, sh.Matched, ps.Shadow.Matched)
	assert.Equal(t, sh.Mismatched, ps.Shadow.Mismatched)
	assert.Equal(t, sh.Failed, ps.Shadow.Failed)
	assert.EqualValues(t, 1, ps.Shadow.BreakerOpens)
	dests := map[string]bool{}
	for _, d := range page.Transports[0].Destinations {
		dests[d.Service] = d.Shadow
	}
	assert.Equal(t, map[string]bool{"svc": false, "shadow:mirror": true}, dests)
	html, err := srv.Client().Get(srv.URL + "/?format=html")
	require.NoError(t, err)
	body, _ := io.ReadAll(html.Body)
	html.Body.Close()
	assert.Contains(t, string(body), "mismatched ")
	assert.Contains(t, string(body), "shadow failed ")
	assert.Contains(t, string(body), "mirrored copies only")
}
