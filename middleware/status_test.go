package middleware

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	"golang.org/x/net/html"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	testgrpc "google.golang.org/grpc/interop/grpc_testing"
	grpcstatus "google.golang.org/grpc/status"

	"github.com/proxyless/proxyless/balancer"
	"github.com/proxyless/proxyless/breaker"
	"github.com/proxyless/proxyless/discovery"
	"github.com/proxyless/proxyless/internal/faultbackend"
	"github.com/proxyless/proxyless/route"
	"github.com/proxyless/proxyless/route/reload"
	"github.com/proxyless/proxyless/tracing"
)

// fakeSource is a StatusSource with a scripted state: a real Transport cannot be made to hold
// an open breaker and a half-open one at a fixed instant on demand.
type fakeSource struct {
	stats Stats
	dests []DestinationStatus
}

func (f fakeSource) Stats() Stats                      { return f.stats }
func (f fakeSource) Destinations() []DestinationStatus { return f.dests }

var statusNow = time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)

func scriptedSource() fakeSource {
	return fakeSource{
		stats: Stats{Requests: 10, Attempts: 14, Retries: 3, Hedges: 1, HedgeWins: 1, BreakerOpens: 1, Ejections: 1},
		dests: []DestinationStatus{{
			Service: "payments",
			Endpoints: []EndpointStatus{
				{EndpointStats: balancer.EndpointStats{Addr: "127.0.0.1:8081", Zone: "dc1/a", Weight: 1, EWMA: 1500 * time.Microsecond, InFlight: 2, Requests: 9, Healthy: true},
					HasBreaker: true, Breaker: breaker.StateClosed},
				{EndpointStats: balancer.EndpointStats{Addr: "127.0.0.1:8082", Zone: "dc1/b", Weight: 3, Requests: 5, Failures: 5, Healthy: true,
					EjectedUntil: statusNow.Add(30 * time.Second), TimesEjected: 1},
					HasBreaker: true, Breaker: breaker.StateOpen},
				{EndpointStats: balancer.EndpointStats{Addr: "127.0.0.1:8083", Weight: 1, Healthy: false},
					HasBreaker: true, Breaker: breaker.StateHalfOpen},
			},
			Ejections:  1,
			Stale:      true,
			StaleSince: statusNow.Add(-time.Minute),
		}},
	}
}

func serveStatus(h http.Handler, target string, hdr map[string]string) *httptest.ResponseRecorder {
	req := httptest.NewRequest(http.MethodGet, target, nil)
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, req)
	return w
}

func TestStatusHandlerJSON(t *testing.T) {
	h := StatusHandler(scriptedSource(), nil)
	h.(*statusHandler).now = func() time.Time { return statusNow }
	for _, tc := range []struct {
		target string
		hdr    map[string]string
	}{
		{"/status?format=json", nil},
		{"/status", map[string]string{"Accept": "application/json"}},
		{"/status", map[string]string{"Accept": "application/json; q=0.9, text/html; q=0.1"}},
	} {
		w := serveStatus(h, tc.target, tc.hdr)
		require.Equal(t, http.StatusOK, w.Code)
		assert.Equal(t, "application/json", w.Header().Get("Content-Type"))
		var p statusPage
		require.NoError(t, json.Unmarshal(w.Body.Bytes(), &p))
		require.Len(t, p.Transports, 1)
		tr := p.Transports[0]
		assert.Equal(t, int64(14), tr.Stats.Attempts)
		require.Len(t, tr.Destinations, 1)
		d := tr.Destinations[0]
		assert.Equal(t, "payments", d.Service)
		assert.True(t, d.Stale)
		assert.Equal(t, 3, d.Known)
		assert.Equal(t, 1, d.Healthy)
		require.Len(t, d.Endpoints, 3)
		assert.Equal(t, 1.5, d.Endpoints[0].EWMAMillis)
		assert.Equal(t, "closed", d.Endpoints[0].Breaker)
		assert.False(t, d.Endpoints[0].Ejected)
		assert.Nil(t, d.Endpoints[0].EjectedUntil)
		assert.Equal(t, "open", d.Endpoints[1].Breaker)
		assert.True(t, d.Endpoints[1].Ejected)
		require.NotNil(t, d.Endpoints[1].EjectedUntil)
		assert.True(t, d.Endpoints[1].EjectedUntil.Equal(statusNow.Add(30*time.Second)))
		assert.Equal(t, "half-open", d.Endpoints[2].Breaker)
		assert.False(t, d.Endpoints[2].Healthy)
	}

	// The raw document uses camelCase names, as every config document does.
	w := serveStatus(h, "/?format=json", nil)
	assert.Contains(t, w.Body.String(), `"ewmaMs": 1.5`)
	assert.Contains(t, w.Body.String(), `"hedgeWins": 1`)
	assert.Contains(t, w.Body.String(), `"endpointsKnown": 3`)
	assert.Contains(t, w.Body.String(), `"staleSince": "`)
	var doc any
	require.NoError(t, json.Unmarshal(w.Body.Bytes(), &doc))
	for _, k := range jsonKeys(doc, nil) {
		assert.Regexp(t, `^[a-z][a-zA-Z0-9]*$`, k, "a key of the served document")
	}
}

