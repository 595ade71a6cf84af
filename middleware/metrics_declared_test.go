package middleware_test

import (
	"context"
	"go/ast"
	"go/parser"
	"go/token"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"

	"github.com/proxyless/proxyless/balancer"
	"github.com/proxyless/proxyless/breaker"
	"github.com/proxyless/proxyless/discovery"
	"github.com/proxyless/proxyless/internal/faultbackend"
	"github.com/proxyless/proxyless/middleware"
	"github.com/proxyless/proxyless/ratelimit"
	"github.com/proxyless/proxyless/ratelimit/overload"
	"github.com/proxyless/proxyless/route"
	"github.com/proxyless/proxyless/tracing"
)

// declaredMetrics returns the metric names package tracing declares, by constant name: the
// string constants named Metric*, read from its source, so that a name declared later is
// checked too.
func declaredMetrics(t *testing.T) map[string]string {
	t.Helper()
	dir := filepath.Join("..", "tracing")
	entries, err := os.ReadDir(dir)
	require.NoError(t, err)
	out := map[string]string{}
	fset := token.NewFileSet()
	for _, e := range entries {
		if !strings.HasSuffix(e.Name(), ".go") || strings.HasSuffix(e.Name(), "_test.go") {
			continue
		}
		f, err := parser.ParseFile(fset, filepath.Join(dir, e.Name()), nil, parser.SkipObjectResolution)
		require.NoError(t, err)
		for _, decl := range f.Decls {
			gd, ok := decl.(*ast.GenDecl)
			if !ok || gd.Tok != token.CONST {
				continue
			}
			for _, spec := range gd.Specs {
				vs := spec.(*ast.ValueSpec)
				for i, name := range vs.Names {
					if !strings.HasPrefix(name.Name, "Metric") {
						continue
					}
					require.Less(t, i, len(vs.Values), "%s has no value of its own", name.Name)
					lit, ok := vs.Values[i].(*ast.BasicLit)
					require.True(t, ok && lit.Kind == token.STRING, "%s is not a string literal", name.Name)
					v, err := strconv.Unquote(lit.Value)
					require.NoError(t, err)
					out[name.Name] = v
				}
			}
		}
	}
	require.NotEmpty(t, out, "no Metric* constants found in %s", dir)
	return out
}

// metricsApp is one Transport over loopback backends, reporting to a shared meter provider.
type metricsApp struct {
	tr     *middleware.Transport
	client *http.Client
}

func newMetricsApp(t *testing.T, static *discovery.Static, opts ...middleware.TransportOption) *metricsApp {
	t.Helper()
	base := &http.Transport{MaxIdleConnsPerHost: 16}
	tr, err := middleware.NewTransport(base, append([]middleware.TransportOption{middleware.WithResolver(static)}, opts...)...)
	require.NoError(t, err)
	t.Cleanup(func() {
		require.NoError(t, tr.Close())
		base.CloseIdleConnections()
	})
	return &metricsApp{tr: tr, client: &http.Client{Transport: tr}}
}

// get sends a GET to url and returns its status, or 0 and the error.
func (a *metricsApp) get(t *testing.T, url string) (int, error) {
	t.Helper()
	req, err := http.NewRequestWithContext(ctxFor(t, 10*time.Second), http.MethodGet, url, nil)
	require.NoError(t, err)
	resp, err := a.client.Do(req)
	if err != nil {
		return 0, err
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	_ = resp.Body.Close()
	return resp.StatusCode, nil
}

// pointsByName collects the reader's metrics and returns how many data points each has.
func pointsByName(t *testing.T, reader *sdkmetric.ManualReader) map[string]int {
	t.Helper()
	var rm metricdata.ResourceMetrics
	require.NoError(t, reader.Collect(context.Background(), &rm))
	out := map[string]int{}
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			n := 0
			switch d := m.Data.(type) {
			case metricdata.Sum[int64]:
				n = len(d.DataPoints)
			case metricdata.Sum[float64]:
				n = len(d.DataPoints)
			case metricdata.Gauge[int64]:
				n = len(d.DataPoints)
			case metricdata.Gauge[float64]:
				n = len(d.DataPoints)
			case metricdata.Histogram[float64]:
				n = len(d.DataPoints)
			case metricdata.Histogram[int64]:
				n = len(d.DataPoints)
			default:
				t.Fatalf("%s: unexpected %T", m.Name, d)
			}
			out[m.Name] += n
		}
	}
	return out
}

