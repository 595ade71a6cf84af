package middleware_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"sync/atomic"
	"testing"
	"time"

	"github.com/proxyless/proxyless/auth"
	"github.com/proxyless/proxyless/discovery"
	"github.com/proxyless/proxyless/middleware"
	"github.com/proxyless/proxyless/route"
)

// hostRoutedMesh serves two backends, "web" and "admin", on loopback and returns a mesh
// Transport whose route table sends Host web to web and Host admin to admin (as Consul
// discovery-chain routes do), the router, and how many requests admin got.
func hostRoutedMesh(t *testing.T) (*middleware.Transport, *route.Router, *atomic.Int64) {
	t.Helper()
	serve := func(name string, n *atomic.Int64) *httptest.Server {
		s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if n != nil {
				n.Add(1)
			}
			_ = json.NewEncoder(w).Encode(map[string]string{
				"service": name, "host": r.Host, "xfh": r.Header.Get("X-Forwarded-Host"),
			})
		}))
		t.Cleanup(s.Close)
		return s
	}
	var adminHits atomic.Int64
	web, admin := serve("web", nil), serve("admin", &adminHits)
	rc := func(name string) route.RouteConfig {
		return route.RouteConfig{
			Name: name, Match: route.Match{Hosts: []string{name}},
			Destination: &route.Destination{Service: name},
			Edge:        &route.Edge{ResponseHeaders: route.HeaderRewrite{Set: map[string]string{"X-Edge-Route": name}}},
		}
	}
	routes, err := route.NewRouter(route.Config{Routes: []route.RouteConfig{rc("web"), rc("admin")}})
	if err != nil {
		t.Fatal(err)
	}
	res := discovery.MustNewStatic(map[string][]discovery.Endpoint{
		"web": {{Addr: web.Listener.Addr().String()}}, "admin": {{Addr: admin.Listener.Addr().String()}},
	})
	base := &http.Transport{}
	t.Cleanup(base.CloseIdleConnections)
	tr, err := middleware.NewTransport(base, middleware.WithResolver(res), middleware.WithRoutes(routes))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = tr.Close() })
	return tr, routes, &adminHits
}

// hostGet sends GET / to url with the given Host and headers; it returns the status, the
// X-Edge-Route answer header and the backend's JSON answer (nil when not 200).
func hostGet(t *testing.T, url, host string, hdr http.Header) (int, string, map[string]string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url+"/", nil)
	if hdr != nil {
		req.Header = hdr
	}
	req.Host = host
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var got map[string]string
	if resp.StatusCode == http.StatusOK {
		if err := json.NewDecoder(io.LimitReader(resp.Body, 1<<16)).Decode(&got); err != nil {
			t.Fatal(err)
		}
	}
	return resp.StatusCode, resp.Header.Get("X-Edge-Route"), got
}

// TestGatewayHostDoesNotChooseRoute checks that a gateway for "web" over a transport whose
// routes match on the Host sends a request with Host: admin to web, never to admin, with the
// edge settings of the web route; the caller's host is in X-Forwarded-Host (an untrusted
// caller's own X-Forwarded-Host replaced, a trusted proxy's kept). RouteByHost restores
// routing by the caller's Host.
func TestGatewayHostDoesNotChooseRoute(t *testing.T) {
	tr, routes, adminHits := hostRoutedMesh(t)
	start := func(cfg middleware.GatewayConfig) string {
		cfg.Service = "web"
		h, err := middleware.NewGateway(tr, cfg, middleware.WithEdgeRoutes(routes))
		if err != nil {
			t.Fatal(err)
		}
		s := httptest.NewServer(h)
		t.Cleanup(s.Close)
		return s.URL
	}
	spoof := func() http.Header { return http.Header{"X-Forwarded-Host": {"spoofed.example"}} }

	untrusted := start(middleware.GatewayConfig{})
	code, edge, got := hostGet(t, untrusted, "admin", spoof())
	if code != http.StatusOK || got["service"] != "web" || got["host"] != "web" || got["xfh"] != "admin" || edge != "web" {
		t.Errorf("untrusted Host admin: status %d, edge route %q, backend saw %v; want web, Host web, X-Forwarded-Host admin", code, edge, got)
	}

	trusted := start(middleware.GatewayConfig{Trust: route.TrustPrefixes(netip.MustParsePrefix("127.0.0.0/8"))})
	code, edge, got = hostGet(t, trusted, "admin", spoof())
	if code != http.StatusOK || got["service"] != "web" || got["xfh"] != "spoofed.example" || edge != "web" {
		t.Errorf("trusted Host admin: status %d, edge route %q, backend saw %v; want web, X-Forwarded-Host spoofed.example", code, edge, got)
	}
	if n := adminHits.Load(); n != 0 {
		t.Fatalf("admin got %d requests chosen by the caller's Host", n)
	}

	byHost := start(middleware.GatewayConfig{RouteByHost: true})
	code, edge, got = hostGet(t, byHost, "admin", nil)
	if code != http.StatusOK || got["service"] != "admin" || got["host"] != "admin" || edge != "admin" {
		t.Errorf("RouteByHost, Host admin: status %d, edge route %q, backend saw %v; want admin", code, edge, got)
	}
}

