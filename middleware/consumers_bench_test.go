package middleware_test

import (
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/proxyless/proxyless/auth"
	"github.com/proxyless/proxyless/middleware"
)

// BenchmarkConsumers measures the WithConsumers stage on an admitted request (key lookup,
// route check, per-second and daily quotas, the request handed on), against the bare handler.
func BenchmarkConsumers(b *testing.B) {
	reg, err := auth.NewConsumers(auth.ConsumersConfig{
		Plans:     map[string]auth.Plan{"gold": {PerSecond: 1e6, Burst: 1e6, PerDay: 1 << 30}},
		Consumers: []auth.ConsumerConfig{{Name: "acme", Plan: "gold", Keys: []string{auth.HashAPIKey("acme-key")}}},
	})
	if err != nil {
		b.Fatal(err)
	}
	ok := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusOK) })
	h, err := middleware.NewHandler(ok, middleware.WithConsumers(reg, middleware.ConsumerPolicy{}))
	if err != nil {
		b.Fatal(err)
	}
	for _, bc := range []struct {
		name string
		h    http.Handler
	}{{"bare", ok}, {"consumers", h}} {
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			req := httptest.NewRequest(http.MethodGet, "/", nil)
			req.Header.Set("X-API-Key", "acme-key")
			for b.Loop() {
				w := httptest.NewRecorder()
				bc.h.ServeHTTP(w, req)
				if w.Code != http.StatusOK {
					b.Fatalf("status %d", w.Code)
				}
			}
		})
	}
}
