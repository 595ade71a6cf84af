package middleware_test

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"

	"github.com/proxyless/proxyless/discovery"
	"github.com/proxyless/proxyless/middleware"
)

// A reverse proxy over the mesh Transport: every request goes to the service "web" (found
// through discovery, whatever Host the caller sent: the request's Host is "web", the
// caller's is in X-Forwarded-Host), with X-Forwarded-* set by the proxy; a
// service the transport cannot reach is answered 503.
func ExampleNewReverseProxy() {
	web := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "web: host %s, X-Forwarded-Host %s, X-Forwarded-For %s",
			r.Host, r.Header.Get("X-Forwarded-Host"), r.Header.Get("X-Forwarded-For"))
	}))
	defer web.Close()
	resolver := discovery.MustNewStatic(map[string][]discovery.Endpoint{
		"web":   {{Addr: web.Listener.Addr().String()}},
		"empty": {},
	})
	tr, err := middleware.NewTransport(nil, middleware.WithResolver(resolver))
	if err != nil {
		panic(err)
	}
	defer tr.Close()

	for _, service := range []string{"web", "empty"} {
		proxy, err := middleware.NewReverseProxy(tr, middleware.GatewayConfig{Service: service})
		if err != nil {
			panic(err)
		}
		front := httptest.NewServer(proxy)
		req, _ := http.NewRequest(http.MethodGet, front.URL+"/", nil)
		req.Host = "shop.example.com"
		req.Header.Set("X-Forwarded-For", "6.6.6.6") // forged: replaced, no caller is trusted
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			panic(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		front.Close()
		fmt.Println(service+":", resp.StatusCode, string(body))
	}
	// Output:
	// web: 200 web: host web, X-Forwarded-Host shop.example.com, X-Forwarded-For 127.0.0.1
	// empty: 503 Service Unavailable
}
