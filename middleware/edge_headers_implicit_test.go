package middleware_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/proxyless/proxyless/middleware"
	"github.com/proxyless/proxyless/route"
)

// TestEdgeResponseHeadersImplicitStatus checks that a route's response header transforms
// apply to an answer whose handler returns without writing (net/http then sends 200 by
// itself): the header the route removes is not sent, the one it sets is.
func TestEdgeResponseHeadersImplicitStatus(t *testing.T) {
	router, err := route.NewRouter(route.Config{Routes: []route.RouteConfig{{
		Edge: &route.Edge{ResponseHeaders: route.HeaderRewrite{
			Set:    map[string]string{"X-Frame-Options": "DENY"},
			Remove: []string{"X-Debug-Token"},
		}},
	}}})
	if err != nil {
		t.Fatal(err)
	}
	backend := http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("X-Debug-Token", "internal-secret") // and no WriteHeader, no Write
	})
	h, err := middleware.NewHandler(backend, middleware.WithEdgeRoutes(router))
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h)
	defer srv.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, srv.URL+"/x", nil)
	resp, err := srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("status %d", resp.StatusCode)
	}
	if v := resp.Header.Get("X-Debug-Token"); v != "" {
		t.Errorf("X-Debug-Token = %q reached the client; the route removes it", v)
	}
	if v := resp.Header.Get("X-Frame-Options"); v != "DENY" {
		t.Errorf("X-Frame-Options = %q, want the route's DENY", v)
	}
}