// TestStatusJSONNamesAreCamelCase checks every name the JSON document can have, those
// omitted when empty included.
func TestStatusJSONNamesAreCamelCase(t *testing.T) {
	seen := map[reflect.Type]bool{}
	var walk func(reflect.Type)
	walk = func(ty reflect.Type) {
		for ty.Kind() == reflect.Pointer || ty.Kind() == reflect.Slice {
			ty = ty.Elem()
		}
		if ty.Kind() != reflect.Struct || seen[ty] || ty.PkgPath() != reflect.TypeFor[statusPage]().PkgPath() {
			return
		}
		seen[ty] = true
		for i := range ty.NumField() {
			f := ty.Field(i)
			name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
			if name == "-" || !f.IsExported() {
				continue
			}
			assert.Regexp(t, `^[a-z][a-zA-Z0-9]*$`, name, "%s.%s", ty.Name(), f.Name)
			walk(f.Type)
		}
	}
	walk(reflect.TypeFor[statusPage]())
	assert.Greater(t, len(seen), 8, "the walk reached the nested views")
}

// jsonKeys appends every object key in v, at any depth, to keys.
func jsonKeys(v any, keys []string) []string {
	switch v := v.(type) {
	case map[string]any:
		for k, e := range v {
			keys = jsonKeys(e, append(keys, k))
		}
	case []any:
		for _, e := range v {
			keys = jsonKeys(e, keys)
		}
	}
	return keys
}

func TestStatusHandlerHTML(t *testing.T) {
	src := scriptedSource()
	src.dests[0].Endpoints[0].Zone = `<script>alert(1)</script>`
	h := StatusHandler(src)
	h.(*statusHandler).now = func() time.Time { return statusNow }
	for _, hdr := range []map[string]string{nil, {"Accept": "text/html,application/xhtml+xml,*/*;q=0.8"}} {
		w := serveStatus(h, "/status", hdr)
		require.Equal(t, http.StatusOK, w.Code)
		assert.Equal(t, "text/html; charset=utf-8", w.Header().Get("Content-Type"))
		body := w.Body.String()
		assert.NotContains(t, body, "<script>", "values are escaped")

		doc, err := html.Parse(strings.NewReader(body))
		require.NoError(t, err)
		rows := cells(doc)
		require.Len(t, rows, 3)
		assert.Equal(t, []string{"127.0.0.1:8081", "<script>alert(1)</script>", "1", "1.5", "2", "9", "0", "closed", "in rotation", "healthy"}, rows[0])
		assert.Equal(t, "open", rows[1][7])
		assert.Equal(t, "ejected until 12:00:30Z (×1)", rows[1][8])
		assert.Equal(t, "half-open", rows[2][7])
		assert.Equal(t, "unhealthy", rows[2][9])
		assert.Contains(t, body, "1/3 healthy")
		assert.Contains(t, body, "discovery stale since 11:59:00Z")
	}
	w := serveStatus(h, "/status?format=html", map[string]string{"Accept": "application/json"})
	assert.Equal(t, "text/html; charset=utf-8", w.Header().Get("Content-Type"))

	req := httptest.NewRequest(http.MethodPost, "/status", nil)
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	assert.Equal(t, http.StatusMethodNotAllowed, rec.Code)

	empty := serveStatus(StatusHandler(), "/", nil)
	assert.Contains(t, empty.Body.String(), "no transports")
}

