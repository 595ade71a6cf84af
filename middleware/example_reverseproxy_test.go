package middleware_test

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"

	"github.com/proxyless/proxyless/discovery"
	"github.com/proxyless/proxyless/middleware"
)

func ExampleNewReverseProxy() {
	// An internal service, "web", found through discovery; it says what it received.
	web := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "host %s, X-Forwarded-For %s, Connection-named header %q",
			r.Host, r.Header.Get("X-Forwarded-For"), r.Header.Get("X-Hop"))
	}))
	defer web.Close()
	resolver := discovery.MustNewStatic(map[string][]discovery.Endpoint{"web": {{Addr: web.Listener.Addr().String()}}})
	tr, err := middleware.NewTransport(nil, middleware.WithResolver(resolver))
	if err != nil {
		panic(err)
	}
	defer tr.Close()

	// The proxy alone, without edge stages: put it behind NewHandler, or use NewGateway.
	proxy, err := middleware.NewReverseProxy(tr, middleware.GatewayConfig{Service: "web"})
	if err != nil {
		panic(err)
	}
	edge := httptest.NewServer(proxy)
	defer edge.Close()

	// A caller that forges X-Forwarded-For and sends a hop-by-hop header.
	req, _ := http.NewRequest(http.MethodGet, edge.URL+"/", nil)
	req.Host = "api.example.com"
	req.Header.Set("X-Forwarded-For", "6.6.6.6")
	req.Header.Set("Connection", "X-Hop")
	req.Header.Set("X-Hop", "secret")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		panic(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	fmt.Println(resp.StatusCode, string(body))
	// Output:
	// 200 host api.example.com, X-Forwarded-For 127.0.0.1, Connection-named header ""
}