// TestGatewayConsumerRouteByServiceHost checks that a plan's route check matches the route
// the gateway's request takes: a plan allowing only the web route reaches web whatever Host
// it sends and never admin; a plan allowing only the admin route cannot reach it by sending
// Host: admin to a gateway for web.
func TestGatewayConsumerRouteByServiceHost(t *testing.T) {
	tr, routes, adminHits := hostRoutedMesh(t)
	reg, err := auth.NewConsumers(auth.ConsumersConfig{
		Plans: map[string]auth.Plan{"webonly": {PerSecond: 1000, Routes: []string{"web"}}, "adminonly": {PerSecond: 1000, Routes: []string{"admin"}}},
		Consumers: []auth.ConsumerConfig{
			{Name: "w", Plan: "webonly", Keys: []string{auth.HashAPIKey("key-web-0123456789")}},
			{Name: "a", Plan: "adminonly", Keys: []string{auth.HashAPIKey("key-admin-0123456789")}},
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	h, err := middleware.NewGateway(tr, middleware.GatewayConfig{Service: "web"},
		middleware.WithConsumers(reg, middleware.ConsumerPolicy{Router: routes}))
	if err != nil {
		t.Fatal(err)
	}
	gw := httptest.NewServer(h)
	t.Cleanup(gw.Close)
	for _, host := range []string{"admin", "web", "ADMIN"} {
		code, _, got := hostGet(t, gw.URL, host, http.Header{"X-Api-Key": {"key-web-0123456789"}})
		if code != http.StatusOK || got["service"] != "web" {
			t.Errorf("web-only plan, Host %s: status %d, backend %v; want 200 from web", host, code, got)
		}
		if code, _, _ := hostGet(t, gw.URL, host, http.Header{"X-Api-Key": {"key-admin-0123456789"}}); code != http.StatusForbidden {
			t.Errorf("admin-only plan, Host %s: status %d; want 403 (the request would take the web route)", host, code)
		}
	}
	if n := adminHits.Load(); n != 0 {
		t.Fatalf("admin got %d requests", n)
	}
}

// TestGatewayConsumerRouteOnSentRequest checks that the plan's route check holds on the
// request the gateway sends, not only on the one that arrived: a route matching
// X-Forwarded-Proto: https, which an untrusted caller can send but the gateway replaces,
// does not let a plan limited to it reach the route the sent request takes (403, and that
// route's service gets nothing).
func TestGatewayConsumerRouteOnSentRequest(t *testing.T) {
	var otherHits atomic.Int64
	web := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, "{}") }))
	t.Cleanup(web.Close)
	other := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		otherHits.Add(1)
		_, _ = io.WriteString(w, "{}")
	}))
	t.Cleanup(other.Close)
	routes, err := route.NewRouter(route.Config{Routes: []route.RouteConfig{
		{Name: "tls", Match: route.Match{Headers: []route.HeaderMatch{{Name: "X-Forwarded-Proto", Exact: "https"}}}, Destination: &route.Destination{Service: "web"}},
		{Name: "other", Destination: &route.Destination{Service: "other"}},
	}})
	if err != nil {
		t.Fatal(err)
	}
	res := discovery.MustNewStatic(map[string][]discovery.Endpoint{
		"web": {{Addr: web.Listener.Addr().String()}}, "other": {{Addr: other.Listener.Addr().String()}},
	})
	base := &http.Transport{}
	t.Cleanup(base.CloseIdleConnections)
	tr, err := middleware.NewTransport(base, middleware.WithResolver(res), middleware.WithRoutes(routes))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = tr.Close() })
	reg, err := auth.NewConsumers(auth.ConsumersConfig{
		Plans:     map[string]auth.Plan{"tlsonly": {PerSecond: 1000, Routes: []string{"tls"}}},
		Consumers: []auth.ConsumerConfig{{Name: "c", Plan: "tlsonly", Keys: []string{auth.HashAPIKey("key-tls-0123456789")}}},
	})
	if err != nil {
		t.Fatal(err)
	}
	h, err := middleware.NewGateway(tr, middleware.GatewayConfig{Service: "web"},
		middleware.WithConsumers(reg, middleware.ConsumerPolicy{Router: routes}))
	if err != nil {
		t.Fatal(err)
	}
	gw := httptest.NewServer(h)
	t.Cleanup(gw.Close)
	hdr := http.Header{"X-Api-Key": {"key-tls-0123456789"}, "X-Forwarded-Proto": {"https"}}
	if code, _, _ := hostGet(t, gw.URL, "web", hdr); code != http.StatusForbidden {
		t.Errorf("forged X-Forwarded-Proto: status %d, want 403", code)
	}
	if n := otherHits.Load(); n != 0 {
		t.Fatalf("the route the plan does not list reached its service %d times", n)
	}
}