// cells returns the text of the td cells of each tbody row of the document.
func cells(n *html.Node) [][]string {
	var rows [][]string
	var walk func(*html.Node, bool)
	walk = func(n *html.Node, inBody bool) {
		if n.Type == html.ElementNode && n.Data == "tr" && inBody {
			var row []string
			for c := n.FirstChild; c != nil; c = c.NextSibling {
				if c.Type == html.ElementNode && c.Data == "td" {
					row = append(row, strings.TrimSpace(text(c)))
				}
			}
			rows = append(rows, row)
			return
		}
		for c := n.FirstChild; c != nil; c = c.NextSibling {
			walk(c, inBody || (n.Type == html.ElementNode && n.Data == "tbody"))
		}
	}
	walk(n, false)
	return rows
}

func text(n *html.Node) string {
	if n.Type == html.TextNode {
		return n.Data
	}
	var b strings.Builder
	for c := n.FirstChild; c != nil; c = c.NextSibling {
		b.WriteString(text(c))
	}
	return b.String()
}

// A real Transport over two loopback backends, one failing with 503s until it is ejected;
// the status page, fetched over loopback by a real client, shows the ejection.
func TestStatusHandlerRealTransport(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	good, bad := faultbackend.New(t), faultbackend.New(t)
	bad.Set(faultbackend.Status(http.StatusServiceUnavailable))
	static := discovery.MustNewStatic(map[string][]discovery.Endpoint{
		"svc": {{Addr: good.Addr(), Zone: "z1"}, {Addr: bad.Addr(), Zone: "z2"}},
	})
	base := &http.Transport{}
	// Round robin, so that the failing endpoint keeps being picked until it is ejected (P2C
	// would soon steer away from it).
	tr, err := NewTransport(base, WithResolver(static), WithoutBreaker(),
		WithBalancer(balancer.Config{Policy: balancer.PolicyRoundRobin}))
	require.NoError(t, err)
	defer func() {
		require.NoError(t, tr.Close())
		base.CloseIdleConnections()
	}()
	client := &http.Client{Transport: tr}
	for i := 0; i < 200 && tr.Stats().Ejections == 0; i++ {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://svc/", nil)
		resp, err := client.Do(req)
		require.NoError(t, err)
		_, _ = io.Copy(io.Discard, resp.Body)
		_ = resp.Body.Close()
	}
	require.NotZero(t, tr.Stats().Ejections, "the failing endpoint was never ejected")

	srv := httptest.NewServer(StatusHandler(tr))
	defer srv.Close()
	raw := fetch(ctx, t, srv.Client(), srv.URL+"/?format=json")
	assert.NotContains(t, string(raw), `"routes"`, "requests are not routed: no routes section")
	var p statusPage
	require.NoError(t, json.Unmarshal(raw, &p))
	assert.Nil(t, tr.Router())
	assert.Empty(t, tr.state(time.Now()).Canaries)
	require.Len(t, p.Transports, 1)
	require.Len(t, p.Transports[0].Destinations, 1)
	d := p.Transports[0].Destinations[0]
	require.Len(t, d.Endpoints, 2)
	byAddr := map[string]endpointView{}
	for _, e := range d.Endpoints {
		byAddr[e.Addr] = e
	}
	assert.True(t, byAddr[bad.Addr()].Ejected)
	assert.Equal(t, "z2", byAddr[bad.Addr()].Zone)
	assert.False(t, byAddr[good.Addr()].Ejected)
	assert.NotZero(t, byAddr[good.Addr()].Requests)
	assert.Positive(t, byAddr[good.Addr()].EWMAMillis)
	assert.Empty(t, byAddr[good.Addr()].Breaker, "breakers are off")

	hreq, _ := http.NewRequestWithContext(ctx, http.MethodGet, srv.URL+"/", nil)
	hresp, err := srv.Client().Do(hreq)
	require.NoError(t, err)
	defer hresp.Body.Close()
	body, err := io.ReadAll(hresp.Body)
	require.NoError(t, err)
	assert.Contains(t, string(body), "ejected until")
	assert.Contains(t, string(body), "1/2 healthy")
	assert.NotContains(t, string(body), "<h3>routes")
}

