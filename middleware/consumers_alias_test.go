package middleware_test

import (
	"net/http"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"

	"github.com/proxyless/proxyless/middleware"
)

// TestConsumersHeaderUnderscoreAlias checks that a caller cannot pass its own consumer name
// under the ConsumerHeader spelled with '_' (X_Consumer for X-Consumer): CGI, WSGI, Rack and
// PHP services read both as HTTP_X_CONSUMER, so the caller could pose as another consumer.
func TestConsumersHeaderUnderscoreAlias(t *testing.T) {
	reg := newRegistry(t, "plans: {gold: {}}\nconsumers:\n  - {name: alice, plan: gold, keys: [\"{alice}\"]}\n", "alice")
	app := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var seen []string
		for k, v := range r.Header {
			if strings.EqualFold(strings.ReplaceAll(k, "_", "-"), "X-Consumer") {
				seen = append(seen, k+"="+strings.Join(v, ","))
			}
		}
		_, _ = w.Write([]byte(strings.Join(seen, ";")))
	})
	srv := startHTTP(t, app, middleware.WithConsumers(reg, middleware.ConsumerPolicy{ConsumerHeader: "X-Consumer"}))
	code, body, _ := do(t, srv.Client(), srv.URL+"/catalog", "X-API-Key", apiKey("alice"),
		"X_Consumer", "carol", "x_consumer", "carol")
	assert.Equal(t, http.StatusOK, code)
	assert.Equal(t, "X-Consumer=alice", body, "only the gateway's consumer header reaches the service")
}