// Every metric package tracing declares is emitted: real Transports over loopback backends
// hedge, retry, meet a retry budget and an open breaker, pass a rate limit and an adaptive
// concurrency limit, and mirror to a shadow that answers differently, through a route with a
// canary; one SDK reader must then hold at least one data point of each declared name, and no
// proxyless.* name that is not declared. A declaration nothing records fails here.
func TestEveryDeclaredMetricIsEmitted(t *testing.T) {
	reader := sdkmetric.NewManualReader()
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	t.Cleanup(func() { _ = mp.Shutdown(context.Background()) })
	withMP := middleware.WithMeterProvider(mp)

	static := startMetricsBackends(t)
	emitResilienceMetrics(t, static, withMP)
	emitRoutedMetrics(t, static, withMP)

	declared := declaredMetrics(t)
	// The shadow's comparison comes in the background: wait for it, then say what is missing.
	points := waitForDeclaredPoints(t, reader, declared, 10*time.Second)
	for constant, name := range declared {
		assert.Positive(t, points[name], "%s (%s) was never emitted", constant, name)
	}
	values := make([]string, 0, len(declared))
	for _, name := range declared {
		values = append(values, name)
	}
	for name := range points {
		if strings.HasPrefix(name, "proxyless.") {
			assert.True(t, slices.Contains(values, name), "%s is emitted but not declared in package tracing", name)
		}
	}
}

// startMetricsBackends starts the loopback backends the metrics test drives and returns their
// discovery: "hedged" (slow, fast), "retried" (flaky once, fast), "budget" (always 503),
// "breaker" (always 500), "svc" (v1, v2) and "shadow" (always 500).
func startMetricsBackends(t *testing.T) *discovery.Static {
	t.Helper()
	slow, fast, flaky, failing, broken := faultbackend.New(t), faultbackend.New(t), faultbackend.New(t), faultbackend.New(t), faultbackend.New(t)
	v1, v2, shadow := faultbackend.New(t), faultbackend.New(t), faultbackend.New(t)
	slow.Set(faultbackend.Slow(300 * time.Millisecond))
	flaky.FailNext(1, faultbackend.Status(http.StatusServiceUnavailable))
	failing.Set(faultbackend.Status(http.StatusServiceUnavailable))
	broken.Set(faultbackend.Status(http.StatusInternalServerError))
	shadow.Set(faultbackend.Status(http.StatusInternalServerError))
	return discovery.MustNewStatic(map[string][]discovery.Endpoint{
		"hedged":  {{Addr: slow.Addr()}, {Addr: fast.Addr()}},
		"retried": {{Addr: flaky.Addr()}, {Addr: fast.Addr()}},
		"budget":  {{Addr: failing.Addr()}},
		"breaker": {{Addr: broken.Addr()}},
		"svc": {
			{Addr: v1.Addr(), Meta: map[string]string{"version": "v1"}},
			{Addr: v2.Addr(), Meta: map[string]string{"version": "v2"}},
		},
		"shadow": {{Addr: shadow.Addr()}},
	})
}

// emitResilienceMetrics drives requests that make the resilience metrics emit: hedges and a
// hedge's win, a retry, a retry the budget refuses, a breaker that opens and refuses, and a
// destination's connection limit.
func emitResilienceMetrics(t *testing.T, static *discovery.Static, withMP middleware.TransportOption) {
	t.Helper()
	roundRobin := middleware.WithBalancer(balancer.Config{Policy: balancer.PolicyRoundRobin})

	// Hedges and a hedge's win: round robin sends one of two requests to the slow endpoint
	// first; the hedge to the fast one answers.
	hedging := newMetricsApp(t, static, withMP, roundRobin,
		middleware.WithHedge(middleware.HedgePolicy{Delay: 20 * time.Millisecond, MaxHedges: 1}))
	for range 2 {
		code, err := hedging.get(t, "http://hedged/")
		require.NoError(t, err)
		require.Equal(t, http.StatusOK, code)
	}

	// A retry: the first 503 of the flaky endpoint is retried on the other.
	retrying := newMetricsApp(t, static, withMP, roundRobin)
	for range 2 {
		code, err := retrying.get(t, "http://retried/")
		require.NoError(t, err)
		require.Equal(t, http.StatusOK, code)
	}

	// A retry the budget refuses.
	budgeted := newMetricsApp(t, static, withMP, middleware.WithoutBreaker(),
		middleware.WithRetry(middleware.RetryPolicy{BudgetRatio: -1, MinRetriesPerSecond: -1}))
	code, err := budgeted.get(t, "http://budget/")
	require.NoError(t, err)
	require.Equal(t, http.StatusServiceUnavailable, code)

	// A breaker that opens (a transition) and then refuses.
	breaking := newMetricsApp(t, static, withMP,
		middleware.WithBalancer(balancer.Config{Outlier: balancer.OutlierConfig{Disabled: true}}),
		middleware.WithBreaker(breaker.Config{MinimumVolume: 3, OpenDelay: time.Minute}),
		middleware.WithRetry(middleware.RetryPolicy{Disable: true}))
	for range 3 {
		code, err := breaking.get(t, "http://breaker/")
		require.NoError(t, err)
		require.Equal(t, http.StatusInternalServerError, code)
	}
	_, err = breaking.get(t, "http://breaker/")
	require.ErrorIs(t, err, breaker.ErrOpen)

	// A destination's connection limit: one connection, to the first endpoint, stays open
	// (idle); the second endpoint needs another, which is refused.
	limited := newMetricsApp(t, static, withMP, roundRobin, middleware.WithRetry(middleware.RetryPolicy{Disable: true}),
		middleware.WithLimits(balancer.Limits{MaxConnections: 1, MaxPendingRequests: -1}))
	_, err = limited.get(t, "http://hedged/")
	require.NoError(t, err)
	_, err = limited.get(t, "http://hedged/")
	require.ErrorIs(t, err, balancer.ErrMaxConnections)
}