func TestTelemetryState(t *testing.T) {
	src := scriptedSource()
	st := telemetryState(src.dests, statusNow)
	require.Len(t, st.Destinations, 1)
	d := st.Destinations[0]
	assert.Equal(t, "payments", d.Name)
	assert.Equal(t, statusNow.Add(-time.Minute), d.StaleSince)
	require.Len(t, d.Endpoints, 3)
	assert.True(t, d.Endpoints[1].Ejected)
	assert.False(t, d.Endpoints[0].Ejected)
	assert.Equal(t, breaker.StateOpen, d.Endpoints[1].Breaker)
	assert.True(t, d.Endpoints[1].HasBreaker)
}

// StatusHandler mounted on an admin mux; a client asks for JSON.
func ExampleStatusHandler() {
	src := scriptedSource() // in a service: the *Transport of its http.Client
	admin := http.NewServeMux()
	admin.Handle("/proxyless", StatusHandler(src))

	w := httptest.NewRecorder()
	admin.ServeHTTP(w, httptest.NewRequest(http.MethodGet, "/proxyless?format=json", nil))
	var p struct {
		Transports []struct {
			Destinations []struct {
				Service   string
				Endpoints []struct {
					Addr    string
					Breaker string
				}
			}
		}
	}
	_ = json.Unmarshal(w.Body.Bytes(), &p)
	for _, d := range p.Transports[0].Destinations {
		for _, e := range d.Endpoints {
			fmt.Println(d.Service, e.Addr, e.Breaker)
		}
	}
	// Output:
	// payments 127.0.0.1:8081 closed
	// payments 127.0.0.1:8082 open
	// payments 127.0.0.1:8083 half-open
}

// statusRoutesDoc is the route table of TestStatusHandlerRoutes; %s is the canary's weight
// and analysis.
const statusRoutesDoc = `
routes:
  - name: "<script>alert(1)</script>"
    match: {hosts: [svc], path: {prefix: /admin/}, methods: [GET], headers: [{name: x-env, exact: test}]}
    destination: {service: svc}
    fault: {abort: {percent: 1, httpStatus: 502}}
  - name: split
    match: {hosts: [svc], path: {prefix: /split/}}
    split:
      - {service: svc, subset: {meta: {version: v1}}, weight: 3}
      - {service: svc, subset: {meta: {version: v2}}, weight: 1}
    timeout: 2s
    retry: {maxRetries: 1, statuses: [503]}
  - name: checkout
    match: {hosts: [svc]}
    canary:
      stable: {service: svc, subset: {meta: {version: v1}}}
      canary: {service: svc, subset: {meta: {version: v2}}}
      %s
    shadow: {destination: {service: shadow}, percent: 50}
default:
  name: rest
`

// writeRoutes replaces the route file at path in one rename, as a deploy tool would, so that
// the watcher never reads half a document.
func writeRoutes(t *testing.T, path, canary string) {
	t.Helper()
	tmp := path + ".tmp"
	require.NoError(t, os.WriteFile(tmp, []byte(fmt.Sprintf(statusRoutesDoc, canary)), 0o600))
	require.NoError(t, os.Rename(tmp, path))
}

// fetch GETs url with a real client over loopback and returns the body.
func fetch(ctx context.Context, t *testing.T, c *http.Client, url string) []byte {
	t.Helper()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	require.NoError(t, err)
	resp, err := c.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)
	body, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return body
}

func fetchPage(ctx context.Context, t *testing.T, c *http.Client, url string) statusPage {
	t.Helper()
	var p statusPage
	require.NoError(t, json.Unmarshal(fetch(ctx, t, c, url+"/?format=json"), &p))
	require.Len(t, p.Transports, 1)
	return p
}

// routesFixture is a Transport routed by a table that reload.File keeps in step with a file,
// over loopback backends of "svc" (v1, v2) and "shadow", with a meter provider read on demand.
type routesFixture struct {
	path    string
	router  *route.Router
	reloads chan reload.Result
	reader  *sdkmetric.ManualReader
	tr      *Transport
}

