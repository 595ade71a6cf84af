package middleware_test

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"

	"github.com/proxyless/proxyless/discovery"
	"github.com/proxyless/proxyless/middleware"
	"github.com/proxyless/proxyless/route"
)

func ExampleNewGateway() {
	// An internal service, "web", found through discovery.
	web := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "web saw X-Forwarded-For %s", r.Header.Get("X-Forwarded-For"))
	}))
	defer web.Close()
	resolver := discovery.MustNewStatic(map[string][]discovery.Endpoint{"web": {{Addr: web.Listener.Addr().String()}}})
	routes, err := route.NewRouter(route.Config{Routes: []route.RouteConfig{{
		Name:  "api",
		Match: route.Match{Path: &route.StringMatch{Prefix: "/api/"}},
		Edge:  &route.Edge{ResponseHeaders: route.HeaderRewrite{Set: map[string]string{"Cache-Control": "no-store"}}},
	}}})
	if err != nil {
		panic(err)
	}

	// The mesh client: discovery, balancing, retries, routes.
	tr, err := middleware.NewTransport(nil, middleware.WithResolver(resolver), middleware.WithRoutes(routes))
	if err != nil {
		panic(err)
	}
	defer tr.Close()

	// The gateway: edge stages in front of a reverse proxy over the mesh client.
	gw, err := middleware.NewGateway(tr, middleware.GatewayConfig{Service: "web"},
		middleware.WithCORS(middleware.CORSConfig{AllowedOrigins: []string{"https://app.example.com"}, AllowedMethods: []string{"PUT"}}),
		middleware.WithMaxRequestBody(1<<20),
		middleware.WithEdgeRoutes(routes),
	)
	if err != nil {
		panic(err)
	}
	edge := httptest.NewServer(gw)
	defer edge.Close()

	// A browser's preflight, answered by the gateway.
	req, _ := http.NewRequest(http.MethodOptions, edge.URL+"/api/items", nil)
	req.Header.Set("Origin", "https://app.example.com")
	req.Header.Set("Access-Control-Request-Method", "PUT")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		panic(err)
	}
	resp.Body.Close()
	fmt.Println("preflight:", resp.StatusCode, resp.Header.Get("Access-Control-Allow-Methods"))

	// A request with a forged X-Forwarded-For: replaced, since no caller is trusted.
	req, _ = http.NewRequest(http.MethodGet, edge.URL+"/api/items", nil)
	req.Header.Set("X-Forwarded-For", "6.6.6.6")
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		panic(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	fmt.Println("get:", resp.StatusCode, resp.Header.Get("Cache-Control"), string(body))

	// A body over the limit.
	resp, err = http.Post(edge.URL+"/api/upload", "text/plain", strings.NewReader(strings.Repeat("x", 2<<20)))
	if err != nil {
		panic(err)
	}
	resp.Body.Close()
	fmt.Println("upload:", resp.StatusCode)
	// Output:
	// preflight: 204 GET, HEAD, POST, PUT
	// get: 200 no-store web saw X-Forwarded-For 127.0.0.1
	// upload: 413
}
