package middleware_test

import (
	"net/http"
	"net/http/httptest"
	"strconv"
	"testing"

	"github.com/proxyless/proxyless/auth"
	"github.com/proxyless/proxyless/middleware"
)

// TestConsumersDailyQuotaManyConsumers checks that a consumer's spent daily quota stays spent
// however many other consumers of its plan call: the local limiter's key bound (100,000 by
// default) must not forget a consumer and hand it a full day's quota again. Bounded: 110,000
// in-process requests.
func TestConsumersDailyQuotaManyConsumers(t *testing.T) {
	if testing.Short() {
		t.Skip("110,000 in-process requests")
	}
	const others = 110_000
	cfg := auth.ConsumersConfig{Plans: map[string]auth.Plan{"free": {PerDay: 1}}}
	keyOf := func(i int) string { return "key-" + strconv.Itoa(i) + "-0123456789abcdef" }
	for i := 0; i <= others; i++ {
		cfg.Consumers = append(cfg.Consumers, auth.ConsumerConfig{Name: "c" + strconv.Itoa(i), Plan: "free", Keys: []string{auth.HashAPIKey(keyOf(i))}})
	}
	reg, err := auth.NewConsumers(cfg)
	if err != nil {
		t.Fatal(err)
	}
	h, err := middleware.NewHandler(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}), middleware.WithConsumers(reg, middleware.ConsumerPolicy{}))
	if err != nil {
		t.Fatal(err)
	}
	call := func(i int) int {
		req := httptest.NewRequest(http.MethodGet, "/x", nil)
		req.Header.Set("X-API-Key", keyOf(i))
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		return rec.Code
	}
	if code := call(0); code != http.StatusOK {
		t.Fatalf("first request: %d", code)
	}
	if code := call(0); code != http.StatusTooManyRequests {
		t.Fatalf("second request: %d, want 429", code)
	}
	for i := 1; i <= others; i++ {
		if code := call(i); code != http.StatusOK {
			t.Fatalf("consumer %d: %d", i, code)
		}
	}
	if code := call(0); code != http.StatusTooManyRequests {
		t.Errorf("after %d other consumers called: %d, want 429 (the spent daily quota was forgotten)", others, code)
	}
}