// newRoutesFixture starts the backends, writes the routes file with the canary at weight 0
// under analysis, and builds the Transport; everything is closed when the test ends.
func newRoutesFixture(t *testing.T) *routesFixture {
	t.Helper()
	v1, v2, shadow := faultbackend.New(t), faultbackend.New(t), faultbackend.New(t)
	static := discovery.MustNewStatic(map[string][]discovery.Endpoint{
		"svc": {
			{Addr: v1.Addr(), Meta: map[string]string{"version": "v1"}},
			{Addr: v2.Addr(), Meta: map[string]string{"version": "v2"}},
		},
		"shadow": {{Addr: shadow.Addr()}},
	})
	f := &routesFixture{path: filepath.Join(t.TempDir(), "routes.yaml"), reloads: make(chan reload.Result, 16)}
	writeRoutes(t, f.path, "weight: 0\n      analysis: {interval: 1m, step: 20}")
	var err error
	f.router, err = route.NewRouter(route.Config{})
	require.NoError(t, err)
	w, err := reload.File(f.router, f.path, reload.WithHook(func(r reload.Result) {
		select {
		case f.reloads <- r:
		default:
		}
	}))
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, w.Close()) })

	base := &http.Transport{}
	f.reader = sdkmetric.NewManualReader()
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(f.reader))
	t.Cleanup(func() { require.NoError(t, mp.Shutdown(context.Background())) })
	f.tr, err = NewTransport(base, WithResolver(static), WithRoutes(f.router), WithMeterProvider(mp))
	require.NoError(t, err)
	t.Cleanup(func() {
		require.NoError(t, f.tr.Close())
		base.CloseIdleConnections()
	})
	return f
}

// get sends a GET for each path to svc through the fixture's Transport, and requires a 200.
func (f *routesFixture) get(ctx context.Context, t *testing.T, paths ...string) {
	t.Helper()
	client := &http.Client{Transport: f.tr}
	for _, p := range paths {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://svc"+p, nil)
		resp, err := client.Do(req)
		require.NoError(t, err)
		_, _ = io.Copy(io.Discard, resp.Body)
		_ = resp.Body.Close()
		require.Equal(t, http.StatusOK, resp.StatusCode)
	}
}

// canaryGauge returns the canary weight gauge as an exporter sees it: collected through the
// SDK's reader. Every point must be checkout's canary on svc v2.
func (f *routesFixture) canaryGauge(ctx context.Context, t *testing.T) []float64 {
	t.Helper()
	var rm metricdata.ResourceMetrics
	require.NoError(t, f.reader.Collect(ctx, &rm))
	var out []float64
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			if m.Name != tracing.MetricCanaryWeight {
				continue
			}
			for _, dp := range m.Data.(metricdata.Gauge[float64]).DataPoints {
				r, _ := dp.Attributes.Value(tracing.KeyRoute)
				d, _ := dp.Attributes.Value(tracing.KeyDestination)
				assert.Equal(t, "checkout", r.AsString())
				assert.Equal(t, "svc|meta=version=v2", d.AsString())
				out = append(out, dp.Value)
			}
		}
	}
	return out
}

// canaryPercents returns the canary percents the page shows, route by route.
func canaryPercents(p statusPage) []float64 {
	var out []float64
	for _, r := range p.Transports[0].Routes.Table {
		if r.Canary != nil {
			out = append(out, r.Canary.Percent)
		}
	}
	return out
}

