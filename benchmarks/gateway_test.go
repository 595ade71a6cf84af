package benchmarks

import (
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"syscall"
	"testing"
	"time"

	"github.com/proxyless/proxyless/discovery"
	"github.com/proxyless/proxyless/middleware"
	"github.com/proxyless/proxyless/route"
)

// BenchmarkGateway is one GET with an Origin header from a client to an edge proxy to a
// service, all real HTTP servers on loopback in this process, over kept-alive connections: the
// gateway's added latency over the bare reverse proxy.
//
//	impl=bare           httputil.ReverseProxy (NewSingleHostReverseProxy) over http.Transport
//	impl=gateway        middleware.NewGateway over the same http.Transport, edge stages on:
//	                    telemetry (global no-op providers), CORS (the origin allowed: its
//	                    headers on the answer), a body limit, and a route's response header
//	                    transform (WithEdgeRoutes)
//	impl=gateway+mesh   the same over a mesh Transport (static discovery, P2C, breakers,
//	                    retries, the route table) over the same http.Transport
func BenchmarkGateway(b *testing.B) {
	svc := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		_, _ = io.WriteString(w, "ok")
	}))
	defer svc.Close()
	addr := svc.Listener.Addr().String()
	run := func(name string, proxy func(b *testing.B, base *http.Transport) http.Handler) {
		b.Run("impl="+name, func(b *testing.B) {
			base := &http.Transport{MaxIdleConnsPerHost: 16}
			defer base.CloseIdleConnections()
			edge := httptest.NewServer(proxy(b, base))
			defer edge.Close()
			client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 16}}
			defer client.CloseIdleConnections()
			req, err := http.NewRequest(http.MethodGet, edge.URL+"/api/items", nil)
			if err != nil {
				b.Fatal(err)
			}
			req.Header.Set("Origin", "https://app.example.com")
			send(b, client, req) // connections, the destination's first discovery
			b.ReportAllocs()
			b.ResetTimer()
			cpu0 := cpuTime()
			for b.Loop() {
				send(b, client, req)
			}
			// The CPU the process (client, proxy and service) spent per request: what the
			// proxy adds, less sensitive than wall time to other processes on the machine.
			b.ReportMetric(float64((cpuTime()-cpu0).Nanoseconds())/float64(b.N), "cpu-ns/op")
		})
	}
	run("bare", func(_ *testing.B, base *http.Transport) http.Handler {
		rp := httputil.NewSingleHostReverseProxy(&url.URL{Scheme: "http", Host: addr})
		rp.Transport = base
		return rp
	})
	run("gateway", func(b *testing.B, base *http.Transport) http.Handler {
		return gateway(b, base, addr, nil)
	})
	run("gateway+mesh", func(b *testing.B, base *http.Transport) http.Handler {
		routes := edgeRoutes(b)
		res := discovery.MustNewStatic(map[string][]discovery.Endpoint{"web": {{Addr: addr}}})
		tr, err := middleware.NewTransport(base, middleware.WithResolver(res), middleware.WithRoutes(routes))
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { _ = tr.Close() })
		return gateway(b, tr, "web", routes)
	})
}

func edgeRoutes(b *testing.B) *route.Router {
	routes, err := route.NewRouter(route.Config{Routes: []route.RouteConfig{{
		Name:  "api",
		Match: route.Match{Path: &route.StringMatch{Prefix: "/api/"}},
		Edge:  &route.Edge{ResponseHeaders: route.HeaderRewrite{Set: map[string]string{"Cache-Control": "no-store"}}},
	}}})
	if err != nil {
		b.Fatal(err)
	}
	return routes
}

// gateway is NewGateway with the edge stages on, to service over rt.
func gateway(b *testing.B, rt http.RoundTripper, service string, routes *route.Router) http.Handler {
	if routes == nil {
		routes = edgeRoutes(b)
	}
	h, err := middleware.NewGateway(rt, middleware.GatewayConfig{Service: service},
		middleware.WithCORS(middleware.CORSConfig{AllowedOrigins: []string{"https://app.example.com"}, ExposedHeaders: []string{"X-Request-Id"}}),
		middleware.WithMaxRequestBody(1<<20),
		middleware.WithEdgeRoutes(routes),
	)
	if err != nil {
		b.Fatal(err)
	}
	return h
}

// BenchmarkEdgeStages is the in-process cost of the gateway's parts, without a network: a GET
// with an allowed Origin served by a handler that answers at once, through each. It measures
// what BenchmarkGateway's loopback noise hides: the nanoseconds the edge adds per request.
//
//	impl=bare        the handler alone
//	impl=stages      NewHandler with the edge stages of BenchmarkGateway in front of it
//	                 (telemetry on the global no-op providers, CORS, body limit, edge route)
func BenchmarkEdgeStages(b *testing.B) {
	ok := http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusOK) })
	stages, err := middleware.NewHandler(ok,
		middleware.WithCORS(middleware.CORSConfig{AllowedOrigins: []string{"https://app.example.com"}, ExposedHeaders: []string{"X-Request-Id"}}),
		middleware.WithMaxRequestBody(1<<20),
		middleware.WithEdgeRoutes(edgeRoutes(b)),
	)
	if err != nil {
		b.Fatal(err)
	}
	for _, c := range []struct {
		name string
		h    http.Handler
	}{{"bare", ok}, {"stages", stages}} {
		b.Run("impl="+c.name, func(b *testing.B) {
			req := httptest.NewRequest(http.MethodGet, "http://edge/api/items", nil)
			req.Header.Set("Origin", "https://app.example.com")
			w := &discardWriter{h: http.Header{}}
			b.ReportAllocs()
			for b.Loop() {
				clear(w.h)
				c.h.ServeHTTP(w, req)
			}
		})
	}
}

// discardWriter is a ResponseWriter that keeps nothing but its header map.
type discardWriter struct{ h http.Header }

func (w *discardWriter) Header() http.Header         { return w.h }
func (w *discardWriter) Write(p []byte) (int, error) { return len(p), nil }
func (w *discardWriter) WriteHeader(int)             {}

// cpuTime returns the user and system CPU time the process has used.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
