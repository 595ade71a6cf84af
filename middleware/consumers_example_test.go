package middleware_test

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"

	"github.com/proxyless/proxyless/auth"
	"github.com/proxyless/proxyless/middleware"
)

func ExampleWithConsumers() {
	// The registry: usually a file or a Consul key kept loaded by route/reload
	// (reload.File(reg, "consumers.yaml")); keys are stored hashed.
	reg, err := auth.NewConsumers(auth.ConsumersConfig{
		Plans: map[string]auth.Plan{"gold": {PerSecond: 1, Burst: 2, PerDay: 10_000}},
		Consumers: []auth.ConsumerConfig{
			{Name: "acme", Plan: "gold", Keys: []string{auth.HashAPIKey("acme-secret-key")}},
		},
	})
	if err != nil {
		panic(err)
	}
	app := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, _ := auth.ConsumerFromContext(r.Context())
		fmt.Fprintf(w, "hello %s (%s plan)", c.Name, c.Plan)
	})
	// DailyLimiter (ratelimit/redis) would share daily quotas among instances; without it
	// each instance keeps its own.
	h, err := middleware.NewHandler(app, middleware.WithConsumers(reg, middleware.ConsumerPolicy{}))
	if err != nil {
		panic(err)
	}
	srv := httptest.NewServer(h)
	defer srv.Close()

	for _, key := range []string{"acme-secret-key", "acme-secret-key", "acme-secret-key", "guessed-key"} {
		req, _ := http.NewRequest(http.MethodGet, srv.URL, nil)
		req.Header.Set("X-API-Key", key)
		resp, err := srv.Client().Do(req)
		if err != nil {
			panic(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		fmt.Println(resp.StatusCode, resp.Header.Get("RateLimit-Policy"), strings.TrimSpace(string(body)))
	}
	// Output:
	// 200 "gold";q=1;w=1 hello acme (gold plan)
	// 200 "gold";q=1;w=1 hello acme (gold plan)
	// 429 "gold";q=1;w=1 {"error":"quota_exceeded","consumer":"acme","plan":"gold","window":"second","retryAfter":1}
	// 401  {"error":"unauthorized"}
}