// assertRouteTableView checks the JSON view of the table written by newRoutesFixture, as
// first loaded.
func assertRouteTableView(t *testing.T, rt *routeTableView) {
	t.Helper()
	require.NotNil(t, rt)
	assert.Equal(t, uint64(2), rt.Version, "NewRouter's table, then the file's")
	require.Len(t, rt.Table, 4)
	names := []string{}
	for _, r := range rt.Table {
		names = append(names, r.Name)
	}
	assert.Equal(t, []string{"<script>alert(1)</script>", "split", "checkout", "rest"}, names)

	admin := rt.Table[0]
	assert.Equal(t, "host=svc path^=/admin/ method=GET header:X-Env=test", admin.Match)
	assert.Equal(t, []routeDestView{{Service: "svc", Percent: 100}}, admin.Destinations)
	assert.Equal(t, "abort 1% HTTP 502, gRPC 14", admin.Fault)
	assert.Nil(t, admin.Canary)
	assert.Nil(t, admin.Shadow)

	split := rt.Table[1]
	assert.Equal(t, "host=svc path^=/split/", split.Match)
	assert.Equal(t, []routeDestView{
		{Service: "svc", Subset: "meta=version=v1", Weight: 3, Percent: 75},
		{Service: "svc", Subset: "meta=version=v2", Weight: 1, Percent: 25},
	}, split.Destinations)
	assert.Equal(t, "2s", split.Timeout)
	assert.Equal(t, "max 1, on 503", split.Retry)
	assert.Empty(t, split.Hedge)
	assert.Nil(t, split.Canary)

	checkout := rt.Table[2]
	assert.Equal(t, &canaryView{Service: "svc", Subset: "meta=version=v2", Percent: 0, Analysis: "running"}, checkout.Canary)
	assert.Equal(t, []routeDestView{
		{Service: "svc", Subset: "meta=version=v1", Percent: 100},
		{Service: "svc", Subset: "meta=version=v2", Percent: 0},
	}, checkout.Destinations)
	assert.Equal(t, &shadowView{Service: "shadow", Percent: 50}, checkout.Shadow)

	rest := rt.Table[3]
	assert.True(t, rest.Default)
	assert.Equal(t, "*", rest.Match)
	assert.Empty(t, rest.Destinations, "the default keeps each request's host")
}

// waitRoutesVersion fetches the page until it shows the route table at version, requiring that
// every reload the watcher reports in the meantime succeeded.
func (f *routesFixture) waitRoutesVersion(ctx context.Context, t *testing.T, c *http.Client, url string, p statusPage, version uint64) statusPage {
	t.Helper()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for p.Transports[0].Routes.Version < version {
		select {
		case <-ctx.Done():
			t.Fatalf("the page never showed the reloaded table: version %d", p.Transports[0].Routes.Version)
		case r := <-f.reloads:
			require.NoError(t, r.Err)
		case <-tick.C:
		}
		p = fetchPage(ctx, t, c, url)
	}
	return p
}

// assertRoutesHTML checks the HTML page's routes table at version 3, the canary at weight 50,
// with the route name escaped.
func assertRoutesHTML(t *testing.T, body string) {
	t.Helper()
	assert.NotContains(t, body, "<script>", "values are escaped")
	assert.Contains(t, body, "&lt;script&gt;alert(1)&lt;/script&gt;")
	assert.Contains(t, body, "<h3>routes <small>table version 3</small></h3>")
	doc, err := html.Parse(strings.NewReader(body))
	require.NoError(t, err)
	rows := cells(doc) // the routes table comes first, then the endpoints
	require.GreaterOrEqual(t, len(rows), 4)
	assert.Equal(t, []string{"<script>alert(1)</script>", "host=svc path^=/admin/ method=GET header:X-Env=test",
		"svc 100%", "", "", "abort 1% HTTP 502, gRPC 14", ""}, rows[0])
	assert.Equal(t, []string{"split", "host=svc path^=/split/",
		"svc [meta=version=v1] 75% (weight 3)svc [meta=version=v2] 25% (weight 1)", "", "", "", "timeout 2sretry max 1, on 503"}, rows[1])
	assert.Equal(t, []string{"checkout", "host=svc",
		"svc [meta=version=v1] 50%svc [meta=version=v2] 50%", "svc [meta=version=v2] 50%", "shadow 50%", "", ""}, rows[2])
	assert.Equal(t, []string{"rest (default)", "*", "by host", "", "", "", ""}, rows[3])
}

