package middleware_test

import (
	"net/http"
	"testing"

	"github.com/stretchr/testify/assert"

	"github.com/proxyless/proxyless/middleware"
)

// TestConsumersPlanRoutesDotSegments checks that a consumer whose plan lists routes cannot
// reach another route through dot segments: /catalog/../admin matches the catalog route as
// sent, but the service behind the gateway (nginx, Express, Tomcat, a path.Clean) reads it
// as /admin. Such a path is refused, however the dots are written.
func TestConsumersPlanRoutesDotSegments(t *testing.T) {
	reg := newRegistry(t, gatewayDoc, gatewayNames...)
	srv := startHTTP(t, consumerApp, middleware.WithConsumers(reg, middleware.ConsumerPolicy{Router: gatewayRouter(t)}))
	c := srv.Client()
	for _, tc := range []struct {
		consumer, path string
		want           int
	}{
		{"carol", "/catalog/../admin/users", http.StatusForbidden},
		{"carol", "/catalog/%2e%2e/admin/users", http.StatusForbidden},
		{"carol", "/catalog/%2E./admin/users", http.StatusForbidden},
		{"carol", "/catalog/..;/admin/users", http.StatusForbidden},
		{"carol", "/catalog/..%5cadmin/users", http.StatusForbidden},
		{"carol", "/catalog/./items", http.StatusForbidden},
		{"carol", "/catalog/items", http.StatusOK},
		{"carol", "/catalog/v1..2/items.json", http.StatusOK}, // dots inside a segment are no dot segment
		{"alice", "/catalog/../admin/users", http.StatusOK},   // gold lists no routes: every path
	} {
		code, _, _ := do(t, c, srv.URL+tc.path, "X-API-Key", apiKey(tc.consumer))
		assert.Equal(t, tc.want, code, "%s %s", tc.consumer, tc.path)
	}
}