// emitRoutedMetrics drives a request through outbound limits (a rate limit and an adaptive
// concurrency limit) and a route with a canary that mirrors to a shadow answering 500 where the
// primary answers 200.
func emitRoutedMetrics(t *testing.T, static *discovery.Static, withMP middleware.TransportOption) {
	t.Helper()
	cfg, err := route.ParseConfig([]byte(`
routes:
  - name: checkout
    match: {hosts: [svc]}
    canary:
      stable: {service: svc, subset: {meta: {version: v1}}}
      canary: {service: svc, subset: {meta: {version: v2}}}
      weight: 10
    shadow: {destination: {service: shadow}, timeout: 5s}
`))
	require.NoError(t, err)
	router, err := route.NewRouter(cfg)
	require.NoError(t, err)
	adaptive, err := overload.NewAdaptive(overload.AdaptiveConfig{})
	require.NoError(t, err)
	routed := newMetricsApp(t, static, withMP, middleware.WithRoutes(router),
		middleware.WithRateLimit(ratelimit.Quota{Rate: 1000, Burst: 1000}),
		middleware.WithConcurrencyLimit(adaptive))
	code, err := routed.get(t, "http://svc/")
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, code)
}

// waitForDeclaredPoints collects the reader's points by metric name until every declared
// metric has one, or for at most wait, and returns the last collection.
func waitForDeclaredPoints(t *testing.T, reader *sdkmetric.ManualReader, declared map[string]string, wait time.Duration) map[string]int {
	t.Helper()
	var points map[string]int
	all := func() bool {
		for _, name := range declared {
			if points[name] == 0 {
				return false
			}
		}
		return true
	}
	for deadline := time.Now().Add(wait); ; time.Sleep(10 * time.Millisecond) {
		if points = pointsByName(t, reader); all() || time.Now().After(deadline) {
			return points
		}
	}
}

// A gRPC client given an adaptive concurrency limit reports it as the Transport does, until
// it is closed.
func TestGRPCClientReportsAdaptiveLimit(t *testing.T) {
	reader := sdkmetric.NewManualReader()
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	t.Cleanup(func() { _ = mp.Shutdown(context.Background()) })
	adaptive, err := overload.NewAdaptive(overload.AdaptiveConfig{InitialLimit: 7, MinLimit: 1, MaxLimit: 50})
	require.NoError(t, err)
	c, err := middleware.NewGRPCClient(discovery.MustNewStatic(nil), middleware.WithMeterProvider(mp), middleware.WithConcurrencyLimit(adaptive))
	require.NoError(t, err)

	limit := func() (int64, bool) {
		var rm metricdata.ResourceMetrics
		require.NoError(t, reader.Collect(context.Background(), &rm))
		for _, sm := range rm.ScopeMetrics {
			for _, m := range sm.Metrics {
				if g, ok := m.Data.(metricdata.Gauge[int64]); ok && m.Name == tracing.MetricConcurrencyLimit && len(g.DataPoints) == 1 {
					return g.DataPoints[0].Value, true
				}
			}
		}
		return 0, false
	}
	v, ok := limit()
	require.True(t, ok, "the limit is reported")
	assert.EqualValues(t, adaptive.Limit(), v)
	assert.EqualValues(t, 7, v)
	require.NoError(t, c.Close())
	_, ok = limit()
	assert.False(t, ok, "not after Close")
}