// A real Transport routed by a table that a real file watcher loads: the status page, fetched
// over loopback, lists the routes in order with their matches, split weights, canary weight,
// shadow, fault and overrides; it follows the canary as its analysis steps it up and as a
// reload of the file changes it, and agrees with the canary gauge's state throughout.
func TestStatusHandlerRoutes(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	f := newRoutesFixture(t)
	f.get(ctx, t, "/split/a", "/split/b", "/checkout", "/checkout")

	srv := httptest.NewServer(StatusHandler(f.tr))
	defer srv.Close()
	raw := fetch(ctx, t, srv.Client(), srv.URL+"/?format=json")
	assert.Contains(t, string(raw), `"routes": {`)
	p := fetchPage(ctx, t, srv.Client(), srv.URL)
	assertRouteTableView(t, p.Transports[0].Routes)

	// The canary gauge reports what the page shows.
	assert.Equal(t, []float64{0}, canaryPercents(p))
	assert.Equal(t, canaryPercents(p), f.canaryGauge(ctx, t))

	// The analysis steps the canary up: a canary at 0 is raised after one interval.
	a := f.router.Table().Route("checkout").Analyzer()
	now := time.Now()
	a.Evaluate(now)
	ev, stepped := a.Evaluate(now.Add(2 * time.Minute))
	require.True(t, stepped, "the analysis did not step")
	require.Equal(t, 20.0, ev.To)
	p = fetchPage(ctx, t, srv.Client(), srv.URL)
	checkout := p.Transports[0].Routes.Table[2]
	assert.Equal(t, &canaryView{Service: "svc", Subset: "meta=version=v2", Percent: 20, Analysis: "running"}, checkout.Canary)
	assert.Equal(t, []float64{80, 20}, []float64{checkout.Destinations[0].Percent, checkout.Destinations[1].Percent})
	assert.Equal(t, []float64{20}, canaryPercents(p))
	assert.Equal(t, canaryPercents(p), f.canaryGauge(ctx, t))

	// A new file: the watcher reloads the router and the page follows.
	writeRoutes(t, f.path, "weight: 50")
	p = f.waitRoutesVersion(ctx, t, srv.Client(), srv.URL, p, 3)
	assert.Equal(t, uint64(3), p.Transports[0].Routes.Version)
	checkout = p.Transports[0].Routes.Table[2]
	assert.Equal(t, &canaryView{Service: "svc", Subset: "meta=version=v2", Percent: 50}, checkout.Canary, "a fixed weight has no analysis")
	assert.Equal(t, []float64{50}, canaryPercents(p))
	assert.Equal(t, canaryPercents(p), f.canaryGauge(ctx, t))

	// The HTML page has the routes table, with the route name escaped.
	assertRoutesHTML(t, string(fetch(ctx, t, srv.Client(), srv.URL+"/")))
}

// A router whose table is empty shows an empty routes section; a transport without a router,
// none (see TestStatusHandlerRealTransport).
func TestStatusHandlerEmptyRouteTable(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	router, err := route.NewRouter(route.Config{})
	require.NoError(t, err)
	tr, err := NewTransport(nil, WithRoutes(router))
	require.NoError(t, err)
	defer func() { require.NoError(t, tr.Close()) }()
	assert.Empty(t, tr.state(time.Now()).Canaries)

	srv := httptest.NewServer(StatusHandler(tr))
	defer srv.Close()
	p := fetchPage(ctx, t, srv.Client(), srv.URL)
	require.NotNil(t, p.Transports[0].Routes)
	assert.Equal(t, uint64(1), p.Transports[0].Routes.Version)
	assert.Empty(t, p.Transports[0].Routes.Table)
	body := string(fetch(ctx, t, srv.Client(), srv.URL+"/"))
	assert.Contains(t, body, "the route table is empty")
	assert.NotContains(t, body, `<table class="routes">`)
}

// statusGRPCServer answers UnaryCall, or UNAVAILABLE while failing.
type statusGRPCServer struct {
	testgrpc.UnimplementedTestServiceServer
	failing atomic.Bool
}

func (s *statusGRPCServer) UnaryCall(context.Context, *testgrpc.SimpleRequest) (*testgrpc.SimpleResponse, error) {
	if s.failing.Load() {
		return nil, grpcstatus.Error(codes.Unavailable, "failing")
	}
	return &testgrpc.SimpleResponse{}, nil
}

func startStatusGRPC(t *testing.T) (*statusGRPCServer, string) {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	s := &statusGRPCServer{}
	srv := grpc.NewServer()
	testgrpc.RegisterTestServiceServer(srv, s)
	go func() { _ = srv.Serve(lis) }()
	t.Cleanup(srv.Stop)
	return s, lis.Addr().String()
}

// A GRPCClient is a status source: its channels by the service they dialled, the endpoints
// their balancers hold with breaker state, its counters and its route table.
func TestStatusHandlerGRPCClient(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	_, goodAddr := startStatusGRPC(t)
	bad, badAddr := startStatusGRPC(t)
	static := discovery.MustNewStatic(map[string][]discovery.Endpoint{
		"echo": {{Addr: goodAddr, Zone: "z1"}, {Addr: badAddr, Zone: "z2"}},
	})
	router, err := route.NewRouter(route.Config{Routes: []route.RouteConfig{{
		Name: "echo-timeout", Match: route.Match{GRPC: &route.GRPCMatch{Service: "grpc.testing.TestService"}},
		Timeout: route.Duration(5 * time.Second),
	}}})
	require.NoError(t, err)
	gc, err := NewGRPCClient(static, WithGRPCStatsHandler(nil), WithRoutes(router),
		WithBalancer(balancer.Config{Policy: balancer.PolicyRoundRobin, Outlier: balancer.OutlierConfig{Disabled: true}}),
		WithBreaker(breaker.Config{MinimumVolume: 3, OpenDelay: time.Minute}))
	require.NoError(t, err)
	defer func() { require.NoError(t, gc.Close()); require.NoError(t, gc.Close(), "Close is idempotent") }()
	srv := httptest.NewServer(StatusHandler(gc))
	defer srv.Close()

	p := fetchPage(ctx, t, srv.Client(), srv.URL)
	require.Len(t, p.Transports, 1)
	assert.Equal(t, "grpc", p.Transports[0].Kind)
	assert.Empty(t, p.Transports[0].Destinations, "no channel yet")

	conn, err := gc.NewClient("echo", grpc.WithTransportCredentials(insecure.NewCredentials()))
	require.NoError(t, err)
	client := testgrpc.NewTestServiceClient(conn)
	for range 4 { // round robin: both endpoints answer, so both become READY
		_, err := client.UnaryCall(ctx, &testgrpc.SimpleRequest{}, grpc.WaitForReady(true))
		require.NoError(t, err)
	}
	for len(gc.Destinations()) == 0 || len(gc.Destinations()[0].Endpoints) < 2 {
		_, err := client.UnaryCall(ctx, &testgrpc.SimpleRequest{}, grpc.WaitForReady(true))
		require.NoError(t, err, "both endpoints never became READY")
	}
	bad.failing.Store(true)
	for i := 0; gc.Stats().BreakerOpens == 0; i++ {
		require.Less(t, i, 100, "the failing endpoint's breaker never opened")
		_, _ = client.UnaryCall(ctx, &testgrpc.SimpleRequest{})
	}

	p = fetchPage(ctx, t, srv.Client(), srv.URL)
	ts := p.Transports[0]
	assert.Positive(t, ts.Stats.Requests)
	assert.Positive(t, ts.Stats.Retries, "the failing endpoint's answers were retried")
	assert.EqualValues(t, 1, ts.Stats.BreakerOpens)
	require.NotNil(t, ts.Routes, "a routed client shows its table")
	require.Len(t, ts.Routes.Table, 1)
	assert.Equal(t, "echo-timeout", ts.Routes.Table[0].Name)
	require.Len(t, ts.Destinations, 1)
	d := ts.Destinations[0]
	assert.Equal(t, "echo", d.Service)
	require.Len(t, d.Endpoints, 2)
	byAddr := map[string]endpointView{}
	for _, e := range d.Endpoints {
		byAddr[e.Addr] = e
	}
	assert.Equal(t, "open", byAddr[badAddr].Breaker)
	assert.Equal(t, "z2", byAddr[badAddr].Zone)
	assert.Equal(t, "closed", byAddr[goodAddr].Breaker)
	assert.Positive(t, byAddr[goodAddr].Requests)

	body := string(fetch(ctx, t, srv.Client(), srv.URL+"/"))
	assert.Contains(t, body, "(grpc)")
	assert.Contains(t, body, "<h3>echo")
	assert.Contains(t, body, badAddr)

	require.NoError(t, conn.Close())
	for len(gc.Destinations()) > 0 {
		require.NoError(t, ctx.Err(), "a closed channel leaves the page")
		time.Sleep(10 * time.Millisecond)
	}
	assert.EqualValues(t, 1, gc.Stats().BreakerOpens, "its counts stay")
}
